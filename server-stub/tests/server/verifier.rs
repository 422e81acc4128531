//! The offline verifier (`docs/verify.html`, served at `/verify`) in headless Chromium opened from
//! `file://` with no network, and the proof the donor PDF carries (poppler's `pdfdetach` reads the
//! attachments; `lapterop_certificate::attachments::verify_pdf` is what `lapterop-cert verify-pdf` runs).

use std::path::{Path, PathBuf};
use std::process::Command;

use lapterop_certificate::tlog::{self, TreeHead};
use lapterop_certificate::{self as cert, chain, keys, Receipt};
use serde_json::Value;

use crate::fixtures::{laptop, signed};
use crate::helpers::*;

/// A certificate posted to a fresh server, and the files a donor downloads, saved under `dir`.
struct Proof {
    cert: Vec<u8>,
    receipt: String,
    station_pub: String,
    server_pub: String,
    pdf: Vec<u8>,
    verifier: String,
    donor_page: String,
    /// The donor's `inclusion.json` (tree of 3: two more certificates came after this one).
    inclusion: String,
    /// The inclusion proof of the third certificate (leaf 2), with the same signed head.
    other_inclusion: String,
    /// The proof of this certificate in the tree of 2, without a head.
    inclusion_at_2: String,
    /// The current signed tree head (3 leaves).
    sth: String,
}

fn proof(dir: &Path) -> Proof {
    let key = enrol(dir, "bench-1", "verifier station");
    let s = Server::start(dir);
    let (status, receipt) = s.post(&signed(laptop(61, "Anna Peeters"), &key));
    assert_eq!(status, 201, "{receipt}");
    let r = chain::verify_receipt(receipt.as_bytes(), &s.server_key()).unwrap();
    let page = r.donor_url.clone();
    let mut last = String::new();
    for n in [62, 63] {
        let (status, later) = s.post(&signed(laptop(n, "Anna Peeters"), &key));
        assert_eq!(status, 201, "{later}");
        last = chain::verify_receipt(later.as_bytes(), &s.server_key())
            .unwrap()
            .donor_url;
    }
    let text = |p: &str| String::from_utf8(get_bytes(&format!("{page}/{p}"))).unwrap();
    let verifier = ureq::get(&format!("{}/verify", s.url)).call().unwrap();
    assert_eq!(verifier.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert!(verifier
        .header("Content-Security-Policy")
        .is_some_and(|c| c.starts_with("default-src 'none'")));
    let p = Proof {
        cert: get_bytes(&format!("{page}/certificate.json")),
        receipt: text("receipt.json"),
        station_pub: text("station.pub"),
        server_pub: text("server.pub"),
        pdf: get_bytes(&format!("{page}/certificate.pdf?lang=en")),
        verifier: verifier.into_string().unwrap(),
        donor_page: get_with(&page, "Accept-Language", "en").unwrap().1,
        inclusion: text("inclusion.json"),
        other_inclusion: String::from_utf8(get_bytes(&format!("{last}/inclusion.json"))).unwrap(),
        inclusion_at_2: text("inclusion.json?tree_size=2"),
        sth: get(&format!("{}/api/v1/log/sth", s.url)).unwrap().1,
    };
    assert_eq!(p.receipt, receipt, "the receipt the station got is the donor's");
    p
}

/// The verifier page as the sources carry it.
const VERIFIER: &str = include_str!("../../../docs/verify.html");

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Replaces the first `from` in `bytes` with `to` (same length, so a PDF's offsets stay right).
fn swap(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = find(bytes, from).unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(from)));
    let mut out = bytes.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The same certificate, signed by a key the server never enrolled (same length: only key ids and
/// the signature change).
fn signed_by_stranger(cert_json: &[u8]) -> Vec<u8> {
    let (mut c, _) = cert::parse(cert_json).unwrap();
    c.sign(&keys::fixture_key("stranger station")).unwrap();
    c.to_pretty_json().unwrap().into_bytes()
}

/// The same receipt signed by another server key, written byte for byte like the original.
fn receipt_from_other_server(receipt: &str) -> String {
    let mut r: Receipt = serde_json::from_str(receipt).unwrap();
    let old = r.signature.clone().unwrap();
    chain::sign_receipt(&mut r, &keys::fixture_key("another server")).unwrap();
    let new = r.signature.unwrap();
    receipt
        .replace(&old.key_id, &new.key_id)
        .replace(&old.value, &new.value)
}

/// One check in the page: a fresh load, the files chosen through the file inputs, then `Check`.
fn check(b: &Browser, page: &str, inputs: &[(&str, &Path)]) -> (String, String) {
    b.goto(page);
    b.wait("the verifier", |b| b.js_text("h1") == "Lapterop certificate verifier");
    for (id, path) in inputs {
        b.type_into(&format!("#{id}"), path.to_str().unwrap());
    }
    b.click("#check");
    b.wait("the verdict", |b| {
        matches!(b.js_text("#verdict").as_str(), "VALID" | "INVALID")
    });
    (b.js_text("#verdict"), b.js_text("#reason"))
}

#[test]
fn verifier_from_file_checks_the_four_files_and_the_pdf_with_no_network() {
    if !require_browser() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p = proof(d);
    assert_eq!(p.verifier, VERIFIER, "the server serves docs/verify.html as it is");
    assert!(
        p.donor_page.contains("href=\"/verify\"")
            && p.donor_page.contains("This proof does not depend on this website"),
        "the donor page points to the verifier"
    );
    // Saved to disk; the server is gone by the time the browser opens it.
    let page = format!("file://{}", write(d, "verify.html", &p.verifier).display());
    let cert = write(d, "certificate.json", &p.cert);
    let station = write(d, "station.pub", &p.station_pub);
    let receipt = write(d, "receipt.json", &p.receipt);
    let server = write(d, "server.pub", &p.server_pub);
    let pdf = write(d, "certificate.pdf", &p.pdf);

    let b = Browser::offline();
    // BLAKE3 in the page against the official test vectors.
    let vectors = include_str!("../data/blake3_vectors.json");
    b.goto(&page);
    let failed = b.script(&format!(
        "const v = {vectors}; return v.cases.filter(c => {{ const b = new Uint8Array(c.input_len); \
         for (let i = 0; i < b.length; i++) b[i] = i % 251; return window.Lapterop.blake3hex(b) !== c.hash; }})\
         .map(c => c.input_len)"
    ));
    assert_eq!(
        failed,
        Value::Array(vec![]),
        "BLAKE3 vectors that failed (input lengths)"
    );
    assert_eq!(
        b.script("return window.isSecureContext && typeof crypto.subtle.verify === 'function'"),
        Value::Bool(true),
        "WebCrypto is there for a file:// page"
    );

    let four = |c: &Path, s: &Path, r: &Path, k: &Path| {
        check(
            &b,
            &page,
            &[
                ("cert-file", c),
                ("station-file", s),
                ("receipt-file", r),
                ("server-file", k),
            ],
        )
    };
    let (verdict, reason) = four(&cert, &station, &receipt, &server);
    assert_eq!(verdict, "VALID", "{reason}");
    assert!(reason.contains("recorded by the server at log position 1"), "{reason}");
    let summary = b.js_text("#summary");
    for needle in [
        "ERASED",
        "PF100061",
        "S4ELNX0N00000061",
        "W620000061",
        "Anna Peeters",
        "Repair Café Kessel-Lo",
    ] {
        assert!(summary.contains(needle), "the summary lacks {needle}: {summary}");
    }
    assert_eq!(b.count("#summary .disk"), 2);
    assert_eq!(
        b.script("return performance.getEntriesByType('resource').length"),
        Value::from(0),
        "the page loaded nothing"
    );

    // One changed byte in the certificate.
    let changed = write(
        d,
        "changed.json",
        swap(&p.cert, b"S4ELNX0N00000061", b"S4ELNX0N00000062"),
    );
    let (verdict, reason) = four(&changed, &station, &receipt, &server);
    assert_eq!(verdict, "INVALID");
    assert!(
        reason.contains("station signature") && reason.contains("the signature does not match the content"),
        "{reason}"
    );
    // A receipt from another server key.
    let other = write(d, "other-receipt.json", receipt_from_other_server(&p.receipt));
    let (verdict, reason) = four(&cert, &station, &other, &server);
    assert!(reason.starts_with("receipt"), "{reason}");
    wrong_key(&verdict, &reason, &p.server_pub);
    // A certificate signed by a key this station's file is not.
    let stranger = write(d, "stranger.json", signed_by_stranger(&p.cert));
    let (verdict, reason) = four(&stranger, &station, &receipt, &server);
    wrong_key(&verdict, &reason, &p.station_pub);
    let station_id = keys::key_id(&keys::public_key_from_hex(&p.station_pub).unwrap());
    // A truncated file.
    let cut = write(d, "cut.json", &p.cert[..p.cert.len() / 2]);
    let (verdict, reason) = four(&cut, &station, &receipt, &server);
    assert_eq!(verdict, "INVALID");
    assert!(
        reason.contains("invalid certificate: not valid JSON: EOF while parsing"),
        "{reason}"
    );
    // A genuine certificate with another certificate's receipt is caught by the receipt's hash.
    let (verdict, reason) = four(
        &stranger,
        &write(d, "stranger.pub", hex_pub("stranger station")),
        &receipt,
        &server,
    );
    assert_eq!(verdict, "INVALID");
    assert!(reason.contains("the receipt is for another certificate"), "{reason}");

    inclusion_in_the_browser(&b, &page, d, &p, [&cert, &station, &receipt, &server]);

    // The donor PDF alone: it carries the inclusion proof too.
    let (verdict, reason) = check(&b, &page, &[("pdf-file", &pdf)]);
    assert_eq!(verdict, "VALID", "{reason}");
    assert!(
        reason.contains("In the log at position 1 of tree size 3, tree head signed 20"),
        "{reason}"
    );
    assert!(
        b.js_text("#key-note").contains("integrity"),
        "keys from the PDF are said to prove integrity only"
    );
    assert!(b.js_text("#summary").contains("S4ELNX0N00000061"));
    // Pinned keys: the right ones pass without the note, a wrong station key fails.
    let (verdict, reason) = check(
        &b,
        &page,
        &[("pdf-file", &pdf), ("station-file", &station), ("server-file", &server)],
    );
    assert_eq!(verdict, "VALID", "{reason}");
    assert_eq!(b.js_text("#key-note"), "");
    let wrong = write(d, "wrong.pub", hex_pub("stranger station"));
    let (verdict, reason) = check(&b, &page, &[("pdf-file", &pdf), ("station-file", &wrong)]);
    assert_eq!(verdict, "INVALID");
    assert!(
        reason.contains(&format!("signature.key_id is {station_id}")),
        "{reason}"
    );
    // One changed byte in the attached certificate.
    let cases = pdf_cases(&p);
    for (name, bytes, expect) in &cases {
        let path = write(d, &format!("{name}.pdf"), bytes);
        let (verdict, reason) = check(&b, &page, &[("pdf-file", &path)]);
        assert_eq!(verdict, "INVALID", "{name}");
        assert!(reason.contains(expect), "{name}: {reason}");
    }
}

/// An INVALID verdict because the document names another key than `key_file`'s.
fn wrong_key(verdict: &str, reason: &str, key_file: &str) {
    assert_eq!(verdict, "INVALID");
    let id = keys::key_id(&keys::public_key_from_hex(key_file).unwrap());
    assert!(reason.contains(&format!("but the key given has id {id}")), "{reason}");
}

/// 64 hex digits of a fixture key's public half.
fn hex_pub(label: &str) -> String {
    format!("{}\n", hex_of(keys::fixture_key(label).verifying_key().as_bytes()))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Broken donor PDFs, each with the words its verdict must give.
fn pdf_cases(p: &Proof) -> Vec<(&'static str, Vec<u8>, String)> {
    let at = find(&p.pdf, &p.cert).expect("the PDF carries the certificate uncompressed");
    let mut changed = p.pdf.clone();
    let serial = at + find(&p.cert, b"S4ELNX0N00000061").unwrap() + 15;
    changed[serial] = b'2';
    let station_id = keys::key_id(&keys::public_key_from_hex(&p.station_pub).unwrap());
    vec![
        (
            "changed-byte",
            changed,
            "the signature does not match the content".to_owned(),
        ),
        (
            "other-server",
            swap(
                &p.pdf,
                p.receipt.as_bytes(),
                receipt_from_other_server(&p.receipt).as_bytes(),
            ),
            format!(
                "but the key given has id {}",
                keys::key_id(&keys::public_key_from_hex(&p.server_pub).unwrap())
            ),
        ),
        (
            "stranger",
            swap(&p.pdf, &p.cert, &signed_by_stranger(&p.cert)),
            format!("but the key given has id {station_id}"),
        ),
        (
            "truncated",
            p.pdf[..at + p.cert.len() / 2].to_vec(),
            "the PDF is cut short (it does not end with %%EOF)".to_owned(),
        ),
    ]
}

#[test]
fn donor_pdf_carries_the_proof_as_attachments() {
    if !require_tool("pdfdetach", "poppler-utils") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p = proof(d);
    let pdf = write(d, "certificate.pdf", &p.pdf);
    let out = Command::new("pdfdetach").arg("-list").arg(&pdf).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(list.starts_with("5 embedded files"), "{list}");
    for name in [
        "certificate.json",
        "receipt.json",
        "station.pub",
        "server.pub",
        "inclusion.json",
    ] {
        assert!(list.contains(name), "{list}");
    }
    let saved = d.join("saved");
    std::fs::create_dir(&saved).unwrap();
    let out = Command::new("pdfdetach")
        .arg("-saveall")
        .arg("-o")
        .arg(&saved)
        .arg(&pdf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |n: &str| std::fs::read(saved.join(n)).unwrap();
    assert_eq!(
        read("certificate.json"),
        p.cert,
        "byte for byte what the station signed"
    );
    assert_eq!(read("receipt.json"), p.receipt.as_bytes());
    assert_eq!(read("station.pub"), p.station_pub.as_bytes());
    assert_eq!(read("server.pub"), p.server_pub.as_bytes());
    // The PDF's proof is for the tree when the PDF was made; it checks out against the receipt.
    let receipt: Receipt = serde_json::from_str(&p.receipt).unwrap();
    let server_key = keys::public_key_from_hex(&p.server_pub).unwrap();
    let attached = tlog::parse_inclusion(&read("inclusion.json"), &server_key).unwrap();
    let head = attached
        .tree_head
        .clone()
        .expect("the attached proof carries its signed head");
    assert_eq!(head.tree_size, 3);
    tlog::check_inclusion(&receipt, &attached, &head).unwrap();

    // What `lapterop-cert verify-pdf` runs: valid, with both keys from the PDF (integrity only).
    let check = cert::attachments::verify_pdf(&p.pdf, None, None).unwrap();
    assert!(check.valid(), "{check:?}");
    assert_eq!(check.keys_from_pdf, ["station", "server"]);
    let pinned = cert::attachments::verify_pdf(
        &p.pdf,
        keys::public_key_from_hex(&p.station_pub),
        keys::public_key_from_hex(&p.server_pub),
    )
    .unwrap();
    assert!(pinned.valid() && pinned.keys_from_pdf.is_empty(), "{pinned:?}");
    for (name, bytes, expect) in pdf_cases(&p) {
        let reason = match cert::attachments::verify_pdf(&bytes, None, None) {
            Ok(c) => {
                assert!(!c.valid(), "{name} passed");
                format!("{:?} {:?}", c.certificate.err(), c.receipt.err())
            }
            Err(e) => e.to_string(),
        };
        assert!(reason.contains(&expect), "{name}: {reason}");
    }
}

/// Broken certificates, each as bytes: the rules, the limits, the parser and the signature.
fn broken_certificates(genuine: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let text = String::from_utf8(genuine.to_vec()).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        text.replacen(from, to, 1).into_bytes()
    };
    let mut value: Value = serde_json::from_slice(genuine).unwrap();
    value["operator"]["name"] = Value::String("x".repeat(5000));
    let long = serde_json::to_vec_pretty(&value).unwrap();
    let mut unsigned: Value = serde_json::from_slice(genuine).unwrap();
    unsigned.as_object_mut().unwrap().remove("signature");
    let mut missing: Value = serde_json::from_slice(genuine).unwrap();
    missing.as_object_mut().unwrap().remove("operator");
    vec![
        (
            "failed step on an erased disk",
            edit("\"outcome\": \"completed\"", "\"outcome\": \"failed\""),
        ),
        (
            "mismatch count",
            edit("\"mismatched_blocks\": 0", "\"mismatched_blocks\": 3"),
        ),
        ("time", edit("\"issued_at\": \"2", "\"issued_at\": \"x")),
        ("schema", edit("lapterop.certificate/v1", "lapterop.certificate/v9")),
        ("long string", long),
        (
            "big integer",
            edit(
                "\"logical_sector_size\": 512",
                "\"logical_sector_size\": 9007199254740993",
            ),
        ),
        (
            "fraction",
            edit("\"logical_sector_size\": 512", "\"logical_sector_size\": 512.5"),
        ),
        (
            "negative",
            edit("\"logical_sector_size\": 512", "\"logical_sector_size\": -512"),
        ),
        (
            "u32",
            edit("\"logical_sector_size\": 512", "\"logical_sector_size\": 4294967296"),
        ),
        (
            "string for a number",
            edit("\"logical_sector_size\": 512", "\"logical_sector_size\": \"512\""),
        ),
        (
            "unknown variant",
            edit("\"outcome\": \"completed\"", "\"outcome\": \"done\""),
        ),
        (
            "unknown field",
            edit("{\n  \"schema\"", "{\n  \"colour\": \"red\",\n  \"schema\""),
        ),
        (
            "duplicate member",
            edit("{\n  \"schema\"", "{\n  \"id\": \"x\",\n  \"schema\""),
        ),
        ("missing field", serde_json::to_vec(&missing).unwrap()),
        ("unsigned", serde_json::to_vec(&unsigned).unwrap()),
        ("not an object", b"[1, 2]".to_vec()),
        ("truncated", genuine[..genuine.len() / 3].to_vec()),
        (
            "not UTF-8",
            [&genuine[..20], &[0xff, 0xfe][..], &genuine[22..]].concat(),
        ),
        ("changed byte", edit("Anna Peeters", "Anna Peeterz")),
        ("stranger", signed_by_stranger(genuine)),
        (
            "erased eMMC over a boot area not erased",
            emmc_with_boot_area(genuine, "not-erased"),
        ),
    ]
}

/// The first disk as an eMMC with one boot area whose outcome is `status`.
fn emmc_with_boot_area(genuine: &[u8], status: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(genuine).unwrap();
    let mut area = v["disks"][0].clone();
    area["device"] = Value::String("mmcblk0boot0".into());
    area["transport"] = Value::String("mmc".into());
    if status == "not-erased" {
        area["outcome"] = serde_json::json!({"status": "not-erased", "reason": "write-protected"});
        area["nist_category"] = Value::String("none".into());
    }
    v["disks"][0]["transport"] = Value::String("mmc".into());
    v["disks"][0]["boot_areas"] = Value::Array(vec![area]);
    serde_json::to_vec_pretty(&v).unwrap()
}

/// Serde's own messages name the field, then say it in serde's words and give the line: the page
/// gives the same field, in words of its own.
fn field_part(message: &str) -> &str {
    let typed = [
        "unknown field",
        "missing field",
        "invalid type",
        "duplicate field",
        "unknown variant",
        "invalid value",
    ];
    match typed.iter().filter_map(|t| message.find(t)).min() {
        Some(at) => &message[..at],
        None => message,
    }
}

#[test]
fn the_page_and_lapterop_cert_reject_the_same_certificates_for_the_same_reasons() {
    if !require_browser() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let key = keys::fixture_key("same reasons station");
    let genuine = signed(laptop(71, "Anna Peeters"), &key);
    let page = format!("file://{}", write(d, "verify.html", VERIFIER).display());
    let b = Browser::offline();
    b.goto(&page);
    let key_hex = hex_of(key.verifying_key().as_bytes());
    let mut cases = broken_certificates(&genuine);
    cases.insert(0, ("genuine", genuine.clone()));
    for (name, bytes) in cases {
        let rust = cert::verify(&bytes, &key.verifying_key()).err().map(|e| e.to_string());
        let bytes_js = serde_json::to_string(&bytes).unwrap();
        let js = b.script(&format!(
            "return Lapterop.verifyCertificate(new Uint8Array({bytes_js}), Lapterop.parseKey('{key_hex}'), \
             Lapterop.SCHEMA).then(r => r.error)"
        ));
        let js = js.as_str().map(str::to_owned);
        match (&rust, &js) {
            (None, None) => assert_eq!(name, "genuine"),
            (Some(r), Some(j)) => {
                let r = r.split(" at line ").next().unwrap_or(r);
                let j = j.split(" at line ").next().unwrap_or(j);
                if field_part(r) != r {
                    assert_eq!(field_part(j), field_part(r), "{name}: page {j:?}, lapterop-cert {r:?}");
                } else {
                    assert_eq!(j, r, "{name}");
                }
            }
            _ => panic!("{name}: page {js:?}, lapterop-cert {rust:?}"),
        }
    }

    // Rules both accept: an eMMC whose boot area was erased too, and a discard that failed after the
    // verified overwrite (it frees blocks, it cannot un-erase them).
    let mut emmc: cert::Certificate = serde_json::from_slice(&emmc_with_boot_area(&genuine, "erased")).unwrap();
    let mut with_discard = laptop(72, "Anna Peeters");
    let mut discard = with_discard.disks[0].steps.last().unwrap().clone();
    discard.kind = cert::StepKind::Discard;
    discard.outcome = cert::StepOutcome::Failed;
    discard.reason = Some("BLKDISCARD failed (errno 5)".into());
    discard.bytes = 0;
    discard.pattern = None;
    discard.pass = None;
    with_discard.disks[0].steps.push(discard);
    emmc.signature = None;
    for (name, c) in [
        ("eMMC with an erased boot area", emmc),
        ("failed discard", with_discard),
    ] {
        let bytes = signed(c, &key);
        let rust = cert::verify(&bytes, &key.verifying_key()).err().map(|e| e.to_string());
        let bytes_js = serde_json::to_string(&bytes).unwrap();
        let js = b.script(&format!(
            "return Lapterop.verifyCertificate(new Uint8Array({bytes_js}), Lapterop.parseKey('{key_hex}'), \
             Lapterop.SCHEMA).then(r => r.error)"
        ));
        assert_eq!((rust, js.as_str().map(str::to_owned)), (None, None), "{name}");
    }

    // Receipts: the same for `lapterop-cert verify-receipt`.
    let server = keys::fixture_key("same reasons server");
    let server_hex = hex_of(server.verifying_key().as_bytes());
    for (name, receipt) in broken_receipts(&genuine, &server) {
        let rust = chain::verify_receipt(&receipt, &server.verifying_key())
            .err()
            .map(|e| e.to_string());
        let bytes_js = serde_json::to_string(&receipt).unwrap();
        let js = b.script(&format!(
            "return Lapterop.verifyReceipt(new Uint8Array({bytes_js}), Lapterop.parseKey('{server_hex}'), \
             Lapterop.SCHEMA.$defs.Receipt).then(r => r.error)"
        ));
        assert_eq!(js.as_str(), rust.as_deref(), "receipt: {name}");
    }
}

/// A receipt for `certificate` signed by `server`, and broken copies of it.
fn broken_receipts(certificate: &[u8], server: &cert::SigningKey) -> Vec<(&'static str, Vec<u8>)> {
    let (c, value) = cert::parse(certificate).unwrap();
    let certificate_blake3 = cert::document_blake3(&value).unwrap();
    let received_at = "2026-11-26T15:00:00Z".to_owned();
    let mut r = Receipt {
        schema: cert::RECEIPT_SCHEMA_V1.to_owned(),
        certificate_id: c.id,
        entry_hash: chain::entry_hash(chain::GENESIS, 1, &certificate_blake3, &received_at),
        certificate_blake3,
        received_at,
        position: 1,
        previous_hash: chain::GENESIS.to_owned(),
        donor_url: "https://example.invalid/d/0".to_owned(),
        signature: None,
    };
    let unsigned = serde_json::to_vec(&r).unwrap();
    chain::sign_receipt(&mut r, server).unwrap();
    let genuine = serde_json::to_string_pretty(&r).unwrap();
    let edit = |from: &str, to: &str| genuine.replacen(from, to, 1).into_bytes();
    vec![
        ("genuine", genuine.clone().into_bytes()),
        ("unsigned", unsigned),
        ("moved in time", edit("2026-11-26T15:00:00Z", "2026-11-26T15:00:01Z")),
        ("position 0", edit("\"position\": 1", "\"position\": 0")),
        ("position 2", edit("\"position\": 1", "\"position\": 2")),
        ("schema", edit("lapterop.receipt/v1", "lapterop.receipt/v2")),
        ("donor url", edit("example.invalid/d/0", "example.invalid/d/1")),
        ("other server", receipt_from_other_server(&genuine).into_bytes()),
        ("truncated", genuine.as_bytes()[..genuine.len() / 2].to_vec()),
    ]
}

/// The inclusion proof and signed tree head in the page: the same RFC 9162 audit-path check as
/// `merkle::verify_inclusion` on every leaf of trees of 1 to 9 leaves, then the donor's proof: in the
/// log, or invalid with the reason for a proof of another leaf, a changed path node, a tree head from
/// another key and a proof for another tree size.
fn inclusion_in_the_browser(b: &Browser, page: &str, d: &Path, p: &Proof, four: [&Path; 4]) {
    use lapterop_certificate::merkle::{self, MemoryTree};
    b.goto(page);
    let mut cases = Vec::new();
    for size in 1..=9u64 {
        let tree = MemoryTree {
            leaves: (0..size)
                .map(|i| merkle::leaf_hash(format!("leaf {i}").as_bytes()))
                .collect(),
        };
        let root = merkle::root(&tree, size).unwrap();
        for index in 0..size {
            let path = merkle::inclusion_proof(&tree, index, size).unwrap();
            let leaf = tree.leaves[usize::try_from(index).unwrap()];
            merkle::verify_inclusion(&leaf, index, size, &path, &root).unwrap();
            let hex: Vec<String> = path.iter().map(|h| hex_of(h)).collect();
            cases.push(serde_json::json!([hex_of(&leaf), index, size, hex, hex_of(&root)]));
        }
    }
    let cases = Value::Array(cases).to_string();
    // Each case must pass as given and fail with one bit of one path node (or of the leaf) flipped.
    let failed = b.script(&format!(
        "return (async () => {{ const L = window.Lapterop; const bad = []; for (const [leaf, i, n, path, root] of {cases}) {{ \
           const P = path.map(L.unhex); \
           const ok = await L.verifyInclusionPath(L.unhex(leaf), BigInt(i), BigInt(n), P, L.unhex(root)); \
           if (ok !== null) bad.push([i, n, ok]); \
           const f = L.unhex(leaf); f[0] ^= 1; \
           const flipped = P.length ? P.map((h, k) => {{ const c = h.slice(); if (k === P.length - 1) c[31] ^= 1; return c; }}) : P; \
           const no = await L.verifyInclusionPath(P.length ? L.unhex(leaf) : f, BigInt(i), BigInt(n), flipped, L.unhex(root)); \
           if (no !== \"the proof does not lead to the tree head's root hash\") bad.push([i, n, 'tampered', no]); }} \
         return bad; }})();"
    ));
    assert_eq!(failed, Value::Array(vec![]), "audit paths the page got wrong");
    // The page's leaf hash is tlog.rs's.
    let b3 = "ab".repeat(32);
    let js = b.script(&format!(
        "return Lapterop.leafHash('{b3}', '2026-11-01T10:00:00Z').then(Lapterop.hex)"
    ));
    assert_eq!(js, Value::String(hex_of(&tlog::leaf_hash(&b3, "2026-11-01T10:00:00Z"))));

    let [cert, station, receipt, server] = four;
    let with = |proof: &Path, sth: Option<&Path>| {
        let mut inputs = vec![
            ("cert-file", cert),
            ("station-file", station),
            ("receipt-file", receipt),
            ("server-file", server),
            ("inclusion-file", proof),
        ];
        if let Some(s) = sth {
            inputs.push(("sth-file", s));
        }
        check(b, page, &inputs)
    };
    let genuine = write(d, "inclusion.json", &p.inclusion);
    let (verdict, reason) = with(&genuine, None);
    assert_eq!(verdict, "VALID", "{reason}");
    assert!(
        reason.contains("In the log at position 1 of tree size 3, tree head signed 20"),
        "{reason}"
    );
    // Without a proof the page says the log was not checked, and still checks the rest.
    let (verdict, _) = check(
        b,
        page,
        &[
            ("cert-file", cert),
            ("station-file", station),
            ("receipt-file", receipt),
            ("server-file", server),
        ],
    );
    assert_eq!(verdict, "VALID");
    assert!(b.js_text("#checks").contains("no inclusion proof given"));

    let edit = |text: &str, f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(text).unwrap();
        f(&mut v);
        serde_json::to_vec_pretty(&v).unwrap()
    };
    let other_server_head = |v: &mut Value| {
        let mut head: TreeHead = serde_json::from_value(v["tree_head"].clone()).unwrap();
        let root = tlog::parse_hash("root_hash", &head.root_hash).unwrap();
        head = tlog::signed_tree_head(
            head.tree_size,
            &root,
            &head.timestamp,
            &keys::fixture_key("another server"),
        )
        .unwrap();
        v["tree_head"] = serde_json::to_value(head).unwrap();
    };
    let server_id = keys::key_id(&keys::public_key_from_hex(&p.server_pub).unwrap());
    let cases: Vec<(&str, Vec<u8>, Option<&str>, String)> = vec![
        (
            "another leaf's proof",
            p.other_inclusion.clone().into_bytes(),
            None,
            "the proof is for leaf 2 but the receipt's position 1 is leaf 0".into(),
        ),
        (
            "another leaf's path under this leaf's index",
            edit(&p.other_inclusion, &|v| v["leaf_index"] = Value::from(0)),
            None,
            // Leaf 2 of 3 has a path of one hash, leaf 0 needs two (RFC 9162 §2.1.3.2 step 5).
            "the proof has the wrong number of hashes".into(),
        ),
        (
            "a changed path node",
            edit(&p.inclusion, &|v| {
                let h = v["audit_path"][1].as_str().unwrap().to_owned();
                let flipped = if h.starts_with('0') { "1" } else { "0" };
                v["audit_path"][1] = Value::String(format!("{flipped}{}", &h[1..]));
            }),
            None,
            "the proof does not lead to the tree head's root hash".into(),
        ),
        (
            "a tree head from another server key",
            edit(&p.inclusion, &other_server_head),
            None,
            format!(
                "tree head: signature.key_id is {}",
                keys::key_id(&keys::fixture_key("another server").verifying_key())
            ),
        ),
        (
            "a proof for another tree size than the head",
            p.inclusion_at_2.clone().into_bytes(),
            Some("sth"),
            "the proof is for a tree of 2 leaves but the tree head has 3".into(),
        ),
        (
            "a tree size changed in the proof",
            edit(&p.inclusion, &|v| v["tree_size"] = Value::from(2)),
            None,
            "the proof is for a tree of 2 leaves but the tree head has 3".into(),
        ),
        (
            "a tree size changed in the signed head",
            edit(&p.inclusion, &|v| {
                v["tree_size"] = Value::from(4);
                v["tree_head"]["tree_size"] = Value::from(4);
            }),
            None,
            "tree head: the signature does not match the content".into(),
        ),
        (
            "an older proof with no tree head",
            p.inclusion_at_2.clone().into_bytes(),
            None,
            "no signed tree head".into(),
        ),
    ];
    let sth = write(d, "sth.json", &p.sth);
    for (name, bytes, with_sth, expect) in cases {
        let path = write(d, "case-inclusion.json", bytes);
        let (verdict, reason) = with(&path, with_sth.map(|_| sth.as_path()));
        assert_eq!(verdict, "INVALID", "{name}: {reason}");
        assert!(reason.starts_with("transparency log"), "{name}: {reason}");
        assert!(reason.contains(&expect), "{name}: {reason}");
        assert!(
            !reason.contains(&server_id) || name.contains("another server"),
            "{name}: {reason}"
        );
    }
}
