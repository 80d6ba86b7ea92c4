//! Round robin: Envoy's `RoundRobinLoadBalancer` with equal weights, `in_use[n++ % len]`.
//!
//! The position survives health changes (Envoy keeps its index per host source while the host
//! list changes under it), and starts at a random draw: Envoy seeds every load balancer so that
//! proxies started together do not all send their first request to the same endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub(super) struct RoundRobin {
    next: AtomicU64,
}

impl RoundRobin {
    pub(super) fn new(start: u64) -> Self {
        Self { next: AtomicU64::new(start) }
    }

    /// Where the next pick starts (for the cluster's next version).
    pub(super) fn position(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// The next endpoint of `in_use`; `None` when it is empty.
    pub(super) fn pick(&self, in_use: &[usize]) -> Option<usize> {
        let len = in_use.len() as u64;
        if len == 0 {
            return None;
        }
        // Relaxed: concurrent picks only need distinct positions, not an order with other memory.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        in_use.get((n % len) as usize).copied()
    }
}
