//! What one request came to: an answer (HTTP status and/or gRPC status, who served it) or a
//! transport failure, classified in one place into the short kinds tests match on.

use std::{error::Error as StdError, io, time::Duration};

use serde_json::{Value, json};

/// The result of one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Outcome {
    /// The HTTP status (http1, h2c).
    pub(super) status: Option<u16>,
    /// The gRPC status code (grpc).
    pub(super) grpc_status: Option<i32>,
    /// The `servedBy` of the answer, when it carried one.
    pub(super) served_by: Option<String>,
    /// Set when no complete answer arrived.
    pub(super) failure: Option<Failure>,
    /// From the send (or, with `--rate`, the scheduled send) to the end of the answer.
    pub(super) latency: Duration,
}

/// A request that got no complete answer: a short kind for counting, and the full message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Failure {
    pub(super) kind: &'static str,
    pub(super) detail: String,
}

impl Outcome {
    pub(super) fn failed(failure: Failure) -> Self {
        Self { failure: Some(failure), ..Self::default() }
    }

    /// The `response` event (`--each`).
    pub(super) fn event(&self, i: u64) -> Value {
        let mut event = json!({
            "event": "response",
            "i": i,
            "status": self.status,
            "servedBy": self.served_by,
            "grpcStatus": self.grpc_status,
            "latencyUs": micros(self.latency),
            "error": self.failure.as_ref().map(|f| f.kind),
        });
        if let Some(failure) = &self.failure {
            event["detail"] = json!(failure.detail);
        }
        event
    }
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Failure {
    /// A failure described by `what` (what was being done) and the error.
    pub(super) fn of(what: &str, error: &(dyn StdError + 'static)) -> Self {
        Self { kind: classify(error), detail: format!("{what}: {}", ambit_common::errors::error_chain(error)) }
    }

    pub(super) fn timeout(after: Duration) -> Self {
        Self { kind: "timeout", detail: format!("no complete answer within {after:?} (--timeout-ms)") }
    }
}

/// The kind of a transport error: the most specific cause found along its source chain.
///
/// `refused`, `reset`, `timeout`, `unreachable` (the socket's errno); `stream-reset` and `goaway`
/// (HTTP/2 frames); `closed` (the connection ended before a complete answer); `protocol` (an
/// answer that does not parse); `other` for anything else (the detail says what).
pub(super) fn classify(error: &(dyn StdError + 'static)) -> &'static str {
    let mut fallback = "other";
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(kind) = io_kind(io) {
                return kind;
            }
        } else if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if let Some(kind) = h2.get_io().and_then(io_kind) {
                return kind;
            }
            if h2.is_go_away() {
                return "goaway";
            }
            if h2.reason().is_some() {
                return "stream-reset";
            }
        } else if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if hyper.is_timeout() {
                fallback = "timeout";
            } else if hyper.is_parse() || hyper.is_parse_status() {
                fallback = "protocol";
            } else if hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed() {
                fallback = "closed";
            }
        }
        current = e.source();
    }
    fallback
}

fn io_kind(e: &io::Error) -> Option<&'static str> {
    use io::ErrorKind as K;
    Some(match e.kind() {
        K::ConnectionRefused => "refused",
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => "reset",
        K::UnexpectedEof => "closed",
        K::TimedOut => "timeout",
        K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => "unreachable",
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => "unreachable",
            Some(libc::ECONNRESET | libc::EPIPE) => "reset",
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error wrapping another, as hyper and tonic wrap the socket's.
    #[derive(Debug)]
    struct Wrapped(io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("request failed")
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn socket_errors_are_classified_through_wrappers() {
        let cases = [
            (io::Error::from(io::ErrorKind::ConnectionRefused), "refused"),
            (io::Error::from(io::ErrorKind::ConnectionReset), "reset"),
            (io::Error::from_raw_os_error(libc::EPIPE), "reset"),
            (io::Error::from(io::ErrorKind::TimedOut), "timeout"),
            (io::Error::from_raw_os_error(libc::EHOSTUNREACH), "unreachable"),
            (io::Error::from(io::ErrorKind::UnexpectedEof), "closed"),
            (io::Error::other("something else"), "other"),
        ];
        for (error, kind) in cases {
            let message = error.to_string();
            assert_eq!(classify(&Wrapped(error)), kind, "{message}");
        }
    }

    #[test]
    fn http2_frames_are_classified() {
        assert_eq!(classify(&h2::Error::from(h2::Reason::REFUSED_STREAM)), "stream-reset");
    }

    #[test]
    fn the_detail_shows_the_whole_chain_and_the_event_the_kind() {
        let failure = Failure::of("connecting to 10.0.0.1:80", &Wrapped(io::ErrorKind::ConnectionRefused.into()));
        assert_eq!(failure.kind, "refused");
        assert!(failure.detail.starts_with("connecting to 10.0.0.1:80: request failed: "), "{}", failure.detail);
        let event = Outcome::failed(failure).event(3);
        assert_eq!(event["error"], "refused");
        assert_eq!(event["i"], 3);
        assert_eq!(event["status"], Value::Null);
    }
}
