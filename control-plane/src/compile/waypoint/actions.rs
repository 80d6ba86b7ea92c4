//! The parts of an HTTP route Istio translates one to one: retries (with Istio's default
//! policy), faults, CORS, header operations, redirects, direct responses.

use ambit_common::{
    api::v1::{
        CorsPolicy, CorsUnmatchedPreflights, DirectResponse, Fault, FaultAbort, FaultDelay, HeaderAction,
        HeaderOperation, Redirect, RetryOn as PbRetryOn, RetryPolicy, fault_abort::Status,
    },
    config::model::{
        self, AbortError, Body, Cors, HeaderOperations, RedirectPort, Retry, RetryOn, UnmatchedPreflights,
    },
};

use super::{matches::string_matcher, ms, per_million};

/// Istio's default retry policy (`retry.DefaultPolicy`), used when a route sets none: 2 retries
/// on connect failures, refused streams, gRPC `unavailable` and `cancelled`, and 503; other
/// endpoints preferred, except for consistent-hash destinations. Envoy's 25 ms backoff base.
pub(super) fn default_retry(consistent_hash: bool) -> RetryPolicy {
    let retry_on = [
        PbRetryOn::ConnectFailure,
        PbRetryOn::RefusedStream,
        PbRetryOn::Unavailable,
        PbRetryOn::Cancelled,
        PbRetryOn::RetriableStatusCodes,
    ];
    RetryPolicy {
        attempts: 2,
        per_try_timeout_ms: 0,
        retry_on: retry_on.into_iter().map(Into::into).collect(),
        retriable_status_codes: vec![503],
        retry_other_endpoints: !consistent_hash,
        backoff_base_interval_ms: 25,
    }
}

/// Istio's `retry.ConvertPolicy`: the default policy, with what the route sets laid over it.
/// `attempts: 0` disables retries. A `retryOn` replaces both the conditions and the status
/// codes (so `retryOn: 5xx` no longer retries 503 by status); status codes in it imply
/// `retriable-status-codes`.
pub(super) fn retry_policy(retry: Option<&Retry>, consistent_hash: bool) -> Option<RetryPolicy> {
    let mut policy = default_retry(consistent_hash);
    let Some(retry) = retry else { return Some(policy) };
    if retry.attempts == 0 {
        return None;
    }
    policy.attempts = retry.attempts;
    if !retry.retry_on.is_empty() {
        let (mut conditions, mut codes) = (Vec::new(), Vec::new());
        for on in &retry.retry_on {
            match retry_on(*on) {
                Ok(c) if !conditions.contains(&i32::from(c)) => conditions.push(c.into()),
                Ok(_) => {}
                Err(code) if !codes.contains(&code) => codes.push(code),
                Err(_) => {}
            }
        }
        let statuses = i32::from(PbRetryOn::RetriableStatusCodes);
        if !codes.is_empty() && !conditions.contains(&statuses) {
            conditions.push(statuses);
        }
        (policy.retry_on, policy.retriable_status_codes) = (conditions, codes);
    }
    if let Some(timeout) = retry.per_try_timeout {
        policy.per_try_timeout_ms = ms(timeout);
    }
    if let Some(ignore) = retry.retry_ignore_previous_hosts {
        policy.retry_other_endpoints = ignore;
    }
    if let Some(backoff) = retry.backoff {
        policy.backoff_base_interval_ms = ms(backoff);
    }
    Some(policy)
}

/// A condition, or (`Err`) a status code.
fn retry_on(on: RetryOn) -> Result<PbRetryOn, u32> {
    Ok(match on {
        RetryOn::FiveXx => PbRetryOn::RetryOn5xx,
        RetryOn::GatewayError => PbRetryOn::GatewayError,
        RetryOn::Reset => PbRetryOn::Reset,
        RetryOn::ResetBeforeRequest => PbRetryOn::ResetBeforeRequest,
        RetryOn::ConnectFailure => PbRetryOn::ConnectFailure,
        RetryOn::EnvoyRateLimited => PbRetryOn::EnvoyRatelimited,
        RetryOn::Retriable4xx => PbRetryOn::Retriable4xx,
        RetryOn::RefusedStream => PbRetryOn::RefusedStream,
        RetryOn::RetriableStatusCodes => PbRetryOn::RetriableStatusCodes,
        RetryOn::RetriableHeaders => PbRetryOn::RetriableHeaders,
        RetryOn::Http3PostConnectFailure => PbRetryOn::Http3PostConnectFailure,
        RetryOn::Cancelled => PbRetryOn::Cancelled,
        RetryOn::DeadlineExceeded => PbRetryOn::DeadlineExceeded,
        RetryOn::Internal => PbRetryOn::Internal,
        RetryOn::ResourceExhausted => PbRetryOn::ResourceExhausted,
        RetryOn::Unavailable => PbRetryOn::Unavailable,
        RetryOn::Status(code) => return Err(u32::from(code)),
    })
}

/// `None` when the fault injects nothing at all.
pub(super) fn fault(fault: &model::Fault) -> Option<Fault> {
    let delay = fault
        .delay
        .as_ref()
        .map(|d| FaultDelay { fixed_delay_ms: ms(d.fixed_delay), per_million: per_million(d.percentage) });
    let abort = fault.abort.as_ref().map(|a| FaultAbort {
        status: Some(match a.error {
            AbortError::HttpStatus(code) => Status::HttpStatus(u32::from(code)),
            AbortError::GrpcStatus(status) => Status::GrpcStatus(u32::from(status.code())),
        }),
        per_million: per_million(a.percentage),
    });
    (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
}

pub(super) fn cors(cors: &Cors) -> CorsPolicy {
    CorsPolicy {
        allow_origins: cors.allow_origins.iter().map(string_matcher).collect(),
        allow_methods: cors.allow_methods.clone(),
        allow_headers: cors.allow_headers.clone(),
        expose_headers: cors.expose_headers.clone(),
        // Istio sends whole seconds.
        max_age_seconds: cors.max_age.map(|d| d.as_std().as_secs()),
        allow_credentials: cors.allow_credentials,
        unmatched_preflights: match cors.unmatched_preflights {
            UnmatchedPreflights::Forward => CorsUnmatchedPreflights::Forward,
            UnmatchedPreflights::Ignore => CorsUnmatchedPreflights::Ignore,
        }
        .into(),
    }
}

/// The header operations of one Envoy level, as Istio writes them
/// (`TranslateHeadersOperations`) and Envoy applies them: every group's removals first, then
/// each group's `set` and `add` in turn. `host`, `:authority` and other pseudo-headers are left
/// out: Istio turns the first two into an authority rewrite ([`authority`]).
pub(super) fn header_list(groups: &[&HeaderOperations]) -> Vec<HeaderOperation> {
    let op = |action: HeaderAction, name: &str, value: &str| HeaderOperation {
        action: action.into(),
        name: name.to_ascii_lowercase(),
        value: value.to_string(),
    };
    let mut out: Vec<_> = groups
        .iter()
        .flat_map(|g| &g.remove)
        .filter(|n| !is_internal(n))
        .map(|n| op(HeaderAction::Remove, n, ""))
        .collect();
    for group in groups {
        let sets = group.set.iter().map(|(n, v)| (HeaderAction::Set, n, v));
        let adds = group.add.iter().map(|(n, v)| (HeaderAction::Append, n, v));
        out.extend(sets.chain(adds).filter(|(_, n, _)| !is_internal(n)).map(|(a, n, v)| op(a, n, v)));
    }
    out
}

/// An authority rewrite written as a `host` or `:authority` header: `set` over `add`.
pub(super) fn authority(group: &HeaderOperations) -> Option<String> {
    fn find(map: &std::collections::BTreeMap<String, String>) -> Option<&String> {
        map.iter().find(|(n, _)| n.eq_ignore_ascii_case("host") || n.eq_ignore_ascii_case(":authority")).map(|(_, v)| v)
    }
    find(&group.set).or_else(|| find(&group.add)).cloned()
}

fn is_internal(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

/// Istio's `ApplyRedirect` for a plaintext listener on `port`.
pub(super) fn redirect(redirect: &model::Redirect, port: u16) -> Redirect {
    let mut redirect_port = match redirect.port {
        Some(RedirectPort::Number(n)) => u32::from(n),
        Some(RedirectPort::FromRequestPort) => u32::from(port),
        Some(RedirectPort::FromProtocolDefault) | None => 0,
    };
    // No explicit :80 for http or :443 for https.
    let scheme = redirect.scheme.as_deref().unwrap_or("http");
    if (redirect_port == 80 && scheme == "http") || (redirect_port == 443 && scheme == "https") {
        redirect_port = 0;
    }
    Redirect {
        path: redirect.uri.clone().unwrap_or_default(),
        authority: redirect.authority.clone().unwrap_or_default(),
        scheme: redirect.scheme.clone().unwrap_or_default(),
        port: redirect_port,
        status: u32::from(redirect.code),
    }
}

pub(super) fn direct_response(response: &model::DirectResponse) -> DirectResponse {
    let body = match &response.body {
        None => Vec::new(),
        Some(Body::String(s)) => s.clone().into_bytes(),
        Some(Body::Bytes(b)) => b.clone(),
    };
    DirectResponse { status: u32::from(response.status), body }
}

/// Istio leaves out destinations of weight 0 when a route has others.
pub(super) fn weighted<T>(mut destinations: Vec<(T, u32)>) -> Vec<(T, u32)> {
    if destinations.len() > 1 {
        destinations.retain(|(_, w)| *w > 0);
    }
    destinations
}
