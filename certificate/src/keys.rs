//! Ed25519 keys, key ids and key files.
//!
//! Key files are one line of lower-case hex: `PREFIX.key` holds the 32-byte secret seed (mode 0600),
//! `PREFIX.pub` the 32-byte public key. The key id is the first 16 bytes of blake3 of the public key,
//! in hex, so it can be recomputed from the `.pub` file alone.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::io::io_err;
use crate::model::SignatureBlock;

/// The only signature algorithm of v1.
pub const ALGORITHM: &str = "ed25519";

/// Errors reading, writing or using keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    /// The key file does not hold 64 hex digits.
    #[error("{path} is not a Lapterop key file (expected one line of 64 hex digits)")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The public key bytes are not a valid Ed25519 point.
    #[error("{path} does not hold a valid Ed25519 public key")]
    InvalidPublicKey {
        /// The file.
        path: PathBuf,
    },
    /// The system random generator failed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// Key id of a public key: first 16 bytes of blake3, lower-case hex (32 digits).
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = blake3::hash(key.as_bytes());
    hex::encode(&digest.as_bytes()[..16])
}

/// A fresh signing key from the operating system's random generator.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A signing key derived from a label; for fixtures and tests only, never for a station.
pub fn fixture_key(label: &str) -> SigningKey {
    let seed = blake3::derive_key("lapterop fixture key v1", label.as_bytes());
    SigningKey::from_bytes(&seed)
}

/// Writes `PREFIX.key` (0600, created new) and `PREFIX.pub`; returns their paths.
pub fn write_keypair(prefix: &Path, key: &SigningKey) -> Result<(PathBuf, PathBuf), KeyError> {
    let key_path = with_suffix(prefix, "key");
    let pub_path = with_suffix(prefix, "pub");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(io_err("creating", &key_path))?;
    writeln!(file, "{}", hex::encode(key.to_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io_err("writing", &key_path))?;
    fs::write(&pub_path, format!("{}\n", hex::encode(key.verifying_key().as_bytes())))
        .map_err(io_err("writing", &pub_path))?;
    Ok((key_path, pub_path))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

fn read_32(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = fs::read_to_string(path).map_err(io_err("reading", path))?;
    parse_hex_32(text.trim()).ok_or_else(|| KeyError::Malformed { path: path.to_owned() })
}

/// Parses exactly 64 hex digits.
pub fn parse_hex_32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Reads a `.key` file.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    Ok(SigningKey::from_bytes(&read_32(path)?))
}

/// Reads a `.pub` file.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let bytes = read_32(path)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPublicKey { path: path.to_owned() })
}

/// Parses a public key from 64 hex digits.
pub fn public_key_from_hex(text: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&parse_hex_32(text.trim())?).ok()
}

/// Signs `input` and returns the signature block.
pub fn sign_bytes(key: &SigningKey, input: &[u8]) -> SignatureBlock {
    SignatureBlock {
        algorithm: ALGORITHM.to_owned(),
        key_id: key_id(&key.verifying_key()),
        value: hex::encode(key.sign(input).to_bytes()),
    }
}

/// Why a signature block does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not `ed25519`.
    #[error("signature.algorithm is {0:?}; only \"ed25519\" is known")]
    Algorithm(String),
    /// Signed by another key.
    #[error("signature.key_id is {found}, but the key given has id {expected}")]
    WrongKey {
        /// The given key's id.
        expected: String,
        /// The block's key id.
        found: String,
    },
    /// Not 128 hex digits.
    #[error("signature.value is not 128 hex digits")]
    Malformed,
    /// The signature does not match the content.
    #[error(
        "the signature does not match the content: the document was changed after signing, or signed by another key"
    )]
    Mismatch,
}

/// Checks a signature block over `input` with `key`.
pub fn verify_bytes(key: &VerifyingKey, input: &[u8], block: &SignatureBlock) -> Result<(), SignatureError> {
    if block.algorithm != ALGORITHM {
        return Err(SignatureError::Algorithm(block.algorithm.clone()));
    }
    let expected = key_id(key);
    if block.key_id != expected {
        return Err(SignatureError::WrongKey {
            expected,
            found: block.key_id.clone(),
        });
    }
    let mut raw = [0u8; 64];
    if block.value.len() != 128 || hex::decode_to_slice(&block.value, &mut raw).is_err() {
        return Err(SignatureError::Malformed);
    }
    key.verify_strict(input, &Signature::from_bytes(&raw))
        .map_err(|_| SignatureError::Mismatch)
}
