//! The waypoint: what Envoy is in Istio ambient, an optional per-namespace proxy that applies L7
//! rules to the services bound to it.
//!
//! The control plane compiles VirtualServices and DestinationRules into `RouteTable`s and
//! `Cluster`s (`common/proto/ambit/v1/route.proto`) with every Istio default written out, so the
//! waypoint executes what it receives and never re-derives Istio semantics.
//!
//! Two layers. The decisions of the request pipeline are pure modules (no IO, no clock:
//! durations and random draws are arguments), compiled once per configuration update and
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
//! | [`detect`] | the protocol of an undeclared port from the first bytes: h2c preface, HTTP/1 method, else TCP |
//!
//! The data path strings them together:
//!
//! | module | job |
//! |---|---|
//! | [`config`] | flags (with environment variables) validated into a dumpable `Config` |
//! | [`app`] | start-up: the certificate from the CA, the Discovery subscription, the listeners |
//! | [`identity`] | the waypoint's certificate (renewed) and the mesh roots |
//! | [`snapshot`] | each accepted update compiled into an immutable snapshot (service ports by VIP and port, bound workloads by address with a port synthesized per pod port used, routes, clusters, policies); a bad one is NACKed |
//! | [`proxy`] | HBONE in (mTLS, CONNECT by `vip:port`), HTTP/1.1 or HTTP/2 per stream, TCP routes relayed |
//! | [`pipeline`] | [`pipeline::handle`]: every step of a request in one function, and the forwarding with retries and mirrors |
//! | [`proxy_headers`] | the headers Envoy adds to forwarded requests: `x-request-id`, `x-forwarded-proto`, `x-envoy-attempt-count`, `x-envoy-expected-rq-timeout-ms` |
//! | [`upgrade`] | WebSocket upgrades: recognised, kept upstream over HTTP/1.1, and after a 101 the two connections relayed as one byte stream |
//! | [`upstream`] | clusters at run time: load balancer, outlier detector, circuit breakers, pooled HTTP/1.1 and HTTP/2 connections over TCP or HBONE |
//! | [`body`] | streamed bodies: a bounded replay copy for retries and mirrors, responses that hold their guards |
//! | [`io`] | an HBONE stream as one byte stream, replaying peeked bytes |
//! | [`workers`] | thread per core: a single-threaded runtime and listener socket per worker, so a request's tasks never wake another thread |
//! | [`records`], [`stats`], [`admin`] | access records, counters, the admin API |

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
pub mod proxy_headers;
pub mod records;
pub mod redirect;
pub mod retry;
pub mod rewrite;
mod rng;
pub mod route;
pub mod snapshot;
pub mod stats;
pub mod timeout;
pub mod upgrade;
pub mod upstream;
pub mod workers;
