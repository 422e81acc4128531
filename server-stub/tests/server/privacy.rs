//! What anyone can see without logging in (issue 15, point 1): nothing that names a laptop, a disk, a
//! volunteer or a donor link. Certificates are stored with donor links (receipts), serials and operator
//! names; then an anonymous client asks every route (and guesses: known ids, wrong tokens, odd paths,
//! posts) and no answer, headers included, may carry any of those strings.

use lapterop_certificate::chain;
use serde_json::Value;

use crate::fixtures::{laptop, signed};
use crate::helpers::*;

/// Status, headers and body of a request without credentials.
fn anonymous(method: &str, url: &str, body: &[u8]) -> (u16, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(30))
        .redirects(0)
        .build();
    let req = agent
        .request(method, url)
        .set("Content-Type", "application/x-www-form-urlencoded");
    let result = if body.is_empty() {
        req.call()
    } else {
        req.send_bytes(body)
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let mut text = String::new();
    for name in resp.headers_names() {
        for value in resp.all(&name) {
            text.push_str(&format!("{name}: {value}\n"));
        }
    }
    text.push('\n');
    text.push_str(&resp.into_string().unwrap_or_default());
    (status, text)
}

#[test]
fn nothing_without_credentials_names_a_laptop_a_person_or_a_donor_link() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = enrol(d, "bench-1", "privacy station");
    add_user(d, "lead", "correct horse battery staple");
    let s = Server::start(d);
    let server_key = s.server_key();

    // Three laptops, as stations send them.
    let mut secrets: Vec<String> = Vec::new();
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for n in 1..=3 {
        let c = laptop(n, &format!("Volunteer Number{n}"));
        let (status, receipt) = s.post(&signed(c.clone(), &key));
        assert_eq!(status, 201, "{receipt}");
        let r = chain::verify_receipt(receipt.as_bytes(), &server_key).unwrap();
        let token = r.donor_url.rsplit('/').next().unwrap().to_owned();
        secrets.push(token.clone());
        secrets.push(c.id.clone());
        secrets.push(c.operator.name.clone());
        secrets.extend(c.host.iter().filter_map(|h| h.system.serial.clone()));
        secrets.extend(c.disks.iter().filter_map(|d| d.serial.clone()));
        ids.push(c.id.clone());
        tokens.push(token);
    }
    assert!(secrets.len() >= 15);

    let mut paths: Vec<(String, String)> = [
        "/",
        "/healthz",
        "/api/v1/log",
        "/api/v1/log?from=1&limit=10000",
        "/api/v1/log?from=0&limit=0",
        "/api/v1/log/sth",
        "/api/v1/log/consistency?first=1&second=2",
        "/api/v1/log/consistency?first=0&second=99",
        "/api/v1/server-key",
        "/api/v1/certificates",
        "/login",
        "/review",
        "/review?status=new",
        "/review/export.csv",
        "/review/audit",
        "/review/hardware",
        "/d/",
        "/d/not-a-token",
        "/d/not-a-token/certificate.pdf",
        "/d/not-a-token/certificate.json",
        "/d/not-a-token/receipt.json",
        "/d/not-a-token/inclusion.json",
        "/b/not-a-token",
        "/nonexistent",
        "/../etc/passwd",
        "/api/v1/certificates/%27%20OR%201=1--",
    ]
    .iter()
    .map(|p| ("GET".to_owned(), (*p).to_owned()))
    .collect();
    for id in &ids {
        // Someone who guessed or saw an id.
        for p in [
            format!("/api/v1/certificates/{id}"),
            format!("/api/v1/log/inclusion/{id}"),
            format!("/review/certificates/{id}"),
            format!("/review/certificates/{id}?lang=en"),
            format!("/d/{id}"),
            format!("/b/{id}"),
        ] {
            paths.push(("GET".into(), p));
        }
        paths.push(("POST".into(), format!("/review/certificates/{id}/decision")));
        // An audit that is not the one the certificate names.
        paths.push(("PUT".into(), format!("/api/v1/certificates/{id}/audit")));
    }
    for t in &tokens {
        // A token with one character changed is another, unknown link.
        let mut wrong: Vec<char> = t.chars().collect();
        wrong[0] = if wrong[0] == 'a' { 'b' } else { 'a' };
        let wrong: String = wrong.into_iter().collect();
        paths.push(("GET".into(), format!("/d/{wrong}")));
        paths.push(("GET".into(), format!("/d/{wrong}/certificate.json")));
        paths.push(("GET".into(), format!("/d/{wrong}/inclusion.json")));
    }
    paths.push(("POST".into(), "/login".into()));
    paths.push(("POST".into(), "/logout".into()));

    let mut leaks = Vec::new();
    let mut refused = 0;
    for (method, path) in &paths {
        let body: &[u8] = if method == "POST" || method == "PUT" {
            b"decision=approved&csrf=x&user=lead&password=x"
        } else {
            b""
        };
        let (status, text) = anonymous(method, &format!("{}{path}", s.url), body);
        if status >= 300 {
            refused += 1;
        }
        for secret in &secrets {
            if text.contains(secret.as_str()) {
                leaks.push(format!("{method} {path} ({status}) shows {secret:?}"));
            }
        }
    }
    eprintln!(
        "privacy: {} anonymous requests, {refused} refused or redirected, {} leaks",
        paths.len(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "without credentials:\n{}", leaks.join("\n"));

    // The public log still lets anyone check the chain: positions and hashes, no ids.
    let entries = check_chain(&s);
    assert_eq!(entries.len(), 3);
    for e in &entries {
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "certificate_blake3",
                "entry_hash",
                "position",
                "previous_hash",
                "received_at"
            ],
            "{e}"
        );
    }
    // The donor's own link still works, and shows the laptop.
    let (status, page) = get(&format!("{}/d/{}", s.url, tokens[0])).unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("PF100001"), "the donor page shows the laptop's serial");
    let v: Value = serde_json::from_str(
        &get_as_station(&s.url, &format!("/api/v1/certificates/{}", ids[0]), &key)
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(v["certificate"]["id"], Value::String(ids[0].clone()));

    // A backup holds the donor links too: it is written readable by its owner only (mode 0600),
    // whatever the umask, while the server runs.
    let out = d.join("backup.sqlite");
    let (code, text, err) = cli(
        &["backup", "--data", d.to_str().unwrap(), "--out", out.to_str().unwrap()],
        "",
    );
    assert_eq!(code, 0, "{text}{err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "backup mode {mode:o}");
    let copy = rusqlite::Connection::open(&out).unwrap();
    let n: i64 = copy
        .query_row("SELECT COUNT(*) FROM certificates", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3, "the backup is a full copy");
    let (code, _, err) = cli(
        &["backup", "--data", d.to_str().unwrap(), "--out", out.to_str().unwrap()],
        "",
    );
    assert_ne!(code, 0, "an existing backup is never overwritten");
    assert!(err.contains("exists already"), "{err}");

    // The stick is lost and its station revoked: the donor page says so, with the date, instead of a
    // plain "valid"; the certificate came before the revocation, so it still stands.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, text, err) = cli(&["stations", "revoke", "--data", d.to_str().unwrap(), "bench-1"], "");
    assert_eq!(code, 0, "{text}{err}");
    let (status, page) = get(&format!("{}/d/{}?lang=en", s.url, tokens[0])).unwrap();
    assert_eq!(status, 200);
    let line = page
        .lines()
        .find(|l| l.contains("id=\"station-check\""))
        .map(str::to_owned)
        .unwrap_or_default();
    let next = page.split("id=\"station-check\"").nth(1).unwrap_or_default();
    let check: String = next.chars().take(400).collect();
    assert!(check.contains("which was revoked on 20"), "{line}{check}");
    assert!(check.contains(", before the revocation"), "{check}");
    assert!(
        !check.contains("valid: signed"),
        "no plain valid after a revocation: {check}"
    );
}
