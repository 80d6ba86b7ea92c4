//! Outlier detection against Envoy's documented behaviour
//! (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier>) and its
//! `outlier_detection_impl.cc`, with Istio-shaped settings.

use std::time::{Duration, Instant};

use ambit_common::api::v1::{Cluster, LbEndpoint, OutlierDetection};

use super::*;

const SECOND: Duration = Duration::from_secs(1);

/// Istio's defaults written out (5 consecutive 5xx, gateway errors off, 10 s interval, 30 s base
/// ejection, 10 %, panic off), changed by `change`.
fn config(change: impl FnOnce(&mut OutlierDetection)) -> OutlierDetection {
    let mut config = OutlierDetection {
        consecutive_5xx_errors: 5,
        consecutive_gateway_errors: 0,
        interval_ms: 10_000,
        base_ejection_time_ms: 30_000,
        max_ejection_percent: 10,
        min_health_percent: 0,
    };
    change(&mut config);
    config
}

fn cluster(endpoints: usize, config: OutlierDetection) -> Cluster {
    Cluster {
        hostname: "reviews.bookinfo.svc.cluster.local".into(),
        port: 9080,
        endpoints: vec![LbEndpoint::default(); endpoints],
        outlier_detection: Some(config),
        ..Default::default()
    }
}

fn detector(endpoints: usize, config: OutlierDetection) -> Detector {
    Detector::for_cluster(&cluster(endpoints, config)).unwrap().expect("outlier detection is configured")
}

/// `count` outcomes for `endpoint` at `now`; the ejections they caused.
fn record_n(d: &mut Detector, endpoint: usize, outcome: Outcome, count: usize, now: Instant) -> Vec<Ejection> {
    (0..count).filter_map(|_| d.record(endpoint, outcome, now)).collect()
}

#[test]
fn an_endpoint_returning_5xx_is_ejected_after_n_consecutive_errors_and_returns_after_the_base_time() {
    let t0 = Instant::now();
    let mut d = detector(10, config(|_| {}));
    assert!(record_n(&mut d, 3, Outcome::Status(500), 4, t0).is_empty());
    assert!(!d.is_ejected(3));
    let ejection = d.record(3, Outcome::Status(500), t0);
    assert_eq!(ejection, Some(Ejection { endpoint: 3, detection: Detection::Consecutive5xx, duration: 30 * SECOND }));
    assert!(d.is_ejected(3));
    assert_eq!(d.ejected().collect::<Vec<_>>(), [3]);
    assert_eq!(d.healthy_count(), 9);
    assert_eq!(d.stats().ejections_enforced_consecutive_5xx, 1);

    // Return is checked only at interval ticks, once the time is up.
    assert!(d.tick(t0 + 10 * SECOND).is_empty());
    assert!(d.tick(t0 + 20 * SECOND).is_empty());
    assert!(d.tick(t0 + 30 * SECOND - Duration::from_millis(1)).is_empty());
    assert_eq!(d.tick(t0 + 30 * SECOND), [3]);
    assert!(!d.is_ejected(3));
    // Between ticks an endpoint stays out even when its time is up.
    let t1 = t0 + 40 * SECOND;
    record_n(&mut d, 3, Outcome::Status(503), 5, t1);
    assert!(d.is_ejected(3));
    assert!(d.tick(t1 + 31 * SECOND).is_empty(), "a second ejection lasts 60 s");
}

#[test]
fn a_second_ejection_lasts_twice_as_long_and_a_healthy_endpoint_is_forgiven_one_per_interval() {
    let t0 = Instant::now();
    let mut d = detector(10, config(|_| {}));
    let eject = |d: &mut Detector, at| record_n(d, 0, Outcome::Status(502), 5, at).pop().map(|e| e.duration);

    assert_eq!(eject(&mut d, t0), Some(30 * SECOND));
    assert_eq!(d.tick(t0 + 30 * SECOND), [0]);
    // Ejected again before a full interval of health: the multiplier is 2.
    assert_eq!(eject(&mut d, t0 + 35 * SECOND), Some(60 * SECOND));
    assert!(d.tick(t0 + 90 * SECOND).is_empty());
    assert_eq!(d.tick(t0 + 95 * SECOND), [0]);

    // Healthy ticks lower the multiplier by one each once an interval has passed since the
    // return: the tick at +105 s (10 s after returning) takes 2 to 1, the one at +115 s to 0.
    assert!(d.tick(t0 + 105 * SECOND).is_empty());
    assert_eq!(eject(&mut d, t0 + 106 * SECOND), Some(60 * SECOND), "multiplier 1 → 2");
    assert_eq!(d.tick(t0 + 166 * SECOND), [0]);
    d.tick(t0 + 176 * SECOND);
    d.tick(t0 + 186 * SECOND);
    assert_eq!(eject(&mut d, t0 + 190 * SECOND), Some(30 * SECOND), "multiplier back to 0 → 1");
}

#[test]
fn ejection_time_is_capped_at_max_of_300s_and_the_base() {
    let t0 = Instant::now();
    let mut d = detector(10, config(|c| c.base_ejection_time_ms = 100_000));
    let mut durations = Vec::new();
    let mut now = t0;
    for _ in 0..5 {
        let ejection = record_n(&mut d, 1, Outcome::ConnectFailed, 5, now).pop().unwrap();
        durations.push(ejection.duration.as_secs());
        now += ejection.duration;
        assert_eq!(d.tick(now), [1]);
    }
    assert_eq!(durations, [100, 200, 300, 300, 300]);

    // A base above 300 s is its own cap.
    let mut d = detector(10, config(|c| c.base_ejection_time_ms = 400_000));
    let first = record_n(&mut d, 1, Outcome::Status(500), 5, t0).pop().unwrap();
    assert_eq!(d.tick(t0 + first.duration), [1]);
    let second = record_n(&mut d, 1, Outcome::Status(500), 5, t0 + first.duration).pop().unwrap();
    assert_eq!((first.duration.as_secs(), second.duration.as_secs()), (400, 400));
}

#[test]
fn max_ejection_percent_caps_ejections_without_a_first_ejection_exemption() {
    let t0 = Instant::now();
    // 10 % of 10 endpoints: one.
    let mut d = detector(10, config(|_| {}));
    assert_eq!(record_n(&mut d, 0, Outcome::Status(500), 5, t0).len(), 1);
    assert!(record_n(&mut d, 1, Outcome::Status(500), 5, t0).is_empty());
    assert!(!d.is_ejected(1));
    assert_eq!(d.stats().ejections_overflow, 1);
    // The refused detector starts counting again: four more errors are not enough.
    assert!(record_n(&mut d, 1, Outcome::Status(500), 4, t0).is_empty());
    // Once endpoint 0 is back, endpoint 1's fifth consecutive error ejects it.
    assert_eq!(d.tick(t0 + 30 * SECOND), [0]);
    assert_eq!(record_n(&mut d, 1, Outcome::Status(500), 1, t0 + 30 * SECOND).len(), 1);

    // 10 % of 5 endpoints is less than one: nothing is ever ejected (Envoy ≥ 1.31 without
    // always_eject_one_host).
    let mut d = detector(5, config(|_| {}));
    assert!(record_n(&mut d, 0, Outcome::Status(500), 50, t0).is_empty());
    assert_eq!(d.stats().ejections_overflow, 10);

    // 50 % of 5: two (40 %), not three (60 %).
    let mut d = detector(5, config(|c| c.max_ejection_percent = 50));
    let ejected: usize = (0..5).map(|e| record_n(&mut d, e, Outcome::Status(500), 5, t0).len()).sum();
    assert_eq!(ejected, 2);
    assert_eq!(d.ejected().collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn a_success_resets_the_consecutive_counters() {
    let t0 = Instant::now();
    let mut d = detector(10, config(|c| c.consecutive_gateway_errors = 3));
    for success in [Outcome::Status(200), Outcome::Status(404), Outcome::Status(302), Outcome::Connected] {
        assert!(record_n(&mut d, 0, Outcome::Status(503), 2, t0).is_empty());
        assert!(d.record(0, success, t0).is_none());
    }
    assert!(!d.is_ejected(0));
    // Four 5xx, a success, four 5xx: never five in a row.
    for _ in 0..3 {
        assert!(record_n(&mut d, 1, Outcome::Status(500), 4, t0).is_empty());
        d.record(1, Outcome::Status(201), t0);
    }
    assert!(!d.is_ejected(1));
}

#[test]
fn gateway_errors_are_502_503_504_connect_failures_and_timeouts() {
    let t0 = Instant::now();
    let gateway_only = |c: &mut OutlierDetection| {
        c.consecutive_5xx_errors = 0;
        c.consecutive_gateway_errors = 3;
        c.max_ejection_percent = 100;
    };
    let mut d = detector(4, config(gateway_only));
    for outcome in [Outcome::Status(502), Outcome::Timeout] {
        assert!(d.record(0, outcome, t0).is_none());
    }
    assert_eq!(
        d.record(0, Outcome::ConnectFailed, t0),
        Some(Ejection { endpoint: 0, detection: Detection::ConsecutiveGatewayErrors, duration: 30 * SECOND })
    );
    assert_eq!(d.stats().ejections_enforced_consecutive_gateway_failure, 1);
    // A 500 is a 5xx but not a gateway error: it resets the gateway counter.
    record_n(&mut d, 1, Outcome::Status(504), 2, t0);
    d.record(1, Outcome::Status(500), t0);
    assert!(record_n(&mut d, 1, Outcome::Status(503), 2, t0).is_empty());
    assert!(!d.is_ejected(1));
    assert_eq!(d.record(1, Outcome::Status(503), t0).map(|e| e.detection), Some(Detection::ConsecutiveGatewayErrors));
}

#[test]
fn consecutive_5xx_counts_every_5xx_and_local_failures() {
    let t0 = Instant::now();
    let mut d = detector(10, config(|c| c.consecutive_5xx_errors = 4));
    for outcome in [Outcome::Status(500), Outcome::Status(599), Outcome::ConnectFailed] {
        assert!(d.record(0, outcome, t0).is_none());
    }
    assert_eq!(d.record(0, Outcome::Timeout, t0).map(|e| e.detection), Some(Detection::Consecutive5xx));
    // 600 and above are not 5xx.
    record_n(&mut d, 1, Outcome::Status(600), 10, t0);
    assert!(!d.is_ejected(1));
}

#[test]
fn a_zero_threshold_turns_its_detector_off() {
    let t0 = Instant::now();
    let mut d = detector(10, config(|c| c.consecutive_5xx_errors = 0));
    assert!(record_n(&mut d, 0, Outcome::Status(503), 100, t0).is_empty());
    assert_eq!(d.stats(), Stats::default());
}

#[test]
fn both_detectors_at_once_eject_once_and_everything_resets_on_return() {
    let t0 = Instant::now();
    let mut d = detector(10, config(|c| c.consecutive_gateway_errors = 5));
    let ejections = record_n(&mut d, 0, Outcome::Status(503), 5, t0);
    // The gateway detector's event is handled first; the 5xx one finds the endpoint out.
    assert_eq!(ejections.iter().map(|e| e.detection).collect::<Vec<_>>(), [Detection::ConsecutiveGatewayErrors]);
    // Errors while ejected (requests already in flight) never eject it again.
    assert!(record_n(&mut d, 0, Outcome::Status(503), 20, t0).is_empty());
    assert_eq!(d.tick(t0 + 30 * SECOND), [0]);
    // Back with fresh counters: four errors are not enough, the fifth is.
    assert!(record_n(&mut d, 0, Outcome::Status(500), 4, t0 + 30 * SECOND).is_empty());
    assert_eq!(record_n(&mut d, 0, Outcome::Status(500), 1, t0 + 30 * SECOND).len(), 1);
}

#[test]
fn panic_mode_when_too_few_endpoints_are_healthy() {
    let t0 = Instant::now();
    let mut d = detector(
        4,
        config(|c| {
            c.max_ejection_percent = 100;
            c.min_health_percent = 50;
        }),
    );
    assert!(!d.in_panic());
    record_n(&mut d, 0, Outcome::Status(500), 5, t0);
    record_n(&mut d, 1, Outcome::Status(500), 5, t0);
    // 2 of 4 healthy: 50 % is not below 50 %.
    assert!(!d.in_panic());
    record_n(&mut d, 2, Outcome::Status(500), 5, t0);
    assert_eq!(d.healthy_count(), 1);
    assert!(d.in_panic());
    assert_eq!(d.tick(t0 + 30 * SECOND), [0, 1, 2]);
    assert!(!d.in_panic());

    // Istio's default threshold of 0 never panics, even with every endpoint ejected.
    let mut d = detector(2, config(|c| c.max_ejection_percent = 100));
    record_n(&mut d, 0, Outcome::Status(500), 5, t0);
    record_n(&mut d, 1, Outcome::Status(500), 5, t0);
    assert_eq!(d.healthy_count(), 0);
    assert!(!d.in_panic());
}

#[test]
fn unknown_endpoints_are_ignored_and_bad_settings_refused() {
    let t0 = Instant::now();
    let mut d = detector(1, config(|_| {}));
    assert!(record_n(&mut d, 7, Outcome::Status(500), 10, t0).is_empty());
    assert!(!d.is_ejected(7));

    assert!(Detector::for_cluster(&Cluster::default()).unwrap().is_none());
    let err = Detector::for_cluster(&cluster(3, config(|c| c.interval_ms = 0))).unwrap_err();
    assert_eq!(err.field, "intervalMs");
    assert_eq!(err.cluster, "reviews.bookinfo.svc.cluster.local|9080|");
    let err = Detector::for_cluster(&cluster(3, config(|c| c.max_ejection_percent = 101))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cluster reviews.bookinfo.svc.cluster.local|9080|: outlierDetection.maxEjectionPercent: 101 is not a percentage"
    );
    assert!(Detector::for_cluster(&cluster(3, config(|c| c.min_health_percent = 200))).is_err());
}

#[test]
fn an_endpoint_update_keeps_the_state_of_the_endpoints_that_remain() {
    let t0 = Instant::now();
    let mut before = detector(4, config(|c| c.max_ejection_percent = 100));
    record_n(&mut before, 1, Outcome::Status(500), 5, t0);
    record_n(&mut before, 2, Outcome::Status(500), 3, t0);
    assert!(before.is_ejected(1));
    // Endpoint 0 went away; the others moved down one place; a new one was added at the end.
    let mut after = detector(4, config(|c| c.max_ejection_percent = 100));
    after.carry_over(&before, |i| (i < 3).then_some(i + 1));
    assert!(after.is_ejected(0), "the ejected endpoint stays ejected");
    assert_eq!(after.healthy_count(), 3);
    assert_eq!(record_n(&mut after, 1, Outcome::Status(500), 2, t0).len(), 1, "its 3 earlier errors count");
    assert!(!after.is_ejected(3));
    assert_eq!(after.stats().ejections_enforced_consecutive_5xx, 2);
    // It returns when its time is up, as it would have.
    assert_eq!(after.tick(t0 + 30 * SECOND), [0, 1]);
}
