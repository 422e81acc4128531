//! The review UI for workshop leads: log in, the queue with filters, a certificate in detail, decisions
//! (approve, flag for re-wipe, reject, each with a note) and the audit log; CSV export.
//!
//! Sessions live in the database (cookie `lapterop_session`, HttpOnly, SameSite=Strict). Every form
//! carries the session's CSRF token (synchronizer pattern); the login form uses a double-submit token
//! in a short-lived cookie. Passwords are stored as Argon2id hashes. Failed logins are limited per name
//! and per address and the Argon2 work is bounded ([`crate::throttle`]); a session ends after
//! [`crate::limits::SESSION_SECONDS`], after [`crate::limits::SESSION_IDLE_SECONDS`] unused, and when
//! the reviewer's password changes ([`store::set_user`]).

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use argon2::Argon2;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use lapterop_certificate as cert;
use minijinja::context;

use crate::limits;
use crate::store::{self, Filter, Session};
use crate::throttle::{Blocked, Refusal};
use crate::views::{self, Lang};
use crate::web::{self, Answer, App, AppState, OrInternal, OrNotFound, PageLang};

const SESSION_COOKIE: &str = "lapterop_session";
const LOGIN_COOKIE: &str = "lapterop_login";

/// Review routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/review") }))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/review", get(queue))
        .route("/review/export.csv", get(export))
        .route("/review/audit", get(audit))
        .route("/review/certificates/{id}", get(detail))
        .route("/review/certificates/{id}/decision", post(decide))
}

/// An Argon2id hash of a password (PHC string).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("encoding the salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// An Argon2id hash with the parameters `hash_password` uses, of a password nobody knows: an unknown
/// name is checked against it, so that it costs the same time as a wrong password.
/// Made once by `hash_password` from 160 random bits that were thrown away.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$mANvqSNEWbv+7WoTNNz2/Q$OH86AuHuD4Z+TSFuH2Dy160y9LBlVH9ZxcHqhny5Nls";

/// The result of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked {
    /// The password matched the reviewer's hash.
    matched: bool,
    /// There was no such reviewer; the dummy hash was checked instead.
    unknown_name: bool,
}

/// Checks `password` against the stored hash, or against [`DUMMY_HASH`] when the name is unknown:
/// both run Argon2 with the same parameters.
fn check_password(stored: Option<&str>, password: &str) -> Checked {
    let matched = verify(stored.unwrap_or(DUMMY_HASH), password);
    Checked {
        matched: matched && stored.is_some(),
        unknown_name: stored.is_none(),
    }
}

thread_local! {
    /// Argon2's working memory, kept by each hashing thread for its next check: allocating 19 MiB
    /// per check leaves the allocator's arenas fragmented and the process growing by that much per login.
    static ARGON2_MEMORY: RefCell<Vec<argon2::Block>> = const { RefCell::new(Vec::new()) };
}

/// Whether `password` matches the PHC string `hash`: `PasswordVerifier::verify_password` with the
/// working memory of [`ARGON2_MEMORY`].
fn verify(hash: &str, password: &str) -> bool {
    let Ok(h) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        argon2::Algorithm::try_from(h.algorithm),
        h.version
            .map_or(Ok(argon2::Version::default()), argon2::Version::try_from),
        argon2::Params::try_from(&h),
    ) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    let mut out = vec![0u8; expected.len()];
    let computed = ARGON2_MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut memory[..blocks],
        )
    });
    // `Output`'s comparison takes constant time.
    computed.is_ok() && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The logged-in session, or a redirect to the login page.
pub(crate) async fn session(app: &AppState, headers: &HeaderMap) -> Result<(String, Session), Response> {
    let Some(token) = web::cookie(headers, SESSION_COOKIE) else {
        return Err(Redirect::to("/login").into_response());
    };
    let t = token.clone();
    match web::db(app, move |_, c| store::session(c, &t, now_secs())).await {
        Ok(Some(s)) => Ok((token, s)),
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(web::internal(&e)),
    }
}

fn forbidden(text: &str) -> Response {
    web::html(
        StatusCode::FORBIDDEN,
        format!(
            "<!doctype html><meta charset=utf-8><title>Refused</title><p>{}</p><p><a href=\"/review\">Back</a></p>",
            minijinja::HtmlEscape(text)
        ),
    )
}

async fn login_form(State(app): State<AppState>, page: PageLang) -> Response {
    page.remember(&app, login_page(&app, None, page.lang))
}

fn login_page(app: &App, error: Option<&str>, lang: Lang) -> Response {
    let token = match crate::random_token() {
        Ok(t) => t,
        Err(e) => return web::internal(&e),
    };
    let ctx = context! {
        csrf => token,
        error => error,
        title => lang.pick("Log in", "Aanmelden"),
        lang => lang.code(),
        nl => lang == Lang::Nl,
    };
    let mut resp = web::render(app, "login.html", ctx);
    resp.headers_mut()
        .append(header::SET_COOKIE, web::set_cookie(app, LOGIN_COOKIE, &token, 600));
    resp
}

#[derive(Debug, serde::Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    csrf: String,
}

async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let cookie = web::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !same(&cookie, &f.csrf) {
        return forbidden("The login form expired or came from another site. Reload the login page.");
    }
    let lang = PageLang::from_headers(&headers).lang;
    let typed = audit_name(&f.user);
    let address = peer.ip();
    let ticket = match app.login.admit(&f.user, address) {
        Ok(t) => t,
        Err(Refusal::Busy) => {
            let message = lang.pick(
                "The server is busy checking other logins; try again in a few seconds.",
                "De server controleert nu veel andere aanmeldingen; probeer het over enkele seconden opnieuw.",
            );
            let retry = Duration::from_secs(limits::RETRY_AFTER_SECONDS);
            return refused_page(&app, lang, StatusCode::SERVICE_UNAVAILABLE, retry, &message);
        }
        Err(Refusal::Blocked { by, retry_after, first }) => {
            let minutes = whole_seconds(retry_after).div_ceil(60);
            let (message, why) = match by {
                Blocked::Name => (
                    lang.pick(
                        &format!(
                            "Too many failed logins for this name; try again in {} or ask another lead.",
                            in_minutes(minutes, Lang::En)
                        ),
                        &format!(
                            "Te veel mislukte aanmeldingen voor deze naam; probeer opnieuw over {} of vraag het \
                             aan een andere verantwoordelijke.",
                            in_minutes(minutes, Lang::Nl)
                        ),
                    ),
                    format!("{} failed logins for this name", limits::LOGIN_FAILURES_PER_NAME),
                ),
                Blocked::Address => (
                    lang.pick(
                        &format!(
                            "Too many failed logins from your network; try again in {}.",
                            in_minutes(minutes, Lang::En)
                        ),
                        &format!(
                            "Te veel mislukte aanmeldingen vanaf uw netwerk; probeer opnieuw over {}.",
                            in_minutes(minutes, Lang::Nl)
                        ),
                    ),
                    format!("{} failed logins from this address", limits::LOGIN_FAILURES_PER_ADDRESS),
                ),
            };
            if first {
                // Once per window and name (or address): a flood of refused attempts writes nothing.
                let note = format!(
                    "{why} within {} minutes; refused without checking the password for {minutes} more minutes; from \
                     {address}",
                    limits::LOGIN_WINDOW.as_secs() / 60
                );
                let audited = web::db(&app, move |_, c| {
                    store::audit_with_note(c, &typed, "login blocked (rate limit)", &note, &cert::now_utc())
                })
                .await;
                if let Err(e) = audited {
                    eprintln!("lapterop-server: auditing a refused login: {e:#}");
                }
            }
            return refused_page(&app, lang, StatusCode::TOO_MANY_REQUESTS, retry_after, &message);
        }
    };
    let app2 = app.clone();
    let result = app
        .login
        .run(ticket, move |ticket| {
            app2.pool.with(|c| {
                let stored = store::password_hash(c, &f.user)?;
                let checked = check_password(stored.as_deref(), &f.password);
                if !checked.matched {
                    let why = if checked.unknown_name {
                        "not a reviewer's name (as typed)"
                    } else {
                        "wrong password"
                    };
                    store::audit_with_note(
                        c,
                        &typed,
                        "login failed",
                        &format!("{why}; from {address}"),
                        &cert::now_utc(),
                    )?;
                    return Ok(None);
                }
                app2.login.succeeded(ticket);
                let token = crate::random_token()?;
                let csrf = crate::random_token()?;
                store::create_session(c, &token, &f.user, &csrf, now_secs())?;
                store::audit(c, &f.user, "login", &cert::now_utc())?;
                Ok(Some(token))
            })
        })
        .await;
    match result {
        Ok(Some(token)) => {
            let mut resp = Redirect::to("/review").into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                web::set_cookie(&app, SESSION_COOKIE, &token, store::SESSION_SECONDS),
            );
            h.append(header::SET_COOKIE, web::set_cookie(&app, LOGIN_COOKIE, "", 0));
            resp
        }
        Ok(None) => {
            let message = lang.pick("Wrong name or password.", "Verkeerde naam of wachtwoord.");
            let mut resp = login_page(&app, Some(&message), lang);
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            resp
        }
        Err(e) => web::internal(&e),
    }
}

/// The login page with `message`, answered `status` with `Retry-After`.
fn refused_page(app: &App, lang: Lang, status: StatusCode, retry_after: Duration, message: &str) -> Response {
    let mut resp = login_page(app, Some(message), lang);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(whole_seconds(retry_after).max(1)),
    );
    resp
}

/// `d` in whole seconds, rounded up.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn in_minutes(n: u64, lang: Lang) -> String {
    match (lang, n) {
        (Lang::En, 1) => "1 minute".into(),
        (Lang::En, n) => format!("{n} minutes"),
        (Lang::Nl, 1) => "1 minuut".into(),
        (Lang::Nl, n) => format!("{n} minuten"),
    }
}

/// A typed login name as the audit log keeps it: control characters replaced, at most
/// [`limits::AUDIT_NAME_CHARS`] characters (then "…").
fn audit_name(typed: &str) -> String {
    let mut out: String = typed
        .chars()
        .take(limits::AUDIT_NAME_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if typed.chars().nth(limits::AUDIT_NAME_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[derive(Debug, serde::Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Answer {
    let (token, s) = session(&app, &headers).await?;
    if !same(&s.csrf, &f.csrf) {
        return Err(forbidden("Missing or wrong form token."));
    }
    web::db(&app, move |_, c| {
        store::delete_session(c, &token)?;
        store::audit(c, &s.user, "logout", &cert::now_utc())
    })
    .await
    .or_500()?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, web::set_cookie(&app, SESSION_COOKIE, "", 0));
    Ok(resp)
}

async fn queue(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(mut filter): Query<Filter>,
    page: PageLang,
) -> Answer {
    let (_, s) = session(&app, &headers).await?;
    // The queue shows new certificates unless another status (or "all") is asked for.
    if filter.status.is_empty() {
        filter.status = "new".into();
    }
    let mut query = filter.clone();
    if query.status == "all" {
        query.status.clear();
    }
    let (rows, stations) = web::db(&app, move |_, c| {
        Ok((store::certs(c, &query, 500)?, store::station_names(c)?))
    })
    .await
    .or_500()?;
    let export = format!(
        "/review/export.csv?{}",
        serde_urlencoded_filter(&Filter {
            status: if filter.status == "all" {
                String::new()
            } else {
                filter.status.clone()
            },
            ..filter.clone()
        })
    );
    Ok(page.render(
        &app,
        "queue.html",
        context! {
            title => page.lang.pick("Review queue", "Na te kijken"),
            user => s.user,
            csrf => s.csrf,
            rows => rows,
            stations => stations,
            f => filter,
            export => export,
        },
    ))
}

/// The filter as a query string (values percent-encoded).
fn serde_urlencoded_filter(f: &Filter) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    [
        ("status", &f.status),
        ("outcome", &f.outcome),
        ("station", &f.station),
        ("verdict", &f.verdict),
        ("from", &f.from),
        ("to", &f.to),
        ("image", &f.image),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", enc(v)))
    .collect::<Vec<_>>()
    .join("&")
}

async fn detail(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>, page: PageLang) -> Answer {
    let (_, s) = session(&app, &headers).await?;
    let lang = page.lang;
    let (view, history, batches, donor_url) = web::db(&app, move |app, c| {
        let Some(cert) = store::cert_by_id(c, &id)? else {
            return Ok(None);
        };
        let station = store::station_by_key_id(c, &cert.key_id)?;
        let view = views::cert_view(&cert, station.as_ref(), &app.server_key.verifying_key(), lang)?;
        let history = store::audit_entries(c, Some(&cert.id), 100)?;
        let mut batches = Vec::new();
        for (kind, value) in [("reference", &cert.donor_reference), ("lot", &cert.lot)] {
            if let Some(v) = value {
                if let Some(t) = store::batch_token(c, kind, v)? {
                    batches.push(context! { kind => kind, value => v, url => format!("{}/b/{t}", app.public_url) });
                }
            }
        }
        let donor_url = crate::donor::donor_url(app, &cert.donor_token);
        Ok(Some((view, history, batches, donor_url)))
    })
    .await
    .or_404()?;
    Ok(page.render(
        &app,
        "detail.html",
        context! {
            title => lang.pick("Certificate", "Certificaat"),
            user => s.user,
            csrf => s.csrf,
            c => view,
            history => history,
            batches => batches,
            donor_url => donor_url,
        },
    ))
}

#[derive(Debug, serde::Deserialize)]
struct Decision {
    csrf: String,
    action: String,
    #[serde(default)]
    note: String,
}

async fn decide(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(d): Form<Decision>,
) -> Answer {
    let (_, s) = session(&app, &headers).await?;
    if !same(&s.csrf, &d.csrf) {
        return Err(forbidden("Missing or wrong form token; reload the page and try again."));
    }
    let status = match d.action.as_str() {
        "approve" => "approved",
        "rewipe" => "rewipe",
        "reject" => "rejected",
        _ => return Err(forbidden("Unknown action.")),
    };
    if status != "approved" && d.note.trim().is_empty() {
        return Err(forbidden("Say why in the note when you flag or reject a certificate."));
    }
    if d.note.len() > 4000 {
        return Err(forbidden("The note is too long (at most 4000 bytes)."));
    }
    let id2 = id.clone();
    let reviewed = web::db(&app, move |_, c| {
        store::review(c, &id2, status, d.note.trim(), &s.user, &cert::now_utc())
    })
    .await
    .or_500()?;
    if !reviewed {
        return Err(web::not_found());
    }
    Ok(Redirect::to(&format!("/review/certificates/{id}")).into_response())
}

async fn audit(State(app): State<AppState>, headers: HeaderMap, page: PageLang) -> Answer {
    let (_, s) = session(&app, &headers).await?;
    let entries = web::db(&app, |_, c| store::audit_entries(c, None, 1000))
        .await
        .or_500()?;
    let ctx = context! {
        title => page.lang.pick("Audit log", "Logboek"),
        user => s.user,
        csrf => s.csrf,
        entries => entries,
    };
    Ok(page.render(&app, "audit.html", ctx))
}

async fn export(State(app): State<AppState>, headers: HeaderMap, Query(filter): Query<Filter>) -> Answer {
    session(&app, &headers).await?;
    let rows = web::db(&app, move |_, c| store::certs(c, &filter, 1 << 40))
        .await
        .or_500()?;
    Ok(web::attachment(
        "text/csv; charset=utf-8",
        "lapterop-certificates.csv",
        crate::report::csv(&rows),
    ))
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{Error, PasswordVerifier};

    use super::*;

    #[test]
    fn an_unknown_name_is_checked_against_a_dummy_hash_with_the_same_parameters() {
        // The dummy has the parameters of a new reviewer's hash.
        let real = hash_password("correct horse battery").unwrap();
        fn params(h: &str) -> (String, Option<u32>, argon2::Params) {
            let h = PasswordHash::new(h).unwrap();
            (
                h.algorithm.to_string(),
                h.version,
                argon2::Params::try_from(&h).unwrap(),
            )
        }
        assert_eq!(params(DUMMY_HASH), params(&real));
        let (dummy, default) = (params(DUMMY_HASH).2, argon2::Params::default());
        assert_eq!(
            (dummy.m_cost(), dummy.t_cost(), dummy.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        // Checking it runs Argon2 to the end: a mismatch, not a malformed hash.
        let h = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(Argon2::default().verify_password(b"anything", &h), Err(Error::Password));

        let unknown = check_password(None, "correct horse battery");
        assert_eq!(
            unknown,
            Checked {
                matched: false,
                unknown_name: true
            }
        );
        let wrong = check_password(Some(&real), "wrong");
        assert_eq!(
            wrong,
            Checked {
                matched: false,
                unknown_name: false
            }
        );
        assert!(check_password(Some(&real), "correct horse battery").matched);
    }

    #[test]
    fn the_check_agrees_with_argon2s_own() {
        let real = hash_password("correct horse battery").unwrap();
        let other = hash_password("another pass phrase").unwrap();
        for (hash, password) in [
            (&real, "correct horse battery"),
            (&real, "correct horse batter"),
            (&other, "another pass phrase"),
            (&other, "correct horse battery"),
        ] {
            let theirs = Argon2::default()
                .verify_password(password.as_bytes(), &PasswordHash::new(hash).unwrap())
                .is_ok();
            assert_eq!(verify(hash, password), theirs, "{password}");
        }
        assert!(!verify("not a hash", "x"));
    }

    #[test]
    fn typed_names_are_bounded_for_the_audit_log() {
        assert_eq!(audit_name("lead"), "lead");
        assert_eq!(audit_name("a\nb\u{1b}[31m"), "a\u{fffd}b\u{fffd}[31m");
        let long = audit_name(&"é".repeat(500));
        assert_eq!(long.chars().count(), limits::AUDIT_NAME_CHARS + 1);
        assert!(long.ends_with('…'));
        assert_eq!(audit_name(&"x".repeat(64)), "x".repeat(64));
    }
}
