//! Donor proof over HTTP: language, offline verification files, batch page, and the PDF through
//! poppler (pdftotext, pdftoppm).

use std::process::Command;

use lapterop_certificate::{self as cert, chain, keys};

use crate::fixtures::{laptop, not_erased, signed};
use crate::helpers::*;

#[test]
fn donor_page_speaks_both_languages_and_offers_offline_proof() {
    let dir = tempfile::tempdir().unwrap();
    let key = enrol(dir.path(), "bench-1", "donor station");
    let s = Server::start(dir.path());
    let (status, receipt) = s.post(&signed(laptop(11, "Anna Peeters"), &key));
    assert_eq!(status, 201);
    let receipt = chain::verify_receipt(receipt.as_bytes(), &s.server_key()).unwrap();
    let page = receipt.donor_url.clone();

    let (status, nl) = get_with(&page, "Accept-Language", "nl-BE,nl;q=0.9,en;q=0.5").unwrap();
    assert_eq!(status, 200);
    assert!(
        nl.contains("Bewijs van gegevenswissing") && nl.contains("Wat werd gewist"),
        "Dutch page"
    );
    assert!(
        nl.contains("S4ELNX0N00000011") && nl.contains("W620000011"),
        "both disk serials"
    );
    assert!(
        nl.contains("geldig: ondertekend door station"),
        "station signature checked"
    );
    assert!(nl.contains("geldig: ontvangen op"), "receipt checked");
    assert!(nl.contains("<svg"), "QR code");
    let (_, en) = get_with(&page, "Accept-Language", "en-GB,en;q=0.9").unwrap();
    assert!(
        en.contains("Proof of data erasure")
            && en.contains("What was erased")
            && en.contains("valid: signed by station")
    );
    // An explicit choice wins over the browser and is remembered in a cookie.
    let resp = ureq::get(&format!("{page}?lang=en"))
        .set("Accept-Language", "nl")
        .call()
        .unwrap();
    assert!(resp.header("Set-Cookie").unwrap().contains("lang=en"));
    assert!(resp.into_string().unwrap().contains("What was erased"));
    let (_, remembered) = get_with(&page, "Cookie", "lang=en").unwrap();
    assert!(remembered.contains("What was erased"));

    // The four files check out offline, exactly as lapterop-cert does it.
    let body = get_bytes(&format!("{page}/certificate.json"));
    let station =
        keys::public_key_from_hex(&String::from_utf8(get_bytes(&format!("{page}/station.pub"))).unwrap()).unwrap();
    let server =
        keys::public_key_from_hex(&String::from_utf8(get_bytes(&format!("{page}/server.pub"))).unwrap()).unwrap();
    let c = cert::verify(&body, &station).expect("certificate verifies with the station key");
    let r = chain::verify_receipt(&get_bytes(&format!("{page}/receipt.json")), &server).expect("receipt verifies");
    assert_eq!(r.certificate_id, c.id);
    assert_eq!(
        r.certificate_blake3,
        cert::document_blake3(&serde_json::from_slice(&body).unwrap()).unwrap()
    );

    // The page links the log's inclusion proof and says what it proves, and the link's proof holds.
    let base_path = page.split_once("/d/").unwrap().1;
    for (text, words) in [
        (&en, "proves that this certificate is in the server's public log"),
        (
            &nl,
            "bewijst dat dit certificaat in het openbare logboek van de server staat",
        ),
    ] {
        assert!(
            text.contains(&format!("href=\"/d/{base_path}/inclusion.json\"")),
            "the donor page links inclusion.json"
        );
        assert!(text.contains(words) && text.contains("lapterop-cert verify-inclusion"));
    }
    let proof = lapterop_certificate::tlog::parse_inclusion(&get_bytes(&format!("{page}/inclusion.json")), &server)
        .expect("the donor's inclusion proof parses, its tree head signed by the server");
    let head = proof
        .tree_head
        .clone()
        .expect("a proof for the current tree carries its head");
    lapterop_certificate::tlog::check_inclusion(&r, &proof, &head).expect("the certificate is in the log");

    // Wrong or malformed tokens find nothing.
    let base = page.rsplit_once('/').unwrap().0;
    assert_eq!(get(&format!("{base}/{}", "0".repeat(40))).unwrap().0, 404);
    assert_eq!(get(&format!("{base}/'%20OR%201=1")).unwrap().0, 404);

    // A tampered stored certificate is shown as NOT valid: the check runs on every render.
    let conn = rusqlite::Connection::open(dir.path().join("lapterop.sqlite")).unwrap();
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("Anna Peeters", "Anna Peeterz");
    conn.execute(
        "UPDATE certificates SET body = ?1 WHERE id = ?2",
        rusqlite::params![tampered.as_bytes(), c.id],
    )
    .unwrap();
    let (_, en) = get_with(&page, "Accept-Language", "en").unwrap();
    assert!(en.contains("NOT valid"), "tampering shows");
    assert!(!en.contains("valid: signed by station"));
}

#[test]
fn batch_page_lists_every_laptop_of_a_donor() {
    let dir = tempfile::tempdir().unwrap();
    let key = enrol(dir.path(), "bench-1", "batch station");
    let s = Server::start(dir.path());
    for n in 0..3 {
        let c = if n == 2 {
            not_erased(laptop(20 + n, "Bart"))
        } else {
            laptop(20 + n, "Bart")
        };
        assert_eq!(s.post(&signed(c, &key)).0, 201);
    }
    let conn = rusqlite::Connection::open(dir.path().join("lapterop.sqlite")).unwrap();
    let token: String = conn
        .query_row(
            "SELECT token FROM batches WHERE kind = 'reference' AND value = 'KBC-2026-117'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(token.len() >= 32);
    let (status, page) = get_with(&format!("{}/b/{token}", s.url), "Accept-Language", "en").unwrap();
    assert_eq!(status, 200);
    // The template escapes '/' in attributes as &#x2f;, which browsers read back as '/'.
    let page = page.replace("&#x2f;", "/");
    assert_eq!(page.matches("/d/").count(), 3, "three donor links: {page}");
    for n in 20..23 {
        assert!(page.contains(&format!("S4ELNX0N{n:08}")));
    }
    assert!(page.contains("NOT erased"));
}

#[test]
fn pdf_holds_serials_outcome_and_id_and_renders_to_png() {
    if !require_tool("pdftotext", "poppler-utils") || !require_tool("pdftoppm", "poppler-utils") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = enrol(dir.path(), "bench-1", "pdf station");
    let s = Server::start(dir.path());
    let c = laptop(31, "Jeroen Van Den Broeck");
    let id = c.id.clone();
    let (status, receipt) = s.post(&signed(c, &key));
    assert_eq!(status, 201);
    let receipt = chain::verify_receipt(receipt.as_bytes(), &s.server_key()).unwrap();
    for (lang, outcome, words) in [
        ("nl", "Resultaat: gewist", "Serienummer"),
        ("en", "Result: erased", "Serial number"),
    ] {
        let pdf = get_bytes(&format!("{}/certificate.pdf?lang={lang}", receipt.donor_url));
        assert!(pdf.starts_with(b"%PDF-"));
        let path = dir.path().join(format!("cert-{lang}.pdf"));
        std::fs::write(&path, &pdf).unwrap();
        let out = Command::new("pdftotext")
            .arg("-layout")
            .arg(&path)
            .arg("-")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pdftotext: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        for needle in [
            "S4ELNX0N00000031",
            "W620000031",
            &id,
            outcome,
            words,
            "Jeroen Van Den Broeck",
            "lapterop-cert verify",
        ] {
            assert!(text.contains(needle), "PDF ({lang}) lacks {needle:?}:\n{text}");
        }
        if lang == "nl" {
            assert!(text.contains("Repair Café Kessel-Lo"), "Dutch glyphs survive");
        }
        let prefix = dir.path().join(format!("page-{lang}"));
        let out = Command::new("pdftoppm")
            .args(["-png", "-r", "60"])
            .arg(&path)
            .arg(&prefix)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "pdftoppm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pages: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("page-{lang}")))
            .collect();
        assert!(!pages.is_empty(), "at least one PNG page");
        for p in &pages {
            let png = std::fs::read(p.path()).unwrap();
            assert!(png.starts_with(b"\x89PNG") && png.len() > 2000);
        }
        if let Ok(keep) = std::env::var("LAPTEROP_KEEP_PNG") {
            std::fs::copy(pages[0].path(), format!("{keep}/pdf-{lang}.png")).unwrap();
        }
    }
}

/// "All data on this device" only when the certificate covers every internal disk of the laptop: the
/// boot stick left alone does not change that, an internal disk left out does, on the page and in the
/// PDF; every disk left alone is listed as not touched, with why.
#[test]
fn only_a_certificate_of_every_internal_disk_says_all_data_on_this_device() {
    let dir = tempfile::tempdir().unwrap();
    let key = enrol(dir.path(), "bench-1", "not touched station");
    let s = Server::start(dir.path());
    let whole = laptop(41, "Anna Peeters");
    assert_eq!(whole.not_touched[0].reason, cert::UntouchedReason::BootStick);
    let mut part = laptop(42, "Anna Peeters");
    part.not_touched.push(cert::UntouchedDisk {
        device: "nvme1n1".into(),
        model: Some("WDC PC SN530".into()),
        serial: Some("21042B800042".into()),
        transport: cert::Transport::Nvme,
        capacity_bytes: 256_060_514_304,
        reason: cert::UntouchedReason::NotChosen,
    });
    let mut urls = Vec::new();
    for c in [whole, part] {
        let (status, receipt) = s.post(&signed(c, &key));
        assert_eq!(status, 201, "{receipt}");
        urls.push(
            chain::verify_receipt(receipt.as_bytes(), &s.server_key())
                .unwrap()
                .donor_url,
        );
    }
    let (_, page) = get_with(&urls[0], "Accept-Language", "en").unwrap();
    assert!(
        page.contains("All data on this device&#x27;s 2 internal disk(s) was erased"),
        "{page}"
    );
    assert!(
        page.contains("sdb (SanDisk Cruzer Blade 4C530001230915107252, 16.0 GB): NOT touched — the Lapterop stick"),
        "{page}"
    );
    let (_, page) = get_with(&urls[1], "Accept-Language", "en").unwrap();
    assert!(!page.contains("All data on this device"), "{page}");
    assert!(page.contains("other disks of this device are not covered"), "{page}");
    assert!(
        page.contains("nvme1n1 (WDC PC SN530 21042B800042, 256.0 GB): NOT touched — an internal disk"),
        "{page}"
    );
    assert!(page.contains("its data is NOT erased"), "{page}");
    let (_, nl) = get_with(&urls[1], "Accept-Language", "nl").unwrap();
    assert!(
        !nl.contains("Alle gegevens op de") && nl.contains("de gegevens erop zijn NIET gewist"),
        "{nl}"
    );

    if !require_tool("pdftotext", "poppler-utils") {
        return;
    }
    let path = dir.path().join("part.pdf");
    std::fs::write(&path, get_bytes(&format!("{}/certificate.pdf?lang=en", urls[1]))).unwrap();
    let out = Command::new("pdftotext").arg(&path).arg("-").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap().replace('\n', " ");
    assert!(!text.contains("All data on this device"), "{text}");
    assert!(text.contains("nvme1n1") && text.contains("NOT erased"), "{text}");
}

/// The donor page and the review page say what the volunteer's screen said, in the shared words
/// (`lapterop-words`): each disk's outcome, the verdict with the parts in words, memory in GiB and
/// percentages written as on the screen.
#[test]
fn the_pages_use_the_words_of_the_volunteers_screen() {
    let dir = tempfile::tempdir().unwrap();
    let key = enrol(dir.path(), "bench-1", "words station");
    add_user(dir.path(), "lead", "correct horse battery");
    let s = Server::start(dir.path());
    let mut c = cert::sample::exceptions_laptop(String::new());
    c.id = cert::new_id().unwrap();
    c.station.name = Some("bench-1".into());
    if let Some(h) = &mut c.host {
        h.verdict = cert::Verdict {
            status: cert::VerdictStatus::NeedsParts,
            needs: vec!["ram".into(), "battery".into()],
            reasons: Vec::new(),
        };
    }
    let id = c.id.clone();
    let (status, receipt) = s.post(&signed(c, &key));
    assert_eq!(status, 201, "{receipt}");
    let donor = chain::verify_receipt(receipt.as_bytes(), &s.server_key())
        .unwrap()
        .donor_url;
    let session = Login::open(&s.url).session("lead", "correct horse battery");
    for (lang, outcomes, hardware) in [
        (
            "nl",
            ["gewist met uitzonderingen", "NIET gewist"],
            [
                "HEEFT ONDERDELEN NODIG: geheugen, batterij",
                "Geheugen: 8 GiB",
                "Batterijgezondheid: 81%",
            ],
        ),
        (
            "en",
            ["erased with exceptions", "NOT erased"],
            ["NEEDS PARTS: memory, battery", "Memory: 8 GiB", "Battery health: 81%"],
        ),
    ] {
        let (_, page) = get(&format!("{donor}?lang={lang}")).unwrap();
        for want in outcomes {
            assert!(page.contains(&format!("\">{want}</span>")), "{lang}: {want:?}\n{page}");
        }
        let detail = get_with_cookie(&format!("{}/review/certificates/{id}?lang={lang}", s.url), &session);
        assert_eq!(detail.status, 200, "{}", detail.body);
        for want in outcomes.iter().chain(&hardware) {
            assert!(detail.body.contains(want), "{lang}: {want:?}\n{}", detail.body);
        }
    }
}
