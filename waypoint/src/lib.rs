//! The waypoint: what Envoy is in Istio ambient, an optional per-namespace proxy that applies L7
//! rules to the services bound to it.
//!
//! The control plane compiles VirtualServices and DestinationRules into `RouteTable`s and
//! `Cluster`s (`common/proto/ambit/v1/route.proto`) with every Istio default written out, so the
//! waypoint executes what it receives and never re-derives Istio semantics.
//!
//! What exists today is the routing core, pure and unit-tested:
//!
//! | module | job |
//! |---|---|
//! | [`route`] | a port's routes compiled once (regexes, matchers), then per request: the first route whose match holds, and the weighted cluster it sends to; the same for TCP routes |
//! | [`headers`] | request and response header operations (set, append, remove), compiled and applied in Envoy's order |
//! | [`rewrite`] | path rewrites (prefix and regex, query kept) and the authority rewrite |
//! | [`cors`] | `corsPolicy`: preflights answered, CORS response headers, unmatched preflights |
//! | [`redirect`] | the `Location` and status of a redirect route |
//!
//! Not built yet (see the waypoint issue): the binary, its data path (HBONE in, HTTP/1.1, HTTP/2
//! and gRPC, HBONE out through the destination's node proxy), and the modules the request
//! pipeline needs beyond route selection — rewrite, timeout, retry, fault, mirror, load
//! balancing, connection pools, outlier detection, L7 authorization and Envoy-style error
//! responses.

pub mod cors;
pub mod headers;
pub mod redirect;
pub mod rewrite;
pub mod route;
