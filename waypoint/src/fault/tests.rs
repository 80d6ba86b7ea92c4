//! Fault plans against Envoy's fault filter (`FaultFilter::decodeHeaders`, `delayDuration`,
//! `abortStatus`, `abortWithStatus`) and Istio's `HTTPFaultInjection`
//! (<https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection>),
//! exactly, over the whole draw space rather than by sampling.

use std::time::Duration;

use ambit_common::api::v1::{Fault, FaultAbort, FaultDelay, fault_abort::Status};
use http::StatusCode;

use super::*;
use crate::outcome::{Abort, Failure, GrpcStatus, RequestKind};

fn delay(ms: u64, per_million: u32) -> Option<FaultDelay> {
    Some(FaultDelay { fixed_delay_ms: ms, per_million })
}

fn http_abort(status: u32, per_million: u32) -> Option<FaultAbort> {
    Some(FaultAbort { status: Some(Status::HttpStatus(status)), per_million })
}

fn injector(delay: Option<FaultDelay>, abort: Option<FaultAbort>) -> Injector {
    Injector::new(&Fault { delay, abort }).expect("valid fault")
}

/// How many of all draws delay (`delays`) and abort the request.
fn counts(injector: &Injector) -> (u32, u32) {
    (0..DRAWS).fold((0, 0), |(delays, aborts), draw| {
        let plan = injector.plan(draw, draw);
        (delays + u32::from(plan.delay.is_some()), aborts + u32::from(plan.abort.is_some()))
    })
}

#[test]
fn a_share_in_parts_per_million_affects_exactly_that_many_draws() {
    // 0.1 % delayed, 12.5 % aborted: exactly 1000 and 125000 of the 1000000 draws.
    let fault = injector(delay(5000, 1_000), http_abort(503, 125_000));
    assert_eq!(counts(&fault), (1_000, 125_000));
    // The lowest draws are the affected ones: a draw below the share applies.
    assert_eq!(fault.plan(999, 124_999).delay, Some(Duration::from_secs(5)));
    assert_eq!(fault.plan(1_000, 125_000), Plan::default());
}

#[test]
fn zero_never_applies_and_a_million_always_does() {
    assert_eq!(counts(&injector(delay(10, 0), http_abort(500, 0))), (0, 0));
    assert_eq!(counts(&injector(delay(10, DRAWS), http_abort(500, DRAWS))), (DRAWS, DRAWS));
}

#[test]
fn delay_and_abort_are_drawn_independently() {
    let fault = injector(delay(100, 500_000), http_abort(503, 500_000));
    let (low, high) = (0, DRAWS - 1);
    let abort = Some(Abort::Http(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(fault.plan(low, high), Plan { delay: Some(Duration::from_millis(100)), abort: None });
    assert_eq!(fault.plan(high, low), Plan { delay: None, abort });
    // Over a grid of 1000 × 1000 draw pairs, a quarter get both.
    let step = DRAWS / 1000;
    let both = (0..1000)
        .flat_map(|d| (0..1000).map(move |a| (d * step, a * step)))
        .filter(|&(d, a)| {
            let plan = fault.plan(d, a);
            plan.delay.is_some() && plan.abort.is_some()
        })
        .count();
    assert_eq!(both, 250_000);
}

#[test]
fn a_delayed_request_can_still_be_aborted_and_carries_both_flags() {
    let plan = injector(delay(2000, DRAWS), http_abort(503, DRAWS)).plan(0, 0);
    assert_eq!(plan.delay, Some(Duration::from_secs(2)));
    assert_eq!(plan.flags().to_string(), "DI,FI");
    let failure = plan.failure().expect("aborted");
    assert_eq!(failure, Failure::FaultAbort(Abort::Http(StatusCode::SERVICE_UNAVAILABLE)));
    let reply = failure.reply(RequestKind::Http).expect("local reply");
    assert_eq!((reply.head.status, reply.body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "fault filter abort"));
}

#[test]
fn a_delay_alone_only_adds_di() {
    let plan = injector(delay(7, DRAWS), None).plan(0, 0);
    assert_eq!((plan.delay, plan.failure()), (Some(Duration::from_millis(7)), None));
    assert_eq!(plan.flags().to_string(), "DI");
}

#[test]
fn a_zero_delay_is_no_delay_and_no_flag() {
    let plan = injector(delay(0, DRAWS), None).plan(0, 0);
    assert_eq!(plan, Plan::default());
    assert_eq!(plan.flags().to_string(), "-");
}

#[test]
fn a_grpc_abort_answers_grpc_requests_with_its_status_in_a_trailers_only_response() {
    let abort = FaultAbort { status: Some(Status::GrpcStatus(14)), per_million: DRAWS };
    let failure = injector(None, Some(abort)).plan(0, 0).failure().expect("aborted");
    assert_eq!(failure, Failure::FaultAbort(Abort::Grpc(GrpcStatus::Unavailable)));
    assert_eq!(failure.flags().to_string(), "FI");
    let reply = failure.reply(RequestKind::Grpc).expect("local reply");
    let header = |name: &str| reply.head.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(reply.head.status, StatusCode::OK);
    assert_eq!(header("grpc-status"), Some("14"));
    assert_eq!(header("grpc-message"), Some("fault filter abort"));
    assert!(reply.body.is_empty());
}

#[test]
fn an_http_abort_answers_a_grpc_request_with_the_mapped_status() {
    let failure = injector(None, http_abort(404, DRAWS)).plan(0, 0).failure().expect("aborted");
    let reply = failure.reply(RequestKind::Grpc).expect("local reply");
    assert_eq!(reply.head.headers.get("grpc-status").and_then(|v| v.to_str().ok()), Some("12"));
}

#[test]
fn a_fault_with_neither_part_does_nothing() {
    let plan = injector(None, None).plan(0, 0);
    assert_eq!(plan, Plan::default());
    assert!(plan.flags().is_empty());
}

#[test]
fn a_fault_envoy_would_refuse_is_refused_naming_the_field() {
    let refused = |delay, abort| Injector::new(&Fault { delay, abort }).expect_err("refused");
    let too_much = refused(delay(1, DRAWS + 1), None);
    assert_eq!(too_much, FaultError::ShareOutOfRange { which: "delay", per_million: DRAWS + 1 });
    assert!(too_much.to_string().starts_with("fault.delay.perMillion: 1000001"), "{too_much}");
    assert_eq!(
        refused(None, http_abort(503, DRAWS + 1)),
        FaultError::ShareOutOfRange { which: "abort", per_million: DRAWS + 1 }
    );
    assert_eq!(refused(None, Some(FaultAbort { status: None, per_million: 1 })), FaultError::AbortWithoutStatus);
    for status in [0, 199, 600, 70_000] {
        assert_eq!(refused(None, http_abort(status, 1)), FaultError::InvalidHttpStatus(status));
    }
    let grpc = Some(FaultAbort { status: Some(Status::GrpcStatus(17)), per_million: 1 });
    assert_eq!(refused(None, grpc), FaultError::InvalidGrpcStatus(17));
    for status in [200, 418, 599] {
        assert!(Injector::new(&Fault { delay: None, abort: http_abort(status, 1) }).is_ok(), "{status}");
    }
}
