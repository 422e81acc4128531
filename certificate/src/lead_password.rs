//! The lead password that guards the stick's rescue shell and GRUB's editor.
//!
//! One hash in the format of GRUB's `grub-mkpasswd-pbkdf2`, so the same line serves both GRUB
//! (`password_pbkdf2`) and the agent: `grub.pbkdf2.sha512.ITERATIONS.SALT.HASH`, PBKDF2-HMAC-SHA512,
//! salt and hash in upper-case hex (GRUB's `grub-core/commands/password_pbkdf2.c` reads either case).
//! The lead writes it into `site.toml` as `[lead] password_hash`; `lapterop-image-builder
//! lead-password` makes it. Only the hash is on the stick, never the password.

use sha2::Sha512;

/// Where the live image's initramfs carries the hash (relative to its root): the image builder writes
/// it from the site config, the agent's rescue shell reads it. The copy in `site.toml` on the FAT
/// partition is never what the agent checks.
pub const INITRAMFS_PATH: &str = "etc/lapterop/lead-password";

/// The prefix of every hash.
pub const PREFIX: &str = "grub.pbkdf2.sha512.";

/// PBKDF2 rounds for new hashes (GRUB's own default is 10,000; the hash sits on a FAT partition
/// anyone can read, so we make guessing ten times dearer).
pub const ITERATIONS: u32 = 100_000;

/// Why a hash line is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    /// Not `grub.pbkdf2.sha512.N.SALT.HASH`.
    #[error(
        "not a GRUB PBKDF2 hash (grub.pbkdf2.sha512.ITERATIONS.SALT.HASH): make one with \
         `lapterop-image-builder lead-password`"
    )]
    Format,
    /// Too few or too many rounds.
    #[error("{0} PBKDF2 rounds: use 1,000 to 10,000,000")]
    Iterations(u64),
    /// The password is too short to be worth guarding anything.
    #[error("the lead password must have at least 8 characters")]
    TooShort,
}

/// A parsed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl LeadHash {
    /// Parses a `grub.pbkdf2.sha512.` line (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<LeadHash, HashError> {
        let rest = text.trim().strip_prefix(PREFIX).ok_or(HashError::Format)?;
        let mut parts = rest.split('.');
        let (Some(n), Some(salt), Some(hash), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(HashError::Format);
        };
        let n: u64 = n.parse().map_err(|_| HashError::Format)?;
        let iterations = u32::try_from(n)
            .ok()
            .filter(|n| (1_000..=10_000_000).contains(n))
            .ok_or(HashError::Iterations(n))?;
        let salt = hex::decode(salt).map_err(|_| HashError::Format)?;
        let hash = hex::decode(hash).map_err(|_| HashError::Format)?;
        if salt.is_empty() || salt.len() > 1024 || hash.len() < 32 || hash.len() > 64 {
            return Err(HashError::Format);
        }
        Ok(LeadHash { iterations, salt, hash })
    }

    /// Hashes `password` with a fresh 64-byte salt from the operating system.
    pub fn new(password: &str) -> Result<LeadHash, HashError> {
        if password.chars().count() < 8 {
            return Err(HashError::TooShort);
        }
        let mut salt = vec![0u8; 64];
        // A missing kernel random source is not something a caller can fix; treat it like GRUB does.
        getrandom::getrandom(&mut salt).map_err(|_| HashError::Format)?;
        Ok(Self::with_salt(password, salt, ITERATIONS))
    }

    /// Hashes `password` with this salt and round count (tests, fixed vectors).
    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> LeadHash {
        let mut hash = vec![0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, &mut hash);
        LeadHash { iterations, salt, hash }
    }

    /// Whether `password` is the one (compared in constant time).
    pub fn verify(&self, password: &str) -> bool {
        let mut out = vec![0u8; self.hash.len()];
        pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &self.salt, self.iterations, &mut out);
        out.iter().zip(&self.hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl std::fmt::Display for LeadHash {
    /// The line GRUB's `password_pbkdf2` and `site.toml` take.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}{}.{}.{}",
            self.iterations,
            hex::encode_upper(&self.salt),
            hex::encode_upper(&self.hash)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6070-style check of the primitive: PBKDF2-HMAC-SHA512("password", "salt", 1 round), the
    /// widely published vector (e.g. in the `pbkdf2` crate's and Python's hashlib tests).
    #[test]
    fn pbkdf2_sha512_matches_the_published_vector() {
        let h = LeadHash::with_salt("password", b"salt".to_vec(), 1);
        assert_eq!(
            hex::encode(&h.hash),
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252\
             c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce"
        );
    }

    #[test]
    fn a_hash_round_trips_through_its_text_and_checks_the_password() {
        let h = LeadHash::with_salt("werkplaats Kessel-Lo", vec![7; 64], 1_000);
        let line = h.to_string();
        assert!(line.starts_with("grub.pbkdf2.sha512.1000.0707"), "{line}");
        let back = LeadHash::parse(&format!("  {line}\n")).unwrap();
        assert_eq!(back, h);
        assert!(back.verify("werkplaats Kessel-Lo"));
        assert!(!back.verify("werkplaats kessel-lo"));
        assert!(!back.verify(""));
        // GRUB reads lower-case hex as well.
        assert_eq!(LeadHash::parse(&line.to_lowercase()), Ok(h));
    }

    #[test]
    fn bad_lines_and_short_passwords_are_refused() {
        for bad in [
            "",
            "lapterop",
            "grub.pbkdf2.sha512.10000.ABCD",
            "grub.pbkdf2.sha512.10000.XYZ.00",
            "grub.pbkdf2.sha256.10000.AB.CD",
            "grub.pbkdf2.sha512.10000.AB.CD.EF",
        ] {
            assert_eq!(LeadHash::parse(bad), Err(HashError::Format), "{bad:?}");
        }
        let hash = "00".repeat(64);
        assert_eq!(
            LeadHash::parse(&format!("grub.pbkdf2.sha512.10.AB.{hash}")),
            Err(HashError::Iterations(10))
        );
        assert_eq!(LeadHash::new("short"), Err(HashError::TooShort));
    }
}
