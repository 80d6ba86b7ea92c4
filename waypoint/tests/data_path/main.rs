//! The waypoint's data path end to end, in process, on loopback: real TLS and HBONE in, real
//! HTTP/1.1 and HTTP/2 clients and upstream servers, plaintext and HBONE endpoints.

mod control_plane;
mod harness;
mod resilience;
mod routing;
mod workload;
