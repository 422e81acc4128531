//! Reviewer login under abuse (issue 15, point 6): failed logins are limited per name (and per
//! address), refused with `429` without checking the password, and audited; an unknown name costs the
//! same Argon2 work as a wrong password; a flood of logins stays within bounded memory and gets `503`s.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use crate::helpers::*;

pub const PASSWORD: &str = "correct horse battery";

pub fn audit_page(s: &Server, cookie: &str) -> String {
    let page = get_with_cookie(&format!("{}/review/audit", s.url), cookie);
    assert_eq!(page.status, 200, "{}", page.body);
    page.body
}

#[test]
fn five_failures_block_the_name_with_429_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "lead", PASSWORD);
    add_user(dir.path(), "other-lead", PASSWORD);
    let s = Server::start(dir.path());
    let login = Login::open(&s.url);

    for i in 1..=5 {
        let a = login.attempt("lead", &format!("wrong password {i}"));
        assert_eq!(a.status, 401, "failure {i}: {}", a.body);
        assert!(a.body.contains("Wrong name or password"), "{}", a.body);
    }
    // The right password no longer helps: refused without being checked.
    let a = login.attempt("lead", PASSWORD);
    assert_eq!(a.status, 429, "{}", a.body);
    let retry: u64 = a
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=15 * 60).contains(&retry), "Retry-After {retry}");
    assert!(
        a.body
            .contains("Too many failed logins for this name; try again in 15 minutes or ask another lead"),
        "{}",
        a.body
    );
    assert_eq!(count(dir.path(), "sessions"), 0);

    // An unknown name, with markup, and a very long one: audited as typed, escaped and bounded.
    assert_eq!(login.attempt("nobody<b>", "whatever it is").status, 401);
    let long = "x".repeat(5000);
    assert_eq!(login.attempt(&long, "whatever it is").status, 401);

    // Another name from the same address still logs in, and reads the audit log.
    let cookie = login.session("other-lead", PASSWORD);
    let page = audit_page(&s, &cookie);
    let rows: Vec<&str> = page.split("<tr>").collect();
    let failed = rows
        .iter()
        .filter(|r| r.contains("<td>lead</td><td>login failed</td>") && r.contains("wrong password"))
        .count();
    assert_eq!(failed, 5, "five failures of lead in the audit log: {page}");
    assert!(
        rows.iter()
            .any(|r| r.contains("<td>lead</td><td>login blocked (rate limit)</td>")),
        "the block is audited: {page}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("<td>nobody&lt;b&gt;</td><td>login failed</td>") && r.contains("not a reviewer")),
        "an unknown name is audited as typed and escaped: {page}"
    );
    assert!(!page.contains("nobody<b>"));
    assert!(
        !page.contains(PASSWORD) && !page.contains("wrong password 1"),
        "no password in the log"
    );
    let conn = rusqlite::Connection::open(dir.path().join("lapterop.sqlite")).unwrap();
    let longest: u64 = conn
        .query_row("SELECT MAX(LENGTH(user)) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert!(longest <= 65, "typed names are bounded in the audit log: {longest}");
}

#[test]
fn an_unknown_name_costs_as_much_as_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "lead", PASSWORD);
    let s = Server::start(dir.path());
    let login = Login::open(&s.url);
    let timed = |user: &str| {
        let t = Instant::now();
        assert_eq!(login.attempt(user, "not the password").status, 401);
        t.elapsed()
    };
    // Within the per-name limit: five of each, interleaved; compare the medians.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..5 {
        known.push(timed("lead"));
        unknown.push(timed(&format!("nobody-{i}")));
    }
    known.sort();
    unknown.sort();
    let (known, unknown) = (known[2], unknown[2]);
    eprintln!(
        "login timing: median wrong password {:.1} ms, unknown name {:.1} ms",
        known.as_secs_f64() * 1e3,
        unknown.as_secs_f64() * 1e3
    );
    // Without the Argon2 work an unknown name answers in well under a tenth of the time.
    assert!(
        unknown * 3 > known,
        "an unknown name ({unknown:?}) answers much faster than a wrong password ({known:?})"
    );
}

#[test]
fn a_flood_of_logins_gets_503s_and_stays_within_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "lead", PASSWORD);
    add_user(dir.path(), "other-lead", PASSWORD);
    let s = Server::start(dir.path());
    let login = Arc::new(Login::open(&s.url));
    let before = s.peak_rss_kib();

    // Two rounds: the memory of the first is reused by the second, not added to it.
    for round in 1..=2 {
        let answers = flood(&login, round);
        let peak = s.peak_rss_kib();
        let busy = answers.iter().filter(|(s, _)| *s == 503).count();
        eprintln!(
            "login flood {round}: {CLIENTS} at once: {} x 401, {busy} x 503, {} x 429; peak RSS {} MiB (before {} MiB)",
            answers.iter().filter(|(s, _)| *s == 401).count(),
            answers.iter().filter(|(s, _)| *s == 429).count(),
            peak / 1024,
            before / 1024
        );
        for (status, retry_after) in &answers {
            assert!(matches!(status, 401 | 429 | 503), "answer {status}");
            if *status == 503 {
                assert!(retry_after, "503 with Retry-After");
            }
        }
        assert!(busy > 0, "logins over the queue are refused with 503, not queued");
        // Two Argon2 runs of 19 MiB at a time on top of about 10 MiB: about 50 MiB. Without the bound
        // it was 836 MiB; with Argon2 memory allocated per check, 200 MiB after ten logins in a row.
        assert!(peak < 150 * 1024, "peak RSS {} MiB", peak / 1024);
    }

    // The server is alive and a reviewer still logs in.
    assert_eq!(get(&format!("{}/healthz", s.url)), Ok((200, "ok\n".to_owned())));
    login.session("other-lead", PASSWORD);
}

const CLIENTS: usize = 100;

/// `CLIENTS` logins at once, half on a reviewer's name (its hash is checked), half on unknown names;
/// their status and whether they had `Retry-After`.
fn flood(login: &Arc<Login>, round: usize) -> Vec<(u16, bool)> {
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let login = login.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let user = if i % 2 == 0 {
                    "lead".to_owned()
                } else {
                    format!("flood-{round}-{i}")
                };
                barrier.wait();
                let a = login.attempt(&user, "not a password");
                (a.status, a.header("Retry-After").is_some())
            })
        })
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}
