//! Weighted choice among a route's destinations.

use ambit_common::api::v1::WeightedCluster;

/// The cluster a request goes to: `draw(total)` returns a uniform number in `[0, total)` (the
/// caller owns the randomness, so tests are exact). Clusters of weight 0 are never chosen;
/// `None` when no cluster has weight.
pub fn pick_weighted(clusters: &[WeightedCluster], draw: impl FnOnce(u64) -> u64) -> Option<&WeightedCluster> {
    let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = draw(total).min(total - 1);
    clusters.iter().filter(|c| c.weight > 0).find(|c| {
        let weight = u64::from(c.weight);
        if point < weight {
            return true;
        }
        point -= weight;
        false
    })
}
