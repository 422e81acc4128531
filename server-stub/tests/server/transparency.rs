//! The transparency log: signed tree heads, inclusion proofs for donors and stations, consistency
//! proofs, the migration of a log made before the tree, an independent check with pymerkle, and
//! `lapterop-cert log-monitor` catching a server that rewrote an old entry.

use std::path::{Path, PathBuf};
use std::process::Command;

use lapterop_certificate::tlog::{self, TreeHead};
use lapterop_certificate::{chain, keys, merkle, Receipt, VerifyingKey};
use serde_json::{json, Value};

use crate::fixtures::{laptop, signed};
use crate::helpers::*;

fn sth(s: &Server, key: &VerifyingKey) -> TreeHead {
    let (status, text) = get(&format!("{}/api/v1/log/sth", s.url)).unwrap();
    assert_eq!(status, 200, "{text}");
    tlog::verify_tree_head(text.as_bytes(), key)
        .expect("tree head verifies")
        .0
}

fn consistency(s: &Server, first: u64, second: u64) -> (u16, String) {
    get(&format!(
        "{}/api/v1/log/consistency?first={first}&second={second}",
        s.url
    ))
    .unwrap()
}

/// A position or size as an index.
fn idx(n: u64) -> usize {
    usize::try_from(n).unwrap()
}

fn token_of(receipt: &Receipt) -> String {
    receipt.donor_url.rsplit('/').next().unwrap().to_owned()
}

/// Posts `n` laptops numbered from `from`; their receipts.
fn post_laptops(s: &Server, key: &lapterop_certificate::SigningKey, from: u64, n: u64) -> Vec<Receipt> {
    let server_key = s.server_key();
    (from..from + n)
        .map(|i| {
            let (status, text) = s.post(&signed(laptop(i, "Anna Peeters"), key));
            assert_eq!(status, 201, "{text}");
            chain::verify_receipt(text.as_bytes(), &server_key).unwrap()
        })
        .collect()
}

#[test]
fn tree_heads_and_proofs_check_out_for_donors_stations_and_auditors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = enrol(d, "bench-1", "tlog station");
    let other = enrol(d, "bench-2", "tlog other station");
    let s = Server::start(d);
    let server_key = s.server_key();

    let empty = sth(&s, &server_key);
    assert_eq!(empty.tree_size, 0);
    assert_eq!(empty.root_hash, hex::encode(merkle::empty_root()));

    let mut receipts = Vec::new();
    let mut heads = vec![empty];
    for i in 0..7 {
        receipts.extend(post_laptops(&s, &key, 100 + i, 1));
        heads.push(sth(&s, &server_key));
    }
    for (n, h) in heads.iter().enumerate() {
        assert_eq!(h.tree_size, n as u64);
    }

    // Donor link: the proof of the current tree carries its head and checks out; one for an older
    // head checks out against that head.
    for r in &receipts {
        let url = format!("{}/d/{}/inclusion.json", s.url, token_of(r));
        let (status, text) = get(&url).unwrap();
        assert_eq!(status, 200, "{text}");
        let proof = tlog::parse_inclusion(text.as_bytes(), &server_key).unwrap();
        let head = proof.tree_head.clone().expect("current head inside");
        assert_eq!(head.tree_size, 7);
        tlog::check_inclusion(r, &proof, &head).unwrap();
        let older = &heads[idx(r.position)];
        let (status, text) = get(&format!("{url}?tree_size={}", older.tree_size)).unwrap();
        assert_eq!(status, 200, "{text}");
        let proof = tlog::parse_inclusion(text.as_bytes(), &server_key).unwrap();
        assert!(proof.tree_head.is_none());
        tlog::check_inclusion(r, &proof, older).unwrap();
        // A proof does not pass for another certificate.
        let another = &receipts[idx(r.position) % receipts.len()];
        assert!(tlog::check_inclusion(another, &proof, older).is_err());
    }
    let (status, text) = get(&format!(
        "{}/d/{}/inclusion.json?tree_size=1",
        s.url,
        token_of(&receipts[3])
    ))
    .unwrap();
    assert_eq!(status, 400, "a tree before the certificate: {text}");
    assert!(text.contains("tree_size"), "{text}");
    let (status, _) = get(&format!("{}/d/{}/inclusion.json", s.url, "0".repeat(40))).unwrap();
    assert_eq!(status, 404);

    // Stations: their own certificates only, signed requests only.
    let id = &receipts[2].certificate_id;
    let path = format!("/api/v1/log/inclusion/{id}");
    let (status, text) = get_as_station(&s.url, &path, &key).unwrap();
    assert_eq!(status, 200, "{text}");
    let proof = tlog::parse_inclusion(text.as_bytes(), &server_key).unwrap();
    tlog::check_inclusion(&receipts[2], &proof, proof.tree_head.as_ref().unwrap()).unwrap();
    let (status, _) = get_as_station(&s.url, &path, &other).unwrap();
    assert_eq!(status, 404, "another station's certificate answers like a missing one");
    let (status, _) = get(&format!("{}{path}", s.url)).unwrap();
    assert_eq!(status, 401);

    // Consistency between every pair of heads seen.
    for a in &heads {
        for b in &heads[idx(a.tree_size)..] {
            let (status, text) = consistency(&s, a.tree_size, b.tree_size);
            assert_eq!(status, 200, "{text}");
            let p = tlog::parse_consistency(text.as_bytes()).unwrap();
            tlog::check_consistency(a, b, &p).unwrap();
        }
    }
    for (first, second) in [("3", "2"), ("1", "99"), ("x", "2")] {
        let (status, text) = get(&format!(
            "{}/api/v1/log/consistency?first={first}&second={second}",
            s.url
        ))
        .unwrap();
        assert_eq!(status, 400, "{first} {second}: {text}");
        assert!(text.contains("error"), "{text}");
    }

    // The linear chain and its API stay as they were, and verify-log checks the tree too.
    assert_eq!(check_chain(&s).len(), 7);
    let (code, out, err) = cli(&["verify-log", "--data", d.to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}{err}");
}

/// The database made by the server before the log was a Merkle tree (commit d9d8cee): 5 certificates
/// posted by `server-stub/tests/fixtures/pre-merkle/make.sh`, with its server key pair.
fn pre_merkle_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-merkle")
}

/// The fixture's station label; `examples/pre_merkle_inputs.rs` makes its key and certificates.
const PRE_MERKLE_STATION: &str = "pre-merkle station";

#[test]
fn a_log_from_before_the_tree_keeps_its_positions_and_old_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["lapterop.sqlite", "server.key", "server.pub"] {
        std::fs::copy(pre_merkle_fixture().join(f), d.join(f)).unwrap();
    }
    let old: Vec<(String, String)> = {
        let conn = rusqlite::Connection::open(d.join("lapterop.sqlite")).unwrap();
        let n: u64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'log_nodes'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 0, "the fixture is from before the tree");
        let mut stmt = conn
            .prepare("SELECT c.receipt, c.donor_token FROM log l JOIN certificates c ON c.id = l.certificate_id ORDER BY l.position")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows
    };
    assert_eq!(old.len(), 5);
    let s = Server::start(d);
    let server_key = s.server_key();
    let head = sth(&s, &server_key);
    assert_eq!(head.tree_size, 5, "every old entry became a leaf");
    for (n, (receipt, token)) in old.iter().enumerate() {
        let r = chain::verify_receipt(receipt.as_bytes(), &server_key).expect("an old receipt still verifies");
        assert_eq!(r.position, n as u64 + 1);
        let (status, text) = get(&format!("{}/d/{token}/inclusion.json", s.url)).unwrap();
        assert_eq!(status, 200, "{text}");
        let proof = tlog::parse_inclusion(text.as_bytes(), &server_key).unwrap();
        assert_eq!(proof.leaf_index, n as u64, "position N is leaf N - 1");
        tlog::check_inclusion(&r, &proof, &head).unwrap();
    }
    // New certificates go on from there, in both the chain and the tree.
    let key = keys::fixture_key(PRE_MERKLE_STATION);
    let new = post_laptops(&s, &key, 900, 1);
    assert_eq!(new[0].position, 6);
    let after = sth(&s, &server_key);
    let (status, text) = consistency(&s, 5, 6);
    assert_eq!(status, 200);
    tlog::check_consistency(&head, &after, &tlog::parse_consistency(text.as_bytes()).unwrap()).unwrap();
    assert_eq!(check_chain(&s).len(), 6);
    let (code, out, err) = cli(&["verify-log", "--data", d.to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn pymerkle_agrees_with_the_servers_roots_and_proofs() {
    let Some(python) = lapterop_testkit::python("the independent Merkle tree check (pymerkle)") else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server/independent_merkle.py");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = enrol(d, "bench-1", "pymerkle station");
    let s = Server::start(d);
    let server_key = s.server_key();
    let mut receipts = Vec::new();
    let mut heads = Vec::new();
    for (from, n) in [(1, 1), (2, 2), (4, 3), (7, 6), (13, 4)] {
        receipts.extend(post_laptops(&s, &key, from, n));
        heads.push(sth(&s, &server_key));
    }
    let leaves: Vec<String> = receipts
        .iter()
        .map(|r| hex::encode(tlog::leaf_data(&r.certificate_blake3, &r.received_at)))
        .collect();
    let mut inclusion = Vec::new();
    for r in &receipts {
        for h in heads.iter().filter(|h| h.tree_size >= r.position) {
            let url = format!("{}/d/{}/inclusion.json?tree_size={}", s.url, token_of(r), h.tree_size);
            let (status, text) = get(&url).unwrap();
            assert_eq!(status, 200, "{text}");
            inclusion.push(serde_json::from_str::<Value>(&text).unwrap());
        }
    }
    let mut pairs = Vec::new();
    for a in &heads {
        for b in heads.iter().filter(|b| b.tree_size > a.tree_size) {
            let (status, text) = consistency(&s, a.tree_size, b.tree_size);
            assert_eq!(status, 200, "{text}");
            pairs.push(serde_json::from_str::<Value>(&text).unwrap());
        }
    }
    let heads_json: Vec<Value> = heads
        .iter()
        .map(|h| json!({"tree_size": h.tree_size, "root_hash": h.root_hash}))
        .collect();
    let run = |check: &Value| {
        let file = d.join("check.json");
        std::fs::write(&file, serde_json::to_vec(check).unwrap()).unwrap();
        let out = Command::new(&python).arg(&script).arg(&file).output().unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let genuine = json!({"leaves": leaves, "heads": heads_json, "inclusion": inclusion, "consistency": pairs});
    let (code, out) = run(&genuine);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "{} inclusion and {} consistency",
            inclusion.len(),
            pairs.len()
        )),
        "{out}"
    );

    // The same checker refuses one flipped bit in an audit path, in a consistency path, or in a leaf.
    let flip = |h: &Value| {
        let mut b = hex::decode(h.as_str().unwrap()).unwrap();
        b[0] ^= 1;
        json!(hex::encode(b))
    };
    let mut bad = genuine.clone();
    let i = bad["inclusion"]
        .as_array()
        .unwrap()
        .iter()
        .position(|p| !p["audit_path"].as_array().unwrap().is_empty())
        .unwrap();
    bad["inclusion"][i]["audit_path"][0] = flip(&bad["inclusion"][i]["audit_path"][0]);
    let (code, out) = run(&bad);
    assert_eq!(code, Some(1), "a flipped audit path: {out}");
    let mut bad = genuine.clone();
    let last = bad["consistency"].as_array().unwrap().len() - 1;
    bad["consistency"][last]["consistency_path"][0] = flip(&bad["consistency"][last]["consistency_path"][0]);
    let (code, out) = run(&bad);
    assert_eq!(code, Some(1), "a flipped consistency path: {out}");
    let mut bad = genuine.clone();
    bad["leaves"][3] = flip(&bad["leaves"][3]);
    let (code, out) = run(&bad);
    assert_eq!(code, Some(1), "a changed leaf: {out}");
}

/// The `lapterop-cert` binary of this workspace, built now (it is another package's binary).
fn cert_bin() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args([
            "build",
            "--locked",
            "-q",
            "-p",
            "lapterop-certificate",
            "--bin",
            "lapterop-cert",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building lapterop-cert");
    // This test binary is TARGET/debug/deps/server-HASH.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("lapterop-cert")
}

fn monitor(bin: &Path, s: &Server, state: &Path) -> (i32, String) {
    let out = Command::new(bin)
        .args(["log-monitor", &s.url, "--state"])
        .arg(state)
        .arg("--key")
        .arg(s.dir.join("server.pub"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn log_monitor_catches_a_server_that_rewrote_an_old_entry() {
    let bin = cert_bin();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = enrol(d, "bench-1", "monitor station");
    let port = free_port();
    let mut s = Server::start_on(d, port);
    let watch = tempfile::tempdir().unwrap();
    let state = watch.path().join("heads.json");

    let receipts = post_laptops(&s, &key, 1, 3);
    let (code, out) = monitor(&bin, &s, &state);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("consistent: 3 entries"), "{out}");
    post_laptops(&s, &key, 4, 2);
    let (code, out) = monitor(&bin, &s, &state);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("consistent: 5 entries") && out.contains("2 heads"),
        "{out}"
    );

    // verify-inclusion: against the monitor's last head (files), and from the donor URL.
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let head_file = watch.path().join("head.json");
    std::fs::write(&head_file, serde_json::to_vec(&saved["heads"][1]).unwrap()).unwrap();
    let r = &receipts[1];
    let receipt_file = watch.path().join("receipt.json");
    std::fs::write(&receipt_file, get_bytes(&format!("{}/receipt.json", r.donor_url))).unwrap();
    let proof_file = watch.path().join("inclusion.json");
    std::fs::write(
        &proof_file,
        get_bytes(&format!("{}/inclusion.json?tree_size=5", r.donor_url)),
    )
    .unwrap();
    let server_pub = d.join("server.pub");
    let verify = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(&bin).arg("verify-inclusion").args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // The receipt, proof and head files as they are at the time of the call.
    let verify_files = || {
        verify(&[
            "--key".as_ref(),
            server_pub.as_ref(),
            "--receipt".as_ref(),
            receipt_file.as_ref(),
            "--proof".as_ref(),
            proof_file.as_ref(),
            "--tree-head".as_ref(),
            head_file.as_ref(),
        ])
    };
    let (code, out) = verify_files();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("included: certificate") && out.contains("log position 2"),
        "{out}"
    );
    let (code, out) = verify(&[
        "--key".as_ref(),
        server_pub.as_ref(),
        "--url".as_ref(),
        r.donor_url.as_ref(),
    ]);
    assert_eq!(code, Some(0), "{out}");

    // The server is stopped; someone rewrites entry 2 (another time received) and rebuilds the tree.
    s.kill();
    {
        let conn = rusqlite::Connection::open(d.join("lapterop.sqlite")).unwrap();
        let n = conn
            .execute(
                "UPDATE log SET received_at = '2020-01-01T00:00:00Z' WHERE position = 2",
                [],
            )
            .unwrap();
        assert_eq!(n, 1);
        conn.execute("DELETE FROM log_nodes", []).unwrap();
    }
    let s = Server::start_on(d, port);
    let (code, out) = monitor(&bin, &s, &state);
    assert_eq!(code, 1, "same size, another root: {out}");
    assert!(
        out.contains("INCONSISTENT") && out.contains("two different logs of 5 entries"),
        "{out}"
    );
    // It goes on growing; the monitor still refuses it (the consistency proof fails).
    post_laptops(&s, &key, 6, 2);
    let (code, out) = monitor(&bin, &s, &state);
    assert_eq!(code, 1, "a longer rewritten log: {out}");
    assert!(out.contains("INCONSISTENT") && out.contains("is not a prefix"), "{out}");
    let kept: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(
        kept["heads"].as_array().unwrap().len(),
        2,
        "the state keeps the good heads"
    );
    assert!(
        watch.path().join("heads.conflict.json").exists(),
        "the conflicting head is kept"
    );
    // Certificate 1's path runs through the rewritten leaf: its proof from the rewritten server no
    // longer checks out against the head the monitor kept.
    let first = &receipts[0];
    std::fs::write(&receipt_file, get_bytes(&format!("{}/receipt.json", first.donor_url))).unwrap();
    std::fs::write(
        &proof_file,
        get_bytes(&format!("{}/inclusion.json?tree_size=5", first.donor_url)),
    )
    .unwrap();
    let (code, out) = verify_files();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("NOT INCLUDED"), "{out}");
}
