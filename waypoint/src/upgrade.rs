//! HTTP/1.1 connection upgrades through the waypoint: WebSocket, the one upgrade Istio enables
//! on its waypoints (Envoy's `upgrade_configs: [websocket]`).
//!
//! A request with `Connection: upgrade` and `Upgrade: websocket` goes through the pipeline like
//! any other (authorization, routing, faults, header operations, retries of connect failures)
//! and upstream on an HTTP/1.1 connection of its own with both headers kept. When the upstream
//! answers `101 Switching Protocols`, the client gets the 101 and the two connections become one
//! byte stream: [`relay`] copies both ways, passing each side's end of stream (half-close) to the
//! other, until both are done or nothing has moved either way for the waypoint's stream idle
//! timeout (`--stream-idle-timeout-secs`, Envoy's `stream_idle_timeout` default of 5 minutes,
//! which Istio keeps). The request's guards (its circuit-breaker slots, its count in
//! LEAST_REQUEST, the upstream connection's slot) live as long as the tunnel. Any other answer
//! goes back as an ordinary response.
//!
//! Other upgrade tokens (`h2c`, custom ones) are not upgrades here: their headers are dropped as
//! hop-by-hop and the request is forwarded as a plain request, as Envoy does for upgrade types
//! it is not configured for. Not supported: WebSocket over HTTP/2 (RFC 8441 extended CONNECT),
//! on either side, so an upgrade to a cluster whose upstream protocol is HTTP/2 is forwarded as a
//! plain request, with a detail in its access record.

use std::time::Duration;

use ambit_common::relay::relay_with_idle_timeout;
use http::{HeaderMap, HeaderValue, Version, header, request::Parts};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::io::Plain;

/// The upgrade protocol forwarded.
pub const WEBSOCKET: &str = "websocket";

/// Whether the request asks for a WebSocket upgrade: HTTP/1.1, `Connection` listing `upgrade`
/// and `Upgrade` naming `websocket` (both case-insensitive).
pub fn is_websocket(parts: &Parts) -> bool {
    parts.version == Version::HTTP_11
        && connection_lists_upgrade(&parts.headers)
        && upgrade_is_websocket(&parts.headers)
}

fn connection_lists_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

fn upgrade_is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|first| first.trim().eq_ignore_ascii_case(WEBSOCKET))
}

/// Puts back the two headers that make a message an upgrade, after hop-by-hop headers were
/// dropped: `Connection: upgrade`, and `upgrade` (the message's own `Upgrade` value).
pub fn keep_upgrade_headers(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
    }
}

/// Joins the client's upgraded connection to the upstream's and relays bytes both ways until
/// both directions have ended, or until nothing has moved either way for `idle`; `guards` are
/// dropped then. Runs as its own task.
pub fn relay(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    guards: Vec<Box<dyn std::any::Any + Send>>,
    idle: Option<Duration>,
) {
    tokio::spawn(async move {
        let _guards = guards;
        let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade not completed; the connection is closed");
                return;
            }
        };
        let (downstream, upstream) = (Plain(TokioIo::new(downstream)), Plain(TokioIo::new(upstream)));
        let outcome = relay_with_idle_timeout(downstream, upstream, idle).await;
        tracing::debug!(end = ?outcome.end, sent = outcome.bytes_from_source, received = outcome.bytes_to_source,
            "upgraded connection ended");
    });
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn parts(builder: http::request::Builder) -> Parts {
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn websocket_upgrades_are_recognised_case_insensitively_and_others_are_not() {
        let ws = |connection: &str, upgrade: &str| {
            is_websocket(&parts(Request::get("/").header("connection", connection).header("upgrade", upgrade)))
        };
        assert!(ws("Upgrade", "websocket"));
        assert!(ws("keep-alive, upgrade", "WebSocket"));
        assert!(!ws("keep-alive", "websocket"), "Connection must list upgrade");
        assert!(!ws("upgrade", "h2c"), "only WebSocket is forwarded as an upgrade");
        assert!(!is_websocket(&parts(Request::get("/").header("connection", "upgrade"))), "no Upgrade header");
        let h2 = parts(Request::get("/").version(Version::HTTP_2).header("upgrade", "websocket"));
        assert!(!is_websocket(&h2), "HTTP/2 has no Upgrade mechanism");
    }

    #[test]
    fn upgrade_headers_come_back_after_hop_by_hop_removal() {
        let original = parts(Request::get("/").header("connection", "Upgrade").header("upgrade", "websocket"));
        let mut headers = HeaderMap::new();
        keep_upgrade_headers(&mut headers, original.headers.get(header::UPGRADE).cloned());
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
    }
}
