//! Envoy's ring hash (ketama): every endpoint gets entries on a ring of 64-bit hashes; a request
//! goes to the first entry at or after its own hash, wrapping to the start.
//!
//! As in Envoy's `RingHashLoadBalancer::Ring` (`source/extensions/load_balancing_policies/
//! ring_hash/ring_hash_lb.cc`):
//! - an endpoint's entries are the XXH64 hashes of `"<address>_<i>"`, `i` from 0, where the
//!   address is Envoy's `address()->asString()`: `10.0.0.1:8080`, `[fd00::1]:8080`;
//! - with equal weights (Cluster endpoints carry none), each of the `n` endpoints gets
//!   `ceil(min_ring_size / n)` entries, so the ring has at least `min_ring_size` entries (1024 by
//!   default) and at most Envoy's default maximum of 8M; the arithmetic is Envoy's, in `f64`, so
//!   the counts match it exactly;
//! - the ring is built over the endpoints in use (healthy, or all in panic) and rebuilt when they
//!   change, as Envoy rebuilds it on every host health change.

use super::xxhash::xxhash64;

/// Envoy's default `maximum_ring_size`.
pub(super) const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Envoy's default `minimum_ring_size`.
pub(super) const DEFAULT_MIN_RING_SIZE: u64 = 1024;

/// The ring: `(hash, endpoint)` sorted by hash.
#[derive(Debug)]
pub(super) struct Ring {
    entries: Vec<(u64, usize)>,
}

impl Ring {
    /// A ring over `endpoints`: `(endpoint index, hash key)` in endpoint order.
    pub(super) fn build<'a>(endpoints: impl Iterator<Item = (usize, &'a str)>, min_ring_size: u64) -> Self {
        let endpoints: Vec<(usize, &str)> = endpoints.collect();
        let count = endpoints.len();
        if count == 0 {
            return Self { entries: Vec::new() };
        }
        // Envoy normalizes weights to sum to 1 and scales so the lightest endpoint gets a whole
        // number of entries; all weights are equal here.
        let weight = 1.0 / count as f64;
        let scale = ((weight * min_ring_size as f64).ceil() / weight).min(MAX_RING_SIZE as f64);
        let mut entries = Vec::with_capacity(scale.ceil() as usize);
        let (mut current, mut target) = (0.0_f64, 0.0_f64);
        let mut key = String::new();
        for (endpoint, hash_key) in endpoints {
            target += scale * weight;
            let mut i = 0_u64;
            while current < target {
                key.clear();
                key.push_str(hash_key);
                key.push('_');
                key.push_str(&i.to_string());
                entries.push((xxhash64(key.as_bytes(), 0), endpoint));
                i += 1;
                current += 1.0;
            }
        }
        // By hash; equal hashes (which Envoy leaves in any order) by endpoint.
        entries.sort_unstable();
        Self { entries }
    }

    /// The endpoint of the first entry whose hash is `hash` or more, wrapping to the first entry.
    /// This is what Envoy's ketama binary search finds.
    pub(super) fn lookup(&self, hash: u64) -> Option<usize> {
        let at = self.entries.partition_point(|&(h, _)| h < hash);
        self.entries.get(at).or_else(|| self.entries.first()).map(|&(_, endpoint)| endpoint)
    }

    #[cfg(test)]
    pub(super) fn entries(&self) -> &[(u64, usize)] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(ports: std::ops::Range<u16>) -> Vec<String> {
        ports.map(|p| format!("127.0.0.1:{p}")).collect()
    }

    fn ring(keys: &[String], min_ring_size: u64) -> Ring {
        Ring::build(keys.iter().enumerate().map(|(i, k)| (i, k.as_str())), min_ring_size)
    }

    /// Envoy's `RingHashLoadBalancerTest.Basic`: six hosts 127.0.0.1:90..95, minimum ring size 12.
    #[test]
    fn matches_envoys_ring_for_its_basic_test() {
        let ring = ring(&hosts(90..96), 12);
        // The ring Envoy's test lists, as (position, port - 90).
        let expected: [(u64, usize); 12] = [
            (833_437_586_790_550_860, 4),
            (928_266_305_478_181_108, 2),
            (1_033_482_794_131_418_490, 0),
            (3_551_244_743_356_806_947, 5),
            (3_851_675_632_748_031_481, 3),
            (5_583_722_120_771_150_861, 1),
            (6_311_230_543_546_372_928, 1),
            (7_700_377_290_971_790_572, 3),
            (13_144_177_310_400_110_813, 5),
            (13_444_792_449_719_432_967, 2),
            (15_516_499_411_664_133_160, 4),
            (16_117_243_373_044_804_889, 0),
        ];
        assert_eq!(ring.entries(), expected);
        // Its lookups: 0 and u64::MAX (wrapping) go to :94; an exact position to its host; one
        // past it to the next; the random draw 16117243373044804880 to :90.
        assert_eq!(ring.lookup(0), Some(4));
        assert_eq!(ring.lookup(u64::MAX), Some(4));
        assert_eq!(ring.lookup(3_551_244_743_356_806_947), Some(5));
        assert_eq!(ring.lookup(3_551_244_743_356_806_948), Some(3));
        assert_eq!(ring.lookup(16_117_243_373_044_804_880), Some(0));
    }

    #[test]
    fn every_endpoint_gets_the_same_share_of_at_least_the_minimum() {
        for (count, min, per_endpoint) in [(3, 1024, 342), (1, 1024, 1024), (2000, 1024, 1), (6, 12, 2)] {
            let keys: Vec<String> = (0..count).map(|i| format!("10.0.{}.{}:80", i / 250, i % 250)).collect();
            let ring = ring(&keys, min);
            assert_eq!(ring.entries().len(), count * per_endpoint, "{count} endpoints, minimum {min}");
            for endpoint in 0..count {
                assert_eq!(ring.entries().iter().filter(|e| e.1 == endpoint).count(), per_endpoint);
            }
        }
    }

    #[test]
    fn an_endpoint_keeps_its_entries_when_another_leaves() {
        // Consistent hashing: without endpoint 2 the others keep every entry they had (and gain
        // some, as 1024 entries are now shared by five), so only some keys move, 2's among them.
        let keys = hosts(90..96);
        let all = ring(&keys, 1024);
        let without_2 =
            Ring::build(keys.iter().enumerate().filter(|(i, _)| *i != 2).map(|(i, k)| (i, k.as_str())), 1024);
        let remaining: std::collections::HashSet<(u64, usize)> = without_2.entries().iter().copied().collect();
        assert!(all.entries().iter().filter(|e| e.1 != 2).all(|e| remaining.contains(e)));
        assert!(without_2.entries().iter().all(|e| e.1 != 2));
        let samples: Vec<u64> = (0..1000_u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        let moved = samples.iter().filter(|&&h| all.lookup(h) != without_2.lookup(h)).count();
        let owned_by_2 = samples.iter().filter(|&&h| all.lookup(h) == Some(2)).count();
        assert!(moved >= owned_by_2 && moved < samples.len() / 2, "moved {moved}, owned by 2 {owned_by_2}");
        assert_eq!(Ring::build(std::iter::empty(), 1024).lookup(7), None);
    }
}
