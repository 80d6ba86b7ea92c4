//! L7 authorization: the `HttpAuthorization` policies attached to this waypoint (Istio
//! AuthorizationPolicies with `targetRefs`), compiled once per configuration update, then one
//! [`Decision`] per request.
//!
//! The decision follows <https://istio.io/latest/docs/reference/config/security/authorization-policy/>
//! (CUSTOM never reaches a waypoint: validation refuses it):
//! 1. "If there are any DENY policies that match the request, deny the request."
//! 2. "If there are no ALLOW policies for the workload, allow the request."
//! 3. "If any of the ALLOW policies match the request, allow the request."
//! 4. "Deny the request."
//!
//! "AUDIT policies do not affect whether requests are allowed or denied"; the decision names the
//! one that matched, for the access log. A policy takes part only when it applies to the request:
//! its `hostnames` are empty (attached to the waypoint's Gateway) or hold the request's service.
//! Workload-addressed traffic has no service: only the waypoint's own policies apply to it.
//!
//! Matching: a policy with no rules never matches; a rule matches when one source, one operation
//! and every condition do, an absent part matching anything ("An empty rule is always matched");
//! the fields of a source or operation are ANDed, the values of a field ORed, and a `not` field
//! holds when none of its values matches. String values use Istio's forms: exact, `prefix*`,
//! `*suffix` and `*`, which means "present and not empty". An absent attribute matches no value
//! and satisfies every `not` list, as in Envoy's RBAC filter: a peer without identity (plaintext)
//! has no principal or namespace, and — Ambit having no RequestAuthentication — no request has a
//! JWT, so `requestPrincipals` and `request.auth.*` behave as in Istio for a request without one
//! (an ALLOW rule requiring one never matches; `notRequestPrincipals: ["*"]` in a DENY policy,
//! Istio's documented "require JWT" pattern, denies every request).
//!
//! Attributes, as istiod's RBAC generator and Envoy read them:
//! - `hosts` against the authority as sent, port included, ignoring ASCII case (Istio compares
//!   hosts case-insensitively since GHSA-7774-7vr3-cc8j); write `example.com:*` to match a port;
//! - `paths` against the path without the query string (Envoy's `url_path`), as normalized
//!   before routing;
//! - `methods` case-sensitively; `ports` and `destination.port` the destination (service) port;
//! - `ipBlocks`/`source.ip` the peer's address; `remoteIpBlocks`/`remote.ip` the original
//!   client's ([`AuthzRequest::remote`]).

use std::net::{IpAddr, SocketAddr};

use ambit_common::api::v1::{AuthorizationAction, HttpAuthorization};

use crate::{outcome::Failure, route::RequestView};

mod compiled;
#[cfg(test)]
mod tests;

use self::compiled::Policy;

/// Why a policy cannot be used; names the policy and the field. The waypoint refuses (NACKs) the
/// update and keeps its last good configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    #[error(
        "authorization policy {policy}: action {action} is unknown (is the control plane newer than this \
         waypoint?)"
    )]
    UnknownAction { policy: String, action: i32 },
    #[error("authorization policy {policy}: {field}: {reason}")]
    Invalid { policy: String, field: String, reason: String },
}

/// What authorization looks at in a request.
pub struct AuthzRequest<'a> {
    /// Method, authority, path, headers and the peer (address and verified SPIFFE identity).
    pub view: &'a RequestView<'a>,
    /// The service the request is for: the hostname of the route table that serves it; `None`
    /// for traffic addressed to a workload bound to the waypoint.
    pub service: Option<&'a str>,
    /// The original destination: the address and port the client connected to.
    pub destination: SocketAddr,
    /// The original client's address. Istio takes it from `X-Forwarded-For` only behind trusted
    /// proxies (`numTrustedProxies`, default 0); otherwise it is the peer's address.
    pub remote: IpAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow {
        /// The ALLOW policy (`<namespace>/<name>`) that admitted the request; `None` when no
        /// ALLOW policy applies to it.
        by: Option<String>,
        /// The first AUDIT policy that matched, for the access log.
        audited_by: Option<String>,
    },
    Deny(Denial),
}

impl Decision {
    /// How a denied request is answered: 403 `RBAC: access denied`, as Envoy's RBAC filter.
    pub fn failure(&self) -> Option<Failure> {
        matches!(self, Self::Deny(_)).then_some(Failure::AccessDenied)
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }
}

/// Why a request was refused; the text goes into logs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("denied by DENY policy {policy}")]
    DenyPolicy { policy: String },
    #[error("no ALLOW policy matched (policies: {})", policies.join(", "))]
    NoAllowMatched { policies: Vec<String> },
}

/// Every policy of the waypoint, compiled.
pub struct Authorizer {
    policies: Vec<Policy>,
}

impl Authorizer {
    pub fn new<'p>(policies: impl IntoIterator<Item = &'p HttpAuthorization>) -> Result<Self, AuthzError> {
        Ok(Self { policies: policies.into_iter().map(Policy::compile).collect::<Result<_, _>>()? })
    }

    /// What the control plane could not have the waypoint enforce, per policy (already applied
    /// fail-closed): for the waypoint to log once per update.
    pub fn not_enforced(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.policies
            .iter()
            .filter(|p| !p.not_enforced.is_empty())
            .map(|p| (p.name.as_str(), p.not_enforced.as_slice()))
    }

    pub fn decide(&self, request: &AuthzRequest<'_>) -> Decision {
        let applicable = || self.policies.iter().filter(|p| p.applies_to(request.service));
        if let Some(deny) = applicable().find(|p| p.action == AuthorizationAction::Deny && p.matches(request)) {
            return Decision::Deny(Denial::DenyPolicy { policy: deny.name.clone() });
        }
        let audited_by =
            applicable().find(|p| p.action == AuthorizationAction::Audit && p.matches(request)).map(|p| p.name.clone());
        let mut allow = applicable().filter(|p| p.action == AuthorizationAction::Allow).peekable();
        if allow.peek().is_none() {
            return Decision::Allow { by: None, audited_by };
        }
        let mut names = Vec::new();
        for policy in allow {
            if policy.matches(request) {
                return Decision::Allow { by: Some(policy.name.clone()), audited_by };
            }
            names.push(policy.name.clone());
        }
        Decision::Deny(Denial::NoAllowMatched { policies: names })
    }
}
