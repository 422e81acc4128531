//! Donor proof: one unguessable link per certificate (`/d/{token}`) and per donor batch (`/b/{token}`),
//! in Dutch or English, with a PDF, a QR code back to the page, and the four files needed to check the
//! proof offline with `lapterop-cert verify` and `lapterop-cert verify-receipt`.
//!
//! Language: `?lang=nl|en` (remembered in a cookie), else the cookie, else `Accept-Language`.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use minijinja::context;

use crate::store::{self, StoredCert};
use crate::views::{self, CertView, Lang};
use crate::web::{self, blocking, AppState};

/// Donor routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/d/{token}", get(page))
        .route("/d/{token}/certificate.pdf", get(pdf))
        .route("/d/{token}/certificate.json", get(certificate_json))
        .route("/d/{token}/receipt.json", get(receipt_json))
        .route("/d/{token}/station.pub", get(station_pub))
        .route("/d/{token}/server.pub", get(server_pub))
        .route("/b/{token}", get(batch))
}

#[derive(Debug, serde::Deserialize)]
pub struct LangQuery {
    #[serde(default)]
    pub lang: Option<String>,
}

/// The page language, and whether to remember an explicit choice.
pub fn language(headers: &HeaderMap, q: &LangQuery) -> (Lang, Option<Lang>) {
    if let Some(l) = q.lang.as_deref().and_then(Lang::parse) {
        return (l, Some(l));
    }
    if let Some(l) = web::cookie(headers, "lang").as_deref().and_then(Lang::parse) {
        return (l, None);
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (Lang::from_accept_language(accept), None)
}

pub fn remember(app: &web::App, mut resp: Response, chosen: Option<Lang>) -> Response {
    if let Some(l) = chosen {
        resp.headers_mut()
            .append(header::SET_COOKIE, web::set_cookie(app, "lang", l.code(), 365 * 86400));
    }
    resp
}

/// A valid token is 40 lower-case hex digits; anything else is not looked up.
fn plausible(token: &str) -> bool {
    token.len() == 40 && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Loads the certificate behind a donor token with its station key.
async fn load(app: &AppState, token: String) -> anyhow::Result<Option<(StoredCert, Option<store::Station>)>> {
    if !plausible(&token) {
        return Ok(None);
    }
    let app = app.clone();
    blocking(move || {
        app.pool.with(|c| {
            let Some(cert) = store::cert_by_token(c, &token)? else {
                return Ok(None);
            };
            let station = store::station_by_key_id(c, &cert.key_id)?;
            Ok(Some((cert, station)))
        })
    })
    .await
}

/// The view of a donor certificate (signatures checked now).
pub fn donor_view(
    app: &web::App,
    cert: &StoredCert,
    station: Option<&store::Station>,
    lang: Lang,
) -> anyhow::Result<CertView> {
    views::cert_view(cert, station, &app.server_key.verifying_key(), lang)
}

/// The donor page URL of a certificate.
pub fn donor_url(app: &web::App, token: &str) -> String {
    format!("{}/d/{token}", app.public_url)
}

/// The QR code of `url` as inline SVG.
pub fn qr_svg(url: &str) -> String {
    match qrcode::QrCode::new(url.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(160, 160)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

async fn page(
    State(app): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let (lang, chosen) = language(&headers, &q);
    let (cert, station) = match load(&app, token.clone()).await {
        Ok(Some(x)) => x,
        Ok(None) => return web::not_found(),
        Err(e) => return web::internal(&e),
    };
    let view = match donor_view(&app, &cert, station.as_ref(), lang) {
        Ok(v) => v,
        Err(e) => return web::internal(&e),
    };
    let url = donor_url(&app, &token);
    let qr = qr_svg(&url);
    let resp = web::render(
        &app,
        "donor.html",
        context! {
            lang => lang.code(),
            nl => lang == Lang::Nl,
            c => view,
            url => url,
            token => token,
            qr => minijinja::Value::from_safe_string(qr),
            title => lang.pick("Proof of data erasure", "Bewijs van gegevenswissing"),
        },
    );
    remember(&app, resp, chosen)
}

async fn pdf(
    State(app): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let (lang, _) = language(&headers, &q);
    let (cert, station) = match load(&app, token.clone()).await {
        Ok(Some(x)) => x,
        Ok(None) => return web::not_found(),
        Err(e) => return web::internal(&e),
    };
    let app2 = app.clone();
    let made = blocking(move || {
        let view = donor_view(&app2, &cert, station.as_ref(), lang)?;
        crate::pdf::certificate_pdf(&view, &donor_url(&app2, &token), lang)
    })
    .await;
    match made {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/pdf")),
                (
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("inline; filename=\"lapterop-certificate.pdf\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => web::internal(&e),
    }
}

fn download(content_type: &'static str, filename: &'static str, body: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        body,
    )
        .into_response()
}

async fn certificate_json(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    match load(&app, token).await {
        Ok(Some((c, _))) => download("application/json", "certificate.json", c.body),
        Ok(None) => web::not_found(),
        Err(e) => web::internal(&e),
    }
}

async fn receipt_json(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    match load(&app, token).await {
        Ok(Some((c, _))) => download("application/json", "receipt.json", c.receipt.into_bytes()),
        Ok(None) => web::not_found(),
        Err(e) => web::internal(&e),
    }
}

async fn station_pub(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    match load(&app, token).await {
        Ok(Some((_, Some(station)))) => download(
            "text/plain; charset=utf-8",
            "station.pub",
            format!("{}\n", station.public_key).into(),
        ),
        Ok(_) => web::not_found(),
        Err(e) => web::internal(&e),
    }
}

async fn server_pub(State(app): State<AppState>) -> Response {
    web::server_key_text(&app)
}

async fn batch(
    State(app): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let (lang, chosen) = language(&headers, &q);
    if !plausible(&token) {
        return web::not_found();
    }
    let app2 = app.clone();
    let found = blocking(move || {
        app2.pool.with(|c| {
            let Some((kind, value)) = store::batch_by_token(c, &token)? else {
                return Ok(None);
            };
            let mut rows = Vec::new();
            for cert in store::certs_in_batch(c, &kind, &value)? {
                let station = store::station_by_key_id(c, &cert.key_id)?;
                let view = donor_view(&app2, &cert, station.as_ref(), lang)?;
                rows.push(context! { c => view, url => donor_url(&app2, &cert.donor_token) });
            }
            Ok(Some((kind, value, rows)))
        })
    })
    .await;
    let (kind, value, rows) = match found {
        Ok(Some(x)) => x,
        Ok(None) => return web::not_found(),
        Err(e) => return web::internal(&e),
    };
    let resp = web::render(
        &app,
        "batch.html",
        context! {
            lang => lang.code(),
            nl => lang == Lang::Nl,
            kind => kind,
            value => value,
            rows => rows,
            title => lang.pick("Proof of data erasure: batch", "Bewijs van gegevenswissing: partij"),
        },
    );
    remember(&app, resp, chosen)
}
