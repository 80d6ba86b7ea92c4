//! XXH64, the 64-bit xxHash, written from the algorithm's public description
//! (<https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md>).
//!
//! Envoy hashes everything the load balancer hashes with it (`HashUtil::xxHash64`, seed 0): ring
//! entries, Maglev offsets (Maglev's skips use seed 1), header, cookie, query parameter and source
//! address keys. Using the same function is what makes a waypoint send a key to the endpoint an
//! Envoy with the same endpoints would.

const PRIME_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME_4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME_5: u64 = 0x27D4_EB2F_1656_67C5;

/// The XXH64 hash of `input` with `seed`.
pub(crate) fn xxhash64(input: &[u8], seed: u64) -> u64 {
    let (stripes, rest) = input.as_chunks::<32>();
    let mut acc = if stripes.is_empty() {
        seed.wrapping_add(PRIME_5)
    } else {
        let mut lanes = [
            seed.wrapping_add(PRIME_1).wrapping_add(PRIME_2),
            seed.wrapping_add(PRIME_2),
            seed,
            seed.wrapping_sub(PRIME_1),
        ];
        for stripe in stripes {
            let (words, _) = stripe.as_chunks::<8>();
            for (lane, word) in lanes.iter_mut().zip(words) {
                *lane = round(*lane, u64::from_le_bytes(*word));
            }
        }
        let [a, b, c, d] = lanes;
        let acc = a
            .rotate_left(1)
            .wrapping_add(b.rotate_left(7))
            .wrapping_add(c.rotate_left(12))
            .wrapping_add(d.rotate_left(18));
        lanes.into_iter().fold(acc, merge_round)
    };
    acc = acc.wrapping_add(input.len() as u64);

    let (words, rest) = rest.as_chunks::<8>();
    for word in words {
        acc ^= round(0, u64::from_le_bytes(*word));
        acc = acc.rotate_left(27).wrapping_mul(PRIME_1).wrapping_add(PRIME_4);
    }
    let rest = match rest.split_first_chunk::<4>() {
        Some((word, rest)) => {
            acc ^= u64::from(u32::from_le_bytes(*word)).wrapping_mul(PRIME_1);
            acc = acc.rotate_left(23).wrapping_mul(PRIME_2).wrapping_add(PRIME_3);
            rest
        }
        None => rest,
    };
    for &byte in rest {
        acc ^= u64::from(byte).wrapping_mul(PRIME_5);
        acc = acc.rotate_left(11).wrapping_mul(PRIME_1);
    }

    acc ^= acc >> 33;
    acc = acc.wrapping_mul(PRIME_2);
    acc ^= acc >> 29;
    acc = acc.wrapping_mul(PRIME_3);
    acc ^ (acc >> 32)
}

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(PRIME_2)).rotate_left(31).wrapping_mul(PRIME_1)
}

fn merge_round(acc: u64, lane: u64) -> u64 {
    (acc ^ round(0, lane)).wrapping_mul(PRIME_1).wrapping_add(PRIME_4)
}

#[cfg(test)]
mod tests {
    use super::xxhash64;

    /// The reference implementation's sanity-check input: byte `i` is the top byte of
    /// `2654435761 * 11400714785074694797^i` (xxHash's `cli/xsum_sanity_check.c`).
    fn sanity_buffer(len: usize) -> Vec<u8> {
        let mut generator: u64 = 2_654_435_761;
        (0..len)
            .map(|_| {
                let byte = (generator >> 56) as u8;
                generator = generator.wrapping_mul(11_400_714_785_074_694_797);
                byte
            })
            .collect()
    }

    #[test]
    fn matches_the_reference_sanity_vectors() {
        const PRIME32: u64 = 2_654_435_761;
        // XSUM_XXH64_testdata: (length, seed, hash); lengths cover the empty input, the tail
        // paths (1, 4, 14 bytes) and the 32-byte stripe loop (222 bytes).
        let vectors = [
            (0, 0, 0xEF46_DB37_51D8_E999),
            (0, PRIME32, 0xAC75_FDA2_929B_17EF),
            (1, 0, 0xE934_A84A_DB05_2768),
            (1, PRIME32, 0x5014_6076_43A9_B4C3),
            (4, 0, 0x9136_A0DC_A574_57EE),
            (14, 0, 0x8282_DCC4_994E_35C8),
            (14, PRIME32, 0xC3BD_6BF6_3DEB_6DF0),
            (222, 0, 0xB641_AE8C_B691_C174),
            (222, PRIME32, 0x20CB_8AB7_AE10_C14A),
        ];
        let buffer = sanity_buffer(222);
        for (len, seed, expected) in vectors {
            assert_eq!(xxhash64(&buffer[..len], seed), expected, "length {len}, seed {seed}");
        }
    }

    #[test]
    fn envoy_ring_positions_for_its_test_hosts() {
        // Envoy's ring hash test lists where "127.0.0.1:94_0"-style keys land; the two smallest
        // positions of the ring of 127.0.0.1:90..95 (ring_hash_lb_test.cc, test "Basic").
        let positions = ["127.0.0.1:94_0", "127.0.0.1:94_1"].map(|key| xxhash64(key.as_bytes(), 0));
        assert!(positions.contains(&833_437_586_790_550_860), "{positions:?}");
        assert!(positions.contains(&15_516_499_411_664_133_160), "{positions:?}");
    }
}
