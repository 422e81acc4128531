//! Donor proof: one unguessable link per certificate (`/d/{token}`) and per donor batch (`/b/{token}`),
//! in Dutch or English, with a PDF, a QR code back to the page, and the four files needed to check the
//! proof offline with `lapterop-cert verify` and `lapterop-cert verify-receipt`, or in the browser with
//! the self-contained verifier page at `/verify` (`docs/verify.html`).
//!
//! Language: `?lang=nl|en` (remembered in a cookie), else the cookie, else `Accept-Language`.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use minijinja::context;

use crate::store::{self, StoredCert};
use crate::views::{self, CertView, Lang};
use crate::web::{self, blocking, Answer, AppState, OrInternal, OrNotFound, PageLang};

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
        .route("/verify", get(verifier))
}

/// The offline verifier (`docs/verify.html`): one self-contained page that checks a certificate and its
/// receipt in the browser. It is the same file whether saved from here or taken from the sources.
pub static VERIFIER_HTML: &str = include_str!("../../docs/verify.html");

async fn verifier() -> Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page itself forbids every connection; the header says the same for browsers that
            // read only headers.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:",
            ),
        ],
        VERIFIER_HTML,
    )
        .into_response()
}

/// A valid token is 40 lower-case hex digits; anything else is not looked up.
pub(crate) fn plausible(token: &str) -> bool {
    token.len() == 40 && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Loads the certificate behind a donor token with its station key; `Err` is the 404 (also for a token
/// that is not plausible) or 500 answer.
async fn load(app: &AppState, token: &str) -> Result<(StoredCert, Option<store::Station>), Response> {
    if !plausible(token) {
        return Err(web::not_found());
    }
    let token = token.to_owned();
    web::db(app, move |_, c| {
        let Some(cert) = store::cert_by_token(c, &token)? else {
            return Ok(None);
        };
        let station = store::station_by_key_id(c, &cert.key_id)?;
        Ok(Some((cert, station)))
    })
    .await
    .or_404()
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

async fn page(State(app): State<AppState>, Path(token): Path<String>, page: PageLang) -> Answer {
    let (cert, station) = load(&app, &token).await?;
    let view = donor_view(&app, &cert, station.as_ref(), page.lang).or_500()?;
    let url = donor_url(&app, &token);
    let qr = qr_svg(&url);
    Ok(page.render(
        &app,
        "donor.html",
        context! {
            c => view,
            url => url,
            token => token,
            qr => minijinja::Value::from_safe_string(qr),
            title => page.lang.pick("Proof of data erasure", "Bewijs van gegevenswissing"),
        },
    ))
}

async fn pdf(State(app): State<AppState>, Path(token): Path<String>, PageLang { lang, .. }: PageLang) -> Answer {
    let (cert, station) = load(&app, &token).await?;
    let id = cert.id.clone();
    let inclusion = web::db(&app, move |app, c| crate::transparency::current_inclusion(app, c, &id))
        .await
        .or_500()?
        .map(|doc| serde_json::to_vec_pretty(&doc).map_err(anyhow::Error::from))
        .transpose()
        .or_500()?;
    let app2 = app.clone();
    let bytes = blocking(move || {
        let view = donor_view(&app2, &cert, station.as_ref(), lang)?;
        let server_key = hex::encode(app2.server_key.verifying_key().as_bytes());
        let proof = crate::pdf::Proof {
            certificate: &cert.body,
            receipt: cert.receipt.as_bytes(),
            station_key: station.as_ref().map(|s| s.public_key.as_str()),
            server_key: &server_key,
            inclusion: inclusion.as_deref(),
        };
        crate::pdf::certificate_pdf(&view, &donor_url(&app2, &token), lang, &proof)
    })
    .await
    .or_500()?;
    Ok(web::inline("application/pdf", "lapterop-certificate.pdf", bytes))
}

async fn certificate_json(State(app): State<AppState>, Path(token): Path<String>) -> Answer {
    let (c, _) = load(&app, &token).await?;
    Ok(web::attachment("application/json", "certificate.json", c.body))
}

async fn receipt_json(State(app): State<AppState>, Path(token): Path<String>) -> Answer {
    let (c, _) = load(&app, &token).await?;
    Ok(web::attachment(
        "application/json",
        "receipt.json",
        c.receipt.into_bytes(),
    ))
}

async fn station_pub(State(app): State<AppState>, Path(token): Path<String>) -> Answer {
    let (_, station) = load(&app, &token).await?;
    let station = station.ok_or_else(web::not_found)?;
    Ok(web::attachment(
        "text/plain; charset=utf-8",
        "station.pub",
        format!("{}\n", station.public_key).into_bytes(),
    ))
}

async fn server_pub(State(app): State<AppState>) -> Response {
    web::server_key_text(&app)
}

async fn batch(State(app): State<AppState>, Path(token): Path<String>, page: PageLang) -> Answer {
    if !plausible(&token) {
        return Err(web::not_found());
    }
    let lang = page.lang;
    let (kind, value, rows) = web::db(&app, move |app, c| {
        let Some((kind, value)) = store::batch_by_token(c, &token)? else {
            return Ok(None);
        };
        let mut rows = Vec::new();
        for cert in store::certs_in_batch(c, &kind, &value)? {
            let station = store::station_by_key_id(c, &cert.key_id)?;
            let view = donor_view(app, &cert, station.as_ref(), lang)?;
            rows.push(context! { c => view, url => donor_url(app, &cert.donor_token) });
        }
        Ok(Some((kind, value, rows)))
    })
    .await
    .or_404()?;
    Ok(page.render(
        &app,
        "batch.html",
        context! {
            kind => kind,
            value => value,
            rows => rows,
            title => lang.pick("Proof of data erasure: batch", "Bewijs van gegevenswissing: partij"),
        },
    ))
}
