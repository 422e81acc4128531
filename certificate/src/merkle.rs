//! The RFC 9162 Merkle tree (Certificate Transparency 2.0, §2.1): tree hashes, inclusion proofs and
//! consistency proofs over SHA-256, leaf hashes prefixed with 0x00 and interior nodes with 0x01.
//!
//! Written here rather than taken from a crate: `ct-merkle` keeps the whole tree in memory and has no
//! way to compute a proof from a tree kept in a database; the functions below take the hashes of
//! perfect subtrees from any [`Subtrees`] (the server's SQLite table, or [`MemoryTree`] in tests), so
//! a proof costs O(log n) lookups. The test vectors are the Certificate Transparency reference vectors
//! (see the tests).
//!
//! Indices are 0-based leaf indices, sizes are leaf counts, as in the RFC.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// MTH({d}) = SHA-256(0x00 || d) (RFC 9162 §2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// SHA-256(0x01 || left || right) (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The hashes of perfect subtrees of a stored tree: `perfect(level, index)` is MTH of the leaves
/// `index * 2^level .. (index + 1) * 2^level`, all of which exist. Level 0 is the leaf hashes.
pub trait Subtrees {
    /// Why a hash could not be read.
    type Error;
    /// The hash of one perfect subtree.
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProofError<E> {
    /// The request names leaves or sizes the tree does not have.
    #[error("{0}")]
    OutOfRange(String),
    /// Reading the stored tree failed.
    #[error("reading the tree: {0}")]
    Store(E),
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The second tree is smaller than the first.
    #[error("the second tree ({second} leaves) is smaller than the first ({first})")]
    Shrunk {
        /// First size.
        first: u64,
        /// Second size.
        second: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("the proof has the wrong number of hashes")]
    Length,
    /// The hashes do not lead to the expected root.
    #[error("the proof does not lead to the tree head's root hash")]
    Mismatch,
}

/// The largest power of two smaller than `n` (n > 1): the size of the left subtree (RFC 9162 §2.1.1).
fn split(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH of the leaves `start..end` (start is a multiple of the largest power of two not above
/// `end - start`, as every range of the RFC's recursion is).
fn range_hash<S: Subtrees>(s: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end - start;
    if n.is_power_of_two() {
        return s.perfect(n.trailing_zeros(), start >> n.trailing_zeros());
    }
    let k = split(n);
    let left = s.perfect(k.trailing_zeros(), start >> k.trailing_zeros())?;
    let right = range_hash(s, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The Merkle Tree Hash of the first `size` leaves (RFC 9162 §2.1.1).
pub fn root<S: Subtrees>(s: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(s, 0, size)
}

/// The inclusion proof (audit path) of leaf `index` in the tree of the first `size` leaves, bottom
/// up (RFC 9162 §2.1.3.1).
pub fn inclusion_proof<S: Subtrees>(s: &S, index: u64, size: u64) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf index {index} is not in a tree of {size} leaves"
        )));
    }
    let mut path = Vec::new();
    path_into(s, index, 0, size, &mut path).map_err(ProofError::Store)?;
    Ok(path)
}

/// PATH(m, D[start:end]), appended bottom up.
fn path_into<S: Subtrees>(s: &S, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), S::Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path_into(s, m, start, start + k, out)?;
        out.push(range_hash(s, start + k, end)?);
    } else {
        path_into(s, m - k, start + k, end, out)?;
        out.push(range_hash(s, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of the first `first` and `second` leaves (RFC 9162
/// §2.1.4.1); empty when `first` is 0 or equal to `second`.
pub fn consistency_proof<S: Subtrees>(s: &S, first: u64, second: u64) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if first > second {
        return Err(ProofError::OutOfRange(format!(
            "first ({first}) must not be larger than second ({second})"
        )));
    }
    let mut path = Vec::new();
    if first > 0 && first < second {
        subproof_into(s, first, 0, second, true, &mut path).map_err(ProofError::Store)?;
    }
    Ok(path)
}

/// SUBPROOF(m, D[start:end], b), appended bottom up.
fn subproof_into<S: Subtrees>(
    s: &S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(range_hash(s, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof_into(s, m, start, start + k, whole, out)?;
        out.push(range_hash(s, start + k, end)?);
    } else {
        subproof_into(s, m - k, start + k, end, false, out)?;
        out.push(range_hash(s, start, start + k)?);
    }
    Ok(())
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves with root `root` (RFC 9162
/// §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(VerifyError::Length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(VerifyError::Length);
    }
    if &r != root {
        return Err(VerifyError::Mismatch);
    }
    Ok(())
}

/// Verifies that the tree of `first` leaves with root `first_root` is a prefix of the tree of
/// `second` leaves with root `second_root` (RFC 9162 §2.1.4.2; the trivial cases as in the reference
/// implementation: equal sizes need equal roots and an empty proof, and an empty first tree is a
/// prefix of everything).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if second < first {
        return Err(VerifyError::Shrunk { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(VerifyError::Length);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        };
    }
    if first == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(VerifyError::Length)
        };
    }
    if proof.is_empty() {
        return Err(VerifyError::Length);
    }
    // Step 2: a first tree of 2^k leaves is a subtree of the second; its root starts the path.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(first_root);
    }
    path.extend(proof.iter());
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = *path[0];
    let mut sr = *path[0];
    for c in &path[1..] {
        if sn == 0 {
            return Err(VerifyError::Length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(VerifyError::Length);
    }
    if &fr != first_root || &sr != second_root {
        return Err(VerifyError::Mismatch);
    }
    Ok(())
}

/// The nodes a new leaf completes: appending leaf `index` with hash `leaf` makes the perfect subtrees
/// that end at it, each `(level, index, hash)`, level 0 (the leaf itself) first. `left(level, i)` reads
/// the stored hash of the perfect subtree left of each new one.
pub fn appended_nodes<E>(
    index: u64,
    leaf: Hash,
    mut left: impl FnMut(u32, u64) -> Result<Hash, E>,
) -> Result<Vec<(u32, u64, Hash)>, E> {
    let mut out = vec![(0, index, leaf)];
    let (mut level, mut i, mut h) = (0u32, index, leaf);
    while i & 1 == 1 {
        let sibling = left(level, i - 1)?;
        h = node_hash(&sibling, &h);
        level += 1;
        i >>= 1;
        out.push((level, i, h));
    }
    Ok(out)
}

/// A tree held in memory as its leaf hashes (tests, small checks).
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// Leaf hashes in order.
    pub leaves: Vec<Hash>,
}

impl MemoryTree {
    /// The tree of these leaf data (each hashed with [`leaf_hash`]).
    pub fn from_data<'a>(data: impl IntoIterator<Item = &'a [u8]>) -> Self {
        Self {
            leaves: data.into_iter().map(leaf_hash).collect(),
        }
    }
}

/// Index out of range in a [`MemoryTree`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no such subtree")]
pub struct NoSuchSubtree;

impl Subtrees for MemoryTree {
    type Error = NoSuchSubtree;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, NoSuchSubtree> {
        let width = 1u64.checked_shl(level).ok_or(NoSuchSubtree)?;
        let start = index.checked_mul(width).ok_or(NoSuchSubtree)?;
        let slice = usize::try_from(start)
            .ok()
            .zip(usize::try_from(width).ok())
            .and_then(|(s, w)| self.leaves.get(s..s.checked_add(w)?))
            .ok_or(NoSuchSubtree)?;
        Ok(fold(slice))
    }
}

fn fold(leaves: &[Hash]) -> Hash {
    match leaves {
        [one] => *one,
        _ => {
            let mid = leaves.len() / 2;
            node_hash(&fold(&leaves[..mid]), &fold(&leaves[mid..]))
        }
    }
}

#[cfg(test)]
// Test sizes are small: u64 to usize cannot truncate here.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// The Certificate Transparency reference test vectors: the 8 leaves, the roots of the trees of
    /// 1..8 of them, and the known inclusion and consistency proofs. From the C++ reference
    /// implementation's `merkle_tree_test.cc` (google/certificate-transparency), as carried by Go's
    /// `github.com/transparency-dev/merkle`, file `proof/verify_test.go` (`leaves`, `roots`,
    /// `inclusionProofs` with 1-based leaf numbers, `consistencyProofs`).
    fn leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| hex::decode(s).unwrap())
        .collect()
    }

    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// Leaf 1's audit path in the tree of 8, which is also the consistency path from 1 to 8.
    fn first_of_8() -> Vec<Hash> {
        vec![
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ]
    }

    /// (1-based leaf, tree size, path).
    fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (1, 1, vec![]),
            (1, 8, first_of_8()),
            (
                6,
                8,
                vec![
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                3,
                3,
                vec![h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")],
            ),
            (
                2,
                5,
                vec![
                    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
        ]
    }

    fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (1, 1, vec![]),
            (1, 8, first_of_8()),
            (
                6,
                8,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
            (
                2,
                5,
                vec![
                    h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                ],
            ),
            (
                6,
                7,
                vec![
                    h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                    h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
                ],
            ),
        ]
    }

    fn tree() -> MemoryTree {
        let data = leaves();
        MemoryTree::from_data(data.iter().map(Vec::as_slice))
    }

    #[test]
    fn empty_tree_hash_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(root(&tree(), 0).unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn roots_of_the_reference_tree_for_sizes_1_to_8() {
        let t = tree();
        for (i, want) in ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(root(&t, i as u64 + 1).unwrap()), *want, "size {}", i + 1);
        }
    }

    #[test]
    fn inclusion_proofs_match_and_verify_the_reference_vectors() {
        let t = tree();
        for (leaf, size, want) in inclusion_vectors() {
            let index = leaf - 1;
            let got = inclusion_proof(&t, index, size).unwrap();
            assert_eq!(got, want, "leaf {leaf} in {size}");
            let root = h(ROOTS[size as usize - 1]);
            verify_inclusion(&t.leaves[index as usize], index, size, &want, &root).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_and_verify_the_reference_vectors() {
        let t = tree();
        for (first, second, want) in consistency_vectors() {
            let got = consistency_proof(&t, first, second).unwrap();
            assert_eq!(got, want, "{first} -> {second}");
            let (r1, r2) = (h(ROOTS[first as usize - 1]), h(ROOTS[second as usize - 1]));
            verify_consistency(first, second, &r1, &r2, &want).unwrap();
        }
    }

    /// The corruptions of the reference test (`corruptInclusionProof` there) are all refused.
    #[test]
    fn corrupted_inclusion_proofs_are_refused() {
        let t = tree();
        let other = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        for (leaf, size, proof) in inclusion_vectors() {
            let index = leaf - 1;
            let root = h(ROOTS[size as usize - 1]);
            let l = t.leaves[index as usize];
            let bad = |i: u64, n: u64, leaf: &Hash, p: &[Hash], r: &Hash| verify_inclusion(leaf, i, n, p, r).is_err();
            if index > 0 {
                assert!(bad(index - 1, size, &l, &proof, &root));
            }
            assert!(bad(index + 1, size, &l, &proof, &root));
            if (index ^ 2) != index && size > 1 {
                assert!(bad(index ^ 2, size, &l, &proof, &root));
            }
            assert!(bad(index, size * 2, &l, &proof, &root));
            if size > 1 {
                assert!(bad(index, size / 2, &l, &proof, &root));
            }
            assert!(bad(index, size, &other, &proof, &root));
            assert!(bad(index, size, &l, &proof, &empty_root()));
            assert!(bad(index, size, &l, &proof, &other));
            let mut longer = proof.clone();
            longer.push(root);
            assert!(bad(index, size, &l, &longer, &root));
            let mut front = vec![root];
            front.extend(proof.iter().copied());
            assert!(bad(index, size, &l, &front, &root));
            for i in 0..proof.len() {
                let mut flipped = proof.clone();
                flipped[i][0] ^= 8;
                assert!(bad(index, size, &l, &flipped, &root), "flipped {i}");
            }
            if !proof.is_empty() {
                assert!(bad(index, size, &l, &proof[..proof.len() - 1], &root));
            }
        }
    }

    /// The corruptions of the reference test (`corruptConsistencyProof` there) are all refused.
    #[test]
    fn corrupted_consistency_proofs_are_refused() {
        for (first, second, proof) in consistency_vectors() {
            if proof.is_empty() {
                continue;
            }
            let (r1, r2) = (h(ROOTS[first as usize - 1]), h(ROOTS[second as usize - 1]));
            let bad = |m: u64, n: u64, a: &Hash, b: &Hash, p: &[Hash]| verify_consistency(m, n, a, b, p).is_err();
            assert!(bad(first - 1, second, &r1, &r2, &proof));
            assert!(bad(first + 1, second, &r1, &r2, &proof));
            assert!(bad(first ^ 2, second, &r1, &r2, &proof));
            assert!(bad(first, second * 2, &r1, &r2, &proof));
            assert!(bad(first, second / 2, &r1, &r2, &proof));
            assert!(bad(first, second, &empty_root(), &r2, &proof));
            assert!(bad(first, second, &r1, &empty_root(), &proof));
            assert!(bad(first, second, &r2, &r1, &proof));
            assert!(bad(first, second, &r1, &r2, &[]));
            for extra in [r1, r2] {
                let mut longer = proof.clone();
                longer.push(extra);
                assert!(bad(first, second, &r1, &r2, &longer));
                let mut front = vec![extra];
                front.extend(proof.iter().copied());
                assert!(bad(first, second, &r1, &r2, &front));
            }
            let mut front = vec![proof[0]];
            front.extend(proof.iter().copied());
            assert!(bad(first, second, &r1, &r2, &front));
            assert!(bad(first, second, &r1, &r2, &proof[..proof.len() - 1]));
            for i in 0..proof.len() {
                let mut flipped = proof.clone();
                flipped[i][0] ^= 16;
                assert!(bad(first, second, &r1, &r2, &flipped), "flipped {i}");
            }
        }
    }

    /// The trivial cases of the reference test (`TestVerifyConsistency` there).
    #[test]
    fn trivial_consistency_cases() {
        let (a, b) = (h(ROOTS[0]), h(ROOTS[1]));
        let e = empty_root();
        assert!(verify_consistency(0, 0, &a, &b, &[]).is_err());
        assert!(verify_consistency(1, 1, &a, &b, &[]).is_err());
        assert!(verify_consistency(0, 0, &a, &a, &[]).is_ok());
        assert!(verify_consistency(0, 1, &a, &b, &[]).is_ok());
        assert!(verify_consistency(1, 1, &b, &b, &[]).is_ok());
        assert!(verify_consistency(1, 0, &a, &b, &[]).is_err());
        assert!(verify_consistency(2, 1, &a, &b, &[]).is_err());
        assert!(verify_consistency(1, 2, &a, &b, &[]).is_err());
        assert!(verify_consistency(0, 0, &e, &e, &[e]).is_err());
        assert!(verify_consistency(0, 1, &e, &e, &[e]).is_err());
        assert!(verify_consistency(1, 1, &e, &e, &[e]).is_err());
        for (i, n) in [(0, 0), (0, 1), (1, 0), (2, 1)] {
            assert!(verify_inclusion(&a, i, n, &[], &e).is_err(), "{i} {n}");
        }
    }

    /// Every proof of every pair of sizes up to 40 verifies, built from appended nodes as the server
    /// stores them.
    #[test]
    fn appended_nodes_build_the_same_tree_and_every_proof_verifies() {
        let mut nodes = std::collections::HashMap::new();
        let mut mem = MemoryTree::default();
        struct Stored<'a>(&'a std::collections::HashMap<(u32, u64), Hash>);
        impl Subtrees for Stored<'_> {
            type Error = NoSuchSubtree;
            fn perfect(&self, level: u32, index: u64) -> Result<Hash, NoSuchSubtree> {
                self.0.get(&(level, index)).copied().ok_or(NoSuchSubtree)
            }
        }
        for i in 0..40u64 {
            let leaf = leaf_hash(&i.to_le_bytes());
            mem.leaves.push(leaf);
            let new = appended_nodes(i, leaf, |l, j| Stored(&nodes).perfect(l, j)).unwrap();
            for (l, j, hash) in new {
                nodes.insert((l, j), hash);
            }
        }
        let stored = Stored(&nodes);
        for n in 0..=40u64 {
            let r = root(&stored, n).unwrap();
            assert_eq!(r, root(&mem, n).unwrap());
            for i in 0..n {
                let p = inclusion_proof(&stored, i, n).unwrap();
                verify_inclusion(&mem.leaves[i as usize], i, n, &p, &r).unwrap();
            }
            for m in 0..=n {
                let p = consistency_proof(&stored, m, n).unwrap();
                verify_consistency(m, n, &root(&mem, m).unwrap(), &r, &p).unwrap();
            }
        }
    }
}
