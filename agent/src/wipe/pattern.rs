//! The bytes an overwrite writes and a verification expects.
//!
//! `zero` is all zero bytes. `random` is AES-256 in counter mode keyed by a 32-byte secret seed, with
//! the 128-bit big-endian counter equal to the byte offset divided by 16: the byte at device offset `o`
//! is byte `o mod 16` of `AES-256(seed, BE128(o div 16))`. Every 16-byte block of the device therefore
//! differs (a drive that drops or aliases writes is caught), any offset can be regenerated without the
//! bytes before it, and with AES-NI the stream costs far less than the I/O. The certificate names the
//! stream [`GENERATOR`] and commits to the seed with blake3; the seed itself never leaves memory.

use aes::cipher::{KeyIvInit, StreamCipher};
use lapterop_certificate::{Pattern, PatternKind};

/// Name of the random stream as recorded in `pattern.generator`.
pub const GENERATOR: &str = "aes-256-ctr-be128-offset/v1";

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// A pattern with everything needed to produce its bytes at any offset.
#[derive(Clone, PartialEq, Eq)]
pub enum Fill {
    /// All zeros.
    Zero,
    /// The seeded AES-256-CTR stream.
    Random {
        /// The secret seed (AES key).
        seed: [u8; 32],
    },
}

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Zero => write!(f, "Zero"),
            // Never print the seed.
            Self::Random { .. } => write!(f, "Random {{ seed: <secret> }}"),
        }
    }
}

impl Fill {
    /// A random stream with a fresh seed from the kernel's CSPRNG.
    pub fn fresh_random() -> Result<Self, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)?;
        Ok(Self::Random { seed })
    }

    /// True when the bytes never change (a zero buffer can be reused without refilling).
    pub fn is_constant(&self) -> bool {
        matches!(self, Self::Zero)
    }

    /// Writes the pattern's bytes for device offsets `offset..offset + buf.len()` into `buf`.
    /// `offset` must be a multiple of 16 (it is always a sector boundary).
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        debug_assert_eq!(offset % 16, 0);
        buf.fill(0);
        if let Self::Random { seed } = self {
            let iv = u128::from(offset / 16).to_be_bytes();
            let mut c = Aes256Ctr::new(seed.into(), &iv.into());
            c.apply_keystream(buf);
        }
    }

    /// The certificate's description of this pattern.
    pub fn describe(&self) -> Pattern {
        match self {
            Self::Zero => Pattern {
                kind: PatternKind::Zero,
                generator: None,
                seed_commitment: None,
            },
            Self::Random { seed } => Pattern {
                kind: PatternKind::Random,
                generator: Some(GENERATOR.to_string()),
                seed_commitment: Some(blake3::hash(seed).to_hex().to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{BlockEncrypt, KeyInit};

    #[test]
    fn random_stream_is_aes_of_the_block_index_at_any_offset() {
        let seed: [u8; 32] = core::array::from_fn(|i| u8::try_from(i).unwrap());
        let fill = Fill::Random { seed };
        let mut whole = vec![0u8; 64 * 1024];
        fill.fill(0, &mut whole);
        // Regenerating from an offset in the middle gives the same bytes.
        let mut part = vec![0u8; 4096];
        fill.fill(8192, &mut part);
        assert_eq!(part[..], whole[8192..8192 + 4096]);
        // Each 16-byte block is AES-256(seed, BE128(offset / 16)).
        let cipher = aes::Aes256::new(&seed.into());
        for block in [0u64, 1, 513, 4095] {
            let mut b = aes::Block::from(u128::from(block).to_be_bytes());
            cipher.encrypt_block(&mut b);
            let at = usize::try_from(block * 16).unwrap();
            assert_eq!(b[..], whole[at..at + 16]);
        }
        // Far offsets (a 16 TiB disk) work the same way.
        let far = 16u64 << 40;
        let mut b = aes::Block::from(u128::from(far / 16).to_be_bytes());
        cipher.encrypt_block(&mut b);
        let mut got = [0u8; 16];
        fill.fill(far, &mut got);
        assert_eq!(b[..], got);
    }

    #[test]
    fn fips197_aes256_known_answer() {
        // FIPS-197 Appendix C.3: key 000102..1f, plaintext 00112233..ff.
        let key: [u8; 32] = core::array::from_fn(|i| u8::try_from(i).unwrap());
        let mut b = aes::Block::from(0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128.to_be_bytes());
        aes::Aes256::new(&key.into()).encrypt_block(&mut b);
        assert_eq!(hex::encode(b), "8ea2b7ca516745bfeafc49904b496089");
    }

    #[test]
    fn zero_is_zero_and_descriptions_follow_the_rules() {
        let mut buf = vec![7u8; 4096];
        Fill::Zero.fill(512, &mut buf);
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(Fill::Zero.describe().seed_commitment, None);
        let r = Fill::Random { seed: [9; 32] }.describe();
        assert_eq!(r.seed_commitment.unwrap(), blake3::hash(&[9; 32]).to_hex().to_string());
        assert_eq!(r.generator.as_deref(), Some(GENERATOR));
        assert!(!format!("{:?}", Fill::Random { seed: [9; 32] }).contains('9'));
    }
}
