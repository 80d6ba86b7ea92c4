//! Least request, Istio's default policy: Envoy's `LeastRequestLoadBalancer` with equal weights,
//! "power of two choices" (Mitzenmacher): two uniformly random endpoints of those in use
//! (`draw % len` each, possibly the same one), and the second replaces the first only when it has
//! strictly fewer active requests. Istio leaves `choice_count` at Envoy's default of 2.
//!
//! Active requests are counted per endpoint by [`ActiveRequest`] guards: the pipeline takes one
//! ([`super::Balancer::begin`]) when it sends a request to an endpoint and drops it when the
//! exchange ends, as Envoy's `rq_active` gauge rises and falls. The counters are atomics shared by
//! every balancer rebuilt from the same cluster, so a health change does not lose them, and by
//! the balancer of an updated cluster for the endpoints it keeps (same address), so an endpoint
//! update does not lose them either.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// Active requests per endpoint, by endpoint index.
#[derive(Clone, Debug)]
pub(super) struct ActiveRequests {
    counts: Arc<[Arc<AtomicU64>]>,
}

impl ActiveRequests {
    /// Counters for `endpoints` endpoints, sharing those `previous(index)` gives (the counter of
    /// the same endpoint in the cluster's previous version).
    pub(super) fn carried(endpoints: usize, previous: impl Fn(usize) -> Option<Arc<AtomicU64>>) -> Self {
        Self { counts: (0..endpoints).map(|i| previous(i).unwrap_or_default()).collect() }
    }

    /// The counter of `endpoint`, to share with a later version of the cluster.
    pub(super) fn counter(&self, endpoint: usize) -> Option<Arc<AtomicU64>> {
        self.counts.get(endpoint).cloned()
    }

    pub(super) fn get(&self, endpoint: usize) -> u64 {
        self.counts.get(endpoint).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts one more request to `endpoint` until the guard is dropped; `None` for an index that
    /// is not an endpoint.
    pub(super) fn begin(&self, endpoint: usize) -> Option<ActiveRequest> {
        let count = self.counts.get(endpoint)?;
        count.fetch_add(1, Ordering::Relaxed);
        Some(ActiveRequest { count: Arc::clone(count), endpoint })
    }
}

/// One request in flight to an endpoint; dropping it ends the request for least-request picks.
#[derive(Debug)]
#[must_use = "the request counts as active only while the guard is held"]
pub struct ActiveRequest {
    count: Arc<AtomicU64>,
    endpoint: usize,
}

impl ActiveRequest {
    /// The endpoint's index in the cluster.
    pub fn endpoint(&self) -> usize {
        self.endpoint
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Of two random endpoints of `in_use` (two draws), the one with fewer active requests, the first
/// on a tie; `None` when `in_use` is empty.
pub(super) fn pick(active: &ActiveRequests, in_use: &[usize], random: &mut dyn FnMut() -> u64) -> Option<usize> {
    let len = in_use.len() as u64;
    if len == 0 {
        return None;
    }
    let first = *in_use.get((random() % len) as usize)?;
    let second = *in_use.get((random() % len) as usize)?;
    Some(if active.get(second) < active.get(first) { second } else { first })
}
