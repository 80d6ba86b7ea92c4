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
//! 9. response header operations (the cluster's, the route's) and CORS headers.
//!
//! Every failure is answered by `outcome` as Envoy would; every request leaves one access record.

mod forward;
pub mod message;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Request, Response, StatusCode, header, request::Parts};
use hyper::{body::Incoming, upgrade::OnUpgrade};

use crate::{
    authz::{AuthzRequest, Decision},
    body::Body,
    cors::CorsDecision,
    outcome::{Failure, GrpcStatus, RequestKind, ResponseFlags},
    proxy::{Downstream, Waypoint},
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
}

/// Answers one request from `down`.
pub async fn handle(wp: &Waypoint, down: &Downstream, request: Request<Incoming>) -> Response<Body> {
    let started = (Instant::now(), SystemTime::now());
    let snapshot = wp.config.current();
    let (mut parts, body) = request.into_parts();
    let kind = RequestKind::of(&parts);
    let upgrade = if upgrade::is_websocket(&parts) { parts.extensions.remove::<OnUpgrade>() } else { None };
    let mut log = Log::default();
    let record = base_record(&parts, down);
    let outcome: Result<Response<Body>, Failure> = async {
        // 1. The service port.
        let Some(service) = snapshot.service(down.destination) else {
            log.detail =
                Some(format!("no service port for {} in configuration version {}", down.destination, snapshot.version));
            return Err(Failure::NoRoute);
        };
        let source = Source { address: down.peer.ip(), identity: down.identity.clone() };
        let view = RequestView::new(&parts, &source);
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
        let Some((index, _)) = service.router.select_http(&view) else { return Err(Failure::NoRoute) };
        let route = &service.routes[index];
        log.route = Some(route.name.clone());
        // 4. CORS.
        let cors_headers = match route.cors.as_ref().map(|c| c.decide(&parts.method, &parts.headers)) {
            Some(CorsDecision::AnswerPreflight { headers }) => {
                return Ok(local(StatusCode::OK, headers, bytes::Bytes::new(), &route.response_headers));
            }
            Some(CorsDecision::Forward { response_headers }) => response_headers,
            None => HeaderMap::new(),
        };
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
                return Ok(local(redirect.status(), headers, bytes::Bytes::new(), &route.response_headers));
            }
            Action::Direct { status, body } => {
                return Ok(local(*status, HeaderMap::new(), body.clone(), &route.response_headers));
            }
            Action::Forward(forward) => forward,
        };
        // 7. The weighted cluster, header operations, rewrites.
        let target = forward.pick().ok_or(Failure::NoHealthyUpstream)?;
        log.cluster = Some(target.cluster.name.clone());
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
        let mut response = forward::forward(wp, down, forward, target, &parts, body, upgrade, kind, &mut log).await?;
        // 9. Response header operations and CORS headers.
        target.response_headers.apply(response.headers_mut());
        route.response_headers.apply(response.headers_mut());
        response.headers_mut().extend(cors_headers);
        Ok(response)
    }
    .await;
    let response = match outcome {
        Ok(response) => response,
        Err(failure) => {
            log.flags = log.flags.union(failure.flags());
            message::local_reply(&failure, kind)
        }
    };
    finish(wp, record, log, response, started)
}

/// A reply made by the waypoint for a route, with the route's response header operations.
fn local(
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
    ops: &crate::headers::HeaderOps,
) -> Response<Body> {
    let mut response = message::status_reply(status, headers, body);
    ops.apply(response.headers_mut());
    response
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
    record.grpc_status = GrpcStatus::from_headers(response.headers()).map(GrpcStatus::code);
    record.mirrored = log.mirrored;
    record.detail = log.detail;
    crate::stats::inc(&wp.stats.requests);
    wp.stats.response(record.response_code);
    let pending = PendingRecord { records: wp.records.clone(), record: Some(record), started: started.0 };
    response.map(|body| crate::body::guarded(body, vec![Box::new(pending)]))
}

/// A finished request's record, stored when the response body is dropped.
struct PendingRecord {
    records: std::sync::Arc<crate::records::Records>,
    record: Option<AccessRecord>,
    started: Instant,
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.duration_ms = self.started.elapsed().as_millis() as u64;
            self.records.push(record);
        }
    }
}
