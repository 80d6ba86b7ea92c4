//! The data path's randomness: a per-thread xorshift64* generator seeded from the OS (through
//! std's randomly keyed hasher). The decision modules take draws as arguments; this is where the
//! proxy makes them. Not for secrets.

use std::{
    cell::Cell,
    hash::{BuildHasher, Hasher},
};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish() | 1
}

/// A uniform 64-bit draw.
pub(crate) fn next_u64() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A uniform draw in `[0, n)` (0 when `n` is 0).
pub(crate) fn below(n: u64) -> u64 {
    if n == 0 { 0 } else { next_u64() % n }
}

/// A uniform draw in `[0, 1_000_000)`, for `_per_million` shares.
pub(crate) fn per_million() -> u32 {
    below(1_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_vary() {
        let draws: Vec<u64> = (0..1000).map(|_| below(10)).collect();
        assert!(draws.iter().all(|&d| d < 10));
        for value in 0..10 {
            assert!(draws.contains(&value), "{value} never drawn in 1000 draws");
        }
        assert_eq!(below(0), 0);
        assert!(per_million() < 1_000_000);
    }
}
