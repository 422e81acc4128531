//! The hostile-input battery: submissions no honest station makes, sent to the real server. Every one
//! must be refused with a 4xx answer that names the problem, and nothing may be stored: no
//! certificate, no log entry, no batch. The counts are printed past libtest's capture.

use lapterop_certificate::{self as cert, canonical, keys};
use serde_json::{json, Value};

use crate::fixtures::{laptop, signed};
use crate::helpers::*;

/// Signs a JSON document as it is, invariants or not: what a hostile station with an enrolled key can
/// send.
fn force_signed(mut v: Value, key: &cert::SigningKey) -> Vec<u8> {
    v["station"]["key_id"] = keys::key_id(&key.verifying_key()).into();
    v.as_object_mut().unwrap().remove("signature");
    let input = canonical::signing_input(&v).unwrap();
    v["signature"] = serde_json::to_value(keys::sign_bytes(key, &input)).unwrap();
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn hostile_submissions_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let station = enrol(dir.path(), "bench-1", "hostile battery station");
    let revoked = enrol(dir.path(), "bench-lost", "hostile battery lost stick");
    let (code, out, err) = cli(
        &[
            "stations",
            "revoke",
            "--data",
            dir.path().to_str().unwrap(),
            "bench-lost",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    let stranger = keys::fixture_key("never enrolled");
    let s = Server::start(dir.path());

    let good = laptop(7, "Anna");
    let value = good.to_value().unwrap();
    let valid = signed(good.clone(), &station);
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v = value.clone();
        f(&mut v);
        force_signed(v, &station)
    };

    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty body".into(), Vec::new()),
        ("not JSON".into(), b"hello".to_vec()),
        ("invalid UTF-8".into(), b"{\"schema\": \"\xff\xfe\"}".to_vec()),
        ("a JSON array".into(), b"[1,2,3]".to_vec()),
        ("JSON null".into(), b"null".to_vec()),
        (
            "nested 10,000 deep".into(),
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ),
        ("1 MiB and one byte".into(), vec![b' '; (1 << 20) + 1]),
        ("trailing garbage".into(), [valid.clone(), b"{}".to_vec()].concat()),
        ("unsigned".into(), {
            let mut v = value.clone();
            v.as_object_mut().unwrap().remove("signature");
            serde_json::to_vec(&v).unwrap()
        }),
        (
            "signed by a key never enrolled".into(),
            signed(laptop(8, "Anna"), &stranger),
        ),
        (
            "signed by a revoked station".into(),
            signed(laptop(9, "Anna"), &revoked),
        ),
        ("another station's key id, own signature".into(), {
            let mut v: Value = serde_json::from_slice(&signed(laptop(10, "Anna"), &stranger)).unwrap();
            v["station"]["key_id"] = keys::key_id(&station.verifying_key()).into();
            v["signature"]["key_id"] = keys::key_id(&station.verifying_key()).into();
            serde_json::to_vec(&v).unwrap()
        }),
        ("signature of other content".into(), {
            let mut v: Value = serde_json::from_slice(&valid).unwrap();
            v["operator"]["name"] = "Someone Else".into();
            serde_json::to_vec(&v).unwrap()
        }),
        ("duplicate member".into(), {
            let text = String::from_utf8(valid.clone()).unwrap();
            text.replacen("\"schema\":", "\"schema\": \"x\", \"schema\":", 1)
                .into_bytes()
        }),
        ("unknown member".into(), mutate(&|v| v["colour"] = "blue".into())),
        (
            "unknown member in a disk".into(),
            mutate(&|v| v["disks"][0]["colour"] = "blue".into()),
        ),
        (
            "another schema".into(),
            mutate(&|v| v["schema"] = "lapterop.certificate/v9".into()),
        ),
        (
            "id not a UUIDv7".into(),
            mutate(&|v| v["id"] = "../../etc/passwd".into()),
        ),
        ("SQL in the id".into(), mutate(&|v| v["id"] = "x' OR '1'='1".into())),
        (
            "issued in the year 10000".into(),
            mutate(&|v| v["issued_at"] = "10000-01-01T00:00:00Z".into()),
        ),
        (
            "a string of 5000 bytes".into(),
            mutate(&|v| v["operator"]["name"] = "a".repeat(5000).into()),
        ),
        (
            "an integer past 2^53".into(),
            mutate(&|v| v["disks"][0]["capacity_bytes"] = json!(9_007_199_254_740_993u64)),
        ),
        (
            "a negative size".into(),
            mutate(&|v| v["disks"][0]["capacity_bytes"] = json!(-512)),
        ),
        (
            "a float size".into(),
            mutate(&|v| v["disks"][0]["capacity_bytes"] = json!(512.5)),
        ),
        ("no disks".into(), mutate(&|v| v["disks"] = json!([]))),
        (
            "erased with a failed step".into(),
            mutate(&|v| {
                v["disks"][1]["steps"][1]["outcome"] = "failed".into();
                v["disks"][1]["steps"][1]["reason"] = "EIO".into();
            }),
        ),
        (
            "erased with mismatches".into(),
            mutate(&|v| {
                v["disks"][0]["verification"]["mismatched_blocks"] = 8.into();
                v["disks"][0]["verification"]["error_ranges"] =
                    json!([{"op": "mismatch", "lba": 0, "count": 8, "errno": 0}]);
            }),
        ),
        (
            "erased without a read-back".into(),
            mutate(&|v| {
                v["disks"][0].as_object_mut().unwrap().remove("verification");
            }),
        ),
        (
            "a purge without firmware evidence".into(),
            mutate(&|v| {
                v["disks"][0]["steps"][0].as_object_mut().unwrap().remove("firmware");
            }),
        ),
        (
            "a hidden area left behind, still erased".into(),
            mutate(&|v| {
                v["disks"][1]["hidden_areas"]["hpa"] =
                    json!({"visible_sectors": 900, "native_sectors": 1000, "action": "left-in-place"});
            }),
        ),
        (
            "a wiped disk also not touched".into(),
            mutate(&|v| {
                v["not_touched"] = json!([{"device": v["disks"][0]["device"].clone(), "transport": "usb",
                                       "capacity_bytes": 512, "reason": "external"}]);
            }),
        ),
        (
            "an unknown reason to leave a disk".into(),
            mutate(&|v| {
                v["not_touched"] =
                    json!([{"device": "sdz", "transport": "usb", "capacity_bytes": 512, "reason": "bored"}]);
            }),
        ),
        (
            "an install on a disk not in the certificate".into(),
            mutate(&|v| {
                v["install"] = json!({"status": "installed", "image_name": "x", "image_version": "1",
                "root_hash": "00".repeat(32), "signer_key_id": "00".repeat(16), "target_device": "sdz",
                "bytes_written": 1, "chunks_verified": 1, "chunk_mismatches": 0,
                "started_at": "2026-11-26T10:00:00Z", "finished_at": "2026-11-26T10:01:00Z"});
            }),
        ),
    ];
    let crafted = cases.len();
    // Every eighth hex digit of the signature changed, and a spread of bytes of the document itself.
    let text = String::from_utf8(valid.clone()).unwrap();
    let sig_at = text.find("\"value\": \"").unwrap() + "\"value\": \"".len();
    for i in (0..128).step_by(8) {
        let mut b = valid.clone();
        b[sig_at + i] = if b[sig_at + i] == b'0' { b'1' } else { b'0' };
        cases.push((format!("signature hex digit {i} changed"), b));
    }
    let signature_digits = cases.len() - crafted;
    for i in (0..valid.len()).step_by(97) {
        let mut b = valid.clone();
        b[i] ^= 0x01;
        if serde_json::from_slice::<Value>(&b).is_ok_and(|v| v == serde_json::from_slice::<Value>(&valid).unwrap()) {
            continue; // white space that changes nothing (' ' ^ 1 is '!' and breaks JSON anyway)
        }
        cases.push((format!("document byte {i} flipped"), b));
    }

    let mut rejected = 0;
    for (what, body) in &cases {
        // An oversized body is refused from its declared length before it is read; the client may
        // not even get to send it.
        let (status, answer) = if body.len() > 1 << 20 {
            post_headers_only(s.port, body.len())
        } else {
            s.post(body)
        };
        assert!(
            (400..500).contains(&status),
            "{what}: answered {status}, not a refusal: {answer}"
        );
        assert!(
            answer.contains("\"error\""),
            "{what}: the refusal says nothing: {answer}"
        );
        rejected += 1;
    }
    let stored = s.count("certificates") + s.count("log") + s.count("batches");
    let line = format!(
        "hostile-input battery: requests tried {} ({crafted} crafted, {signature_digits} signature digits, {} \
         document bytes), rejected {rejected}, stored {stored}",
        cases.len(),
        cases.len() - crafted - signature_digits
    );
    // Past libtest's capture, like a skip: the counts are part of the test's report.
    lapterop_testkit::report(&line);
    assert_eq!(stored, 0, "{line}");
    assert_eq!(rejected, cases.len());

    // The honest certificate still goes in afterwards: the refusals changed nothing.
    let (status, answer) = s.post(&valid);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(s.count("certificates"), 1);
}
