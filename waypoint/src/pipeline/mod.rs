//! The request pipeline: every HTTP request through the waypoint goes through [`handle`], which
//! calls the decision modules in Envoy's filter order. Each step either answers the request
//! (a local reply, a redirect, a preflight) or passes it on:
//!
//! 1. the service port the HBONE tunnel was for (the snapshot in force when the request starts):
//!    a service's, or the one synthesized for a bound workload (no VirtualService: one route to
//!    the workload at the port the client used);
//! 2. L7 authorization (`authz`): 403 `RBAC: access denied` (for a workload, only the policies
//!    attached to the waypoint itself);
//! 3. route selection (`route`): none is 404 NR;
//! 4. CORS (`cors`): preflights answered here;
//! 5. fault injection (`fault`): a delay (DI), an abort (FI);
//! 6. redirect or direct response;
//! 7. the weighted cluster, then header operations (the cluster's, then the route's) and rewrites;
//! 8. forwarding ([`forward`]): the timeout, tries with retries and backoff, each to an endpoint
//!    the load balancer picks, outcomes recorded for outlier detection, then the mirrors; a
//!    WebSocket upgrade answered 101 becomes a tunnel ([`crate::upgrade`]);
//! 9. response header operations (the cluster's, the route's) and CORS headers, on the upstream's
//!    response and on the waypoint's own replies once a route matched (the route is looked up
//!    before step 2, so a 403 carries its headers, as Envoy's does).
//!
//! On arrival a request gets Envoy's `x-request-id` and `x-forwarded-proto` when it has none
//! ([`crate::proxy_headers`]). Every failure is answered by `outcome` as Envoy would; every
//! request leaves one access record.

mod forward;
pub mod message;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, Request, Response, StatusCode, header, request::Parts};
use hyper::{body::Incoming, upgrade::OnUpgrade};

use crate::{
    authz::{AuthzRequest, Decision},
    body::Body,
    cors::CorsDecision,
    headers::HeaderOps,
    outcome::{Failure, GrpcStatus, RequestKind, ResponseFlag, ResponseFlags},
    proxy::{Downstream, Waypoint},
    proxy_headers,
    records::AccessRecord,
    rewrite,
    route::{RequestView, Source},
    snapshot::Action,
    upgrade,
};

/// What the steps learn about a request, for its access record.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) route: Option<String>,
    pub(crate) cluster: Option<String>,
    pub(crate) upstream_hosts: Vec<String>,
    pub(crate) flags: ResponseFlags,
    pub(crate) mirrored: Vec<String>,
    pub(crate) detail: Option<String>,
    /// Set if the route timeout cut the response's body short (`UT` then).
    pub(crate) timed_out_mid_response: Option<Arc<AtomicBool>>,
}

/// Answers one request from `down`.
pub async fn handle(wp: &Waypoint, down: &Downstream, request: Request<Incoming>) -> Response<Body> {
    let started = (Instant::now(), SystemTime::now());
    let snapshot = wp.config.current();
    let (mut parts, body) = request.into_parts();
    let request_id = proxy_headers::on_arrival(&mut parts.headers, crate::rng::next_u64);
    let kind = RequestKind::of(&parts);
    let upgrade = if upgrade::is_websocket(&parts) { parts.extensions.remove::<OnUpgrade>() } else { None };
    let mut log = Log::default();
    let record = AccessRecord { request_id, ..base_record(&parts, down) };
    // 1. The service port (owned here: the replies' header operations borrow from it).
    let service = snapshot.service(down.destination);
    let mut finishing = ResponseOps::default();
    let outcome: Result<Response<Body>, Failure> = async {
        let Some(service) = service.as_deref() else {
            log.detail =
                Some(format!("no service port for {} in configuration version {}", down.destination, snapshot.version));
            return Err(Failure::NoRoute);
        };
        let source = Source { address: down.peer.ip(), identity: down.identity.clone() };
        let view = RequestView::new(&parts, &source);
        // The route is known before authorization decides (Envoy resolves it for its filters'
        // per-route configuration), so a denial carries the route's response headers; a request
        // with no route is still denied before it is answered 404.
        let route = service.router.select_http(&view).map(|(index, _)| &service.routes[index]);
        if let Some(route) = route {
            log.route = Some(route.name.clone());
            finishing.route = Some(&route.response_headers);
        }
        // 2. L7 authorization.
        if let Some(authz) = &snapshot.authz {
            let request = AuthzRequest {
                view: &view,
                service: service.authz_service(),
                destination: down.destination,
                remote: source.address,
            };
            if let Decision::Deny(denial) = authz.decide(&request) {
                log.detail = Some(denial.to_string());
                return Err(Failure::AccessDenied);
            }
        }
        // 3. Route selection.
        let Some(route) = route else { return Err(Failure::NoRoute) };
        // 4. CORS.
        match route.cors.as_ref().map(|c| c.decide(&parts.method, &parts.headers)) {
            Some(CorsDecision::AnswerPreflight { headers }) => {
                return Ok(message::status_reply(StatusCode::OK, headers, bytes::Bytes::new()));
            }
            Some(CorsDecision::Forward { response_headers }) => finishing.cors = response_headers,
            None => {}
        }
        // 5. Fault injection.
        if let Some(fault) = &route.fault {
            let plan = fault.plan(crate::rng::per_million(), crate::rng::per_million());
            log.flags = log.flags.union(plan.flags());
            if let Some(delay) = plan.delay {
                tokio::time::sleep(delay).await;
            }
            if let Some(failure) = plan.failure() {
                return Err(failure);
            }
        }
        // 6. Redirect or direct response.
        let forward = match &route.action {
            Action::Redirect(redirect) => {
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let location =
                    redirect.location(parts.uri.scheme_str().unwrap_or("http"), &message::authority(&parts), path);
                let mut headers = HeaderMap::new();
                if let Ok(location) = location.parse() {
                    headers.insert(header::LOCATION, location);
                }
                return Ok(message::status_reply(redirect.status(), headers, bytes::Bytes::new()));
            }
            Action::Direct { status, body } => {
                return Ok(message::status_reply(*status, HeaderMap::new(), body.clone()));
            }
            Action::Forward(forward) => forward,
        };
        // 7. The weighted cluster, header operations, rewrites.
        let target = forward.pick().ok_or(Failure::NoHealthyUpstream)?;
        log.cluster = Some(target.cluster.name.clone());
        finishing.target = Some(&target.response_headers);
        target.request_headers.apply(&mut parts.headers);
        route.request_headers.apply(&mut parts.headers);
        if let Some(rewriter) = &forward.path_rewrite {
            rewrite_path(&mut parts, rewriter);
        }
        if let Some(authority) = &target.authority
            && let Err(e) = rewrite::set_authority(&mut parts, authority)
        {
            log.detail = Some(e.to_string());
        }
        // 8. Forward: timeout, retries, load balancing, outlier detection, mirrors.
        forward::forward(wp, down, forward, target, &parts, body, upgrade, kind, &mut log).await
    }
    .await;
    let mut response = match outcome {
        Ok(response) => response,
        Err(failure) => {
            log.flags = log.flags.union(failure.flags());
            message::local_reply(&failure, kind)
        }
    };
    // 9. Response header operations and CORS headers.
    finishing.apply(response.headers_mut());
    finish(wp, record, log, response, started)
}

/// What step 9 does to the response, as far as the request got: the weighted cluster's then the
/// route's response header operations, then the CORS headers. Envoy applies them to its own
/// replies (a denial, a fault's abort, a redirect, 503, 504) as to the upstream's once the route
/// is known, so every reply for a request that matched a route gets them; a 404 does not.
#[derive(Default)]
struct ResponseOps<'a> {
    target: Option<&'a HeaderOps>,
    route: Option<&'a HeaderOps>,
    cors: HeaderMap,
}

impl ResponseOps<'_> {
    fn apply(self, headers: &mut HeaderMap) {
        if let Some(ops) = self.target {
            ops.apply(headers);
        }
        if let Some(ops) = self.route {
            ops.apply(headers);
        }
        headers.extend(self.cors);
    }
}

fn rewrite_path(parts: &mut Parts, rewriter: &rewrite::PathRewriter) {
    let current = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let rewritten = rewriter.rewrite(current);
    let mut uri = parts.uri.clone().into_parts();
    match rewritten.parse() {
        Ok(path) => uri.path_and_query = Some(path),
        Err(_) => return,
    }
    if let Ok(uri) = http::Uri::from_parts(uri) {
        parts.uri = uri;
    }
}

fn base_record(parts: &Parts, down: &Downstream) -> AccessRecord {
    AccessRecord {
        // Copies of text, not `to_string` through the formatter: this runs for every request.
        source_identity: down.identity.as_ref().map(|id| id.as_str().to_owned()),
        source_address: String::from(&*down.peer_text),
        destination: String::from(&*down.destination_text),
        authority: message::authority(parts),
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        protocol: if down.version == http::Version::HTTP_2 { "HTTP/2" } else { "HTTP/1.1" },
        ..Default::default()
    }
}

/// Completes the request's access record from what the steps learned and the response, and
/// attaches it to the response body: it is stored (and logged) when the body ends — sent whole,
/// or abandoned by a reset — so `durationMs` runs to the last byte, as Envoy's `%DURATION%`.
fn finish(
    wp: &Waypoint,
    mut record: AccessRecord,
    log: Log,
    response: Response<Body>,
    started: (Instant, SystemTime),
) -> Response<Body> {
    record.start_unix_ms = started.1.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    record.route_name = log.route;
    record.cluster = log.cluster;
    record.upstream_host = log.upstream_hosts.last().cloned();
    record.attempts = log.upstream_hosts.len() as u32;
    record.upstream_hosts = log.upstream_hosts;
    record.response_code = response.status().as_u16();
    record.response_flags = log.flags.to_string();
    let late_flags = log.timed_out_mid_response.map(|expired| (log.flags, expired));
    record.grpc_status = GrpcStatus::from_headers(response.headers()).map(GrpcStatus::code);
    record.mirrored = log.mirrored;
    record.detail = log.detail;
    crate::stats::inc(&wp.stats.requests);
    wp.stats.response(record.response_code);
    let pending = PendingRecord { records: wp.records.clone(), record: Some(record), started: started.0, late_flags };
    response.map(|body| crate::body::guarded(body, vec![Box::new(pending)]))
}

/// A finished request's record, stored when the response body is dropped.
struct PendingRecord {
    records: Arc<crate::records::Records>,
    record: Option<AccessRecord>,
    started: Instant,
    /// The flags so far, and whether the route timeout then cut the response short.
    late_flags: Option<(ResponseFlags, Arc<AtomicBool>)>,
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            if let Some((flags, expired)) = &self.late_flags
                && expired.load(Ordering::Relaxed)
            {
                record.response_flags = flags.with(ResponseFlag::UpstreamRequestTimeout).to_string();
            }
            record.duration_ms = self.started.elapsed().as_millis() as u64;
            self.records.push(record);
        }
    }
}
