//! Retry decisions against Envoy's `x-envoy-retry-on` / `x-envoy-retry-grpc-on` semantics
//! (<https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter>)
//! as its `RetryStateImpl` implements them, on policies shaped as the control plane compiles
//! Istio's `retries`.

use std::time::Duration;

use ambit_common::api::v1::{RetryOn, RetryPolicy};
use http::{HeaderValue, StatusCode};

use super::*;
use crate::outcome::{ConnectFailure, GrpcStatus, ResetReason};

fn policy(retries: u32, on: &[RetryOn], codes: &[u32]) -> Policy {
    Policy::new(&RetryPolicy {
        attempts: retries,
        retry_on: on.iter().map(|o| i32::from(*o)).collect(),
        retriable_status_codes: codes.to_vec(),
        ..Default::default()
    })
    .expect("valid policy")
}

/// Istio's default policy, as `control-plane/src/compile/waypoint/actions.rs` writes it.
fn istio_default() -> Policy {
    use RetryOn::*;
    policy(2, &[ConnectFailure, RefusedStream, Unavailable, Cancelled, RetriableStatusCodes], &[503])
}

fn response(status: u16) -> TryOutcome {
    grpc_response(status, None)
}

/// A response whose headers carry `grpc-status` (a trailers-only gRPC response).
fn grpc_response(status: u16, grpc: Option<GrpcStatus>) -> TryOutcome {
    let mut builder = http::Response::builder().status(status);
    if let Some(grpc) = grpc {
        builder = builder.header("content-type", "application/grpc").header("grpc-status", grpc.code());
    }
    let (parts, ()) = builder.body(()).expect("response").into_parts();
    TryOutcome::Response(ResponseHead::new(&parts))
}

const FIRST: Attempt = Attempt { tries: 1, request_sent: true, replayable: true, retry_budget: true };

/// Whether `policy` retries `outcome` after the first try (request bytes sent).
fn retries(policy: &Policy, outcome: TryOutcome) -> bool {
    policy.decide(&outcome, &FIRST) == Decision::Retry
}

const CONNECT_FAILURES: [ConnectFailure; 3] = [ConnectFailure::Remote, ConnectFailure::Timeout, ConnectFailure::Local];
const RESETS: [ResetReason; 4] =
    [ResetReason::Remote, ResetReason::RefusedStream, ResetReason::ConnectionTermination, ResetReason::ProtocolError];

/// Every way a try can end without a response.
fn no_response() -> Vec<TryOutcome> {
    let mut outcomes: Vec<_> = CONNECT_FAILURES.into_iter().map(TryOutcome::ConnectFailure).collect();
    outcomes.extend(RESETS.map(TryOutcome::Reset));
    outcomes.push(TryOutcome::PerTryTimeout);
    outcomes
}

#[test]
fn five_xx_retries_every_5xx_and_every_failure_to_get_a_response() {
    let p = policy(1, &[RetryOn::RetryOn5xx], &[]);
    for status in [500, 501, 502, 503, 504, 599] {
        assert!(retries(&p, response(status)), "{status}");
    }
    for status in [200, 404, 409, 429] {
        assert!(!retries(&p, response(status)), "{status}");
    }
    for outcome in no_response() {
        assert!(retries(&p, outcome), "{outcome:?}");
    }
}

#[test]
fn gateway_error_retries_502_503_504_and_failures_to_get_a_response() {
    let p = policy(1, &[RetryOn::GatewayError], &[]);
    for (status, retried) in [(500, false), (501, false), (502, true), (503, true), (504, true), (505, false)] {
        assert_eq!(retries(&p, response(status)), retried, "{status}");
    }
    for outcome in no_response() {
        assert!(retries(&p, outcome), "{outcome:?}");
    }
}

#[test]
fn reset_retries_every_failure_to_get_a_response_but_no_response() {
    let p = policy(1, &[RetryOn::Reset], &[]);
    for outcome in no_response() {
        assert!(retries(&p, outcome), "{outcome:?}");
    }
    assert!(!retries(&p, response(503)));
}

#[test]
fn reset_before_request_retries_only_while_no_try_has_sent_a_byte() {
    let p = policy(3, &[RetryOn::ResetBeforeRequest], &[]);
    let unsent = Attempt { request_sent: false, ..FIRST };
    for outcome in no_response() {
        assert_eq!(p.decide(&outcome, &unsent), Decision::Retry, "{outcome:?}");
        assert_eq!(p.decide(&outcome, &FIRST), Decision::Stop(Stop::NotRetriable), "{outcome:?}");
    }
    // Envoy remembers that an earlier try sent bytes: a later connect failure is not retried.
    let later = Attempt { tries: 2, request_sent: true, ..FIRST };
    let refused = TryOutcome::ConnectFailure(ConnectFailure::Remote);
    assert_eq!(p.decide(&refused, &later), Decision::Stop(Stop::NotRetriable));
    assert!(!retries(&p, response(503)));
}

#[test]
fn connect_failure_retries_connect_failures_only() {
    let p = policy(1, &[RetryOn::ConnectFailure], &[]);
    for outcome in no_response() {
        let connect = matches!(outcome, TryOutcome::ConnectFailure(_));
        assert_eq!(retries(&p, outcome), connect, "{outcome:?}");
    }
    assert!(!retries(&p, response(503)));
}

#[test]
fn refused_stream_retries_refused_streams_only() {
    let p = policy(1, &[RetryOn::RefusedStream], &[]);
    for outcome in no_response() {
        let refused = outcome == TryOutcome::Reset(ResetReason::RefusedStream);
        assert_eq!(retries(&p, outcome), refused, "{outcome:?}");
    }
}

#[test]
fn retriable_4xx_is_409_only() {
    let p = policy(1, &[RetryOn::Retriable4xx], &[]);
    for (status, retried) in [(409, true), (400, false), (403, false), (404, false), (429, false), (503, false)] {
        assert_eq!(retries(&p, response(status)), retried, "{status}");
    }
    assert!(!retries(&p, TryOutcome::Reset(ResetReason::Remote)));
}

#[test]
fn retriable_status_codes_retries_the_listed_statuses_and_needs_its_condition() {
    let p = policy(1, &[RetryOn::RetriableStatusCodes], &[418, 503]);
    for (status, retried) in [(418, true), (503, true), (500, false), (502, false)] {
        assert_eq!(retries(&p, response(status)), retried, "{status}");
    }
    let without = policy(1, &[RetryOn::Reset], &[418]);
    assert!(!retries(&without, response(418)));
}

#[test]
fn grpc_conditions_retry_their_own_status_from_the_response_headers() {
    use GrpcStatus::*;
    let pairs = [
        (RetryOn::Cancelled, Cancelled),
        (RetryOn::DeadlineExceeded, DeadlineExceeded),
        (RetryOn::Internal, Internal),
        (RetryOn::ResourceExhausted, ResourceExhausted),
        (RetryOn::Unavailable, Unavailable),
    ];
    for (condition, own) in pairs {
        let p = policy(1, &[condition], &[]);
        for status in GrpcStatus::ALL {
            assert_eq!(retries(&p, grpc_response(200, Some(status))), status == own, "{condition:?} {status:?}");
        }
        assert!(!retries(&p, response(503)), "{condition:?}: a 503 without grpc-status");
        assert!(!retries(&p, TryOutcome::Reset(ResetReason::Remote)), "{condition:?}");
    }
}

#[test]
fn a_response_rate_limited_by_an_upstream_envoy_is_retried_only_on_envoy_ratelimited() {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = StatusCode::SERVICE_UNAVAILABLE;
    parts.headers.insert("x-envoy-ratelimited", HeaderValue::from_static("true"));
    let limited = TryOutcome::Response(ResponseHead::new(&parts));
    assert!(!retries(&policy(1, &[RetryOn::RetryOn5xx, RetryOn::GatewayError], &[]), limited));
    assert!(retries(&policy(1, &[RetryOn::EnvoyRatelimited], &[]), limited));
    assert!(!retries(&policy(1, &[RetryOn::EnvoyRatelimited], &[]), response(429)));
}

#[test]
fn conditions_istio_cannot_feed_never_hold() {
    let p = policy(1, &[RetryOn::RetriableHeaders, RetryOn::Http3PostConnectFailure], &[]);
    for outcome in no_response().into_iter().chain([response(503), response(409)]) {
        assert!(!retries(&p, outcome), "{outcome:?}");
    }
}

#[test]
fn an_overflow_is_never_retried() {
    let every: Vec<_> = (1..=16).map(|v| RetryOn::try_from(v).expect("a condition")).collect();
    let p = policy(5, &every, &[503]);
    assert_eq!(p.decide(&TryOutcome::Overflow, &FIRST), Decision::Stop(Stop::NotRetriable));
}

#[test]
fn istios_default_policy_retries_connect_failures_refused_streams_503_and_grpc_unavailable_and_cancelled() {
    let p = istio_default();
    let retried = [
        response(503),
        grpc_response(200, Some(GrpcStatus::Unavailable)),
        grpc_response(200, Some(GrpcStatus::Cancelled)),
        TryOutcome::ConnectFailure(ConnectFailure::Timeout),
        TryOutcome::Reset(ResetReason::RefusedStream),
    ];
    for outcome in retried {
        assert!(retries(&p, outcome), "{outcome:?}");
    }
    let not_retried = [
        response(500),
        response(502),
        response(504),
        grpc_response(200, Some(GrpcStatus::DeadlineExceeded)),
        TryOutcome::Reset(ResetReason::Remote),
        TryOutcome::Reset(ResetReason::ConnectionTermination),
        TryOutcome::PerTryTimeout,
    ];
    for outcome in not_retried {
        assert!(!retries(&p, outcome), "{outcome:?}");
    }
}

#[test]
fn attempts_counts_retries_after_the_first_try_then_the_limit_is_exceeded() {
    let p = istio_default();
    let outcome = response(503);
    for tries in 1..=2 {
        assert_eq!(p.decide(&outcome, &Attempt { tries, ..FIRST }), Decision::Retry, "after try {tries}");
    }
    assert_eq!(p.decide(&outcome, &Attempt { tries: 3, ..FIRST }), Decision::Stop(Stop::LimitExceeded));
}

#[test]
fn stops_come_in_envoys_order_and_carry_its_flags() {
    let p = istio_default();
    let outcome = response(503);
    let stop = |attempt: Attempt| match p.decide(&outcome, &attempt) {
        Decision::Stop(stop) => stop,
        Decision::Retry => panic!("retried: {attempt:?}"),
    };
    let worst = Attempt { tries: 9, request_sent: true, replayable: false, retry_budget: false };
    assert_eq!(stop(worst), Stop::NotReplayable, "a body that was not kept cannot be replayed, limit or not");
    assert_eq!(stop(Attempt { replayable: true, ..worst }), Stop::LimitExceeded, "the limit before the budget");
    assert_eq!(stop(Attempt { retry_budget: false, ..FIRST }), Stop::Overflow);
    assert_eq!(p.decide(&response(500), &worst), Decision::Stop(Stop::NotRetriable));
    assert_eq!(policy(2, &[], &[]).decide(&outcome, &FIRST), Decision::Stop(Stop::NotRetriable));

    let flags = [Stop::NotRetriable, Stop::NotReplayable, Stop::LimitExceeded, Stop::Overflow].map(Stop::flag);
    let (urx, uo) = (ResponseFlag::UpstreamRetryLimitExceeded, ResponseFlag::UpstreamOverflow);
    assert_eq!(flags, [None, None, Some(urx), Some(uo)]);
}

#[test]
fn the_last_tries_outcome_becomes_the_requests_failure() {
    let limit = Stop::LimitExceeded;
    let last_status = StatusCode::SERVICE_UNAVAILABLE;
    assert_eq!(response(503).failure(limit, true), Some(Failure::RetryLimitExceeded { last_status }));
    assert_eq!(response(503).failure(Stop::NotRetriable, true), None, "passed on as the upstream sent it");
    assert_eq!(response(503).failure(Stop::Overflow, false), None, "passed on, flagged UO");
    let reset = TryOutcome::Reset(ResetReason::Remote).failure(limit, true);
    assert_eq!(reset, Some(Failure::UpstreamReset { reason: ResetReason::Remote, retried: true }));
    let refused = TryOutcome::ConnectFailure(ConnectFailure::Remote).failure(Stop::NotRetriable, false);
    assert_eq!(refused, Some(Failure::ConnectFailure { cause: ConnectFailure::Remote, retried: false }));
    assert_eq!(TryOutcome::PerTryTimeout.failure(limit, true), Some(Failure::PerTryTimeout));
    assert_eq!(
        TryOutcome::Overflow.failure(Stop::NotRetriable, true),
        Some(Failure::UpstreamOverflow { retried: true })
    );
}

/// The range `backoff` draws from for each retry, and its largest result.
fn backoff_ranges(p: &Policy, retries: std::ops::RangeInclusive<u32>) -> Vec<(u64, Duration)> {
    retries
        .map(|retry| {
            let mut range = 0;
            let longest = p.backoff(retry, |n| {
                range = n;
                n - 1
            });
            (range, longest)
        })
        .collect()
}

#[test]
fn backoff_is_envoys_jittered_exponential_25ms_base_capped_at_ten_times_it() {
    let p = istio_default();
    let ranges: Vec<u64> = backoff_ranges(&p, 1..=7).into_iter().map(|(range, _)| range).collect();
    assert_eq!(ranges, [25, 50, 100, 200, 250, 250, 250]);
    assert_eq!(backoff_ranges(&p, 1..=1), [(25, Duration::from_millis(24))]);
    assert_eq!(p.backoff(3, |_| 0), Duration::ZERO);
    assert_eq!(p.backoff(3, |_| u64::MAX), Duration::from_millis(99), "a draw out of range is clamped");
    assert_eq!(p.backoff(u32::MAX, |n| n - 1), Duration::from_millis(249), "no overflow");

    let slow = Policy::new(&RetryPolicy { attempts: 1, backoff_base_interval_ms: 100, ..Default::default() });
    let ranges: Vec<u64> = backoff_ranges(&slow.expect("valid"), 1..=6).into_iter().map(|(r, _)| r).collect();
    assert_eq!(ranges, [100, 200, 400, 800, 1000, 1000]);
}

#[test]
fn a_per_try_timeout_not_shorter_than_the_route_timeout_is_ignored() {
    let with = |ms| Policy::new(&RetryPolicy { attempts: 1, per_try_timeout_ms: ms, ..Default::default() });
    let (none, two) = (with(0).expect("valid"), with(2000).expect("valid"));
    let s = Duration::from_secs;
    assert_eq!(none.per_try_timeout(None), None);
    assert_eq!(two.per_try_timeout(None), Some(s(2)));
    assert_eq!(two.per_try_timeout(Some(s(10))), Some(s(2)));
    assert_eq!(two.per_try_timeout(Some(s(2))), None);
    assert_eq!(two.per_try_timeout(Some(s(1))), None);
}

#[test]
fn a_policy_with_an_unknown_condition_or_status_is_refused_naming_the_field() {
    let refused = |on: Vec<i32>, codes: Vec<u32>| {
        Policy::new(&RetryPolicy { attempts: 1, retry_on: on, retriable_status_codes: codes, ..Default::default() })
            .expect_err("refused")
    };
    let unknown = refused(vec![1, 99], vec![]);
    assert_eq!(unknown, RetryError::UnknownCondition { index: 1, value: 99 });
    assert!(unknown.to_string().starts_with("retry.retryOn[1]: 99 "), "{unknown}");
    assert_eq!(refused(vec![0], vec![]), RetryError::UnknownCondition { index: 0, value: 0 });
    assert_eq!(refused(vec![9], vec![503, 600]), RetryError::InvalidStatusCode { index: 1, code: 600 });
    assert_eq!(refused(vec![9], vec![99]), RetryError::InvalidStatusCode { index: 0, code: 99 });
    let other = Policy::new(&RetryPolicy { attempts: 1, retry_other_endpoints: true, ..Default::default() });
    assert!(other.expect("valid").retry_other_endpoints());
}
