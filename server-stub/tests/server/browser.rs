//! Headless Chromium (Debian's chromium via chromedriver): log in, review, approve, the donor page in
//! both languages, and hostile text shown as text.

use serde_json::Value;

use crate::fixtures::{laptop, not_erased, signed};
use crate::helpers::*;

const EVIL: &str = "<script>window.__pwned=1;document.title='pwned'</script>Robert'); DROP TABLE certificates; --";

#[test]
fn reviewer_approves_and_donor_reads_both_languages() {
    if !require_browser() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = enrol(d, "bench-1", "browser station");
    add_user(d, "lead", "correct horse battery");
    let s = Server::start(d);
    let good = laptop(41, "Anna Peeters");
    let good_id = good.id.clone();
    assert_eq!(s.post(&signed(good, &key)).0, 201);
    let mut evil = laptop(42, EVIL);
    evil.donor = Some(lapterop_certificate::DonorInfo {
        reference: Some("x' OR '1'='1".into()),
        lot: Some("<b>lot</b>".into()),
        asset_tag: Some("\"><img src=x onerror=window.__pwned=2>".into()),
    });
    let evil_id = evil.id.clone();
    assert_eq!(s.post(&signed(evil, &key)).0, 201);
    assert_eq!(s.post(&signed(not_erased(laptop(43, "Bart")), &key)).0, 201);

    let b = Browser::start("nl-BE,nl");
    // Not logged in: sent to the login page; a wrong password is refused.
    b.goto(&format!("{}/review", s.url));
    assert!(b.url().ends_with("/login"), "{}", b.url());
    assert_eq!(
        b.js_text("h1"),
        "Lapterop nazicht: aanmelden",
        "login page in the browser's language"
    );
    b.type_into("#user", "lead");
    b.type_into("#password", "wrong password!");
    b.click("#login");
    b.wait("the login error", |b| b.js_text("#error").contains("Verkeerde"));
    assert!(
        b.text("#error").contains("Verkeerde naam of wachtwoord"),
        "Dutch from the browser"
    );
    b.type_into("#user", "lead");
    b.type_into("#password", "correct horse battery");
    b.click("#login");
    b.wait("the queue", |b| b.js_text("h1") == "Na te kijken");
    assert!(b.url().ends_with("/review"), "{}: {}", b.url(), b.body_text());
    assert_eq!(b.text("h1"), "Na te kijken");
    assert_eq!(b.count("#queue tr"), 4, "header and three new certificates");

    // Hostile text is shown as text and runs nothing.
    let operators: Vec<String> = (0..3)
        .map(|i| {
            b.script(&format!(
                "return document.querySelectorAll('td.operator')[{i}].textContent"
            ))
        })
        .map(|v| v.as_str().unwrap_or("").to_owned())
        .collect();
    assert!(operators.iter().any(|o| o == EVIL), "{operators:?}");
    assert_eq!(b.script("return window.__pwned === undefined"), Value::Bool(true));
    assert!(!b.script("return document.title").as_str().unwrap().contains("pwned"));

    // Filters: outcome and status.
    b.goto(&format!("{}/review?status=all&outcome=not-erased", s.url));
    assert_eq!(b.count("#queue tr"), 2);
    b.goto(&format!(
        "{}/review?status=new&station=bench-1&from=2000-01-01&to=2999-12-31",
        s.url
    ));
    assert_eq!(b.count("#queue tr"), 4);

    // Detail page: every disk and step; approve with a note.
    b.click(&format!("a[href='/review/certificates/{good_id}']"));
    b.wait("the detail page", |b| b.js_text("#approve") == "Goedkeuren");
    let detail = b.body_text();
    for needle in [
        "S4ELNX0N00000041",
        "W620000041",
        "NVMe Sanitize (cryptografisch wissen)",
        "nvme admin opc=0x84",
        "read-back blake3",
    ] {
        assert!(detail.contains(needle), "detail lacks {needle}");
    }
    assert_eq!(b.text("#approve"), "Goedkeuren");
    b.click("#lang-en");
    b.wait("English", |b| b.js_text("#approve") == "Approve");
    assert_eq!(b.text("#approve"), "Approve");
    assert!(b.body_text().contains("NVMe Sanitize (crypto erase)"));
    b.click("#lang-nl");
    b.wait("Dutch", |b| b.js_text("#approve") == "Goedkeuren");
    b.type_into("#note", "checked the sticker, all fine");
    b.click("#approve");
    b.wait("the decision", |b| b.js_text("#review-status") == "approved");
    assert_eq!(b.text("#review-status"), "approved");
    assert!(b
        .text("#history")
        .contains("lead approved checked the sticker, all fine"));
    let donor_url = b.attr("#donor-link", "href");
    keep_screenshot(&b, "review-detail.png");

    // The evil certificate's detail page: text stays text.
    b.goto(&format!("{}/review/certificates/{evil_id}", s.url));
    assert_eq!(b.text("#operator"), format!("{EVIL} (vrijwilliger)"));
    assert_eq!(b.script("return window.__pwned === undefined"), Value::Bool(true));
    assert_eq!(b.count("img"), 0);
    let conn = rusqlite::Connection::open(d.join("lapterop.sqlite")).unwrap();
    assert_eq!(count(d, "certificates"), 3, "the SQL-looking text changed nothing");
    let evil_status = || -> String {
        conn.query_row(
            "SELECT review_status FROM certificates WHERE id = ?1",
            [&evil_id],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(evil_status(), "new");

    // Audit log shows who approved what.
    b.goto(&format!("{}/review/audit", s.url));
    let audit = b.text("#audit");
    assert!(
        audit.contains(&good_id) && audit.contains("approved") && audit.contains("login"),
        "{audit}"
    );

    // CSRF: the same session without (or with a wrong) form token is refused and changes nothing.
    let session = session_cookie(&b);
    for token in ["", "0000000000000000000000000000000000000000"] {
        let r = ureq::post(&format!("{}/review/certificates/{evil_id}/decision", s.url))
            .set("Cookie", &format!("lapterop_session={session}"))
            .send_form(&[("csrf", token), ("action", "approve"), ("note", "")]);
        let status = match r {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(c, _)) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(status, 403);
    }
    assert_eq!(evil_status(), "new");

    // CSV export with the session.
    let csv = ureq::get(&format!("{}/review/export.csv?status=approved", s.url))
        .set("Cookie", &format!("lapterop_session={session}"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains(&good_id) && csv.contains(",approved,lead,"));

    // Donor page: Dutch from the browser, English by the switch, remembered.
    b.goto(&donor_url);
    let nl = b.body_text();
    assert!(
        nl.contains("Bewijs van gegevenswissing") && nl.contains("goedgekeurd"),
        "{nl}"
    );
    assert!(b.text("#station-check").starts_with('✔') && b.text("#receipt-check").starts_with('✔'));
    assert!(b.text("#station-check").contains("geldig"));
    keep_screenshot(&b, "donor-nl.png");
    b.click("#lang-en");
    b.wait("the English donor page", |b| b.js_text("h1") == "Proof of data erasure");
    let en = b.body_text();
    assert!(
        en.contains("Proof of data erasure") && en.contains("approved by the workshop lead"),
        "{en}"
    );
    assert!(b.text("#station-check").contains("valid: signed by station"));
    b.goto(&donor_url);
    assert!(b.body_text().contains("What was erased"), "language remembered");
    keep_screenshot(&b, "donor-en.png");

    // The evil certificate's donor page.
    let token: String = conn
        .query_row("SELECT donor_token FROM certificates WHERE id = ?1", [&evil_id], |r| {
            r.get(0)
        })
        .unwrap();
    b.goto(&format!("{}/d/{token}", s.url));
    assert!(b.text("#operator").starts_with(EVIL));
    assert_eq!(b.script("return window.__pwned === undefined"), Value::Bool(true));
    assert_eq!(b.count("img"), 0);
    assert!(b.body_text().contains("x' OR '1'='1"));
}

fn session_cookie(b: &Browser) -> String {
    // HttpOnly cookies are visible to WebDriver, not to page scripts.
    assert_eq!(
        b.script("return document.cookie.includes('lapterop_session')"),
        Value::Bool(false)
    );
    b.cookie("lapterop_session")
}

fn keep_screenshot(b: &Browser, name: &str) {
    if let Ok(keep) = std::env::var("LAPTEROP_KEEP_PNG") {
        b.screenshot(&std::path::Path::new(&keep).join(name));
    }
}
