//! The request headers an Istio waypoint's Envoy adds to what it forwards, so applications and
//! tracing see the same ones here:
//!
//! - `x-request-id`: kept when the client sent one (mesh traffic is internal, so Envoy preserves
//!   it), else a random UUID (version 4), made when the request arrives so the access record and
//!   every try, retry and mirror carry the same one;
//! - `x-forwarded-proto`: kept, else `http` (the mutual TLS of the tunnel ends at the waypoint;
//!   the request inside it is plaintext, as Envoy's internal listener sees it);
//! - `x-envoy-attempt-count`: the try's number, from 1 (Istio turns on
//!   `include_request_attempt_count` for the virtual hosts it builds);
//! - `x-envoy-expected-rq-timeout-ms`: how long the try may take, when a timeout bounds it (the
//!   per-try timeout, else what is left of the route timeout), so the upstream can give up early.
//!
//! Not added, as an Istio waypoint does not: `x-forwarded-for` (Envoy appends it only with
//! `use_remote_address`, which Istio sets on gateways).

use http::{HeaderMap, HeaderName, HeaderValue};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
pub const EXPECTED_TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-expected-rq-timeout-ms");

/// Adds what a request gets on arrival; returns its request id.
pub fn on_arrival(headers: &mut HeaderMap, mut draw: impl FnMut() -> u64) -> String {
    if !headers.contains_key(&FORWARDED_PROTO) {
        headers.insert(FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    // Marked sensitive: HPACK then never indexes it. A value unique to each request would only
    // churn the HTTP/2 connection's header table (evicting the values that do repeat) and cost a
    // table search per request.
    if let Some(value) = headers.get_mut(&REQUEST_ID)
        && let Ok(id) = value.to_str()
        && !id.is_empty()
    {
        let id = id.to_owned();
        value.set_sensitive(true);
        return id;
    }
    let id = uuid_v4(draw(), draw());
    let mut value = HeaderValue::from_str(&id).expect("hex digits and dashes");
    value.set_sensitive(true);
    headers.insert(REQUEST_ID, value);
    id
}

/// Sets the try number on a try's request.
pub fn set_attempt(headers: &mut HeaderMap, attempt: u32) {
    headers.insert(ATTEMPT_COUNT, HeaderValue::from(attempt));
}

/// Sets how long a try may take, in whole milliseconds (at least 1), or removes the header when
/// no timeout bounds it.
pub fn set_expected_timeout(headers: &mut HeaderMap, timeout: Option<std::time::Duration>) {
    match timeout {
        Some(timeout) => {
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
            headers.insert(EXPECTED_TIMEOUT, HeaderValue::from(ms));
        }
        None => {
            headers.remove(EXPECTED_TIMEOUT);
        }
    }
}

/// A version 4 (random) UUID made of two 64-bit draws, in its hyphenated lower-case form.
fn uuid_v4(high: u64, low: u64) -> String {
    let high = (high & !0xf000) | 0x4000; // version 4
    let low = (low & !(0b11 << 62)) | (0b10 << 62); // variant RFC 4122
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_the_version_4_form() {
        assert_eq!(uuid_v4(0, 0), "00000000-0000-4000-8000-000000000000");
        assert_eq!(uuid_v4(u64::MAX, u64::MAX), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid_v4(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210), "01234567-89ab-4def-bedc-ba9876543210");
    }

    #[test]
    fn a_clients_request_id_and_proto_are_kept_and_missing_ones_are_added() {
        let mut kept = HeaderMap::new();
        kept.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        kept.insert(FORWARDED_PROTO, HeaderValue::from_static("https"));
        assert_eq!(on_arrival(&mut kept, || unreachable!("no id is drawn when one was sent")), "abc-123");
        assert_eq!((kept[REQUEST_ID].as_bytes(), kept[FORWARDED_PROTO].as_bytes()), (&b"abc-123"[..], &b"https"[..]));

        let mut added = HeaderMap::new();
        let mut draws = [1u64, 2].into_iter();
        let id = on_arrival(&mut added, || draws.next().unwrap());
        assert_eq!(id, "00000000-0000-4001-8000-000000000002");
        assert_eq!((added[REQUEST_ID].as_bytes(), added[FORWARDED_PROTO].as_bytes()), (id.as_bytes(), &b"http"[..]));
        assert!(added[REQUEST_ID].is_sensitive() && kept[REQUEST_ID].is_sensitive(), "never indexed by HPACK");

        set_attempt(&mut added, 2);
        set_attempt(&mut added, 3);
        assert_eq!(added.get_all(ATTEMPT_COUNT).iter().map(|v| v.as_bytes()).collect::<Vec<_>>(), [b"3"]);

        set_expected_timeout(&mut added, Some(std::time::Duration::from_micros(2_500_900)));
        assert_eq!(added[EXPECTED_TIMEOUT], "2500");
        set_expected_timeout(&mut added, Some(std::time::Duration::from_micros(10)));
        assert_eq!(added[EXPECTED_TIMEOUT], "1", "never 0, which would mean no timeout");
        set_expected_timeout(&mut added, None);
        assert!(!added.contains_key(EXPECTED_TIMEOUT), "a client's own value is not passed on as ours");
    }
}
