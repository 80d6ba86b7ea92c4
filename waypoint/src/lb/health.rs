//! Which endpoints a pick chooses from: the healthy ones, or every one in panic mode.
//!
//! Envoy's panic threshold (Istio's `minHealthPercent`) keeps a cluster whose endpoints are mostly
//! unhealthy from concentrating all traffic on the few that are left: below the threshold, health
//! is ignored and all endpoints are used
//! (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/panic_threshold>).
//! The rule is Envoy's `LoadBalancerBase::recalculatePerPriorityPanic` for one priority level:
//! a cluster whose availability (healthy share × the overprovisioning factor, capped at 100 %) is
//! 100 % never panics, so with the default factor of 1.4 a cluster panics only when fewer than
//! about 72 % of its endpoints are healthy, whatever the threshold above that.

/// Envoy's default overprovisioning factor, in percent (`Cluster` carries none).
const OVERPROVISIONING_PERCENT: u64 = 140;

/// Whether a cluster with `healthy` of `total` endpoints healthy is in panic mode under the
/// threshold `min_health_percent` (0: never; values above 100 count as 100).
pub fn in_panic(healthy: usize, total: usize, min_health_percent: u32) -> bool {
    let threshold = min_health_percent.min(100);
    if threshold == 0 {
        // Panic mode disabled: with no healthy endpoint, requests fail (503 UH).
        return false;
    }
    let (healthy, total) = (healthy as u64, total as u64);
    let availability = (OVERPROVISIONING_PERCENT * healthy).checked_div(total).unwrap_or(0).min(100);
    if availability == 100 {
        return false;
    }
    let healthy_percent = if total == 0 { 0.0 } else { 100.0 * healthy as f64 / total as f64 };
    healthy_percent < f64::from(threshold)
}

/// The positions, in endpoint order, that picks choose from, and whether that is every endpoint
/// because of panic mode.
pub(super) fn in_use(total: usize, is_healthy: impl Fn(usize) -> bool, min_health_percent: u32) -> (Vec<usize>, bool) {
    let healthy: Vec<usize> = (0..total).filter(|&i| is_healthy(i)).collect();
    if in_panic(healthy.len(), total, min_health_percent) { ((0..total).collect(), true) } else { (healthy, false) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_threshold_never_panics_even_with_nothing_healthy() {
        assert!(!in_panic(0, 4, 0));
        assert_eq!(in_use(4, |_| false, 0), (vec![], false));
    }

    #[test]
    fn below_the_threshold_every_endpoint_is_used() {
        // 1 of 4 healthy is 25 % < 50 %.
        assert!(in_panic(1, 4, 50));
        assert_eq!(in_use(4, |i| i == 2, 50), (vec![0, 1, 2, 3], true));
        // 2 of 4 is 50 %: not below 50 %.
        assert!(!in_panic(2, 4, 50));
        assert_eq!(in_use(4, |i| i >= 2, 50), (vec![2, 3], false));
        // Nothing healthy with a threshold: all endpoints.
        assert!(in_panic(0, 3, 1));
    }

    #[test]
    fn a_fully_available_cluster_never_panics_whatever_the_threshold() {
        // 3 of 4 healthy: 75 % < 80 %, but 75 % × 1.4 = 105 % → availability 100 %: no panic.
        assert!(!in_panic(3, 4, 80));
        // 5 of 7 healthy: 140 × 5 / 7 = 100 exactly: no panic even at 100 %.
        assert!(!in_panic(5, 7, 100));
        // 7 of 10 healthy: availability 98 % and 70 % < 80 %: panic.
        assert!(in_panic(7, 10, 80));
        // A threshold above 100 counts as 100.
        assert!(in_panic(7, 10, 250));
    }
}
