//! Review sessions (issue 15, point 6): they end when the reviewer's password changes (`users add` on
//! an existing name) and after 30 minutes unused; using a session keeps it alive.

use std::time::Duration;

use crate::helpers::*;
use crate::login::{audit_page, PASSWORD};

#[test]
fn a_new_password_ends_the_sessions_of_that_reviewer() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "lead", PASSWORD);
    add_user(dir.path(), "other-lead", PASSWORD);
    let s = Server::start(dir.path());
    let login = Login::open(&s.url);
    let cookie = login.session("lead", PASSWORD);
    let other = login.session("other-lead", PASSWORD);
    let queue = |cookie: &str| get_with_cookie(&format!("{}/review", s.url), cookie);
    assert_eq!(queue(&cookie).status, 200);

    add_user(dir.path(), "lead", "a new long pass phrase");
    let a = queue(&cookie);
    assert_eq!(
        (a.status, a.header("Location")),
        (303, Some("/login")),
        "the old session ended"
    );
    assert_eq!(queue(&other).status, 200, "another reviewer's session goes on");
    assert_eq!(login.attempt("lead", PASSWORD).status, 401);
    let cookie = login.session("lead", "a new long pass phrase");
    let page = audit_page(&s, &cookie);
    assert!(
        page.contains("<td>lead</td><td>password changed</td>") && page.contains("1 session ended"),
        "{page}"
    );
}

#[test]
fn a_session_unused_for_30_minutes_ends() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "lead", PASSWORD);
    let s = Server::start(dir.path());
    let login = Login::open(&s.url);
    let idle = login.session("lead", PASSWORD);
    let used = login.session("lead", PASSWORD);
    let queue = |cookie: &str| get_with_cookie(&format!("{}/review", s.url), cookie);

    // Make one session last used 31 minutes ago and the other 29 minutes ago.
    let conn = rusqlite::Connection::open(dir.path().join("lapterop.sqlite")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = |c: &str| c.trim_start_matches("lapterop_session=").to_owned();
    for (cookie, minutes) in [(&idle, 31), (&used, 29)] {
        let n = conn
            .execute(
                "UPDATE sessions SET last_seen = ?2 WHERE token = ?1",
                rusqlite::params![token(cookie), now - minutes * 60],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let a = queue(&idle);
    assert_eq!(
        (a.status, a.header("Location")),
        (303, Some("/login")),
        "idle for 31 minutes"
    );
    assert_eq!(queue(&used).status, 200, "used 29 minutes ago");
    // Using it refreshed it.
    let seen: i64 = conn
        .query_row("SELECT last_seen FROM sessions WHERE token = ?1", [token(&used)], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(seen >= now, "last_seen refreshed on use");
}
