//! The HTTP server: routes, the station API, and helpers shared by the pages.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /api/v1/certificates` | stations | submit a signed certificate, get a receipt |
//! | `PUT /api/v1/certificates/{id}/audit` | stations | the full audit stored beside that certificate (kept when its blake3 is the certificate's `host.audit_blake3`) |
//! | `GET /api/v1/certificates/{id}` | stations, auditors | the stored certificate, receipt and review state |
//! | `GET /api/v1/log` | auditors | the append-only log (`?from=N&limit=M`) |
//! | `GET /api/v1/log/sth`, `/api/v1/log/consistency`, `/api/v1/log/inclusion/{id}` | auditors, stations | the log's Merkle tree ([`crate::transparency`]) |
//! | `GET /api/v1/server-key` | everyone | the server's public key (`.pub` file format) |
//! | `GET /healthz` | monitoring | `ok` |
//! | `/d/{token}`, `/b/{token}` | donors | proof pages, PDF, files to verify offline |
//! | `/login`, `/review/...` | reviewers | review queue, detail, decisions, audit log, CSV, hardware the stick did not drive |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use anyhow::Context;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use lapterop_certificate::validate::MAX_DOCUMENT_BYTES;
use lapterop_certificate::SigningKey;
use minijinja::context;
use serde_json::json;

use crate::ingest::{self, Job, Rejection, Stored};
use crate::store::{self, Pool};
use crate::views::Lang;

/// What `serve` needs.
#[derive(Debug)]
pub struct Config {
    /// Data directory.
    pub data: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Public base URL (no trailing slash).
    pub public_url: String,
    /// Set `Secure` on cookies.
    pub secure_cookies: bool,
    /// Connection and request limits.
    pub limits: crate::limits::Limits,
}

/// Shared state of all handlers.
#[derive(Debug)]
pub struct App {
    /// Connections for handlers.
    pub pool: Pool,
    /// The server key.
    pub server_key: SigningKey,
    /// Public base URL.
    pub public_url: String,
    /// `Secure` cookies.
    pub secure_cookies: bool,
    /// Templates.
    pub templates: minijinja::Environment<'static>,
    /// Failed-login counts and the hashing pool of the login.
    pub login: crate::throttle::LoginGuard,
    jobs: mpsc::Sender<Job>,
}

/// Shared state handle.
pub type AppState = Arc<App>;

/// Starts the writer and serves until SIGINT/SIGTERM (then requests in progress get
/// [`crate::limits::SHUTDOWN_GRACE`] to finish).
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let server_key = crate::server_key(&config.data)?;
    let conn = store::open(&config.data)?;
    let (jobs, rx) = mpsc::channel();
    let writer = ingest::Writer {
        conn,
        key: server_key.clone(),
        public_url: config.public_url.clone(),
    };
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || ingest::run_writer(writer, rx))
        .context("starting the writer thread")?;
    let app = Arc::new(App {
        pool: Pool::new(&config.data),
        server_key,
        public_url: config.public_url.clone(),
        secure_cookies: config.secure_cookies,
        templates: crate::views::templates()?,
        login: crate::throttle::LoginGuard::with_default_limits()?,
        jobs,
    });
    let shutdown = shutdown()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    eprintln!(
        "lapterop-server: listening on {} (public URL {}, data {})",
        listener.local_addr()?,
        config.public_url,
        config.data.display()
    );
    let router = router(app).layer(axum::middleware::from_fn_with_state(
        config.limits,
        crate::listen::timeouts,
    ));
    crate::listen::run(listener, router, config.limits, shutdown).await?;
    eprintln!("lapterop-server: stopped");
    Ok(())
}

/// Completes on SIGTERM or SIGINT; the handlers are in place when this returns.
fn shutdown() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/certificates", post(post_certificate))
        .route("/api/v1/certificates/{id}", get(get_certificate))
        .route("/api/v1/log", get(get_log))
        .route("/api/v1/server-key", get(server_key))
        .merge(crate::transparency::routes())
        .merge(crate::donor::routes())
        .merge(crate::review::routes())
        .merge(crate::hardware::routes())
        .with_state(app)
}

/// Runs blocking work (database, signatures, PDF) off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await.context("worker task failed")?
}

/// Runs `f` with a pooled database connection off the async threads; `f` also gets the app (for the
/// server key and the public URL).
pub async fn db<T: Send + 'static>(
    app: &AppState,
    f: impl FnOnce(&App, &mut rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let app = app.clone();
    blocking(move || app.pool.with(|c| f(&app, c))).await
}

/// What a page or file handler answers. `Err` is an answer that ends the handler early: a 404, a 500,
/// a refusal, a redirect to the login.
pub type Answer = Result<Response, Response>;

/// Ends a handler with a 500 answer when a step failed (see [`Answer`]).
pub trait OrInternal<T> {
    /// The value, or the 500 answer (the failure logged).
    #[allow(clippy::result_large_err)] // the error is the answer, handed to axum at once
    fn or_500(self) -> Result<T, Response>;
}

impl<T> OrInternal<T> for anyhow::Result<T> {
    fn or_500(self) -> Result<T, Response> {
        self.map_err(|e| internal(&e))
    }
}

/// Ends a handler with a 404 page when a lookup found nothing (see [`Answer`]).
pub trait OrNotFound<T> {
    /// The value found; the 404 page if there is none; the 500 answer if the lookup failed.
    #[allow(clippy::result_large_err)] // the error is the answer, handed to axum at once
    fn or_404(self) -> Result<T, Response>;
}

impl<T> OrNotFound<T> for anyhow::Result<Option<T>> {
    fn or_404(self) -> Result<T, Response> {
        self.or_500()?.ok_or_else(not_found)
    }
}

/// A JSON error answer.
pub fn json_error(status: u16, message: &str, field: Option<&str>, violations: &[(String, String)]) -> Response {
    let mut body = json!({ "error": message });
    if let Some(f) = field {
        body["field"] = json!(f);
    }
    if !violations.is_empty() {
        body["violations"] = violations
            .iter()
            .map(|(f, m)| json!({"field": f, "message": m}))
            .collect();
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

/// A 500 answer for an unexpected failure (logged on stderr).
pub fn internal(e: &anyhow::Error) -> Response {
    eprintln!("lapterop-server: {e:#}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the server log\n",
    )
        .into_response()
}

fn rejection(r: &Rejection) -> Response {
    let violations = match r {
        Rejection::Invalid { violations, .. } => violations.as_slice(),
        _ => &[],
    };
    json_error(r.status(), &r.to_string(), r.field(), violations)
}

fn json_text(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn post_certificate(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let too_large = Rejection::TooLarge {
        limit: MAX_DOCUMENT_BYTES,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return rejection(&too_large);
    }
    let bytes = match axum::body::to_bytes(body, MAX_DOCUMENT_BYTES).await {
        Ok(b) => b.to_vec(),
        Err(_) => return rejection(&too_large),
    };
    let app2 = app.clone();
    let checked = match tokio::task::spawn_blocking(move || ingest::check(&app2.pool, bytes)).await {
        Ok(Ok(c)) => c,
        Ok(Err(r)) => return rejection(&r),
        Err(e) => return internal(&anyhow::anyhow!("checking task failed: {e}")),
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if app.jobs.send(Job { checked, reply }).is_err() {
        return rejection(&Rejection::Unavailable("the writer stopped".into()));
    }
    match answer.await {
        Ok(Ok(Stored::Created(receipt))) => json_text(StatusCode::CREATED, receipt),
        Ok(Ok(Stored::Existing(receipt))) => json_text(StatusCode::OK, receipt),
        Ok(Err(r)) => rejection(&r),
        Err(_) => rejection(&Rejection::Unavailable("the writer stopped".into())),
    }
}

/// Who may read a stored certificate through the API.
pub(crate) enum Reader {
    /// A logged-in reviewer: any certificate.
    Reviewer,
    /// An enrolled, not revoked station (its key id): only the certificates it signed.
    Station(String),
}

/// The reader of a request to `path`: a reviewer's session cookie, or a station's signature in the
/// `lapterop-station` header (`lapterop_certificate::request`). `None` for anyone else.
pub(crate) async fn reader(app: &AppState, headers: &HeaderMap, path: &str) -> Result<Option<Reader>, Response> {
    if crate::review::session(app, headers).await.is_ok() {
        return Ok(Some(Reader::Reviewer));
    }
    let Some(signed) = headers
        .get(lapterop_certificate::request::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(lapterop_certificate::request::SignedRequest::parse)
    else {
        return Ok(None);
    };
    let key_id = signed.key_id.clone();
    let station = db(app, move |_, c| store::station_by_key_id(c, &key_id))
        .await
        .or_500()?;
    let Some(station) = station.filter(|s| s.revoked_at.is_none()) else {
        return Ok(None);
    };
    let Some(key) = lapterop_certificate::keys::public_key_from_hex(&station.public_key) else {
        return Ok(None);
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(signed
        .verify(&key, "GET", path, now)
        .then_some(Reader::Station(station.key_id)))
}

/// The `401` answer to a request with neither a reviewer's session nor a station's signature.
pub(crate) fn no_reader() -> Response {
    json_error(
        401,
        "log in as a reviewer, or sign the request with the station key (header lapterop-station, see \
         docs/server.md)",
        None,
        &[],
    )
}

async fn get_certificate(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let path = format!("/api/v1/certificates/{id}");
    let reader = match reader(&app, &headers, &path).await {
        Ok(Some(r)) => r,
        Ok(None) => return no_reader(),
        Err(response) => return response,
    };
    let found = db(&app, move |_, c| store::cert_by_id(c, &id)).await;
    // A station reads only its own certificates; another's answers exactly like a missing one.
    let found = found.map(|c| {
        c.filter(|c| match &reader {
            Reader::Reviewer => true,
            Reader::Station(key_id) => &c.key_id == key_id,
        })
    });
    match found {
        Ok(Some(c)) => {
            let certificate: serde_json::Value = serde_json::from_slice(&c.body).unwrap_or_default();
            let receipt: serde_json::Value = serde_json::from_str(&c.receipt).unwrap_or_default();
            axum::Json(json!({
                "certificate": certificate,
                "receipt": receipt,
                "station": c.station_name,
                "review": {
                    "status": c.review_status,
                    "note": c.review_note,
                    "by": c.reviewed_by,
                    "at": c.reviewed_at,
                },
            }))
            .into_response()
        }
        Ok(None) => json_error(404, "no certificate with this id", Some("id"), &[]),
        Err(e) => internal(&e),
    }
}

#[derive(Debug, serde::Deserialize)]
struct LogQuery {
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

async fn get_log(State(app): State<AppState>, Query(q): Query<LogQuery>) -> Response {
    let from = q.from.unwrap_or(1).max(1);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let result = db(&app, move |_, c| {
        Ok((store::log_entries(c, from, limit)?, store::log_head(c)?))
    })
    .await;
    match result {
        Ok((entries, (head_position, head_hash))) => axum::Json(json!({
            "head": {"position": head_position, "entry_hash": head_hash},
            "entries": entries,
        }))
        .into_response(),
        Err(e) => internal(&e),
    }
}

async fn server_key(State(app): State<AppState>) -> Response {
    server_key_text(&app)
}

/// The server public key as a `.pub` file.
pub fn server_key_text(app: &App) -> Response {
    let text = format!("{}\n", hex::encode(app.server_key.verifying_key().as_bytes()));
    attachment("text/plain; charset=utf-8", "server.pub", text)
}

/// A file to save: `Content-Type` and `Content-Disposition: attachment; filename="…"`.
pub fn attachment(content_type: &'static str, filename: &str, body: impl IntoResponse) -> Response {
    file(content_type, "attachment", filename, body)
}

/// A file to show in the browser: `Content-Disposition: inline; filename="…"`.
pub fn inline(content_type: &'static str, filename: &str, body: impl IntoResponse) -> Response {
    file(content_type, "inline", filename, body)
}

fn file(content_type: &'static str, disposition: &'static str, filename: &str, body: impl IntoResponse) -> Response {
    let value = format!("{disposition}; filename=\"{filename}\"");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(disposition)),
            ),
        ],
        body,
    )
        .into_response()
}

/// `?lang=nl|en` on a page.
#[derive(Debug, serde::Deserialize)]
struct LangQuery {
    #[serde(default)]
    lang: Option<String>,
}

/// The language of a page: `?lang=nl|en` (remembered in a cookie), else the cookie, else
/// `Accept-Language`. A handler takes it as an extractor; a malformed query string is refused as
/// `Query` refuses it.
#[derive(Debug, Clone, Copy)]
pub struct PageLang {
    /// The language to answer in.
    pub lang: Lang,
    /// Chosen with `?lang=`: to remember.
    chosen: Option<Lang>,
}

impl<S: Send + Sync> FromRequestParts<S> for PageLang {
    type Rejection = QueryRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(q) = Query::<LangQuery>::from_request_parts(parts, state).await?;
        Ok(match q.lang.as_deref().and_then(Lang::parse) {
            Some(l) => PageLang {
                lang: l,
                chosen: Some(l),
            },
            None => PageLang::from_headers(&parts.headers),
        })
    }
}

impl PageLang {
    /// The language from the cookie, else `Accept-Language` (for a form post, which has no `?lang=`).
    pub fn from_headers(headers: &HeaderMap) -> PageLang {
        let lang = match cookie(headers, "lang").as_deref().and_then(Lang::parse) {
            Some(l) => l,
            None => Lang::from_accept_language(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            ),
        };
        PageLang { lang, chosen: None }
    }

    /// Adds the cookie that remembers a language chosen with `?lang=` to `resp`.
    pub fn remember(self, app: &App, mut resp: Response) -> Response {
        if let Some(l) = self.chosen {
            resp.headers_mut()
                .append(header::SET_COOKIE, set_cookie(app, "lang", l.code(), 365 * 86400));
        }
        resp
    }

    /// Renders template `name` with `ctx` and the page language (`lang`, and `nl` for Dutch), and
    /// remembers a chosen language.
    pub fn render(self, app: &App, name: &str, ctx: minijinja::Value) -> Response {
        let lang = self.lang;
        let resp = render(
            app,
            name,
            context! { lang => lang.code(), nl => lang == Lang::Nl, ..ctx },
        );
        self.remember(app, resp)
    }
}

/// The value of a cookie in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/.
pub fn set_cookie(app: &App, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// An HTML page answer with security headers.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Renders a template into an HTML answer.
pub fn render(app: &App, name: &str, ctx: minijinja::Value) -> Response {
    match app.templates.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(body) => html(StatusCode::OK, body),
        Err(e) => internal(&anyhow::anyhow!("rendering {name}: {e:#}")),
    }
}

/// A plain 404 page.
pub fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "<!doctype html><meta charset=utf-8><title>Not found</title><p>Not found. / Niet gevonden.</p>".into(),
    )
}
