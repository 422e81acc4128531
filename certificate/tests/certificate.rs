//! Integration tests of the certificate format: golden fixtures, tamper detection, hostile input, the
//! `lapterop-cert` binary, and an independent verifier (Python, RFC 8785 + Ed25519 from PyPI).
//!
//! `UPDATE_FIXTURES=1 cargo test -p lapterop-certificate` rewrites the fixtures and the schema after a
//! deliberate format change; commit them with the change.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a test failure

use std::path::{Path, PathBuf};
use std::process::Command;

use lapterop_certificate::{self as cert, canonical, chain, keys, sample, Certificate, OutcomeStatus, ParseError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn station() -> cert::SigningKey {
    keys::fixture_key("station")
}

fn signed(mut c: Certificate) -> Certificate {
    c.sign(&station()).expect("sample certificates are valid");
    c
}

fn samples() -> Vec<(&'static str, Certificate)> {
    let id = keys::key_id(&station().verifying_key());
    vec![
        ("erased-laptop", signed(sample::erased_laptop(id.clone()))),
        ("exceptions-laptop", signed(sample::exceptions_laptop(id))),
    ]
}

/// Compares `actual` with the committed file, or rewrites it under UPDATE_FIXTURES=1.
fn golden(path: &Path, actual: &[u8]) {
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        expected == actual,
        "{} differs from what the code produces; if the format change is deliberate, run with UPDATE_FIXTURES=1 and commit",
        path.display()
    );
}

#[test]
fn golden_fixtures_pin_documents_canonical_bytes_and_signatures() {
    golden(
        &fixtures().join("station.pub"),
        format!("{}\n", hex::encode(station().verifying_key().as_bytes())).as_bytes(),
    );
    for (name, c) in samples() {
        let doc = c.to_pretty_json().unwrap();
        golden(&fixtures().join(format!("{name}.json")), doc.as_bytes());
        let input = canonical::signing_input(&c.to_value().unwrap()).unwrap();
        golden(&fixtures().join(format!("{name}.canonical")), &input);
        // The committed document verifies with the committed public key.
        let key = keys::read_public_key(&fixtures().join("station.pub")).unwrap();
        let back = cert::verify(doc.as_bytes(), &key).unwrap();
        assert_eq!(back, c);
    }
}

#[test]
fn fixture_outcomes_are_what_their_names_say() {
    let s = samples();
    let outcomes: Vec<Vec<OutcomeStatus>> = s
        .iter()
        .map(|(_, c)| c.disks.iter().map(|d| d.outcome.status).collect())
        .collect();
    assert_eq!(outcomes[0], [OutcomeStatus::Erased, OutcomeStatus::Erased]);
    assert_eq!(
        outcomes[1],
        [OutcomeStatus::ErasedWithExceptions, OutcomeStatus::NotErased]
    );
}

#[test]
fn schema_in_docs_is_generated_from_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/certificate.schema.json");
    golden(&path, cert::schema_json().as_bytes());
    // The schema knows the outcome values and forbids unknown fields.
    let schema = cert::schema_json();
    assert!(schema.contains("erased-with-exceptions"));
    assert!(schema.contains("\"additionalProperties\": false"));
}

/// Every single-byte change of the canonical content (the signed bytes plus the signature) is caught.
#[test]
fn flipping_any_byte_of_the_canonical_content_fails_verification() {
    let key = station().verifying_key();
    for (name, c) in samples() {
        let full = canonical::canonical_bytes(&c.to_value().unwrap()).unwrap();
        assert!(
            cert::verify(&full, &key).is_ok(),
            "{name}: the canonical form itself verifies"
        );
        for i in 0..full.len() {
            for bit in [0x01u8, 0x20, 0x80] {
                let mut tampered = full.clone();
                tampered[i] ^= bit;
                assert!(
                    cert::verify(&tampered, &key).is_err(),
                    "{name}: flipping bit {bit:#x} of byte {i} went unnoticed"
                );
            }
        }
    }
}

#[test]
fn another_key_or_a_missing_signature_is_refused() {
    let (_, c) = samples().remove(0);
    let doc = c.to_pretty_json().unwrap();
    let other = keys::fixture_key("someone else").verifying_key();
    let err = cert::verify(doc.as_bytes(), &other).unwrap_err().to_string();
    assert!(err.contains("key_id"), "{err}");
    let mut unsigned = c.clone();
    unsigned.signature = None;
    let err = cert::verify(
        unsigned.to_pretty_json().unwrap().as_bytes(),
        &station().verifying_key(),
    )
    .unwrap_err();
    assert!(matches!(err, cert::VerifyError::Unsigned), "{err}");
}

fn violation_fields(bytes: &[u8]) -> Vec<String> {
    match cert::parse(bytes) {
        Err(ParseError::Invalid(v)) => v.into_iter().map(|v| v.field).collect(),
        other => panic!("expected field violations, got {other:?}"),
    }
}

fn mutated(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let (_, c) = samples().remove(0);
    let mut v = c.to_value().unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn broken_invariants_are_named_by_field() {
    // An erased disk with a failed step.
    let doc = mutated(|v| {
        v["disks"][1]["steps"][1]["outcome"] = "failed".into();
        v["disks"][1]["steps"][1]["reason"] = "EIO".into();
    });
    assert!(violation_fields(&doc).contains(&"disks[1].outcome.status".to_owned()));
    // An erased disk with a verify mismatch.
    let doc = mutated(|v| {
        v["disks"][0]["verification"]["mismatched_blocks"] = 8.into();
        v["disks"][0]["verification"]["error_ranges"] =
            serde_json::json!([{"op": "mismatch", "lba": 0, "count": 8, "errno": 0}]);
    });
    assert!(violation_fields(&doc).contains(&"disks[0].outcome.status".to_owned()));
    // A negative size.
    let doc = mutated(|v| v["disks"][0]["capacity_bytes"] = (-512).into());
    assert_eq!(violation_fields(&doc), ["disks[0].capacity_bytes"]);
    // A size that is not a whole number of sectors, and a read-back of more than the disk.
    let doc = mutated(|v| v["disks"][0]["capacity_bytes"] = 1000.into());
    let fields = violation_fields(&doc);
    assert!(fields.contains(&"disks[0].capacity_bytes".to_owned()), "{fields:?}");
    assert!(
        fields.contains(&"disks[0].verification.bytes_read".to_owned()),
        "{fields:?}"
    );
    // Missing evidence: an erased disk that was never read back.
    let doc = mutated(|v| {
        v["disks"][0].as_object_mut().unwrap().remove("verification");
    });
    assert!(violation_fields(&doc).contains(&"disks[0].verification".to_owned()));
    // A firmware purge without its evidence.
    let doc = mutated(|v| {
        v["disks"][0]["steps"][0].as_object_mut().unwrap().remove("firmware");
    });
    assert!(violation_fields(&doc).contains(&"disks[0].steps[0].firmware".to_owned()));
    // A hidden area left behind cannot be erased.
    let doc = mutated(|v| {
        v["disks"][1]["hidden_areas"]["hpa"] =
            serde_json::json!({"visible_sectors": 900, "native_sectors": 1000, "action": "left-in-place"});
    });
    assert!(violation_fields(&doc).contains(&"disks[1].outcome.status".to_owned()));
    // Unknown fields, wrong types and missing fields name the field.
    let doc = mutated(|v| v["disks"][0]["colour"] = "blue".into());
    let fields = violation_fields(&doc);
    assert_eq!(fields, ["disks[0].colour"], "{fields:?}");
    let doc = mutated(|v| v["disks"][0]["rotational"] = "no".into());
    assert_eq!(violation_fields(&doc), ["disks[0].rotational"]);
    let doc = mutated(|v| {
        v["operator"].as_object_mut().unwrap().remove("name");
    });
    assert_eq!(violation_fields(&doc), ["operator"]);
    // A disk left alone cannot also be a wiped one, and its reason is one of the known words.
    let doc = mutated(|v| v["not_touched"][0]["device"] = v["disks"][0]["device"].clone());
    assert_eq!(violation_fields(&doc), ["not_touched[0].device"]);
    let doc = mutated(|v| v["not_touched"][0]["reason"] = "felt-like-it".into());
    assert_eq!(violation_fields(&doc), ["not_touched[0].reason"]);
}

#[test]
fn an_install_names_its_image_unless_it_failed_before_the_image_was_read() {
    let strip = |v: &mut serde_json::Value, keys: &[&str]| {
        for k in keys {
            v["install"].as_object_mut().unwrap().remove(*k);
        }
    };
    let identity = ["image_name", "image_version", "root_hash", "signer_key_id"];
    // Installed without saying which image: refused.
    let doc = mutated(|v| strip(v, &identity));
    assert!(violation_fields(&doc).contains(&"install.root_hash".to_owned()));
    // Half an identity: refused.
    let doc = mutated(|v| strip(v, &["root_hash"]));
    assert!(violation_fields(&doc).contains(&"install.image_name".to_owned()));
    // Failed before the image could be opened (missing file, wrong key): no identity, with the reason.
    let doc = mutated(|v| {
        strip(v, &identity);
        v["install"]["status"] = "failed".into();
        v["install"]["reason"] = "images/pupil.lapos: signed by another key; nothing was written".into();
        v["install"]["bytes_written"] = 0.into();
        v["install"]["chunks_verified"] = 0.into();
    });
    let (c, _) = cert::parse(&doc).unwrap();
    assert_eq!(c.install.unwrap().image_label(), "(image not read)");
}

#[test]
fn unknown_schema_versions_are_refused() {
    let doc = mutated(|v| v["schema"] = "lapterop.certificate/v2".into());
    assert!(matches!(cert::parse(&doc), Err(ParseError::UnknownSchema(s)) if s.ends_with("v2")));
}

#[test]
fn hostile_documents_give_clear_errors_not_panics() {
    let (_, c) = samples().remove(0);
    let doc = c.to_pretty_json().unwrap();
    // Truncated at every 97th byte.
    for cut in (0..doc.len()).step_by(97) {
        assert!(cert::parse(&doc.as_bytes()[..cut]).is_err());
    }
    // A 10 MB string: refused by size before parsing.
    let huge = mutated(|v| v["operator"]["name"] = "x".repeat(10_000_000).into());
    assert!(matches!(cert::parse(&huge), Err(ParseError::TooLarge { .. })));
    // A long string under the size limit: refused by field.
    let long = mutated(|v| v["operator"]["name"] = "x".repeat(100_000).into());
    assert_eq!(violation_fields(&long), ["operator.name"]);
    // Deeply nested arrays: serde_json's recursion limit, as a syntax error.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(cert::parse(nested.as_bytes()), Err(ParseError::Syntax(m)) if m.contains("recursion")));
    let nested_field = format!(
        "{{\"schema\":\"lapterop.certificate/v1\",\"x\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert!(cert::parse(nested_field.as_bytes()).is_err());
    // Numbers JSON cannot carry exactly.
    let big = mutated(|v| v["disks"][0]["capacity_bytes"] = u64::MAX.into());
    assert_eq!(violation_fields(&big)[0], "disks[0].capacity_bytes");
    let frac = String::from_utf8(mutated(|_| {}))
        .unwrap()
        .replace("\"bytes_read\":256060514304", "\"bytes_read\":2.5e11");
    assert!(violation_fields(frac.as_bytes())
        .iter()
        .any(|f| f.ends_with("bytes_read")));
    // Not an object, not UTF-8, empty.
    for bad in [&b"[]"[..], b"\"x\"", b"\xff\xfe{}", b""] {
        assert!(cert::parse(bad).is_err());
    }
    // Duplicate members.
    let dup = String::from_utf8(mutated(|_| {}))
        .unwrap()
        .replacen("{", "{\"id\":\"x\",", 1);
    assert!(cert::parse(dup.as_bytes()).is_err());
}

#[test]
fn receipts_sign_verify_and_chain() {
    let server = keys::fixture_key("server");
    let (_, c) = samples().remove(0);
    let cert_hash = cert::document_blake3(&c.to_value().unwrap()).unwrap();
    let received_at = "2026-11-26T10:31:00Z".to_owned();
    let mut r = cert::Receipt {
        schema: cert::RECEIPT_SCHEMA_V1.to_owned(),
        certificate_id: c.id.clone(),
        certificate_blake3: cert_hash.clone(),
        received_at: received_at.clone(),
        position: 1,
        previous_hash: chain::GENESIS.to_owned(),
        entry_hash: chain::entry_hash(chain::GENESIS, 1, &cert_hash, &received_at),
        donor_url: "https://proof.example/d/abc".to_owned(),
        signature: None,
    };
    chain::sign_receipt(&mut r, &server).unwrap();
    let bytes = serde_json::to_vec_pretty(&r).unwrap();
    assert_eq!(chain::verify_receipt(&bytes, &server.verifying_key()).unwrap(), r);
    // A receipt whose position was changed no longer matches its entry hash.
    let mut moved = r.clone();
    moved.position = 2;
    let err = chain::verify_receipt(&serde_json::to_vec(&moved).unwrap(), &server.verifying_key()).unwrap_err();
    assert!(matches!(err, chain::ReceiptError::EntryHash), "{err}");
    // Signed by the station key instead of the server key.
    let err = chain::verify_receipt(&bytes, &station().verifying_key()).unwrap_err();
    assert!(matches!(err, chain::ReceiptError::Signature(_)), "{err}");
}

// ---- the lapterop-cert binary ----

fn cert_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lapterop-cert"))
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lapterop-cert-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn cli_keygen_writes_a_private_key_only_the_owner_reads() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("keygen");
    let out = cert_bin()
        .args(["keygen", "--out"])
        .arg(dir.join("station"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = std::fs::metadata(dir.join("station.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let public = keys::read_public_key(&dir.join("station.pub")).unwrap();
    let secret = keys::read_signing_key(&dir.join("station.key")).unwrap();
    assert_eq!(secret.verifying_key(), public);
    // Never overwrites an existing key.
    let again = cert_bin()
        .args(["keygen", "--out"])
        .arg(dir.join("station"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        keys::read_signing_key(&dir.join("station.key")).unwrap().to_bytes(),
        secret.to_bytes()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cli_verify_exit_codes() {
    let dir = tempdir("verify");
    let pubkey = fixtures().join("station.pub");
    let good = fixtures().join("erased-laptop.json");
    let run = |file: &Path, key: &Path| {
        cert_bin()
            .arg("verify")
            .arg(file)
            .arg("--key")
            .arg(key)
            .output()
            .unwrap()
    };

    let out = run(&good, &pubkey);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // Tampered: one letter of the operator's name changed.
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replacen("An Peeters", "An Peeterz", 1);
    let tampered = dir.join("tampered.json");
    std::fs::write(&tampered, text).unwrap();
    let out = run(&tampered, &pubkey);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signature does not match"));
    // Invalid: an erased disk with a failed step.
    let text =
        std::fs::read_to_string(&good)
            .unwrap()
            .replacen("\"outcome\": \"completed\"", "\"outcome\": \"failed\"", 1);
    let invalid = dir.join("invalid.json");
    std::fs::write(&invalid, text).unwrap();
    let out = run(&invalid, &pubkey);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("disks[0]"));
    // Unreadable input and usage errors.
    assert_eq!(run(&dir.join("missing.json"), &pubkey).status.code(), Some(2));
    assert_eq!(run(&good, &dir.join("missing.pub")).status.code(), Some(2));
    assert_eq!(cert_bin().arg("verify").output().unwrap().status.code(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cli_show_and_schema() {
    let out = cert_bin()
        .arg("show")
        .arg(fixtures().join("exceptions-laptop.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "NOT ERASED",
        "ERASED WITH EXCEPTIONS",
        "W62ABCDE",
        "S41GNX0M123456",
        "LENOVO",
        "An Peeters",
    ] {
        assert!(text.contains(needle), "show lacks {needle:?}:\n{text}");
    }
    let out = cert_bin().arg("schema").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), cert::schema_json());
}

// ---- an independent verifier ----

/// Python with `rfc8785`, `cryptography` and `blake3` from PyPI (set up by scripts/setup.sh).
fn python() -> Option<PathBuf> {
    lapterop_testkit::python("the independent Python verifier")
}

#[test]
fn an_independent_implementation_gets_the_same_bytes_and_accepts_the_signature() {
    let Some(python) = python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent_verify.py");
    let dir = tempdir("independent");
    // The committed fixtures, and a certificate signed just now with a fresh key.
    let key = keys::generate().unwrap();
    keys::write_keypair(&dir.join("fresh"), &key).unwrap();
    let mut fresh = sample::exceptions_laptop(String::new());
    fresh.id = cert::new_id().unwrap();
    fresh.operator.name = "Zoë \"Ω\" <script>alert(1)</script> 😀 \u{1}".to_owned();
    fresh.sign(&key).unwrap();
    std::fs::write(dir.join("fresh.json"), fresh.to_pretty_json().unwrap()).unwrap();
    std::fs::write(
        dir.join("fresh.canonical"),
        canonical::signing_input(&fresh.to_value().unwrap()).unwrap(),
    )
    .unwrap();
    let mut cases = vec![(
        dir.join("fresh.json"),
        dir.join("fresh.canonical"),
        dir.join("fresh.pub"),
    )];
    for (name, _) in samples() {
        cases.push((
            fixtures().join(format!("{name}.json")),
            fixtures().join(format!("{name}.canonical")),
            fixtures().join("station.pub"),
        ));
    }
    for (doc, canonical, public) in cases {
        let out = Command::new(&python)
            .arg(&script)
            .arg(&doc)
            .arg(&canonical)
            .arg(&public)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "independent verifier rejected {}:\n{}{}",
            doc.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // And it is not a verifier that accepts anything: a tampered copy must fail.
        let tampered = dir.join("tampered.json");
        let text = std::fs::read_to_string(&doc).unwrap().replacen("\"sda\"", "\"sdb\"", 1);
        std::fs::write(&tampered, text).unwrap();
        let out = Command::new(&python)
            .arg(&script)
            .arg(&tampered)
            .arg("-")
            .arg(&public)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "independent verifier accepted a tampered {}",
            doc.display()
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The agent's signer applies the same rules as every checker: a certificate that claims `erased`
/// with a failed step, or with a hidden area it could not check, is never signed.
#[test]
fn the_signer_refuses_what_a_checker_refuses() {
    let (_, good) = samples().remove(0);
    let mut failed = good.clone();
    failed.disks[1].steps[1].outcome = cert::StepOutcome::Failed;
    failed.disks[1].steps[1].reason = Some("EIO".into());
    let mut unchecked = good.clone();
    unchecked.disks[1].hidden_areas.check = cert::HiddenAreaCheck::Unavailable;
    for (what, mut c) in [("a failed step", failed), ("an unchecked hidden area", unchecked)] {
        match c.sign(&station()) {
            Err(cert::SignError::Invalid(v)) => {
                assert!(v.iter().any(|v| v.field == "disks[1].outcome.status"), "{what}: {v:?}")
            }
            other => panic!("{what}: signed anyway: {other:?}"),
        }
        assert!(c.signature.is_none(), "{what}: a signature was left on it");
    }
}

/// The parser's limits sit exactly where `docs/security.md` says: a 4096-byte string, an integer of
/// 2^53 - 1 and a 1 MiB document pass the limit checks; one more byte, 2^53, one more byte fail.
#[test]
fn parser_limits_are_exact() {
    let messages = |bytes: &[u8]| -> Vec<String> {
        match cert::parse(bytes) {
            Ok(_) => Vec::new(),
            Err(ParseError::Invalid(v)) => v.into_iter().map(|v| format!("{}: {}", v.field, v.message)).collect(),
            Err(e) => vec![e.to_string()],
        }
    };
    let at = |n: usize| mutated(|v| v["operator"]["name"] = "x".repeat(n).into());
    assert!(messages(&at(4096)).is_empty(), "{:?}", messages(&at(4096)));
    assert_eq!(violation_fields(&at(4097)), ["operator.name"]);
    let int = |n: u64| mutated(|v| v["disks"][0]["steps"][0]["bytes"] = n.into());
    let limit = (1u64 << 53) - 1;
    assert!(
        !messages(&int(limit)).iter().any(|m| m.contains("2^53")),
        "{:?}",
        messages(&int(limit))
    );
    assert!(
        messages(&int(limit + 1)).iter().any(|m| m.contains("2^53")),
        "{:?}",
        messages(&int(limit + 1))
    );
    let doc = mutated(|_| {});
    let pad = |total: usize| [doc.clone(), vec![b' '; total - doc.len()]].concat();
    let full = pad(cert::validate::MAX_DOCUMENT_BYTES);
    assert!(!matches!(cert::parse(&full), Err(ParseError::TooLarge { .. })));
    assert!(matches!(
        cert::parse(&pad(cert::validate::MAX_DOCUMENT_BYTES + 1)),
        Err(ParseError::TooLarge { .. })
    ));
}

/// The schema without its words: what the browser verifier needs to check types.
fn compact_schema(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "description" | "title" | "$schema" | "$id"))
                .map(|(k, x)| {
                    let x = match (k.as_str(), x) {
                        // Maps of named schemas: their keys are field or type names, never stripped.
                        ("properties" | "$defs", Value::Object(m)) => {
                            Value::Object(m.iter().map(|(n, s)| (n.clone(), compact_schema(s))).collect())
                        }
                        _ => compact_schema(x),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(compact_schema).collect()),
        other => other.clone(),
    }
}

/// docs/verify.html (the browser verifier) checks types with the schema generated from the Rust
/// types; it must be this code's schema.
#[test]
fn browser_verifier_carries_the_generated_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/verify.html");
    let html = std::fs::read_to_string(&path).unwrap();
    let (open, close) = ("<script type=\"application/json\" id=\"schema\">\n", "\n</script>");
    let start = html.find(open).expect("the schema block") + open.len();
    let end = start + html[start..].find(close).expect("the schema block's end");
    let schema: serde_json::Value = serde_json::from_str(&cert::schema_json()).unwrap();
    let expected = serde_json::to_string(&compact_schema(&schema)).unwrap();
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, format!("{}{expected}{}", &html[..start], &html[end..])).unwrap();
        return;
    }
    assert!(
        html[start..end] == expected,
        "{} carries another schema than the code's; run with UPDATE_FIXTURES=1 and commit",
        path.display()
    );
}

/// A PDF with `files` attached the way the server's PDF writer does it (uncompressed
/// `/EmbeddedFile` streams named by `/Filespec` dictionaries), with a correct cross-reference table.
fn pdf_with(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = vec![Vec::new(), b"<</Type/Pages/Kids[]/Count 0>>".to_vec()];
    let mut names = String::new();
    for (name, content) in files {
        let stream = objects.len() + 1;
        let mut s = format!("<</Type/EmbeddedFile/Length {}>>stream\n", content.len()).into_bytes();
        s.extend_from_slice(content);
        s.extend_from_slice(b"\nendstream");
        objects.push(s);
        objects.push(
            format!("<</Type/Filespec/F({name})/UF({name})/EF<</F {stream} 0 R/UF {stream} 0 R>>>>").into_bytes(),
        );
        names.push_str(&format!("({name}) {} 0 R ", stream + 1));
    }
    objects[0] = format!("<</Type/Catalog/Pages 2 0 R/Names<</EmbeddedFiles<</Names[{names}]>>>>>>").into_bytes();
    let mut pdf = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(o);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<</Size {}/Root 1 0 R>>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

#[test]
fn cli_verify_pdf_checks_the_attachments_and_says_where_the_keys_came_from() {
    let dir = tempdir("verify-pdf");
    let doc = std::fs::read(fixtures().join("erased-laptop.json")).unwrap();
    let station_pub = std::fs::read(fixtures().join("station.pub")).unwrap();
    let server = keys::fixture_key("server");
    let server_pub = format!("{}\n", hex::encode(server.verifying_key().as_bytes()));
    let (c, value) = cert::parse(&doc).unwrap();
    let certificate_blake3 = cert::document_blake3(&value).unwrap();
    let received_at = "2026-11-26T15:00:00Z".to_owned();
    let mut receipt = cert::Receipt {
        schema: cert::RECEIPT_SCHEMA_V1.to_owned(),
        certificate_id: c.id.clone(),
        entry_hash: chain::entry_hash(chain::GENESIS, 1, &certificate_blake3, &received_at),
        certificate_blake3,
        received_at,
        position: 1,
        previous_hash: chain::GENESIS.to_owned(),
        donor_url: "https://example.invalid/d/0".to_owned(),
        signature: None,
    };
    chain::sign_receipt(&mut receipt, &server).unwrap();
    let receipt = serde_json::to_vec_pretty(&receipt).unwrap();
    let pdf = |certificate: &[u8]| {
        pdf_with(&[
            ("certificate.json", certificate),
            ("receipt.json", &receipt),
            ("station.pub", &station_pub),
            ("server.pub", server_pub.as_bytes()),
        ])
    };
    let run = |name: &str, bytes: &[u8], args: &[&Path]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let mut cmd = cert_bin();
        cmd.arg("verify-pdf").arg(&path);
        if let [station, server] = args {
            cmd.arg("--station-key").arg(station).arg("--server-key").arg(server);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };

    let genuine = pdf(&doc);
    let (code, out) = run("genuine.pdf", &genuine, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("valid: certificate") && out.contains("valid: receipt for this certificate at log position 1")
    );
    assert!(
        out.contains("note: the station and server keys were taken from the PDF itself"),
        "{out}"
    );
    assert!(out.contains("integrity") && out.contains("--station-key"), "{out}");
    // Pinned keys: no note; a wrong station key fails.
    let server_file = dir.join("server.pub");
    std::fs::write(&server_file, &server_pub).unwrap();
    let (code, out) = run("pinned.pdf", &genuine, &[&fixtures().join("station.pub"), &server_file]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("note:"), "{out}");
    let (code, out) = run("wrong-key.pdf", &genuine, &[&server_file, &server_file]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("INVALID: signature.key_id is"), "{out}");
    // One changed byte in the attached certificate.
    let text = String::from_utf8(doc.clone())
        .unwrap()
        .replacen("An Peeters", "An Peeterz", 1);
    let (code, out) = run("changed.pdf", &pdf(text.as_bytes()), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("INVALID: the signature does not match the content"),
        "{out}"
    );
    assert!(
        out.contains("INVALID: the receipt is for another certificate"),
        "the receipt names the original: {out}"
    );
    // Truncated, and not a PDF.
    let (code, out) = run("cut.pdf", &genuine[..genuine.len() / 2], &[]);
    assert_eq!(code, Some(1));
    assert!(out.contains("INVALID: the PDF is cut short"), "{out}");
    let (code, out) = run("json.pdf", &doc, &[]);
    assert_eq!(code, Some(1));
    assert!(out.contains("not a PDF file"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}
