//! The server's receipt and its append-only log.
//!
//! Each accepted certificate becomes one log entry. Its hash binds the previous entry's hash, the
//! position, the certificate's full canonical hash and the time received:
//!
//! ```text
//! entry_hash = blake3("lapterop.log/v1\n" || previous_hash || "\n" || position || "\n"
//!                     || certificate_blake3 || "\n" || received_at)
//! ```
//!
//! (hex strings and the decimal position as ASCII). Position 1 has 64 zeros as its previous hash.

use crate::canonical;
use crate::keys::{self, SignatureError};
use crate::model::Receipt;
use crate::validate::{self, ParseError};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// The previous hash of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hash of one log entry.
pub fn entry_hash(previous_hash: &str, position: u64, certificate_blake3: &str, received_at: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"lapterop.log/v1\n");
    h.update(previous_hash.as_bytes());
    h.update(b"\n");
    h.update(position.to_string().as_bytes());
    h.update(b"\n");
    h.update(certificate_blake3.as_bytes());
    h.update(b"\n");
    h.update(received_at.as_bytes());
    h.finalize().to_hex().to_string()
}

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// Not a valid receipt.
    #[error("invalid receipt: {0}")]
    Parse(#[from] ParseError),
    /// Unsigned.
    #[error("the receipt is not signed")]
    Unsigned,
    /// The entry hash does not follow from its inputs.
    #[error("entry_hash does not match previous_hash, position, certificate_blake3 and received_at")]
    EntryHash,
    /// Bad signature.
    #[error("{0}")]
    Signature(#[from] SignatureError),
    /// Canonical form failed.
    #[error("{0}")]
    Canonical(#[from] canonical::CanonicalError),
}

/// Signs a receipt in place with the server key.
pub fn sign_receipt(receipt: &mut Receipt, key: &SigningKey) -> Result<(), canonical::CanonicalError> {
    receipt.signature = None;
    let value = serde_json::to_value(&*receipt).map_err(|e| canonical::CanonicalError::Jcs(e.to_string()))?;
    let input = canonical::signing_input(&value)?;
    receipt.signature = Some(keys::sign_bytes(key, &input));
    Ok(())
}

/// Parses and checks a receipt: format, entry hash and server signature.
pub fn verify_receipt(bytes: &[u8], server_key: &VerifyingKey) -> Result<Receipt, ReceiptError> {
    let (receipt, value) = validate::parse_receipt(bytes)?;
    let block = receipt.signature.as_ref().ok_or(ReceiptError::Unsigned)?;
    let expected = entry_hash(
        &receipt.previous_hash,
        receipt.position,
        &receipt.certificate_blake3,
        &receipt.received_at,
    );
    if expected != receipt.entry_hash {
        return Err(ReceiptError::EntryHash);
    }
    keys::verify_bytes(server_key, &canonical::signing_input(&value)?, block)?;
    Ok(receipt)
}
