//! The full audit uploaded beside a certificate and the review page "hardware the stick did not
//! drive": counts by device over laptops, the models each was seen in, both languages, reviewers only.
//!
//! The ThinkPad T480 audits are the document the agent itself printed for a recorded T480
//! (`agent/tests/fixtures/audit/undriven-t480.json`, pinned by the agent's test
//! `undriven_hardware_of_a_real_thinkpad`); the Dell Latitude 5480's list is written here from its
//! `lspci -vvnnk` (`shared/hardware/lspci/d07.txt`): the functions the stick's module set leaves
//! without a driver, with the names that dump gives.

use serde_json::{json, Value};

use crate::fixtures::{laptop, signed};
use crate::helpers::*;

fn t480_audit() -> Vec<u8> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/fixtures/audit/undriven-t480.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pci(address: &str, ids: &str, sub: &str, class: &str, vendor: &str, name: &str, class_name: &str) -> Value {
    let (v, d) = ids.split_once(':').unwrap();
    let (sv, sd) = sub.split_once(':').unwrap();
    json!({"bus": "pci", "address": address, "vendor_id": v, "device_id": d, "subsystem_vendor_id": sv,
           "subsystem_device_id": sd, "class": class, "vendor": vendor, "name": name, "class_name": class_name})
}

/// A Latitude 5480's audit, reduced to what the server reads (the schema and the list).
fn latitude_audit() -> Vec<u8> {
    let intel = "Intel Corporation";
    let undriven = vec![
        pci(
            "0000:00:02.0",
            "8086:1916",
            "1028:07a7",
            "030000",
            intel,
            "Skylake GT2 [HD Graphics 520]",
            "VGA compatible controller",
        ),
        pci(
            "0000:00:04.0",
            "8086:1903",
            "1028:07a7",
            "118000",
            intel,
            "Xeon E3-1200 v5/E3-1500 v5/6th Gen Core Processor Thermal Subsystem",
            "Signal processing controller",
        ),
        pci(
            "0000:00:14.2",
            "8086:9d31",
            "1028:07a7",
            "118000",
            intel,
            "Sunrise Point-LP Thermal subsystem",
            "Signal processing controller",
        ),
        pci(
            "0000:00:16.0",
            "8086:9d3a",
            "1028:07a7",
            "078000",
            intel,
            "Sunrise Point-LP CSME HECI #1",
            "Communication controller",
        ),
        pci(
            "0000:00:1f.3",
            "8086:9d70",
            "1028:07a7",
            "040300",
            intel,
            "Sunrise Point-LP HD Audio",
            "Audio device",
        ),
        pci(
            "0000:00:1f.4",
            "8086:9d23",
            "1028:07a7",
            "0c0500",
            intel,
            "Sunrise Point-LP SMBus",
            "SMBus",
        ),
        pci(
            "0000:01:00.0",
            "10ec:525a",
            "1028:07a7",
            "ff0000",
            "Realtek Semiconductor Co., Ltd.",
            "RTS525A PCI Express Card Reader",
            "Unassigned class",
        ),
        pci(
            "0000:02:00.0",
            "8086:24fd",
            "8086:0050",
            "028000",
            intel,
            "Wireless 8265 / 8275",
            "Network controller",
        ),
        // Hostile text in a name the agent copied from a device: shown as text.
        json!({"bus": "usb", "address": "1-5:1.0", "vendor_id": "0c45", "device_id": "6717", "class": "0e:01:00",
               "name": "<script>window.__pwned=1</script>Cam"}),
        // Not the audit's hex form: kept in the stored document, left off the page.
        json!({"bus": "pci", "address": "x", "vendor_id": "BAD", "device_id": "1", "class": "01"}),
    ];
    let doc = json!({"schema": "lapterop.audit/v1", "undriven": undriven});
    serde_json::to_vec_pretty(&doc).unwrap()
}

/// A signed certificate of a laptop `n` with this SMBIOS identity and device id whose host names
/// `audit` by its blake3; returns (certificate id, signed bytes).
fn certificate(
    n: u64,
    system: (&str, &str, &str),
    device: &str,
    audit: &[u8],
    key: &lapterop_certificate::SigningKey,
) -> (String, Vec<u8>) {
    let mut c = laptop(n, "Anna Peeters");
    let h = c.host.as_mut().unwrap();
    h.system.vendor = Some(system.0.into());
    h.system.product = Some(system.1.into());
    h.system.version = Some(system.2.into());
    h.device_id = blake3::hash(device.as_bytes()).to_hex().to_string();
    h.audit_blake3 = blake3::hash(audit).to_hex().to_string();
    (c.id.clone(), signed(c, key))
}

/// The `<tr>` of the device `key` on the page, or "" when it is not there.
fn row<'a>(page: &'a str, key: &str) -> &'a str {
    let Some(start) = page.find(&format!("<tr class=\"device\" id=\"{key}\">")) else {
        return "";
    };
    let rest = &page[start..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

/// The text of the cell with class `class` in a row.
fn cell<'a>(row: &'a str, class: &str) -> &'a str {
    let open = format!("<td class=\"{class}\">");
    let start = row.find(&open).map(|i| i + open.len()).unwrap_or(row.len());
    let rest = &row[start..];
    &rest[..rest.find("</td>").unwrap_or(rest.len())]
}

const T480: (&str, &str, &str) = ("LENOVO", "20L5CTO1WW", "ThinkPad T480");
const LATITUDE: (&str, &str, &str) = ("Dell Inc.", "Latitude 5480", "Not Specified");

/// A server holding: two T480s (one wiped twice), a Latitude 5480, and a T480 certificate whose
/// audit never came. Returns the server and a reviewer's session cookie.
fn server_with_audits(d: &std::path::Path) -> (Server, String) {
    let key = enrol(d, "bench-1", "hardware station");
    add_user(d, "lead", "correct horse battery");
    let s = Server::start(d);
    let t480 = t480_audit();
    let latitude = latitude_audit();
    let put_audit = |id: &str, audit: &[u8]| put(&format!("{}/api/v1/certificates/{id}/audit", s.url), audit).unwrap();
    for (n, system, device, audit) in [
        (61, T480, "t480 A", &t480),
        (62, T480, "t480 B", &t480),
        (63, LATITUDE, "latitude", &latitude),
        // The first T480 again (wiped a second time): one laptop, counted once.
        (64, T480, "t480 A", &t480),
    ] {
        let (id, bytes) = certificate(n, system, device, audit, &key);
        assert_eq!(s.post(&bytes).0, 201);
        let (status, text) = put_audit(&id, audit);
        assert_eq!(status, 201, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["audit_blake3"], json!(blake3::hash(audit).to_hex().to_string()));
    }
    // A certificate whose station never sent the audit.
    let (_, bytes) = certificate(65, T480, "t480 C", &t480, &key);
    assert_eq!(s.post(&bytes).0, 201);
    let cookie = Login::open(&s.url).session("lead", "correct horse battery");
    (s, cookie)
}

#[test]
fn the_audit_is_kept_only_when_it_is_the_one_the_certificate_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = enrol(d, "bench-1", "hardware station");
    let s = Server::start(d);
    let audit = t480_audit();
    let (id, bytes) = certificate(71, T480, "t480", &audit, &key);
    let url = format!("{}/api/v1/certificates/{id}/audit", s.url);
    // Before the certificate: refused like any audit no certificate names (so the answer tells nobody
    // which ids exist), and it says what to do.
    let (status, text) = put(&url, &audit).unwrap();
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("send the certificate first"), "{text}");
    assert_eq!(s.post(&bytes).0, 201);
    // One byte changed: refused, nothing kept.
    let mut changed = audit.clone();
    let at = changed.len() / 2;
    changed[at] ^= 0x01;
    let (status, text) = put(&url, &changed).unwrap();
    assert_eq!(status, 422, "{text}");
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["field"], "host.audit_blake3");
    assert!(e["error"].as_str().unwrap().contains("unchanged"), "{text}");
    assert_eq!((s.count("audits"), s.count("undriven")), (0, 0));
    // The real one: kept with its twelve functions; again: the same answer, nothing doubled.
    let (status, text) = put(&url, &audit).unwrap();
    assert_eq!(status, 201, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (answer["undriven"].clone(), answer["undriven_skipped"].clone()),
        (json!(12), json!(0))
    );
    assert_eq!(put(&url, &audit).unwrap().0, 200);
    assert_eq!((s.count("audits"), s.count("undriven")), (1, 12));
    // Stored exactly as sent.
    let conn = rusqlite::Connection::open(d.join("lapterop.sqlite")).unwrap();
    let stored: Vec<u8> = conn
        .query_row("SELECT body FROM audits WHERE certificate_id = ?1", [&id], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, audit);
    // Over the size limit: refused on its Content-Length, before the body is read. The request is
    // written by hand with headers only: a client still sending a 1 MiB body may see the connection
    // closed under it (EPIPE) after the 413, which is the refusal working, not a failure.
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let head = format!(
        "PUT /api/v1/certificates/{id}/audit HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        (1 << 20) + 1
    );
    std::io::Write::write_all(&mut conn, head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut conn, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn the_hardware_page_counts_laptops_by_device_with_their_models() {
    let dir = tempfile::tempdir().unwrap();
    let (s, cookie) = server_with_audits(dir.path());
    let page_url = format!("{}/review/hardware", s.url);
    // Reviewers only.
    let anonymous = get_with_cookie(&page_url, "");
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), Some("/login"));
    let a = get_with_cookie(&format!("{page_url}?lang=en"), &cookie);
    assert_eq!(a.status, 200, "{}", a.body);
    let page = &a.body;
    assert!(page.contains("<h1>Hardware the stick did not drive</h1>"), "{page}");
    assert!(
        page.contains("From the audits of 3 laptops; 1 certificate came without an audit and is not counted."),
        "{page}"
    );
    // The Wi-Fi card of both T480s and the Latitude: three laptops, two models, and the network purpose.
    let wifi = row(page, "pci-8086-24fd-028000");
    assert_eq!(cell(wifi, "laptops"), "3", "{wifi}");
    assert_eq!(
        cell(wifi, "models"),
        "LENOVO ThinkPad T480 (2), Dell Inc. Latitude 5480 (1)"
    );
    assert_eq!(cell(wifi, "purpose"), "<b>network</b>");
    // (HTML-escaped as the page sends it; the browser test reads the text.)
    assert_eq!(cell(wifi, "name"), "Intel Corporation Wireless 8265 &#x2f; 8275");
    // Devices the job needs come first: the Wi-Fi card (3 laptops) before the graphics (2 and 1).
    let first = page.find("<tr class=\"device\"").unwrap();
    assert!(page[first..].starts_with("<tr class=\"device\" id=\"pci-8086-24fd-028000\">"));
    assert!(page.find("pci-8086-5917-030000").unwrap() < page.find("pci-8086-1916-030000").unwrap());
    assert!(page.find("pci-8086-1916-030000").unwrap() < page.find("pci-8086-9d23-0c0500").unwrap());
    // The T480 camera: two laptops (the twice-wiped one once), one model, nothing the job needs.
    let camera = row(page, "usb-04f2-b604-0e-01-00");
    assert_eq!(
        (cell(camera, "laptops"), cell(camera, "models")),
        ("2", "LENOVO ThinkPad T480 (2)")
    );
    assert_eq!(cell(camera, "purpose"), "");
    assert_eq!(
        cell(row(page, "pci-10ec-525a-ff0000"), "models"),
        "Dell Inc. Latitude 5480 (1)"
    );
    // Hostile text is text; a malformed entry is not on the page.
    assert!(!page.contains("<script>window.__pwned"), "{page}");
    assert!(
        page.contains("&lt;script&gt;window.__pwned=1&lt;&#x2f;script&gt;Cam"),
        "{page}"
    );
    assert!(!page.contains("BAD"), "{page}");
    // 12 T480 functions + 9 of the Latitude, 5 of them shared: 16 devices.
    assert_eq!(page.matches("<tr class=\"device\"").count(), 16);
    // Dutch, and linked from the review navigation.
    let nl = get_with_cookie(&format!("{page_url}?lang=nl"), &cookie).body;
    assert!(nl.contains("<h1>Hardware die de stick niet aanstuurde</h1>"), "{nl}");
    assert_eq!(cell(row(&nl, "pci-8086-24fd-028000"), "purpose"), "<b>netwerk</b>");
    assert!(
        nl.contains("Uit de audits van 3 laptops; 1 certificaat kwam zonder audit en telt niet mee."),
        "{nl}"
    );
    let queue = get_with_cookie(&format!("{}/review?lang=en", s.url), &cookie).body;
    assert!(
        queue.contains("<a href=\"/review/hardware\" id=\"nav-hardware\">Hardware without a driver</a>"),
        "{queue}"
    );
}

#[test]
fn the_hardware_page_in_a_browser() {
    if !require_browser() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = server_with_audits(dir.path());
    let b = Browser::start("nl-BE,nl");
    b.goto(&format!("{}/review", s.url));
    b.type_into("#user", "lead");
    b.type_into("#password", "correct horse battery");
    b.click("#login");
    b.wait("the queue", |b| b.js_text("h1") == "Na te kijken");
    b.click("#nav-hardware");
    b.wait("the hardware page", |b| {
        b.js_text("h1") == "Hardware die de stick niet aanstuurde"
    });
    assert_eq!(b.count("#hardware tr.device"), 16);
    assert_eq!(b.text("#pci-8086-24fd-028000 td.laptops"), "3");
    assert_eq!(b.text("#pci-8086-24fd-028000 td.purpose"), "netwerk");
    assert_eq!(
        b.text("#pci-8086-24fd-028000 td.name"),
        "Intel Corporation Wireless 8265 / 8275"
    );
    assert_eq!(
        b.text("#pci-8086-24fd-028000 td.models"),
        "LENOVO ThinkPad T480 (2), Dell Inc. Latitude 5480 (1)"
    );
    assert_eq!(b.script("return window.__pwned === undefined"), Value::Bool(true));
    b.click("#lang-en");
    b.wait("English", |b| b.js_text("h1") == "Hardware the stick did not drive");
    assert_eq!(b.text("#pci-8086-24fd-028000 td.purpose"), "network");
}
