//! The deterministic byte stream both ends of a test connection agree on, and the running digest
//! that checks it. Both are word-at-a-time (8 bytes) so they stay fast in unoptimised debug builds.

/// The default seed of the stream (`--seed` overrides it).
pub const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// Size of the blocks the generator produces (and of the apps' IO buffers).
pub const BLOCK_SIZE: usize = 64 * 1024;

const WORDS: usize = BLOCK_SIZE / 8;
const MULTIPLIER: u64 = 0x2545_F491_4F6C_DD1D;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// xorshift64* generator yielding the stream in 64 KiB blocks of little-endian words.
pub struct StreamGen {
    state: u64,
    words: Vec<u64>,
}

impl StreamGen {
    pub fn new(seed: u64) -> Self {
        let state = if seed == 0 { DEFAULT_SEED } else { seed };
        Self { state, words: vec![0; WORDS] }
    }

    /// The next 64 KiB of the stream.
    pub fn next_block(&mut self) -> &[u8] {
        let mut x = self.state;
        for word in self.words.iter_mut() {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            *word = x.wrapping_mul(MULTIPLIER).to_le();
        }
        self.state = x;
        // SAFETY: a `[u64]` is plain initialised memory; viewing it as bytes (alignment 1, same
        // length in bytes) is always valid, and the borrow of `self` keeps it alive.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), BLOCK_SIZE) }
    }
}

/// Digest (a 64-bit FNV-style hash over little-endian words, then length) of a stream fed in
/// arbitrary pieces: the result depends only on the bytes, not on how they were split.
#[derive(Clone, Debug)]
pub struct Digest {
    hash: u64,
    len: u64,
    carry: [u8; 8],
    carry_len: usize,
}

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

impl Digest {
    pub fn new() -> Self {
        Self { hash: FNV_OFFSET, len: 0, carry: [0; 8], carry_len: 0 }
    }

    /// Bytes digested so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.carry_len > 0 {
            let take = (8 - self.carry_len).min(data.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&data[..take]);
            self.carry_len += take;
            data = &data[take..];
            if self.carry_len < 8 {
                return;
            }
            self.mix(u64::from_le_bytes(self.carry));
            self.carry_len = 0;
        }
        let words = data.len() / 8;
        let mut hash = self.hash;
        let ptr = data.as_ptr();
        for i in 0..words {
            // SAFETY: `i * 8 + 8 <= data.len()`, and an unaligned read of a `u64` from initialised
            // bytes is valid.
            let word = u64::from_le(unsafe { ptr.add(i * 8).cast::<u64>().read_unaligned() });
            hash = (hash ^ word).wrapping_mul(FNV_PRIME);
            hash ^= hash >> 32;
        }
        self.hash = hash;
        let rest = &data[words * 8..];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carry_len = rest.len();
    }

    fn mix(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(FNV_PRIME);
        self.hash ^= self.hash >> 32;
    }

    /// The digest as 16 hex digits.
    pub fn hex(&self) -> String {
        let mut h = self.hash;
        for &b in &self.carry[..self.carry_len] {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        h ^= self.len;
        // murmur3's finaliser, so every input bit reaches every output bit.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        format!("{h:016x}")
    }
}

/// The digest of the first `len` bytes of the stream with `seed`.
pub fn stream_digest(seed: u64, len: u64) -> String {
    let mut generator = StreamGen::new(seed);
    let mut digest = Digest::new();
    let mut left = len;
    while left > 0 {
        let block = generator.next_block();
        let n = (left as usize).min(block.len());
        digest.update(&block[..n]);
        left -= n as u64;
    }
    digest.hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_how_the_stream_is_split() {
        let mut generator = StreamGen::new(7);
        let data = generator.next_block().to_vec();
        let mut whole = Digest::new();
        whole.update(&data[..1001]);
        for step in [1, 3, 7, 8, 13, 1000] {
            let mut pieces = Digest::new();
            for chunk in data[..1001].chunks(step) {
                pieces.update(chunk);
            }
            assert_eq!(pieces.hex(), whole.hex(), "step {step}");
        }
    }

    #[test]
    fn digest_sees_a_flipped_bit_and_the_length() {
        let data = StreamGen::new(1).next_block().to_vec();
        let base = {
            let mut d = Digest::new();
            d.update(&data);
            d.hex()
        };
        let mut flipped = data.clone();
        flipped[4097] ^= 0x80;
        let mut d = Digest::new();
        d.update(&flipped);
        assert_ne!(d.hex(), base);
        let mut d = Digest::new();
        d.update(&data[..data.len() - 1]);
        assert_ne!(d.hex(), base);
    }

    #[test]
    fn stream_is_deterministic_per_seed() {
        assert_eq!(StreamGen::new(5).next_block(), StreamGen::new(5).next_block());
        assert_ne!(StreamGen::new(5).next_block(), StreamGen::new(6).next_block());
        assert_eq!(stream_digest(5, 100_000), stream_digest(5, 100_000));
    }
}
