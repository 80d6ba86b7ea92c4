//! Step 8 of the pipeline: sending a request upstream. The route timeout, from the end of the
//! client's request (as Envoy starts it), bounds all tries together and the response's body
//! (cut short with a reset when it runs over); each try has the per-try timeout, from the try's
//! start or the request's end, whichever is later; after a failed try the retry policy decides,
//! and a retry waits Envoy's jittered backoff and, when the policy says so, avoids the endpoints
//! already tried. Every try's outcome goes to the cluster's outlier detector. Mirrors get a copy
//! of the request once its body has been read whole (bodies larger than the replay buffer are
//! not mirrored). A WebSocket upgrade goes on an upstream connection of its own, is never
//! mirrored, and its 101 joins the two connections (`crate::upgrade`).

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use http::{Response, request::Parts};
use hyper::{body::Incoming, upgrade::OnUpgrade};
use tokio::time::Instant;

use super::{Log, message};
use crate::{
    body::{self, Body, REPLAY_LIMIT, ReplayBody, RequestEnd},
    lb::{LbContext, Pick},
    mirror,
    outcome::{Failure, RequestKind},
    outlier::Outcome,
    proxy::{Downstream, Waypoint},
    retry::{Attempt, Decision, ResponseHead, TryOutcome},
    snapshot::{Forward, Target},
    timeout,
    upstream::{ClusterState, Exchange, HttpVersion},
};

#[expect(clippy::too_many_arguments, reason = "the pipeline's state, passed as is")]
pub(super) async fn forward(
    wp: &Waypoint,
    down: &Downstream,
    forward: &Forward,
    target: &Target,
    parts: &Parts,
    body: Incoming,
    mut upgrade: Option<OnUpgrade>,
    kind: RequestKind,
    log: &mut Log,
) -> Result<Response<Body>, Failure> {
    let cluster = &target.cluster;
    let version = http_version(cluster, down);
    if upgrade.is_some() && version == HttpVersion::Http2 {
        log.detail = Some(format!(
            "WebSocket upgrade forwarded as a plain request: cluster {} speaks HTTP/2 upstream (extended CONNECT is \
             not supported)",
            cluster.name
        ));
        upgrade = None;
    }
    let route_timeout = timeout::request_timeout(forward.timeout_ms, kind == RequestKind::Grpc, &parts.headers);
    let per_try = forward.retry.per_try_timeout(route_timeout);
    let body = ReplayBody::new(body::boxed(body), REPLAY_LIMIT);
    let route = RouteDeadline { timeout: route_timeout, request_end: body.end() };
    let lb = LbContext { request: Some(parts), peer: down.peer, local: down.local };
    let mut tried: Vec<usize> = Vec::new();
    let mut request_sent = false;
    let mut retry_slot = None;
    let result = loop {
        let Some(Pick { index: endpoint, set_cookie }) =
            cluster.pick(&lb, &tried, forward.retry.retry_other_endpoints())
        else {
            break Err(Failure::NoHealthyUpstream);
        };
        let address = cluster.target(endpoint).map(|t| t.address.to_string()).unwrap_or_default();
        log.upstream_hosts.push(address);
        tried.push(endpoint);
        let tries = tried.len() as u32;
        let Some(copy) = body.replay() else {
            break Err(Failure::UpstreamReset { reason: crate::outcome::ResetReason::Remote, retried: tries > 1 });
        };
        let mut request = message::upstream_request(parts, version, body::boxed(copy), upgrade.is_some());
        crate::proxy_headers::set_attempt(request.headers_mut(), tries);
        crate::proxy_headers::set_expected_timeout(request.headers_mut(), per_try.or_else(|| route.left()));
        let sent = cluster.send(endpoint, version, request, upgrade.is_some(), &wp.connector);
        // A try's timeout starts when the try does, or when the request is complete if it is not
        // yet (Envoy's `createPerTryTimeoutOnRequestComplete`).
        let try_started = Instant::now();
        let request_end = route.request_end.clone();
        let per_try_expired = async move {
            match per_try {
                Some(timeout) => tokio::time::sleep_until(request_end.wait().await.max(try_started) + timeout).await,
                None => std::future::pending().await,
            }
        };
        // `None`: the per-try timeout expired first.
        let result = tokio::select! {
            result = sent => Some(result),
            () = per_try_expired => None,
            () = route.clone().expired() => {
                cluster.record(endpoint, Outcome::Timeout);
                break Err(Failure::RouteTimeout);
            }
        };
        drop(retry_slot.take());
        let (outcome, exchange) = match result {
            None => {
                request_sent = true;
                cluster.record(endpoint, Outcome::Timeout);
                (TryOutcome::PerTryTimeout, None)
            }
            Some(Err(error)) => {
                if error.counts_against_endpoint() {
                    cluster.record(endpoint, Outcome::ConnectFailed);
                }
                request_sent |= matches!(error, crate::upstream::TryError::Reset { .. });
                log.detail = Some(error.to_string());
                (error.outcome(), None)
            }
            Some(Ok(exchange)) => {
                request_sent = true;
                let (head, _) = clone_head(&exchange.response);
                cluster.record(endpoint, Outcome::Status(head.status.as_u16()));
                (TryOutcome::Response(ResponseHead::new(&head)), Some((exchange, set_cookie)))
            }
        };
        let attempt = Attempt {
            tries,
            request_sent,
            replayable: body.replayable(),
            retry_budget: cluster.breaker.status().retries < cluster.limits.max_retries,
        };
        match forward.retry.decide(&outcome, &attempt) {
            Decision::Retry => {
                retry_slot = cluster.breaker.retry(&cluster.limits);
                crate::stats::inc(&wp.stats.retries);
                drop(exchange);
                let backoff = forward.retry.backoff(tries, crate::rng::below);
                if !sleep_before(route.at(), backoff).await {
                    break Err(Failure::RouteTimeout);
                }
            }
            Decision::Stop(stop) => {
                if let Some(flag) = stop.flag() {
                    log.flags.insert(flag);
                }
                let failure = outcome.failure(stop, tries > 1);
                break match (failure, exchange) {
                    (None | Some(Failure::RetryLimitExceeded { .. }), Some(exchange)) => Ok(exchange),
                    (Some(failure), _) => Err(failure),
                    (None, None) => Err(Failure::NoHealthyUpstream),
                };
            }
        }
    };
    if upgrade.is_none() {
        fire_mirrors(wp, forward, parts, &body, log);
    }
    let (Exchange { response, guards }, set_cookie) = result?;
    let mut response = match upgrade {
        Some(downstream) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
            message::switched_response(response, downstream, guards, wp.stream_idle_timeout)
        }
        _ if route_timeout.is_some() => {
            let expired = Arc::new(AtomicBool::new(false));
            log.timed_out_mid_response = Some(expired.clone());
            let response = message::downstream_response(response, guards);
            response.map(|b| body::with_deadline(b, Box::pin(route.expired()), expired))
        }
        _ => message::downstream_response(response, guards),
    };
    if let Some(cookie) = set_cookie
        && let Ok(value) = cookie.to_string().parse()
    {
        response.headers_mut().append(http::header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The HTTP version of the cluster's connections: its own, or the request's (`DOWNSTREAM`).
fn http_version(cluster: &ClusterState, down: &Downstream) -> HttpVersion {
    use ambit_common::api::v1::UpstreamProtocol;
    match cluster.protocol {
        UpstreamProtocol::Http1 => HttpVersion::Http1,
        UpstreamProtocol::Http2 => HttpVersion::Http2,
        UpstreamProtocol::Downstream | UpstreamProtocol::Unspecified if down.version == http::Version::HTTP_2 => {
            HttpVersion::Http2
        }
        UpstreamProtocol::Downstream | UpstreamProtocol::Unspecified => HttpVersion::Http1,
    }
}

/// The route timeout (Envoy's global timeout): it starts once the client's request is complete
/// (its body read to the end) and bounds the rest of the exchange — every try, the backoffs
/// between them, and the response's body.
#[derive(Clone)]
struct RouteDeadline {
    timeout: Option<Duration>,
    request_end: RequestEnd,
}

impl RouteDeadline {
    /// When it expires, once it has started.
    fn at(&self) -> Option<Instant> {
        Some(self.request_end.at()? + self.timeout?)
    }

    /// What is left of it: all of it until it has started, nothing once it has expired.
    fn left(&self) -> Option<Duration> {
        let timeout = self.timeout?;
        Some(self.at().map_or(timeout, |at| at.saturating_duration_since(Instant::now())))
    }

    /// Completes when it expires; never without a timeout.
    async fn expired(self) {
        match self.timeout {
            Some(timeout) => tokio::time::sleep_until(self.request_end.wait().await + timeout).await,
            None => std::future::pending().await,
        }
    }
}

/// What the retry decision reads of a response, without taking its body.
fn clone_head(response: &Response<Incoming>) -> (http::response::Parts, ()) {
    let (mut head, ()) = Response::new(()).into_parts();
    head.status = response.status();
    head.headers = response.headers().clone();
    (head, ())
}

/// Waits `backoff`, unless the deadline comes first (`false`).
async fn sleep_before(deadline: Option<Instant>, backoff: Duration) -> bool {
    let until = Instant::now() + backoff;
    match deadline {
        Some(deadline) if deadline <= until => {
            tokio::time::sleep_until(deadline).await;
            false
        }
        _ => {
            tokio::time::sleep_until(until).await;
            true
        }
    }
}

/// Sends the mirrors that fire a copy of the request, fire and forget: the copy's authority
/// gets `-shadow`, its response is read and dropped, its failure only logged.
fn fire_mirrors(wp: &Waypoint, forward: &Forward, parts: &Parts, body: &ReplayBody, log: &mut Log) {
    for fired in mirror::mirrors_to_fire(&forward.mirrors, crate::rng::per_million) {
        let Some(index) = forward.mirrors.iter().position(|m| std::ptr::eq(m, fired)) else { continue };
        let cluster = forward.mirror_clusters[index].clone();
        let Some((content, _trailers)) = body.complete() else {
            tracing::debug!(cluster = %cluster.name, "request body not read whole (or too large to keep): not mirrored");
            continue;
        };
        let mut shadow = parts.clone();
        let authority = mirror::shadow_authority(&message::authority(parts));
        if crate::rewrite::set_authority(&mut shadow, &authority).is_err() {
            continue;
        }
        log.mirrored.push(cluster.name.clone());
        crate::stats::inc(&wp.stats.mirrored);
        let connector = wp.connector.clone();
        let version = if parts.version == http::Version::HTTP_2 { HttpVersion::Http2 } else { HttpVersion::Http1 };
        let version = match cluster.protocol {
            ambit_common::api::v1::UpstreamProtocol::Http1 => HttpVersion::Http1,
            ambit_common::api::v1::UpstreamProtocol::Http2 => HttpVersion::Http2,
            _ => version,
        };
        tokio::spawn(async move {
            let peer = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
            let lb = LbContext { request: Some(&shadow), peer, local: peer };
            let Some(Pick { index, .. }) = cluster.pick(&lb, &[], false) else {
                tracing::debug!(cluster = %cluster.name, "mirror: no endpoint");
                return;
            };
            let request = message::upstream_request(&shadow, version, body::full(content), false);
            match cluster.send(index, version, request, false, &connector).await {
                Ok(exchange) => {
                    use http_body_util::BodyExt;
                    let _ = exchange.response.into_body().collect().await;
                }
                Err(e) => tracing::debug!(cluster = %cluster.name, error = %e, "mirror failed (ignored)"),
            }
        });
    }
}
