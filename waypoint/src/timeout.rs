//! How long a forwarded request may take, all tries included: the route's `timeout`, or for a
//! gRPC request its `grpc-timeout` capped at the route's (Envoy's `max_grpc_timeout`, which
//! Istio sets to the route timeout).

use std::time::Duration;

use http::HeaderMap;

/// The deadline for a request under a route whose timeout is `route_timeout_ms` (0: none).
/// `None`: no deadline.
pub fn request_timeout(route_timeout_ms: u64, is_grpc: bool, headers: &HeaderMap) -> Option<Duration> {
    let route = (route_timeout_ms > 0).then(|| Duration::from_millis(route_timeout_ms));
    let grpc = is_grpc
        .then(|| headers.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout))
        .flatten()
        .filter(|d| !d.is_zero());
    match (grpc, route) {
        (Some(grpc), Some(route)) => Some(grpc.min(route)),
        (Some(grpc), None) => Some(grpc),
        (None, route) => route,
    }
}

/// `grpc-timeout` per the gRPC over HTTP/2 spec: at most 8 digits and a unit (H, M, S, m, u,
/// n). Anything else is not a timeout (and is ignored, as Envoy ignores it).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn grpc(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_route_timeout_applies_and_zero_means_none() {
        assert_eq!(request_timeout(10_000, false, &HeaderMap::new()), Some(Duration::from_secs(10)));
        assert_eq!(request_timeout(0, false, &HeaderMap::new()), None);
        assert_eq!(request_timeout(10_000, false, &grpc("1S")), Some(Duration::from_secs(10)), "not a gRPC request");
    }

    #[test]
    fn a_grpc_timeout_replaces_the_route_timeout_capped_at_it() {
        assert_eq!(request_timeout(10_000, true, &grpc("2S")), Some(Duration::from_secs(2)));
        assert_eq!(request_timeout(10_000, true, &grpc("1M")), Some(Duration::from_secs(10)), "capped");
        assert_eq!(request_timeout(0, true, &grpc("1M")), Some(Duration::from_secs(60)), "no route timeout: no cap");
        assert_eq!(request_timeout(10_000, true, &grpc("0S")), Some(Duration::from_secs(10)), "0 is no deadline");
        assert_eq!(request_timeout(10_000, true, &grpc("soon")), Some(Duration::from_secs(10)), "invalid: ignored");
    }

    #[test]
    fn grpc_timeout_units_and_limits() {
        let cases = [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("3S", Some(Duration::from_secs(3))),
            ("250m", Some(Duration::from_millis(250))),
            ("7u", Some(Duration::from_micros(7))),
            ("99999999n", Some(Duration::from_nanos(99_999_999))),
            ("123456789S", None),
            ("S", None),
            ("1s", None),
            ("-1S", None),
            ("", None),
            ("1.5S", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_grpc_timeout(value), expected, "{value:?}");
        }
    }
}
