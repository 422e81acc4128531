//! Accepting a certificate: checks in a fixed order, then one writer thread that appends to the log.
//!
//! Checks, each of which rejects before anything is stored: size (413), JSON syntax (400), schema,
//! types and invariants (422, naming the field), station key by `station.key_id` (unknown: 401,
//! revoked: 403), signature (401). Then the writer thread takes the certificate. It commits waiting
//! certificates together (group commit): each certificate and its log entry are in the same
//! transaction, and nobody hears "accepted" before that transaction is durable. The same certificate
//! again answers with its stored receipt; another document with the same id is a conflict (409).

use std::sync::mpsc;

use lapterop_certificate::{
    self as cert, canonical, chain, keys, merkle, tlog, Certificate, Receipt, SigningKey, VerdictStatus,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::store::{self, Pool};

/// Why a submission was refused; maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// Over the size limit (413).
    #[error("the body is larger than {limit} bytes")]
    TooLarge {
        /// Limit in bytes.
        limit: usize,
    },
    /// Not JSON (400).
    #[error("{0}")]
    Syntax(String),
    /// Schema, types or invariants (422).
    #[error("{message}")]
    Invalid {
        /// The first field named.
        field: String,
        /// All violations, "field: message".
        violations: Vec<(String, String)>,
        /// Summary.
        message: String,
    },
    /// No enrolled station has this key id (401).
    #[error("no enrolled station has key id {0}; enrol the station's public key first (lapterop-server stations add)")]
    UnknownKey(String),
    /// The certificate carries no signature (401).
    #[error("the certificate is not signed")]
    Unsigned,
    /// The signature does not verify (401).
    #[error("signature: {0}")]
    BadSignature(String),
    /// The station was revoked (403).
    #[error("station {0:?} was revoked; its certificates are no longer accepted")]
    Revoked(String),
    /// Another document with this id is stored (409).
    #[error("another certificate with id {0} is already stored")]
    Conflict(String),
    /// Storage failed (503); the client should retry.
    #[error("storing failed, try again: {0}")]
    Unavailable(String),
}

impl Rejection {
    /// The HTTP status code for this rejection.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            Self::Syntax(_) => 400,
            Self::Invalid { .. } => 422,
            Self::UnknownKey(_) | Self::Unsigned | Self::BadSignature(_) => 401,
            Self::Revoked(_) => 403,
            Self::Conflict(_) => 409,
            Self::Unavailable(_) => 503,
        }
    }

    /// The field concerned, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::UnknownKey(_) | Self::Revoked(_) => Some("station.key_id"),
            Self::Unsigned | Self::BadSignature(_) => Some("signature"),
            Self::Conflict(_) => Some("id"),
            _ => None,
        }
    }
}

/// A certificate that passed every check and waits to be stored.
#[derive(Debug)]
pub struct Checked {
    /// The typed certificate.
    pub cert: Certificate,
    /// The bytes as received.
    pub body: Vec<u8>,
    /// blake3 of the canonical document, signature included.
    pub blake3: String,
    /// The enrolled station's name.
    pub station_name: String,
}

/// Runs every check but storage. Blocking (database read, signature check).
pub fn check(pool: &Pool, body: Vec<u8>) -> Result<Checked, Rejection> {
    let (cert, value) = cert::parse(&body).map_err(|e| match e {
        cert::ParseError::TooLarge { limit, .. } => Rejection::TooLarge { limit },
        cert::ParseError::Syntax(s) => Rejection::Syntax(format!("not valid JSON: {s}")),
        cert::ParseError::UnknownSchema(_) => Rejection::Invalid {
            field: "schema".into(),
            violations: vec![("schema".into(), e.to_string())],
            message: e.to_string(),
        },
        cert::ParseError::Invalid(ref v) => Rejection::Invalid {
            field: v.first().map(|v| v.field.clone()).unwrap_or_default(),
            violations: v.iter().map(|v| (v.field.clone(), v.message.clone())).collect(),
            message: e.to_string(),
        },
    })?;
    let key_id = cert.station.key_id.clone();
    let station = pool
        .with(|c| store::station_by_key_id(c, &key_id))
        .map_err(|e| Rejection::Unavailable(e.to_string()))?
        .ok_or_else(|| Rejection::UnknownKey(key_id.clone()))?;
    if station.revoked_at.is_some() {
        return Err(Rejection::Revoked(station.name));
    }
    let key = keys::public_key_from_hex(&station.public_key)
        .ok_or_else(|| Rejection::Unavailable(format!("station {:?} has a malformed stored key", station.name)))?;
    let block = cert.signature.as_ref().ok_or(Rejection::Unsigned)?;
    let input = canonical::signing_input(&value).map_err(|e| Rejection::BadSignature(e.to_string()))?;
    keys::verify_bytes(&key, &input, block).map_err(|e| Rejection::BadSignature(e.to_string()))?;
    let blake3 = cert::document_blake3(&value).map_err(|e| Rejection::BadSignature(e.to_string()))?;
    Ok(Checked {
        cert,
        body,
        blake3,
        station_name: station.name,
    })
}

/// The writer's answer for one certificate.
#[derive(Debug)]
pub enum Stored {
    /// Newly stored (201), with its receipt JSON.
    Created(String),
    /// Already stored with identical content (200), with the stored receipt JSON.
    Existing(String),
}

/// One certificate handed to the writer thread.
#[derive(Debug)]
pub struct Job {
    /// The checked certificate.
    pub checked: Checked,
    /// Where to send the answer.
    pub reply: tokio::sync::oneshot::Sender<Result<Stored, Rejection>>,
}

/// Settings the writer needs.
#[derive(Debug)]
pub struct Writer {
    /// Database connection owned by the writer.
    pub conn: Connection,
    /// Server key for receipts.
    pub key: SigningKey,
    /// Base URL of donor pages, without trailing slash.
    pub public_url: String,
}

/// Most certificates committed in one transaction.
const MAX_BATCH: usize = 256;

/// Runs the writer until every sender is gone.
pub fn run_writer(mut w: Writer, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let checked: Vec<&Checked> = batch.iter().map(|j| &j.checked).collect();
        match store_batch(&mut w, &checked) {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(Rejection::Unavailable(format!("{e:#}"))));
                }
            }
        }
    }
}

/// Stores a batch in one transaction; per-certificate results, or an error for the whole batch (then
/// nothing of it was stored).
fn store_batch(w: &mut Writer, batch: &[&Checked]) -> anyhow::Result<Vec<Result<Stored, Rejection>>> {
    let tx = w
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (mut position, mut previous) = store::log_head(&tx)?;
    let mut results = Vec::with_capacity(batch.len());
    for c in batch {
        let existing: Option<(String, String)> = tx
            .prepare_cached("SELECT certificate_blake3, receipt FROM certificates WHERE id = ?1")?
            .query_row([&c.cert.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((blake3, receipt)) = existing {
            results.push(if blake3 == c.blake3 {
                Ok(Stored::Existing(receipt))
            } else {
                Err(Rejection::Conflict(c.cert.id.clone()))
            });
            continue;
        }
        let revoked: Option<String> = tx
            .prepare_cached("SELECT revoked_at FROM stations WHERE key_id = ?1")?
            .query_row([&c.cert.station.key_id], |r| r.get(0))?;
        if revoked.is_some() {
            results.push(Err(Rejection::Revoked(c.station_name.clone())));
            continue;
        }
        position += 1;
        let received_at = cert::now_utc();
        let entry_hash = chain::entry_hash(&previous, position, &c.blake3, &received_at);
        let token = crate::random_token()?;
        let mut receipt = Receipt {
            schema: cert::RECEIPT_SCHEMA_V1.to_owned(),
            certificate_id: c.cert.id.clone(),
            certificate_blake3: c.blake3.clone(),
            received_at: received_at.clone(),
            position,
            previous_hash: previous.clone(),
            entry_hash: entry_hash.clone(),
            donor_url: format!("{}/d/{token}", w.public_url),
            signature: None,
        };
        chain::sign_receipt(&mut receipt, &w.key)?;
        let receipt_json = serde_json::to_string(&receipt)?;
        let (reference, lot) = c
            .cert
            .donor
            .as_ref()
            .map_or((None, None), |d| (d.reference.clone(), d.lot.clone()));
        tx.prepare_cached(
            "INSERT INTO certificates (id, body, certificate_blake3, receipt, donor_token, station_name, key_id,
                issued_at, received_at, outcome, verdict, operator, organisation, site, donor_reference, lot,
                disk_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?
        .execute(params![
            c.cert.id,
            c.body,
            c.blake3,
            receipt_json,
            token,
            c.station_name,
            c.cert.station.key_id,
            c.cert.issued_at,
            received_at,
            kebab(&c.cert.overall_outcome()),
            c.cert.host.as_ref().map(|h| verdict_word(h.verdict.status)),
            c.cert.operator.name,
            c.cert.station.organisation,
            c.cert.station.site,
            reference,
            lot,
            c.cert.disks.len(),
        ])?;
        tx.prepare_cached(
            "INSERT INTO log (position, certificate_id, certificate_blake3, received_at, previous_hash, entry_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            position,
            c.cert.id,
            c.blake3,
            received_at,
            previous,
            entry_hash
        ])?;
        store::append_leaf(&tx, position - 1, tlog::leaf_hash(&c.blake3, &received_at))?;
        for (kind, value) in [("reference", &reference), ("lot", &lot)] {
            if let Some(value) = value {
                tx.prepare_cached("INSERT OR IGNORE INTO batches (kind, value, token) VALUES (?1, ?2, ?3)")?
                    .execute(params![kind, value, crate::random_token()?])?;
            }
        }
        previous = entry_hash;
        results.push(Ok(Stored::Created(receipt_json)));
    }
    tx.commit()?;
    Ok(results)
}

/// The kebab-case name serde gives an enum value.
pub fn kebab<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn verdict_word(v: VerdictStatus) -> String {
    kebab(&v)
}

/// Checks the whole log: hash chain, each certificate's stored hash, each receipt's signature, and
/// that the Merkle tree holds exactly the entries' leaves in position order. Returns the number of
/// entries checked.
pub fn verify_log(conn: &Connection, server_key: &lapterop_certificate::VerifyingKey) -> anyhow::Result<u64> {
    let mut previous = chain::GENESIS.to_owned();
    let mut expected_position = 1u64;
    let mut leaves = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT l.position, l.certificate_id, l.certificate_blake3, l.received_at, l.previous_hash, l.entry_hash,
                c.body, c.receipt
         FROM log l JOIN certificates c ON c.id = l.certificate_id ORDER BY l.position",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let position: u64 = r.get(0)?;
        let id: String = r.get(1)?;
        let blake3: String = r.get(2)?;
        let received_at: String = r.get(3)?;
        let prev: String = r.get(4)?;
        let entry: String = r.get(5)?;
        let body: Vec<u8> = r.get(6)?;
        let receipt: String = r.get(7)?;
        anyhow::ensure!(
            position == expected_position,
            "log position {expected_position} is missing"
        );
        anyhow::ensure!(
            prev == previous,
            "log position {position}: previous hash does not chain"
        );
        anyhow::ensure!(
            chain::entry_hash(&prev, position, &blake3, &received_at) == entry,
            "log position {position}: entry hash does not match its inputs"
        );
        let (_, value) = cert::parse(&body).map_err(|e| anyhow::anyhow!("certificate {id}: {e}"))?;
        anyhow::ensure!(
            cert::document_blake3(&value)? == blake3,
            "certificate {id} does not match the hash in the log"
        );
        let r = chain::verify_receipt(receipt.as_bytes(), server_key)
            .map_err(|e| anyhow::anyhow!("receipt of {id}: {e}"))?;
        anyhow::ensure!(
            r.position == position && r.entry_hash == entry,
            "receipt of {id} does not match the log"
        );
        leaves.push(tlog::leaf_hash(&blake3, &received_at));
        previous = entry;
        expected_position += 1;
    }
    let n = expected_position - 1;
    let size = store::tree_size(conn)?;
    anyhow::ensure!(size == n, "the Merkle tree has {size} leaves but the log {n} entries");
    for (i, leaf) in leaves.iter().enumerate() {
        let stored = merkle::Subtrees::perfect(&store::DbTree(conn), 0, i as u64)?;
        anyhow::ensure!(
            &stored == leaf,
            "log position {}: the Merkle tree's leaf does not match the entry",
            i + 1
        );
    }
    let memory = merkle::MemoryTree { leaves };
    anyhow::ensure!(
        merkle::root(&store::DbTree(conn), n)? == merkle::root(&memory, n)?,
        "the Merkle tree's stored nodes do not match its leaves"
    );
    Ok(n)
}
