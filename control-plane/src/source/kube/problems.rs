//! What a watcher error means for a kind, and what to tell the operator about it.
//!
//! The watcher retries every error itself (with `default_backoff`), so nothing here is fatal;
//! the question is only whether the kind counts as empty meanwhile and how loudly to say so.
//! A kind the API server does not serve (a CRD not installed: 404) or will not show (RBAC: 403)
//! counts as empty — Istio's CRDs may be installed after Ambit — and is reported once, not on
//! every retry; a watch that expired (410 Gone) is routine: the watcher relists.

use kube::{
    core::Status,
    runtime::watcher::{self, Error},
};

use super::resources::Resource;

/// How one watcher error is handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The kind is not available: treat it as empty until a list succeeds.
    Unavailable(String),
    /// The watcher relists by itself; nothing to warn about.
    Relist(String),
    /// Anything else (network, server errors): the watcher retries; the cache stays as it is.
    Retry(String),
}

/// Classifies `error` for `resource` and says what to do, in words for the operator.
pub(super) fn judge(resource: &Resource, error: &Error) -> Verdict {
    let kind = resource.kind;
    let name = resource.resource_name();
    let listing = matches!(error, Error::InitialListFailed(_));
    match status(error).map(|s| s.code) {
        Some(404) if listing || matches!(error, Error::WatchStartFailed(_)) => {
            let hint = if resource.is_crd() { " (is its CustomResourceDefinition installed?)" } else { "" };
            Verdict::Unavailable(format!(
                "{kind}: the API server does not serve {name} {}{hint}; treating {kind} as empty and retrying",
                resource.api.api_version
            ))
        }
        Some(403) => {
            let said = status(error).map_or("", |s| s.message.as_str());
            let message = format!(
                "{kind}: the control plane may not list and watch {name} ({said}); add to its ClusterRole the rule {}",
                resource.rbac_rule()
            );
            if listing {
                Verdict::Unavailable(format!("{message}; treating {kind} as empty until then"))
            } else {
                Verdict::Retry(message)
            }
        }
        Some(410) => Verdict::Relist(format!("{kind}: the watch expired ({error}); relisting {name}")),
        _ => Verdict::Retry(format!("{kind}: watching {name} failed: {error}; retrying with backoff")),
    }
}

/// The API server's answer inside `error`, if it gave one.
fn status(error: &Error) -> Option<&Status> {
    match error {
        Error::InitialListFailed(kube::Error::Api(status))
        | Error::WatchStartFailed(kube::Error::Api(status))
        | Error::WatchFailed(kube::Error::Api(status))
        | Error::WatchError(status) => Some(status),
        _ => None,
    }
}

/// Logs each problem of one kind once: a problem that persists across retries is not repeated
/// until it changes or the kind lists successfully again.
#[derive(Debug, Default)]
pub(super) struct Reporter {
    last: Option<String>,
}

impl Reporter {
    /// Logs `error` and returns whether the kind must now be treated as empty.
    pub(super) fn report(&mut self, resource: &Resource, error: &watcher::Error) -> bool {
        let verdict = judge(resource, error);
        let (message, empty) = match &verdict {
            Verdict::Unavailable(m) => (m, true),
            Verdict::Relist(m) => {
                tracing::info!("{m}");
                return false;
            }
            Verdict::Retry(m) => (m, false),
        };
        if self.last.as_ref() == Some(message) {
            tracing::debug!("{message}");
        } else {
            tracing::warn!("{message}");
            self.last = Some(message.clone());
        }
        empty
    }

    /// The kind listed successfully.
    pub(super) fn listed(&mut self, resource: &Resource, objects: usize) {
        if self.last.take().is_some() {
            tracing::info!("{}: listed {} again ({objects} objects)", resource.kind, resource.resource_name());
        }
    }
}

#[cfg(test)]
mod tests {
    use ambit_common::config::Kind;

    use super::*;

    fn status(code: u16, message: &str) -> Box<Status> {
        Status::failure(message, "").with_code(code).boxed()
    }

    fn resource(kind: Kind) -> Resource {
        Resource::all().into_iter().find(|r| r.kind == kind).unwrap()
    }

    #[test]
    fn verdicts_name_the_kind_and_the_fix() {
        let vs = resource(Kind::VirtualService);
        let missing =
            Error::InitialListFailed(kube::Error::Api(status(404, "the server could not find the requested resource")));
        let Verdict::Unavailable(m) = judge(&vs, &missing) else { panic!("404 makes the kind unavailable") };
        assert!(m.contains("virtualservices.networking.istio.io") && m.contains("CustomResourceDefinition"), "{m}");

        let pa = resource(Kind::PeerAuthentication);
        let forbidden = Error::InitialListFailed(kube::Error::Api(status(403, "peerauthentications is forbidden")));
        let Verdict::Unavailable(m) = judge(&pa, &forbidden) else { panic!("403 on list makes the kind unavailable") };
        assert!(m.contains(r#"resources: ["peerauthentications"]"#) && m.contains("is forbidden"), "{m}");

        let gone = Error::WatchError(status(410, "too old resource version: 1 (2)"));
        assert!(matches!(judge(&pa, &gone), Verdict::Relist(_)));
        let watch_forbidden = Error::WatchStartFailed(kube::Error::Api(status(403, "no")));
        assert!(matches!(judge(&pa, &watch_forbidden), Verdict::Retry(m) if m.contains("ClusterRole")));
        assert!(matches!(judge(&pa, &Error::NoResourceVersion), Verdict::Retry(_)));
    }

    #[test]
    fn reports_a_persisting_problem_once() {
        let vs = resource(Kind::VirtualService);
        let missing = || Error::InitialListFailed(kube::Error::Api(status(404, "not found")));
        let mut reporter = Reporter::default();
        assert!(reporter.report(&vs, &missing()));
        let first = reporter.last.clone();
        assert!(reporter.report(&vs, &missing()));
        assert_eq!(reporter.last, first);
        reporter.listed(&vs, 3);
        assert_eq!(reporter.last, None);
    }
}
