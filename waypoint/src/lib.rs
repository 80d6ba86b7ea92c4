//! The waypoint: what Envoy is in Istio ambient, an optional per-namespace proxy that applies L7
//! rules to the services bound to it.
//!
//! The control plane compiles VirtualServices and DestinationRules into `RouteTable`s and
//! `Cluster`s (`common/proto/ambit/v1/route.proto`) with every Istio default written out, so the
//! waypoint executes what it receives and never re-derives Istio semantics.
//!
//! What exists today are the decisions of the request pipeline, each a pure module (no IO, no
//! clock: durations and random draws are arguments), compiled once per configuration update and
//! unit-tested:
//!
//! | module | job |
//! |---|---|
//! | [`authz`] | L7 AuthorizationPolicy (`targetRefs` to the waypoint or its services): DENY, then ALLOW, AUDIT noted, with Istio's matching; a denial is 403 `RBAC: access denied` |
//! | [`route`] | a port's routes compiled once (regexes, matchers), then per request: the first route whose match holds, and the weighted cluster it sends to; the same for TCP routes |
//! | [`headers`] | request and response header operations (set, append, remove), compiled and applied in Envoy's order |
//! | [`rewrite`] | path rewrites (prefix and regex, query kept) and the authority rewrite |
//! | [`redirect`] | the `Location` and status of a redirect route |
//! | [`cors`] | `corsPolicy`: preflights answered, CORS response headers, unmatched preflights |
//! | [`timeout`] | the request deadline: the route's timeout, or a `grpc-timeout` capped at it |
//! | [`fault`] | a route's fault: from two draws, the delay and the abort a request gets |
//! | [`retry`] | a route's retry policy: whether a failed try is retried, and the backoff before it |
//! | [`mirror`] | which mirrors a request is copied to, and their `-shadow` authority |
//! | [`lb`] | a cluster's endpoint for a request: round robin, least request, random, passthrough, or a consistent hash (ring or Maglev) of a header, cookie, query parameter or the source IP; healthy endpoints only, all of them in panic mode |
//! | [`outlier`] | outlier detection: consecutive 5xx and gateway errors eject an endpoint for a growing time, within `maxEjectionPercent`; which endpoints are ejected, and whether the cluster is in panic |
//! | [`outcome`] | every way a request fails, as Envoy answers it: status, body, gRPC trailers-only reply, access-log flags |
//!
//! Not built yet (see the waypoint issue): the binary and its data path (HBONE in, HTTP/1.1,
//! HTTP/2 and gRPC, HBONE out through the destination's node proxy), the request pipeline that
//! strings these modules together in one function, and connection pools and circuit breaking.

pub mod admin;
pub mod app;
pub mod authz;
pub mod body;
pub mod config;
pub mod cors;
pub mod detect;
pub mod fault;
pub mod headers;
pub mod identity;
pub mod io;
pub mod lb;
pub mod mirror;
pub mod outcome;
pub mod outlier;
pub mod pipeline;
pub mod proxy;
pub mod records;
pub mod redirect;
pub mod retry;
pub mod rewrite;
mod rng;
pub mod route;
pub mod snapshot;
pub mod stats;
pub mod timeout;
pub mod upstream;
