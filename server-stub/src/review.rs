//! The review UI for workshop leads: log in, the queue with filters, a certificate in detail, decisions
//! (approve, flag for re-wipe, reject, each with a note) and the audit log; CSV export.
//!
//! Sessions live in the database (cookie `lapterop_session`, HttpOnly, SameSite=Strict). Every form
//! carries the session's CSRF token (synchronizer pattern); the login form uses a double-submit token
//! in a short-lived cookie. Passwords are stored as Argon2id hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use lapterop_certificate as cert;
use minijinja::context;

use crate::donor::{language, remember, LangQuery};
use crate::store::{self, Filter, Session};
use crate::views::{self, Lang};
use crate::web::{self, blocking, App, AppState};

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

fn password_ok(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
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
    let app = app.clone();
    let t = token.clone();
    match blocking(move || app.pool.with(|c| store::session(c, &t, now_secs()))).await {
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

async fn login_form(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (lang, chosen) = language(&headers, &q);
    let resp = login_page(&app, None, lang);
    remember(&app, resp, chosen)
}

fn login_page(app: &App, error: Option<&str>, lang: Lang) -> Response {
    let token = match crate::random_token() {
        Ok(t) => t,
        Err(e) => return web::internal(&e),
    };
    let ctx = context! {
        csrf => token,
        error => error,
        title => lang.t("Log in", "Aanmelden"),
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

async fn login(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let cookie = web::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !same(&cookie, &f.csrf) {
        return forbidden("The login form expired or came from another site. Reload the login page.");
    }
    let app2 = app.clone();
    let result = blocking(move || {
        app2.pool.with(|c| {
            let ok = store::password_hash(c, &f.user)?.is_some_and(|h| password_ok(&h, &f.password));
            if !ok {
                return Ok(None);
            }
            let token = crate::random_token()?;
            let csrf = crate::random_token()?;
            store::create_session(c, &token, &f.user, &csrf, now_secs() + store::SESSION_SECONDS)?;
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
            let (lang, _) = language(&headers, &LangQuery { lang: None });
            let message = lang.t("Wrong name or password.", "Verkeerde naam of wachtwoord.");
            let mut resp = login_page(&app, Some(&message), lang);
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            resp
        }
        Err(e) => web::internal(&e),
    }
}

#[derive(Debug, serde::Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let (token, s) = match session(&app, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !same(&s.csrf, &f.csrf) {
        return forbidden("Missing or wrong form token.");
    }
    let app2 = app.clone();
    if let Err(e) = blocking(move || {
        app2.pool.with(|c| {
            store::delete_session(c, &token)?;
            store::audit(c, &s.user, "logout", &cert::now_utc())
        })
    })
    .await
    {
        return web::internal(&e);
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, web::set_cookie(&app, SESSION_COOKIE, "", 0));
    resp
}

async fn queue(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(mut filter): Query<Filter>,
    Query(q): Query<LangQuery>,
) -> Response {
    let (lang, chosen) = language(&headers, &q);
    let (_, s) = match session(&app, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // The queue shows new certificates unless another status (or "all") is asked for.
    if filter.status.is_empty() {
        filter.status = "new".into();
    }
    let mut query = filter.clone();
    if query.status == "all" {
        query.status.clear();
    }
    let app2 = app.clone();
    let found = blocking(move || {
        app2.pool
            .with(|c| Ok((store::certs(c, &query, 500)?, store::station_names(c)?)))
    })
    .await;
    let (rows, stations) = match found {
        Ok(x) => x,
        Err(e) => return web::internal(&e),
    };
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
    let resp = web::render(
        &app,
        "queue.html",
        context! {
            title => lang.t("Review queue", "Na te kijken"),
            lang => lang.code(),
            nl => lang == Lang::Nl,
            user => s.user,
            csrf => s.csrf,
            rows => rows,
            stations => stations,
            f => filter,
            export => export,
        },
    );
    remember(&app, resp, chosen)
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

async fn detail(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
) -> Response {
    let (lang, chosen) = language(&headers, &q);
    let (_, s) = match session(&app, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let app2 = app.clone();
    let found = blocking(move || {
        app2.pool.with(|c| {
            let Some(cert) = store::cert_by_id(c, &id)? else {
                return Ok(None);
            };
            let station = store::station_by_key_id(c, &cert.key_id)?;
            let view = views::cert_view(&cert, station.as_ref(), &app2.server_key.verifying_key(), lang)?;
            let history = store::audit_entries(c, Some(&cert.id), 100)?;
            let mut batches = Vec::new();
            for (kind, value) in [("reference", &cert.donor_reference), ("lot", &cert.lot)] {
                if let Some(v) = value {
                    if let Some(t) = store::batch_token(c, kind, v)? {
                        batches
                            .push(context! { kind => kind, value => v, url => format!("{}/b/{t}", app2.public_url) });
                    }
                }
            }
            let donor_url = crate::donor::donor_url(&app2, &cert.donor_token);
            Ok(Some((view, history, batches, donor_url)))
        })
    })
    .await;
    let (view, history, batches, donor_url) = match found {
        Ok(Some(x)) => x,
        Ok(None) => return web::not_found(),
        Err(e) => return web::internal(&e),
    };
    let resp = web::render(
        &app,
        "detail.html",
        context! {
            title => lang.t("Certificate", "Certificaat"),
            lang => lang.code(),
            nl => lang == Lang::Nl,
            user => s.user,
            csrf => s.csrf,
            c => view,
            history => history,
            batches => batches,
            donor_url => donor_url,
        },
    );
    remember(&app, resp, chosen)
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
) -> Response {
    let (_, s) = match session(&app, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !same(&s.csrf, &d.csrf) {
        return forbidden("Missing or wrong form token; reload the page and try again.");
    }
    let status = match d.action.as_str() {
        "approve" => "approved",
        "rewipe" => "rewipe",
        "reject" => "rejected",
        _ => return forbidden("Unknown action."),
    };
    if status != "approved" && d.note.trim().is_empty() {
        return forbidden("Say why in the note when you flag or reject a certificate.");
    }
    if d.note.len() > 4000 {
        return forbidden("The note is too long (at most 4000 bytes).");
    }
    let app2 = app.clone();
    let id2 = id.clone();
    let user = s.user.clone();
    match blocking(move || {
        app2.pool
            .with(|c| store::review(c, &id2, status, d.note.trim(), &user, &cert::now_utc()))
    })
    .await
    {
        Ok(true) => Redirect::to(&format!("/review/certificates/{id}")).into_response(),
        Ok(false) => web::not_found(),
        Err(e) => web::internal(&e),
    }
}

async fn audit(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (lang, chosen) = language(&headers, &q);
    let (_, s) = match session(&app, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let app2 = app.clone();
    match blocking(move || app2.pool.with(|c| store::audit_entries(c, None, 1000))).await {
        Ok(entries) => {
            let ctx = context! {
                title => lang.t("Audit log", "Logboek"),
                lang => lang.code(),
                nl => lang == Lang::Nl,
                user => s.user,
                csrf => s.csrf,
                entries => entries,
            };
            remember(&app, web::render(&app, "audit.html", ctx), chosen)
        }
        Err(e) => web::internal(&e),
    }
}

async fn export(State(app): State<AppState>, headers: HeaderMap, Query(filter): Query<Filter>) -> Response {
    if let Err(r) = session(&app, &headers).await {
        return r;
    }
    let app2 = app.clone();
    match blocking(move || app2.pool.with(|c| store::certs(c, &filter, 1 << 40))).await {
        Ok(rows) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"lapterop-certificates.csv\""),
                ),
            ],
            crate::report::csv(&rows),
        )
            .into_response(),
        Err(e) => web::internal(&e),
    }
}
