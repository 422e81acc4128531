//! The transparency log's API: signed tree heads, inclusion proofs and consistency proofs over the
//! Merkle tree of the log (`store::DbTree`, leaves by `lapterop_certificate::tlog`).
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /api/v1/log/sth` | everyone | the current signed tree head |
//! | `GET /api/v1/log/consistency?first=M&second=N` | everyone | consistency proof between two sizes |
//! | `GET /api/v1/log/inclusion/{id}?tree_size=N` | stations (own certificates), reviewers | inclusion proof |
//! | `GET /d/{token}/inclusion.json?tree_size=N` | the donor link's holder | inclusion proof |
//!
//! Without `tree_size` an inclusion proof is for the current tree and carries its signed head.
//! The tree size and the root say nothing about a certificate beyond what `GET /api/v1/log` shows.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lapterop_certificate::merkle;
use lapterop_certificate::tlog::{self, TreeHead};
use rusqlite::Connection;

use crate::store::{self, DbTree};
use crate::web::{self, json_error, App, AppState, Reader};

/// Routes of the log's proofs.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/log/sth", get(sth))
        .route("/api/v1/log/consistency", get(consistency))
        .route("/api/v1/log/inclusion/{id}", get(inclusion_for_station))
        .route("/d/{token}/inclusion.json", get(inclusion_for_donor))
}

/// The tree head of the current tree, signed now. Reads in one transaction (one snapshot).
pub fn current_head(app: &App, conn: &mut Connection) -> anyhow::Result<TreeHead> {
    let tx = conn.transaction()?;
    let size = store::tree_size(&tx)?;
    let root = merkle::root(&DbTree(&tx), size)?;
    tx.finish()?;
    Ok(tlog::signed_tree_head(
        size,
        &root,
        &lapterop_certificate::now_utc(),
        &app.server_key,
    )?)
}

async fn sth(State(app): State<AppState>) -> Response {
    match web::db(&app, current_head).await {
        Ok(head) => axum::Json(head).into_response(),
        Err(e) => web::internal(&e),
    }
}

#[derive(Debug, serde::Deserialize)]
struct SizesQuery {
    first: Option<u64>,
    second: Option<u64>,
}

/// What a proof request can get wrong (400), or a failure (500).
enum Refusal {
    BadRequest(String, &'static str),
    NotFound,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

impl Refusal {
    fn answer(self) -> Response {
        match self {
            Self::BadRequest(m, field) => json_error(400, &m, Some(field), &[]),
            Self::NotFound => json_error(404, "no certificate with this id", Some("id"), &[]),
            Self::Failed(e) => web::internal(&e),
        }
    }
}

async fn consistency(
    State(app): State<AppState>,
    q: Result<Query<SizesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return Refusal::BadRequest("first and second must be whole numbers".into(), "first").answer();
    };
    let (Some(first), Some(second)) = (q.first, q.second) else {
        return Refusal::BadRequest("give both tree sizes: ?first=M&second=N".into(), "first").answer();
    };
    let result = web::db(&app, move |_, conn| {
        let tx = conn.transaction()?;
        let size = store::tree_size(&tx)?;
        if first > second || second > size {
            return Ok(Err(format!(
                "need first <= second <= {size} (the current tree size); got first={first}, second={second}"
            )));
        }
        let path = merkle::consistency_proof(&DbTree(&tx), first, second).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Ok(tlog::consistency_document(first, second, &path)))
    })
    .await;
    match result {
        Ok(Ok(doc)) => axum::Json(doc).into_response(),
        Ok(Err(m)) => Refusal::BadRequest(m, "second").answer(),
        Err(e) => web::internal(&e),
    }
}

#[derive(Debug, serde::Deserialize)]
struct InclusionQuery {
    tree_size: Option<u64>,
}

/// The inclusion proof of the certificate at log `position` in the tree of `tree_size` leaves (the
/// current tree, with its signed head, when `None`).
fn inclusion(
    app: &App,
    conn: &mut Connection,
    position: u64,
    tree_size: Option<u64>,
) -> Result<tlog::InclusionProof, Refusal> {
    let tx = conn.transaction().map_err(anyhow::Error::from)?;
    let size = store::tree_size(&tx)?;
    let wanted = tree_size.unwrap_or(size);
    if wanted < position || wanted > size {
        return Err(Refusal::BadRequest(
            format!(
                "tree_size must be between {position} (this certificate's position) and {size} (the current tree size)"
            ),
            "tree_size",
        ));
    }
    let index = position - 1;
    let path = merkle::inclusion_proof(&DbTree(&tx), index, wanted).map_err(|e| anyhow::anyhow!("{e}"))?;
    let head = match tree_size {
        Some(_) => None,
        None => {
            let root = merkle::root(&DbTree(&tx), wanted)?;
            Some(
                tlog::signed_tree_head(wanted, &root, &lapterop_certificate::now_utc(), &app.server_key)
                    .map_err(anyhow::Error::from)?,
            )
        }
    };
    Ok(tlog::inclusion_document(index, wanted, &path, head))
}

/// The inclusion proof of a certificate in the current tree, with its signed head (what the donor PDF
/// carries as `inclusion.json`); `None` when the certificate is not in the log.
pub fn current_inclusion(app: &App, conn: &mut Connection, id: &str) -> anyhow::Result<Option<tlog::InclusionProof>> {
    let Some(position) = store::log_position(conn, id)? else {
        return Ok(None);
    };
    match inclusion(app, conn, position, None) {
        Ok(doc) => Ok(Some(doc)),
        Err(Refusal::Failed(e)) => Err(e),
        Err(Refusal::BadRequest(m, _)) => Err(anyhow::anyhow!("{m}")),
        Err(Refusal::NotFound) => Ok(None),
    }
}

async fn inclusion_for_station(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return Refusal::BadRequest("tree_size must be a whole number".into(), "tree_size").answer();
    };
    let path = format!("/api/v1/log/inclusion/{id}");
    let reader = match web::reader(&app, &headers, &path).await {
        Ok(Some(r)) => r,
        Ok(None) => return web::no_reader(),
        Err(response) => return response,
    };
    let result = web::db(&app, move |app, conn| {
        // A station sees only its own certificates; another's answers exactly like a missing one.
        let Some(cert) = store::cert_by_id(conn, &id)? else {
            return Ok(Err(Refusal::NotFound));
        };
        if let Reader::Station(key_id) = &reader {
            if &cert.key_id != key_id {
                return Ok(Err(Refusal::NotFound));
            }
        }
        let Some(position) = store::log_position(conn, &id)? else {
            return Ok(Err(Refusal::NotFound));
        };
        Ok(inclusion(app, conn, position, q.tree_size))
    })
    .await;
    match result {
        Ok(Ok(doc)) => axum::Json(doc).into_response(),
        Ok(Err(r)) => r.answer(),
        Err(e) => web::internal(&e),
    }
}

async fn inclusion_for_donor(
    State(app): State<AppState>,
    Path(token): Path<String>,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !crate::donor::plausible(&token) {
        return web::not_found();
    }
    let Ok(Query(q)) = q else {
        return Refusal::BadRequest("tree_size must be a whole number".into(), "tree_size").answer();
    };
    let result = web::db(&app, move |app, conn| {
        let Some(cert) = store::cert_by_token(conn, &token)? else {
            return Ok(None);
        };
        let Some(position) = store::log_position(conn, &cert.id)? else {
            return Ok(None);
        };
        Ok(Some(inclusion(app, conn, position, q.tree_size)))
    })
    .await;
    match result {
        Ok(Some(Ok(doc))) => match serde_json::to_vec_pretty(&doc) {
            Ok(bytes) => web::attachment("application/json", "inclusion.json", bytes),
            Err(e) => web::internal(&e.into()),
        },
        Ok(Some(Err(r))) => r.answer(),
        Ok(None) => web::not_found(),
        Err(e) => web::internal(&e),
    }
}
