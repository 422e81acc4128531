//! The station API: every status code, receipts, idempotency, and nothing stored on rejection.

use lapterop_certificate::{chain, keys};
use serde_json::Value;

use crate::fixtures::{laptop, signed};
use crate::helpers::*;

const TABLES: [&str; 3] = ["certificates", "log", "batches"];

fn counts(s: &Server) -> Vec<u64> {
    TABLES.iter().map(|t| s.count(t)).collect()
}

/// Posts `body`, expects `status`, and checks that no row was added anywhere.
fn rejected(s: &Server, body: &[u8], status: u16, field: Option<&str>) -> Value {
    let before = counts(s);
    let (got, text) = s.post(body);
    assert_eq!(got, status, "expected {status}, got {got}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error says why: {text}"
    );
    if let Some(f) = field {
        assert_eq!(v["field"].as_str(), Some(f), "names the field: {text}");
    }
    assert_eq!(counts(s), before, "nothing stored for a {status}");
    v
}

#[test]
fn api_answers_every_status_and_stores_nothing_on_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = enrol(d, "bench-1", "api station");
    let revoked_key = enrol(d, "old-stick", "api revoked station");
    let s = Server::start(d);
    let server_key = s.server_key();

    // 201: accepted, with a signed receipt that chains from genesis.
    let body = signed(laptop(1, "Anna Peeters"), &key);
    let (status, receipt_text) = s.post(&body);
    assert_eq!(status, 201, "{receipt_text}");
    let receipt = chain::verify_receipt(receipt_text.as_bytes(), &server_key).expect("receipt verifies");
    assert_eq!(receipt.position, 1);
    assert_eq!(receipt.previous_hash, chain::GENESIS);
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(receipt.certificate_id, id);
    assert!(receipt.donor_url.starts_with(&format!("{}/d/", s.url)));
    let token = receipt.donor_url.rsplit('/').next().unwrap();
    assert!(token.len() >= 32, "donor token has at least 128 bits: {token}");
    assert_eq!(counts(&s), vec![1, 1, 2]);

    // 200: the same certificate again, the same receipt; nothing added.
    let (status, again) = s.post(&body);
    assert_eq!(status, 200);
    assert_eq!(again, receipt_text);
    // Same content, other formatting: still the same certificate.
    let compact = serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    assert_eq!(s.post(&compact), (200, receipt_text.clone()));
    assert_eq!(counts(&s), vec![1, 1, 2]);

    // 409: another document with the same id.
    let mut other = laptop(2, "Anna Peeters");
    other.id = id.clone();
    rejected(&s, &signed(other, &key), 409, Some("id"));

    // 400: not JSON.
    rejected(&s, b"{\"schema\": \"lapterop.certificate/v1\", ", 400, None);
    // 422: a type error names its field.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["disks"][0]["capacity_bytes"] = Value::String("lots".into());
    rejected(
        &s,
        &serde_json::to_vec(&v).unwrap(),
        422,
        Some("disks[0].capacity_bytes"),
    );
    // 422: an invariant (an erased disk with a failed step) names its field.
    let mut bad = laptop(3, "Anna Peeters");
    bad.disks[1].steps[0].outcome = lapterop_certificate::StepOutcome::Failed;
    bad.disks[1].steps[0].reason = Some("write error".into());
    bad.station.key_id = keys::key_id(&key.verifying_key());
    let bad_json = serde_json::to_vec(&bad).unwrap();
    let v = rejected(&s, &bad_json, 422, None);
    assert!(
        v["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["field"] == "disks[1].outcome.status"),
        "{v}"
    );
    // 422: unknown schema version.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["schema"] = Value::String("lapterop.certificate/v9".into());
    rejected(&s, &serde_json::to_vec(&v).unwrap(), 422, Some("schema"));

    // 401: a key that was never enrolled.
    rejected(
        &s,
        &signed(laptop(4, "X"), &keys::fixture_key("stranger")),
        401,
        Some("station.key_id"),
    );
    // 401: the content was changed after signing.
    let mut v: Value = serde_json::from_slice(&signed(laptop(5, "Anna Peeters"), &key)).unwrap();
    v["operator"]["name"] = Value::String("Mallory".into());
    rejected(&s, &serde_json::to_vec(&v).unwrap(), 401, Some("signature"));
    // 401: not signed at all.
    let mut v: Value = serde_json::from_slice(&signed(laptop(6, "Anna Peeters"), &key)).unwrap();
    v.as_object_mut().unwrap().remove("signature");
    rejected(&s, &serde_json::to_vec(&v).unwrap(), 401, Some("signature"));

    // 403: a revoked station, revoked while the server runs.
    let (code, out, err) = cli(&["stations", "revoke", "--data", d.to_str().unwrap(), "old-stick"], "");
    assert_eq!(code, 0, "{out}{err}");
    rejected(
        &s,
        &signed(laptop(7, "Anna Peeters"), &revoked_key),
        403,
        Some("station.key_id"),
    );
    let (_, list, _) = cli(&["stations", "list", "--data", d.to_str().unwrap()], "");
    assert!(
        list.lines()
            .any(|l| l.starts_with("old-stick") && l.contains("REVOKED")),
        "{list}"
    );
    assert!(
        list.lines().any(|l| l.starts_with("bench-1") && l.contains("active")),
        "{list}"
    );

    // 413: too large, refused from the declared length before the body is read.
    let before = counts(&s);
    let (status, text) = post_headers_only(s.port, 2 << 20);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than 1048576 bytes"), "{text}");
    assert_eq!(counts(&s), before);

    // GET by id: refused without credentials, for another station, and for a revoked one; given to the
    // station that signed it; 404 for another id.
    let path = format!("/api/v1/certificates/{id}");
    let (status, text) = get(&format!("{}{path}", s.url)).unwrap();
    assert_eq!(status, 401, "{text}");
    assert!(!text.contains(&id), "{text}");
    let (status, _) = get_as_station(&s.url, &path, &revoked_key).unwrap();
    assert_eq!(status, 401, "a revoked station reads nothing");
    let stranger = lapterop_certificate::keys::fixture_key("never enrolled");
    let (status, _) = get_as_station(&s.url, &path, &stranger).unwrap();
    assert_eq!(status, 401, "a key that was never enrolled reads nothing");
    let (status, text) = get_as_station(&s.url, &path, &key).unwrap();
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["certificate"]["id"], Value::String(id.clone()));
    assert_eq!(v["review"]["status"], "new");
    assert_eq!(v["receipt"], serde_json::from_str::<Value>(&receipt_text).unwrap());
    let other = format!("/api/v1/certificates/{}", lapterop_certificate::new_id().unwrap());
    let (status, _) = get_as_station(&s.url, &other, &key).unwrap();
    assert_eq!(status, 404);
    // A signature for one path does not open another.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let for_other = lapterop_certificate::request::header_value(&key, "GET", &other, now);
    let (status, _) = get_with(
        &format!("{}{path}", s.url),
        lapterop_certificate::request::HEADER,
        &for_other,
    )
    .unwrap();
    assert_eq!(status, 401);

    // A second certificate chains to the first.
    let (status, r2) = s.post(&signed(laptop(8, "Bart"), &key));
    assert_eq!(status, 201);
    let r2 = chain::verify_receipt(r2.as_bytes(), &server_key).unwrap();
    assert_eq!((r2.position, r2.previous_hash), (2, receipt.entry_hash.clone()));
    assert_eq!(check_chain(&s).len(), 2);
    let (code, out, _) = cli(&["verify-log", "--data", d.to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 entries"), "{out}");

    // CSV export from the command line.
    let (code, csv, _) = cli(&["export-csv", "--data", d.to_str().unwrap()], "");
    assert_eq!(code, 0);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.contains(&id) && csv.contains("S4ELNX0N00000001") && csv.contains("nvme-sanitize-crypto"));
    assert!(csv.lines().nth(1).unwrap().contains(",erased,ready,new,"), "{csv}");
}

#[test]
fn admin_commands_refuse_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    enrol(dir.path(), "bench-1", "admin station");
    // The same key twice, under another name.
    let (code, _, err) = cli(
        &[
            "stations",
            "add",
            "--data",
            d,
            "--name",
            "again",
            "--key",
            &format!("{d}/bench-1-key.pub"),
        ],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("already enrolled as station \"bench-1\""), "{err}");
    let (code, _, err) = cli(&["stations", "revoke", "--data", d, "nobody"], "");
    assert_eq!(code, 2);
    assert!(err.contains("no station named"), "{err}");
    let (code, _, err) = cli(&["users", "add", "--data", d, "lead"], "short\n");
    assert_eq!(code, 2);
    assert!(err.contains("at least 10 characters"), "{err}");
    let conn = rusqlite::Connection::open(dir.path().join("lapterop.sqlite")).unwrap();
    let n: u64 = conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
    add_user(dir.path(), "lead", "correct horse battery");
    let hash: String = conn
        .query_row("SELECT password_hash FROM users", [], |r| r.get(0))
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    // The server key is private to its owner.
    let _s = Server::start(dir.path());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn login_needs_its_form_token_and_sets_strict_cookies() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "lead", "correct horse battery");
    let s = Server::start(dir.path());
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let sessions = || count(dir.path(), "sessions");

    // Without the login cookie (a form posted from another site): refused, no session.
    let r = agent.post(&format!("{}/login", s.url)).send_form(&[
        ("user", "lead"),
        ("password", "correct horse battery"),
        ("csrf", "x"),
    ]);
    assert!(matches!(r, Err(ureq::Error::Status(403, _))));
    assert_eq!(sessions(), 0);

    // The login page hands out the token in a strict cookie and in the form.
    let page = agent.get(&format!("{}/login", s.url)).call().unwrap();
    let cookie = page.header("Set-Cookie").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    assert!(page.into_string().unwrap().contains(&format!("value=\"{token}\"")));
    let r = agent
        .post(&format!("{}/login", s.url))
        .set("Cookie", &format!("lapterop_login={token}"))
        .send_form(&[
            ("user", "lead"),
            ("password", "correct horse battery"),
            ("csrf", &token),
        ])
        .unwrap();
    assert_eq!(r.status(), 303);
    let set: Vec<&str> = r.all("Set-Cookie");
    let session = set.iter().find(|c| c.starts_with("lapterop_session=")).unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    assert_eq!(sessions(), 1);

    // Review pages without a session send you to the login page.
    let r = agent.get(&format!("{}/review/export.csv", s.url)).call().unwrap();
    assert_eq!((r.status(), r.header("Location")), (303, Some("/login")));
}

/// `verify-log` catches what a rewrite of the database would leave behind: a certificate changed after
/// it was logged, a log entry whose time was moved, an entry taken out of the middle. Each is found
/// with exit 1 and the place named; the intact copy passes.
#[test]
fn verify_log_finds_a_rewritten_history() {
    let dir = tempfile::tempdir().unwrap();
    let key = enrol(dir.path(), "bench-1", "verify log station");
    {
        let s = Server::start(dir.path());
        for n in 0..3 {
            let (status, body) = s.post(&crate::fixtures::signed(crate::fixtures::laptop(n, "Anna"), &key));
            assert_eq!(status, 201, "{body}");
        }
    }
    let verify = |d: &std::path::Path| cli(&["verify-log", "--data", d.to_str().unwrap()], "");
    let (code, out, _) = verify(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("log intact: 3 entries"), "{out}");
    let tampered = |what: &str, sql: &str, says: &str| {
        let copy = tempfile::tempdir().unwrap();
        for f in ["lapterop.sqlite", "server.key", "server.pub"] {
            std::fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
        }
        let conn = rusqlite::Connection::open(copy.path().join("lapterop.sqlite")).unwrap();
        conn.execute_batch(sql).unwrap();
        drop(conn);
        let (code, out, _) = verify(copy.path());
        assert_eq!(code, 1, "{what}: {out}");
        assert!(out.contains("LOG BROKEN") && out.contains(says), "{what}: {out}");
    };
    tampered(
        "a certificate changed",
        "UPDATE certificates SET body = CAST(REPLACE(CAST(body AS TEXT), 'Anna', 'Anne') AS BLOB) \
         WHERE id = (SELECT certificate_id FROM log WHERE position = 2);",
        "does not match the hash in the log",
    );
    tampered(
        "a time moved",
        "UPDATE log SET received_at = '2020-01-01T00:00:00Z' WHERE position = 2;",
        "log position 2: entry hash does not match",
    );
    tampered(
        "an entry taken out",
        "PRAGMA foreign_keys = OFF; DELETE FROM log WHERE position = 2;",
        "log position 2 is missing",
    );
}
