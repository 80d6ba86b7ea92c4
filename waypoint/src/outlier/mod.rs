//! Outlier detection: Envoy's passive health checking of a cluster's endpoints, as Istio's
//! DestinationRule `outlierDetection` configures it
//! (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier>; the rules
//! below are those of Envoy's `source/common/upstream/outlier_detection_impl.cc`).
//!
//! A [`Detector`] is a state machine the pipeline drives with explicit instants: [`Detector::record`]
//! for every outcome of a request to an endpoint, [`Detector::tick`] every `interval`. It holds no
//! lock and reads no clock; the pipeline serialises the calls (Envoy runs ejections on its main
//! thread) and, when the ejected set changes, rebuilds the load balancer with
//! `Balancer::with_health(|i| !detector.is_ejected(i))`.
//!
//! - **What counts.** An HTTP status is what the endpoint answered; a failure to connect or a
//!   reset counts as a 503 and a timeout as a 504 (Envoy without
//!   `split_external_local_origin_errors`, which Istio leaves off); an established TCP connection
//!   counts as a success. Any other status is a success for both detectors.
//! - **Consecutive 5xx**: every 5xx adds one, anything else resets. **Consecutive gateway
//!   errors**: 502, 503 and 504 add one, any other status (another 5xx too) resets. A detector
//!   whose threshold is 0 is off.
//! - **Ejection** happens when a counter reaches its threshold (not again while it stays above
//!   it), unless the endpoint is already ejected. It is refused when it would take the ejected
//!   share above `maxEjectionPercent`: `100 × (ejected + 1) / endpoints ≤ maxEjectionPercent`,
//!   so with the default of 10 % a cluster of fewer than ten endpoints ejects nothing. (Older
//!   Envoys always allowed a first ejection; the runtime guard `check_mep_on_first_eject` changed
//!   that and was removed in 1.31, which added the opt-in `always_eject_one_host`; Istio does not
//!   set it.) Either way the counter that fired starts again from 0.
//! - **Duration**: each ejection raises the endpoint's multiplier by one (while
//!   `multiplier × base < max + base`), and the ejection lasts `min(base × multiplier, max)`
//!   where `max` is Envoy's default `max_ejection_time`, `max(300 s, base)`. So a second ejection
//!   in a row lasts twice the first.
//! - **Return** is checked at each tick: an endpoint whose time is up is back (and its counters
//!   start from 0). At each tick, an endpoint that is not ejected and returned at least one
//!   interval ago has its multiplier lowered by one: a healthy endpoint is forgiven one ejection
//!   per interval.
//! - **Panic**: when fewer than `minHealthPercent` of the endpoints are healthy, the load balancer
//!   ignores ejections ([`crate::lb::in_panic`]); [`Detector::in_panic`] says whether it does.
//!
//! - **Endpoint updates**: a new version of the cluster starts a new detector, which takes over
//!   the state of the endpoints it keeps ([`Detector::carry_over`], by address: Envoy keeps a
//!   host's detector state while the host stays in the cluster).
//!
//! Not modelled: Envoy's success-rate and failure-percentage detectors and local-origin split
//! (Istio configures none), and ejection jitter (Istio sets none).

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use ambit_common::api::v1::{Cluster, OutlierDetection};

/// Why a cluster's outlier detection cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster {cluster}: outlierDetection.{field}: {reason}")]
pub struct OutlierError {
    /// The cluster's resource name, `<hostname>|<port>|<subset>`.
    pub cluster: String,
    pub field: &'static str,
    pub reason: String,
}

/// What became of one request (or TCP connection) to an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this HTTP status.
    Status(u16),
    /// Connecting failed, or the stream was reset: Envoy records `LocalOriginConnectFailed`,
    /// counted as a 503. (A request refused by the cluster's own circuit breakers is not an
    /// outcome of the endpoint: do not record it.)
    ConnectFailed,
    /// The endpoint did not answer in time: `LocalOriginTimeout`, counted as a 504.
    Timeout,
    /// A TCP connection to the endpoint was established: a success.
    Connected,
}

impl Outcome {
    /// The status Envoy counts the outcome as.
    fn status(self) -> u16 {
        match self {
            Self::Status(status) => status,
            Self::ConnectFailed => 503,
            Self::Timeout => 504,
            Self::Connected => 200,
        }
    }
}

/// The detector that asked for an ejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    Consecutive5xx,
    ConsecutiveGatewayErrors,
}

/// An endpoint taken out of load balancing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ejection {
    pub endpoint: usize,
    pub detection: Detection,
    /// How long it is out: it returns at the first tick this long after the ejection.
    pub duration: Duration,
}

/// Counters, as Envoy's `outlier_detection.*` stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub ejections_enforced_consecutive_5xx: u64,
    pub ejections_enforced_consecutive_gateway_failure: u64,
    /// Ejections refused by `maxEjectionPercent`.
    pub ejections_overflow: u64,
}

/// A cluster's outlier detection state.
#[derive(Debug)]
pub struct Detector {
    consecutive_5xx: u32,
    consecutive_gateway_errors: u32,
    interval: Duration,
    base_ejection_time: Duration,
    max_ejection_time: Duration,
    max_ejection_percent: u32,
    min_health_percent: u32,
    endpoints: Vec<EndpointState>,
    ejected: usize,
    stats: Stats,
}

#[derive(Clone, Copy, Debug, Default)]
struct EndpointState {
    consecutive_5xx: u32,
    consecutive_gateway_errors: u32,
    /// When it was ejected, while it is.
    ejected_at: Option<Instant>,
    /// Envoy's `ejectTimeBackoff`.
    multiplier: u32,
    last_returned: Option<Instant>,
}

impl Detector {
    /// The detector for `cluster`'s endpoints; `None` when the cluster has no outlier detection.
    pub fn for_cluster(cluster: &Cluster) -> Result<Option<Self>, OutlierError> {
        let Some(config) = &cluster.outlier_detection else {
            return Ok(None);
        };
        let error = |field, reason: String| OutlierError {
            cluster: format!("{}|{}|{}", cluster.hostname, cluster.port, cluster.subset),
            field,
            reason,
        };
        let OutlierDetection {
            consecutive_5xx_errors,
            consecutive_gateway_errors,
            interval_ms,
            base_ejection_time_ms,
            max_ejection_percent,
            min_health_percent,
        } = *config;
        if interval_ms == 0 {
            return Err(error("intervalMs", "must be above 0 (Envoy's default is 10 s)".into()));
        }
        for (field, value) in [("maxEjectionPercent", max_ejection_percent), ("minHealthPercent", min_health_percent)] {
            if value > 100 {
                return Err(error(field, format!("{value} is not a percentage")));
            }
        }
        let base_ejection_time = Duration::from_millis(base_ejection_time_ms);
        Ok(Some(Self {
            consecutive_5xx: consecutive_5xx_errors,
            consecutive_gateway_errors,
            interval: Duration::from_millis(interval_ms),
            base_ejection_time,
            max_ejection_time: base_ejection_time.max(Duration::from_secs(300)),
            max_ejection_percent,
            min_health_percent,
            endpoints: (0..cluster.endpoints.len()).map(|_| EndpointState::default()).collect(),
            ejected: 0,
            stats: Stats::default(),
        }))
    }

    /// Counts `outcome` of a request to `endpoint` at `now`; the ejection it caused, if any.
    pub fn record(&mut self, endpoint: usize, outcome: Outcome, now: Instant) -> Option<Ejection> {
        let state = self.endpoints.get_mut(endpoint)?;
        let status = outcome.status();
        if !(500..600).contains(&status) {
            state.consecutive_5xx = 0;
            state.consecutive_gateway_errors = 0;
            return None;
        }
        let mut fired = [None, None];
        if matches!(status, 502..=504) {
            state.consecutive_gateway_errors = state.consecutive_gateway_errors.saturating_add(1);
            if state.consecutive_gateway_errors == self.consecutive_gateway_errors {
                fired[0] = Some(Detection::ConsecutiveGatewayErrors);
            }
        } else {
            state.consecutive_gateway_errors = 0;
        }
        state.consecutive_5xx = state.consecutive_5xx.saturating_add(1);
        if state.consecutive_5xx == self.consecutive_5xx {
            fired[1] = Some(Detection::Consecutive5xx);
        }
        // Envoy handles both events, the gateway detector's first: if it ejects the endpoint, the
        // 5xx detector's finds it already out.
        let mut ejection = None;
        for detection in fired.into_iter().flatten() {
            if let Some(ejected) = self.fire(endpoint, detection, now) {
                ejection = Some(ejected);
            }
        }
        ejection
    }

    /// A detector reached its threshold for `endpoint`.
    fn fire(&mut self, endpoint: usize, detection: Detection, now: Instant) -> Option<Ejection> {
        let total = self.endpoints.len();
        let limit = f64::from(self.max_ejection_percent.min(100));
        let allowed = 100.0 * (self.ejected + 1) as f64 / total as f64 <= limit;
        let (base, max) = (self.base_ejection_time, self.max_ejection_time);
        let state = self.endpoints.get_mut(endpoint)?;
        if state.ejected_at.is_some() {
            // Already out: Envoy ignores the event and leaves the counter as it is.
            return None;
        }
        let ejection = if allowed {
            state.ejected_at = Some(now);
            if base.saturating_mul(state.multiplier) < max.saturating_add(base) {
                state.multiplier += 1;
            }
            self.ejected += 1;
            match detection {
                Detection::Consecutive5xx => self.stats.ejections_enforced_consecutive_5xx += 1,
                Detection::ConsecutiveGatewayErrors => self.stats.ejections_enforced_consecutive_gateway_failure += 1,
            }
            Some(Ejection { endpoint, detection, duration: base.saturating_mul(state.multiplier).min(max) })
        } else {
            self.stats.ejections_overflow += 1;
            None
        };
        match detection {
            Detection::Consecutive5xx => state.consecutive_5xx = 0,
            Detection::ConsecutiveGatewayErrors => state.consecutive_gateway_errors = 0,
        }
        ejection
    }

    /// The interval timer fired at `now`: returns the endpoints whose ejection is over (in index
    /// order) and lowers the multiplier of endpoints healthy for at least an interval.
    pub fn tick(&mut self, now: Instant) -> Vec<usize> {
        let mut returned = Vec::new();
        for (index, state) in self.endpoints.iter_mut().enumerate() {
            let Some(ejected_at) = state.ejected_at else {
                continue;
            };
            let duration = self.base_ejection_time.saturating_mul(state.multiplier).min(self.max_ejection_time);
            if duration <= now.saturating_duration_since(ejected_at) {
                state.ejected_at = None;
                state.consecutive_5xx = 0;
                state.consecutive_gateway_errors = 0;
                state.last_returned = Some(now);
                self.ejected -= 1;
                returned.push(index);
            }
        }
        for state in self.endpoints.iter_mut().filter(|s| s.ejected_at.is_none()) {
            if state.last_returned.is_some_and(|at| now.saturating_duration_since(at) >= self.interval) {
                state.multiplier = state.multiplier.saturating_sub(1);
            }
        }
        returned
    }

    /// Takes over the state (counters, ejection, multiplier) of the endpoints the previous
    /// version of the cluster had: `old_index(i)` is endpoint `i`'s index in `previous`, if it
    /// was there. Endpoints that are gone take their ejections with them.
    pub fn carry_over(&mut self, previous: &Detector, old_index: impl Fn(usize) -> Option<usize>) {
        for (index, state) in self.endpoints.iter_mut().enumerate() {
            if let Some(old) = old_index(index).and_then(|i| previous.endpoints.get(i)) {
                *state = *old;
            }
        }
        self.ejected = self.endpoints.iter().filter(|s| s.ejected_at.is_some()).count();
        self.stats = previous.stats;
    }

    /// Whether `endpoint` is ejected.
    pub fn is_ejected(&self, endpoint: usize) -> bool {
        self.endpoints.get(endpoint).is_some_and(|s| s.ejected_at.is_some())
    }

    /// The ejected endpoints, in index order.
    pub fn ejected(&self) -> impl Iterator<Item = usize> + '_ {
        self.endpoints.iter().enumerate().filter(|(_, s)| s.ejected_at.is_some()).map(|(i, _)| i)
    }

    /// Endpoints not ejected.
    pub fn healthy_count(&self) -> usize {
        self.endpoints.len() - self.ejected
    }

    /// Whether too few endpoints are healthy for ejections to be honoured: the load balancer then
    /// uses every endpoint (Envoy's panic mode under `minHealthPercent`).
    pub fn in_panic(&self) -> bool {
        crate::lb::in_panic(self.healthy_count(), self.endpoints.len(), self.min_health_percent)
    }

    /// How often [`Detector::tick`] is due.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }
}
