//! Envoy's Maglev table (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016): a table of prime size in which every endpoint owns about the same number
//! of slots; a request goes to the slot `hash % size`.
//!
//! As in Envoy's `MaglevTable` (`source/extensions/load_balancing_policies/maglev/maglev_lb.cc`):
//! - endpoints are sorted by their hash key (`10.0.0.1:8080`) before the table is filled, so the
//!   table does not depend on the order the endpoints arrive in;
//! - an endpoint's preference list is `(offset + skip × j) % size` with
//!   `offset = XXH64(key, seed 0) % size` and `skip = XXH64(key, seed 1) % (size - 1) + 1`;
//! - endpoints take turns claiming their next free preferred slot until the table is full (all
//!   weights are equal: Cluster endpoints carry none);
//! - the size is prime, 65537 unless set, at most 5000011 (Envoy's limit);
//! - the table is built over the endpoints in use and rebuilt when they change.

use super::xxhash::xxhash64;

/// Envoy's `MaglevTable::DefaultTableSize`.
pub(super) const DEFAULT_TABLE_SIZE: u64 = 65537;
/// The largest table size Envoy's configuration accepts.
pub(super) const MAX_TABLE_SIZE: u64 = 5_000_011;

#[derive(Debug)]
pub(super) struct Maglev {
    /// The endpoint indices the table refers to, by position.
    endpoints: Vec<usize>,
    /// For each slot, a position in `endpoints`; empty when there is no endpoint.
    slots: Vec<u32>,
}

impl Maglev {
    /// A table of `size` slots (prime, checked by the caller) over `endpoints`:
    /// `(endpoint index, hash key)`.
    pub(super) fn build<'a>(endpoints: impl Iterator<Item = (usize, &'a str)>, size: u64) -> Self {
        let mut sorted: Vec<(&str, usize)> = endpoints.map(|(index, key)| (key, index)).collect();
        sorted.sort_unstable();
        if sorted.is_empty() || size == 0 {
            return Self { endpoints: Vec::new(), slots: Vec::new() };
        }
        // (offset, skip, next preference to try)
        let mut preferences: Vec<(u64, u64, u64)> = sorted
            .iter()
            .map(|(key, _)| {
                let offset = xxhash64(key.as_bytes(), 0) % size;
                let skip = xxhash64(key.as_bytes(), 1) % (size - 1).max(1) + 1;
                (offset, skip, 0)
            })
            .collect();
        let mut slots: Vec<Option<u32>> = vec![None; size as usize];
        let mut filled = 0_u64;
        'fill: loop {
            for (position, (offset, skip, next)) in preferences.iter_mut().enumerate() {
                if filled == size {
                    break 'fill;
                }
                let mut slot = (*offset + *skip * *next) % size;
                while slots[slot as usize].is_some() {
                    *next += 1;
                    slot = (*offset + *skip * *next) % size;
                }
                slots[slot as usize] = Some(position as u32);
                *next += 1;
                filled += 1;
            }
        }
        Self {
            endpoints: sorted.into_iter().map(|(_, index)| index).collect(),
            slots: slots.into_iter().map(|slot| slot.unwrap_or(0)).collect(),
        }
    }

    pub(super) fn lookup(&self, hash: u64) -> Option<usize> {
        let slot = hash.checked_rem(self.slots.len() as u64)?;
        let position = *self.slots.get(slot as usize)?;
        self.endpoints.get(position as usize).copied()
    }
}

/// Whether `n` is prime (Envoy refuses a Maglev table size that is not).
pub(super) fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ports: &[u16], size: u64) -> Maglev {
        let keys: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        Maglev::build(keys.iter().enumerate().map(|(i, k)| (i, k.as_str())), size)
    }

    /// Envoy's `MaglevLoadBalancerTest.Basic`: six hosts 127.0.0.1:90..95, table size 7; hash `i`
    /// goes to host `expected[i % 7]`.
    #[test]
    fn matches_envoys_table_for_its_basic_test() {
        let maglev = table(&[90, 91, 92, 93, 94, 95], 7);
        let expected = [2, 4, 0, 1, 5, 0, 3];
        for hash in 0..21_u64 {
            assert_eq!(maglev.lookup(hash), Some(expected[(hash % 7) as usize]), "hash {hash}");
        }
    }

    #[test]
    fn the_table_does_not_depend_on_endpoint_order() {
        let forward = table(&[90, 91, 92, 93], 65537);
        let backward = table(&[93, 92, 91, 90], 65537);
        for hash in (0..5000_u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) {
            // Index i in `backward` is port 93 - i, i.e. index 3 - i in `forward`.
            assert_eq!(forward.lookup(hash).map(|i| 3 - i), backward.lookup(hash));
        }
    }

    #[test]
    fn slots_are_shared_evenly_and_few_move_when_an_endpoint_leaves() {
        let ports: Vec<u16> = (8000..8010).collect();
        let all = table(&ports, 65537);
        let mut counts = [0_u32; 10];
        for slot in 0..65537 {
            counts[all.lookup(slot).unwrap()] += 1;
        }
        // Equal weights: every endpoint owns 6553 or 6554 slots.
        assert!(counts.iter().all(|&c| c == 6553 || c == 6554), "{counts:?}");

        let keys: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let without_3 =
            Maglev::build(keys.iter().enumerate().filter(|(i, _)| *i != 3).map(|(i, k)| (i, k.as_str())), 65537);
        let moved = (0..65537).filter(|&s| all.lookup(s) != Some(3) && all.lookup(s) != without_3.lookup(s)).count();
        // Maglev's minimal disruption: well under the 10 % endpoint 3 owned move elsewhere.
        assert!(moved < 65537 / 20, "{moved} slots of other endpoints moved");
        assert!((0..65537).all(|s| without_3.lookup(s) != Some(3)));
    }

    #[test]
    fn primes_and_empty_tables() {
        assert!(is_prime(65537) && is_prime(7) && is_prime(5_000_011) && is_prime(2));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(0) && !is_prime(9));
        assert_eq!(table(&[], 7).lookup(3), None);
        assert_eq!(table(&[80], 7).lookup(3), Some(0));
    }
}
