//! The server's transparency log: an RFC 9162 Merkle tree ([`crate::merkle`]) over one leaf per
//! accepted certificate, signed tree heads, and the inclusion and consistency proof documents.
//!
//! The leaf of the certificate at receipt position N is leaf index N - 1; its data are
//!
//! ```text
//! "lapterop.log.leaf/v1\n" || certificate_blake3 || "\n" || received_at
//! ```
//!
//! (the receipt's two fields as ASCII: 64 lower-case hex digits, RFC 3339 UTC), hashed as RFC 9162
//! leaves are: SHA-256(0x00 || data). A signed tree head is canonical JSON signed with the server key
//! exactly as a receipt is (docs/certificate.md).

use serde::{Deserialize, Serialize};

use crate::keys::{self, SignatureError};
use crate::merkle::{self, Hash};
use crate::validate::{self, ParseError};
use crate::{canonical, Receipt, SignatureBlock, SigningKey, VerifyingKey};

/// Schema of a signed tree head.
pub const TREE_HEAD_SCHEMA_V1: &str = "lapterop.tree-head/v1";
/// Schema of an inclusion proof.
pub const INCLUSION_SCHEMA_V1: &str = "lapterop.inclusion/v1";
/// Schema of a consistency proof.
pub const CONSISTENCY_SCHEMA_V1: &str = "lapterop.consistency/v1";

/// The bytes of the leaf of a certificate received at `received_at`.
pub fn leaf_data(certificate_blake3: &str, received_at: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(21 + 64 + 1 + received_at.len());
    out.extend_from_slice(b"lapterop.log.leaf/v1\n");
    out.extend_from_slice(certificate_blake3.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(received_at.as_bytes());
    out
}

/// The leaf hash of a certificate received at `received_at`.
pub fn leaf_hash(certificate_blake3: &str, received_at: &str) -> Hash {
    merkle::leaf_hash(&leaf_data(certificate_blake3, received_at))
}

/// A signed tree head: the server's statement that its log of `tree_size` leaves has `root_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeHead {
    /// Always `lapterop.tree-head/v1`.
    pub schema: String,
    /// Number of leaves.
    pub tree_size: u64,
    /// RFC 9162 Merkle Tree Hash of those leaves, lower-case hex.
    pub root_hash: String,
    /// When the server signed this head, RFC 3339 UTC.
    pub timestamp: String,
    /// The server's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureBlock>,
}

/// An inclusion proof: leaf `leaf_index` is in the tree of `tree_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Always `lapterop.inclusion/v1`.
    pub schema: String,
    /// 0-based leaf index (the receipt's position minus one).
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// RFC 9162 §2.1.3.1 audit path, bottom up, lower-case hex.
    pub audit_path: Vec<String>,
    /// The signed tree head of `tree_size` leaves, when the server gives the proof for its current head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_head: Option<TreeHead>,
}

/// A consistency proof: the tree of `first` leaves is a prefix of the tree of `second` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Always `lapterop.consistency/v1`.
    pub schema: String,
    /// Size of the older tree.
    pub first: u64,
    /// Size of the newer tree.
    pub second: u64,
    /// RFC 9162 §2.1.4.1 consistency path, lower-case hex.
    pub consistency_path: Vec<String>,
}

/// Why a tree head or a proof does not check out.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Not a valid document.
    #[error("invalid document: {0}")]
    Parse(#[from] ParseError),
    /// A field that must be a SHA-256 hash is not.
    #[error("{0} is not 64 lower-case hex digits")]
    Hash(String),
    /// The document names another schema.
    #[error("schema must be {0:?}")]
    Schema(&'static str),
    /// Unsigned tree head.
    #[error("the tree head is not signed")]
    Unsigned,
    /// Bad signature.
    #[error("tree head: {0}")]
    Signature(#[from] SignatureError),
    /// Canonical form failed.
    #[error("{0}")]
    Canonical(#[from] canonical::CanonicalError),
    /// The proof is for another tree size than the head.
    #[error("the proof is for a tree of {proof} leaves but the tree head has {head}")]
    SizeMismatch {
        /// The proof's size.
        proof: u64,
        /// The head's size.
        head: u64,
    },
    /// The proof is for another leaf than the receipt's.
    #[error("the proof is for leaf {proof} but the receipt's position {position} is leaf {}", position - 1)]
    LeafMismatch {
        /// The proof's leaf index.
        proof: u64,
        /// The receipt's position.
        position: u64,
    },
    /// The proof does not verify.
    #[error("{0}")]
    Proof(#[from] merkle::VerifyError),
}

/// Parses 64 lower-case hex digits.
pub fn parse_hash(field: &str, text: &str) -> Result<Hash, LogError> {
    let mut out = [0u8; 32];
    let lower = text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if text.len() != 64 || !lower || hex::decode_to_slice(text, &mut out).is_err() {
        return Err(LogError::Hash(field.to_owned()));
    }
    Ok(out)
}

fn parse_path(field: &str, path: &[String]) -> Result<Vec<Hash>, LogError> {
    path.iter()
        .enumerate()
        .map(|(i, h)| parse_hash(&format!("{field}[{i}]"), h))
        .collect()
}

/// A new tree head, signed with the server key.
pub fn signed_tree_head(tree_size: u64, root: &Hash, timestamp: &str, key: &SigningKey) -> Result<TreeHead, LogError> {
    let mut head = TreeHead {
        schema: TREE_HEAD_SCHEMA_V1.to_owned(),
        tree_size,
        root_hash: hex::encode(root),
        timestamp: timestamp.to_owned(),
        signature: None,
    };
    let value = serde_json::to_value(&head).map_err(|e| canonical::CanonicalError::Jcs(e.to_string()))?;
    head.signature = Some(keys::sign_bytes(key, &canonical::signing_input(&value)?));
    Ok(head)
}

/// Parses a tree head and checks its form and the server's signature; returns it with its root.
pub fn verify_tree_head(bytes: &[u8], server_key: &VerifyingKey) -> Result<(TreeHead, Hash), LogError> {
    let value = validate::parse_value(bytes)?;
    let head: TreeHead = validate::typed(bytes)?;
    check_tree_head(&head, &value, server_key)
}

/// Checks a tree head already parsed from `value` (the JSON as received).
fn check_tree_head(
    head: &TreeHead,
    value: &serde_json::Value,
    server_key: &VerifyingKey,
) -> Result<(TreeHead, Hash), LogError> {
    if head.schema != TREE_HEAD_SCHEMA_V1 {
        return Err(LogError::Schema(TREE_HEAD_SCHEMA_V1));
    }
    let root = parse_hash("root_hash", &head.root_hash)?;
    let block = head.signature.as_ref().ok_or(LogError::Unsigned)?;
    keys::verify_bytes(server_key, &canonical::signing_input(value)?, block)?;
    Ok((head.clone(), root))
}

/// Parses an inclusion proof; a tree head inside it is checked with `server_key`.
pub fn parse_inclusion(bytes: &[u8], server_key: &VerifyingKey) -> Result<InclusionProof, LogError> {
    let value = validate::parse_value(bytes)?;
    let proof: InclusionProof = validate::typed(bytes)?;
    if proof.schema != INCLUSION_SCHEMA_V1 {
        return Err(LogError::Schema(INCLUSION_SCHEMA_V1));
    }
    if let Some(head) = &proof.tree_head {
        check_tree_head(head, &value["tree_head"], server_key)?;
    }
    Ok(proof)
}

/// Parses a consistency proof.
pub fn parse_consistency(bytes: &[u8]) -> Result<ConsistencyProof, LogError> {
    validate::parse_value(bytes)?;
    let proof: ConsistencyProof = validate::typed(bytes)?;
    if proof.schema != CONSISTENCY_SCHEMA_V1 {
        return Err(LogError::Schema(CONSISTENCY_SCHEMA_V1));
    }
    Ok(proof)
}

/// Checks that the certificate of a (verified) receipt is in the tree of a (verified) tree head.
pub fn check_inclusion(receipt: &Receipt, proof: &InclusionProof, head: &TreeHead) -> Result<(), LogError> {
    if proof.tree_size != head.tree_size {
        return Err(LogError::SizeMismatch {
            proof: proof.tree_size,
            head: head.tree_size,
        });
    }
    if receipt.position == 0 || proof.leaf_index != receipt.position - 1 {
        return Err(LogError::LeafMismatch {
            proof: proof.leaf_index,
            position: receipt.position,
        });
    }
    let root = parse_hash("root_hash", &head.root_hash)?;
    let path = parse_path("audit_path", &proof.audit_path)?;
    let leaf = leaf_hash(&receipt.certificate_blake3, &receipt.received_at);
    merkle::verify_inclusion(&leaf, proof.leaf_index, proof.tree_size, &path, &root)?;
    Ok(())
}

/// Checks that `newer` extends `older` (both verified heads) by `proof`.
pub fn check_consistency(older: &TreeHead, newer: &TreeHead, proof: &ConsistencyProof) -> Result<(), LogError> {
    if proof.first != older.tree_size || proof.second != newer.tree_size {
        return Err(LogError::SizeMismatch {
            proof: proof.second,
            head: newer.tree_size,
        });
    }
    let a = parse_hash("root_hash", &older.root_hash)?;
    let b = parse_hash("root_hash", &newer.root_hash)?;
    let path = parse_path("consistency_path", &proof.consistency_path)?;
    merkle::verify_consistency(older.tree_size, newer.tree_size, &a, &b, &path)?;
    Ok(())
}

/// An inclusion proof document.
pub fn inclusion_document(leaf_index: u64, tree_size: u64, path: &[Hash], head: Option<TreeHead>) -> InclusionProof {
    InclusionProof {
        schema: INCLUSION_SCHEMA_V1.to_owned(),
        leaf_index,
        tree_size,
        audit_path: path.iter().map(hex::encode).collect(),
        tree_head: head,
    }
}

/// A consistency proof document.
pub fn consistency_document(first: u64, second: u64, path: &[Hash]) -> ConsistencyProof {
    ConsistencyProof {
        schema: CONSISTENCY_SCHEMA_V1.to_owned(),
        first,
        second,
        consistency_path: path.iter().map(hex::encode).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryTree, Subtrees};

    #[test]
    fn leaf_bytes_are_exactly_as_documented() {
        let b3 = "ab".repeat(32);
        let data = leaf_data(&b3, "2026-11-01T10:00:00Z");
        assert_eq!(
            data,
            format!("lapterop.log.leaf/v1\n{b3}\n2026-11-01T10:00:00Z").into_bytes()
        );
        assert_eq!(leaf_hash(&b3, "2026-11-01T10:00:00Z"), merkle::leaf_hash(&data));
    }

    fn receipt(position: u64, b3: &str, at: &str) -> Receipt {
        Receipt {
            schema: crate::RECEIPT_SCHEMA_V1.to_owned(),
            certificate_id: "0190f5d1-7c2e-7b3a-9d4e-123456789abc".into(),
            certificate_blake3: b3.into(),
            received_at: at.into(),
            position,
            previous_hash: crate::chain::GENESIS.into(),
            entry_hash: crate::chain::GENESIS.into(),
            donor_url: "https://example.invalid/d/x".into(),
            signature: None,
        }
    }

    #[test]
    fn a_signed_head_and_a_proof_check_out_and_tampering_is_refused() {
        let key = keys::fixture_key("server");
        let other = keys::fixture_key("other server");
        let receipts: Vec<Receipt> = (1..=5u64)
            .map(|p| receipt(p, &format!("{p:064x}"), "2026-11-01T10:00:00Z"))
            .collect();
        let tree = MemoryTree {
            leaves: receipts
                .iter()
                .map(|r| leaf_hash(&r.certificate_blake3, &r.received_at))
                .collect(),
        };
        let root = merkle::root(&tree, 5).unwrap();
        let head = signed_tree_head(5, &root, "2026-11-01T10:00:01Z", &key).unwrap();
        let bytes = serde_json::to_vec(&head).unwrap();
        let (checked, r) = verify_tree_head(&bytes, &key.verifying_key()).unwrap();
        assert_eq!(r, root);
        assert!(matches!(
            verify_tree_head(&bytes, &other.verifying_key()),
            Err(LogError::Signature(_))
        ));
        let mut forged = head.clone();
        forged.tree_size = 4;
        let forged = serde_json::to_vec(&forged).unwrap();
        assert!(matches!(
            verify_tree_head(&forged, &key.verifying_key()),
            Err(LogError::Signature(SignatureError::Mismatch))
        ));

        let path = merkle::inclusion_proof(&tree, 2, 5).unwrap();
        let doc = inclusion_document(2, 5, &path, Some(head.clone()));
        let parsed = parse_inclusion(&serde_json::to_vec(&doc).unwrap(), &key.verifying_key()).unwrap();
        check_inclusion(&receipts[2], &parsed, &checked).unwrap();
        // Another receipt, another time received, or another leaf index: refused.
        assert!(check_inclusion(&receipts[1], &parsed, &checked).is_err());
        let mut later = receipts[2].clone();
        later.received_at = "2026-11-01T10:00:09Z".into();
        assert!(matches!(
            check_inclusion(&later, &parsed, &checked),
            Err(LogError::Proof(merkle::VerifyError::Mismatch))
        ));
        assert!(parse_inclusion(&serde_json::to_vec(&doc).unwrap(), &other.verifying_key()).is_err());

        let older_root = merkle::root(&tree, 3).unwrap();
        let older = signed_tree_head(3, &older_root, "2026-11-01T10:00:00Z", &key).unwrap();
        let c = consistency_document(3, 5, &merkle::consistency_proof(&tree, 3, 5).unwrap());
        let c = parse_consistency(&serde_json::to_vec(&c).unwrap()).unwrap();
        check_consistency(&older, &head, &c).unwrap();
        let mut rewritten = tree.clone();
        rewritten.leaves[1] = leaf_hash(&"ff".repeat(32), "2026-11-01T10:00:00Z");
        let rewritten_head =
            signed_tree_head(5, &merkle::root(&rewritten, 5).unwrap(), "2026-11-01T10:00:02Z", &key).unwrap();
        let c2 = consistency_document(3, 5, &merkle::consistency_proof(&rewritten, 3, 5).unwrap());
        assert!(check_consistency(&older, &rewritten_head, &c2).is_err());
        assert!(rewritten.perfect(0, 1).is_ok());
    }

    #[test]
    fn hashes_must_be_lower_case_hex() {
        assert!(parse_hash("x", &"AB".repeat(32)).is_err());
        assert!(parse_hash("x", &"ab".repeat(31)).is_err());
        assert!(parse_hash("x", &"ab".repeat(32)).is_ok());
    }
}
