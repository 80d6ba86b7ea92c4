//! The counts and latency percentiles of a load run, and its `summary` event.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};

use super::outcome::{Outcome, micros};

/// Everything recorded so far.
#[derive(Debug, Default)]
pub(super) struct Tally {
    sent: u64,
    statuses: BTreeMap<String, u64>,
    grpc_statuses: BTreeMap<String, u64>,
    served_by: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// Latencies of the requests that got an answer (failures are counted, not timed).
    latencies_us: Vec<u64>,
}

impl Tally {
    pub(super) fn record(&mut self, outcome: &Outcome) {
        self.sent += 1;
        if let Some(failure) = &outcome.failure {
            *self.errors.entry(failure.kind.to_owned()).or_default() += 1;
            return;
        }
        if let Some(status) = outcome.status {
            *self.statuses.entry(status.to_string()).or_default() += 1;
        }
        if let Some(code) = outcome.grpc_status {
            *self.grpc_statuses.entry(code.to_string()).or_default() += 1;
        }
        if let Some(name) = &outcome.served_by {
            *self.served_by.entry(name.clone()).or_default() += 1;
        }
        self.latencies_us.push(micros(outcome.latency));
    }

    /// The `summary` event. `requested` is `--count`; `connections` how many the client opened
    /// (unknown for gRPC, whose channel manages its own).
    pub(super) fn summary(&self, requested: u64, elapsed: Duration, connections: Option<u64>) -> Value {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let seconds = elapsed.as_secs_f64();
        json!({
            "event": "summary",
            "requested": requested,
            "sent": self.sent,
            "statuses": self.statuses,
            "grpcStatuses": self.grpc_statuses,
            "servedBy": self.served_by,
            "errors": self.errors,
            "latencyUs": {
                "p50": percentile(&sorted, 50.0),
                "p90": percentile(&sorted, 90.0),
                "p99": percentile(&sorted, 99.0),
                "max": sorted.last(),
            },
            "connections": connections,
            "elapsedMs": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "requestsPerSecond": if seconds > 0.0 { self.sent as f64 / seconds } else { 0.0 },
        })
    }
}

/// The nearest-rank percentile of `sorted` (ascending): the smallest value with at least `p`
/// percent of the values at or below it. `None` when there are no values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::{
        super::outcome::{Failure, Outcome},
        *,
    };

    fn answered(status: u16, served_by: &str, latency_ms: u64) -> Outcome {
        Outcome {
            status: Some(status),
            served_by: Some(served_by.to_owned()),
            latency: Duration::from_millis(latency_ms),
            ..Outcome::default()
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 90.0), Some(90));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 0.0), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn counts_statuses_backends_and_errors() {
        let mut tally = Tally::default();
        tally.record(&answered(200, "v1", 1));
        tally.record(&answered(200, "v2", 2));
        tally.record(&answered(503, "v1", 3));
        tally.record(&Outcome::failed(Failure::timeout(Duration::from_secs(1))));
        tally.record(&Outcome { grpc_status: Some(14), latency: Duration::from_millis(4), ..Outcome::default() });
        let summary = tally.summary(10, Duration::from_secs(2), Some(1));
        assert_eq!(summary["event"], "summary");
        assert_eq!(summary["requested"], 10);
        assert_eq!(summary["sent"], 5);
        assert_eq!(summary["statuses"], json!({"200": 2, "503": 1}));
        assert_eq!(summary["servedBy"], json!({"v1": 2, "v2": 1}));
        assert_eq!(summary["grpcStatuses"], json!({"14": 1}));
        assert_eq!(summary["errors"], json!({"timeout": 1}));
        assert_eq!(summary["latencyUs"], json!({"p50": 2000, "p90": 4000, "p99": 4000, "max": 4000}));
        assert_eq!(summary["connections"], 1);
        assert_eq!(summary["elapsedMs"], 2000);
        assert_eq!(summary["requestsPerSecond"], 2.5);
    }

    #[test]
    fn an_empty_run_has_no_percentiles() {
        let summary = Tally::default().summary(3, Duration::ZERO, None);
        assert_eq!(summary["sent"], 0);
        assert_eq!(summary["latencyUs"]["p50"], Value::Null);
        assert_eq!(summary["connections"], Value::Null);
        assert_eq!(summary["requestsPerSecond"], 0.0);
    }
}
