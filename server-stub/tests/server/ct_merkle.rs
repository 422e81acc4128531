//! The server's transparency log checked by an implementation we did not write: the `ct-merkle`
//! crate (RFC 6962 tree: SHA-256, leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right),
//! the RFC 9162 §2.1 shape). First the Certificate Transparency reference vectors (the leaves, roots and
//! consistency paths of RFC 9162's reference implementation, as in `certificate/src/merkle.rs`), to
//! show the crate hashes and shapes trees as the RFC does; then, over HTTP, every inclusion proof and
//! every consistency proof between the tree heads a fresh server signed, and the crate's own root of
//! the receipts' leaves; then tampered proofs, which it must refuse.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use lapterop_certificate::tlog::{self, TreeHead};
use lapterop_certificate::Receipt;
use sha2::Sha256;

use crate::fixtures::{laptop, signed};
use crate::helpers::*;

type Root = RootHash<Sha256>;

fn root(size: u64, hex_root: &str) -> Root {
    let bytes = hex::decode(hex_root).unwrap();
    Root::new(*sha2::digest::generic_array::GenericArray::from_slice(&bytes), size)
}

/// A hex path as the crate's proof bytes (the hashes concatenated, RFC 9162 order).
fn path_bytes(path: &[String]) -> Vec<u8> {
    path.iter().flat_map(|h| hex::decode(h).unwrap()).collect()
}

fn consistency_ok(old: &Root, new: &Root, path: &[String]) -> bool {
    ConsistencyProof::<Sha256>::try_from_bytes(path_bytes(path)).is_ok_and(|p| new.verify_consistency(old, &p).is_ok())
}

fn inclusion_ok(root: &Root, leaf: &[u8], index: u64, path: &[String]) -> bool {
    InclusionProof::<Sha256>::try_from_bytes(path_bytes(path))
        .is_ok_and(|p| root.verify_inclusion(&leaf, index, &p).is_ok())
}

#[test]
fn ct_merkle_agrees_with_the_rfc_vectors() {
    // github.com/google/certificate-transparency, merkle_tree_test (the RFC 9162 reference vectors).
    let leaves = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let mut tree = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    for (leaf, want) in leaves.iter().zip(roots) {
        tree.push(hex::decode(leaf).unwrap());
        assert_eq!(
            hex::encode(tree.root().as_bytes()),
            want,
            "root of {} leaves",
            tree.len()
        );
    }
    let s = |v: &[&str]| v.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
    let vectors = [
        (
            1,
            8,
            s(&[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]),
        ),
        (
            6,
            8,
            s(&[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]),
        ),
        (
            2,
            5,
            s(&[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ]),
        ),
        (
            6,
            7,
            s(&[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]),
        ),
    ];
    for (m, n, path) in vectors {
        let at = |size: u64| root(size, roots[usize::try_from(size).unwrap() - 1]);
        let (old, new) = (at(m), at(n));
        assert!(consistency_ok(&old, &new, &path), "RFC vector {m} -> {n}");
        let mut bad = path.clone();
        bad[0] = format!("{}{}", if bad[0].starts_with('0') { '1' } else { '0' }, &bad[0][1..]);
        assert!(
            !consistency_ok(&old, &new, &bad),
            "a tampered RFC vector {m} -> {n} passed"
        );
    }
}

#[test]
fn ct_merkle_checks_the_servers_inclusion_and_consistency_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = enrol(d, "bench-1", "ct-merkle station");
    let s = Server::start(d);
    let server_key = s.server_key();
    let head = || -> TreeHead {
        let (status, text) = get(&format!("{}/api/v1/log/sth", s.url)).unwrap();
        assert_eq!(status, 200, "{text}");
        tlog::verify_tree_head(text.as_bytes(), &server_key).unwrap().0
    };
    // Heads at uneven sizes: 1, 2, 3, 5, 8, 11 (powers of two and not, on both sides).
    let mut receipts: Vec<Receipt> = Vec::new();
    let mut heads = Vec::new();
    let mut ours = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut n = 300;
    for add in [1, 1, 1, 2, 3, 3] {
        for _ in 0..add {
            n += 1;
            let (status, text) = s.post(&signed(laptop(n, "Anna Peeters"), &key));
            assert_eq!(status, 201, "{text}");
            let r = lapterop_certificate::chain::verify_receipt(text.as_bytes(), &server_key).unwrap();
            ours.push(tlog::leaf_data(&r.certificate_blake3, &r.received_at));
            receipts.push(r);
        }
        let h = head();
        // The crate's root of the receipts' leaves is the server's signed root.
        assert_eq!(
            hex::encode(ours.root().as_bytes()),
            h.root_hash,
            "root of {} leaves",
            h.tree_size
        );
        heads.push(h);
    }
    let roots: Vec<Root> = heads.iter().map(|h| root(h.tree_size, &h.root_hash)).collect();

    let mut checked = (0, 0);
    for r in &receipts {
        let token = r.donor_url.rsplit('/').next().unwrap();
        let leaf = tlog::leaf_data(&r.certificate_blake3, &r.received_at);
        for (h, hr) in heads.iter().zip(&roots).filter(|(h, _)| h.tree_size >= r.position) {
            let url = format!("{}/d/{token}/inclusion.json?tree_size={}", s.url, h.tree_size);
            let (status, text) = get(&url).unwrap();
            assert_eq!(status, 200, "{text}");
            let p: tlog::InclusionProof = serde_json::from_str(&text).unwrap();
            assert!(
                inclusion_ok(hr, &leaf, p.leaf_index, &p.audit_path),
                "ct-merkle refused the inclusion of position {} in {}",
                r.position,
                h.tree_size
            );
            if let Some(first) = p.audit_path.first() {
                let mut bad = p.audit_path.clone();
                bad[0] = format!("{}{}", if first.starts_with('0') { '1' } else { '0' }, &first[1..]);
                assert!(
                    !inclusion_ok(hr, &leaf, p.leaf_index, &bad),
                    "a tampered audit path passed"
                );
            }
            // Another time received is another leaf.
            let other = tlog::leaf_data(&r.certificate_blake3, "2001-01-01T00:00:00Z");
            assert!(!inclusion_ok(hr, &other, p.leaf_index, &p.audit_path));
            checked.0 += 1;
        }
    }
    for (i, (a, ar)) in heads.iter().zip(&roots).enumerate() {
        for (b, br) in heads.iter().zip(&roots).skip(i + 1) {
            let url = format!(
                "{}/api/v1/log/consistency?first={}&second={}",
                s.url, a.tree_size, b.tree_size
            );
            let (status, text) = get(&url).unwrap();
            assert_eq!(status, 200, "{text}");
            let p: tlog::ConsistencyProof = serde_json::from_str(&text).unwrap();
            assert!(
                consistency_ok(ar, br, &p.consistency_path),
                "ct-merkle refused {} -> {}",
                a.tree_size,
                b.tree_size
            );
            for k in 0..p.consistency_path.len() {
                let mut bad = p.consistency_path.clone();
                let h = &bad[k];
                bad[k] = format!("{}{}", &h[..63], if h.ends_with('0') { '1' } else { '0' });
                assert!(
                    !consistency_ok(ar, br, &bad),
                    "a tampered consistency path {} -> {} (hash {k}) passed",
                    a.tree_size,
                    b.tree_size
                );
            }
            // A server that rewrote an old entry: the same proof against a root over a changed leaf.
            let mut rewritten = MemoryBackedTree::<Sha256, Vec<u8>>::new();
            for (j, r) in receipts.iter().take(usize::try_from(b.tree_size).unwrap()).enumerate() {
                let at = if j == 0 {
                    "2001-01-01T00:00:00Z"
                } else {
                    r.received_at.as_str()
                };
                rewritten.push(tlog::leaf_data(&r.certificate_blake3, at));
            }
            assert!(!consistency_ok(ar, &rewritten.root(), &p.consistency_path));
            checked.1 += 1;
        }
    }
    assert_eq!(checked, (30, 15), "inclusion and consistency proofs checked");
}
