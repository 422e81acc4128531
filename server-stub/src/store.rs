//! The SQLite store in the data directory: stations, reviewers, certificates, the append-only log,
//! the full hardware audits stored beside certificates (`audits`, and the `undriven` rows taken from
//! them for the hardware page), review sessions and the audit trail of reviewers' actions (`audit`).
//!
//! One file, `DIR/lapterop.sqlite`, in WAL mode with `synchronous=FULL`: a transaction that returned
//! from COMMIT survives a crash or power loss. Certificates are kept exactly as received (the bytes the
//! station signed); every derived column (outcome, station, donor reference) is for filtering only.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use lapterop_certificate::merkle::{self, Subtrees};
use lapterop_certificate::tlog;
use rusqlite::{params, Connection, OptionalExtension};

pub use crate::limits::SESSION_SECONDS;
use crate::limits::{SESSION_IDLE_SECONDS, SESSION_TOUCH_SECONDS};

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "lapterop.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stations (
    name        TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL UNIQUE,
    public_key  TEXT NOT NULL,
    enrolled_at TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    id                 TEXT PRIMARY KEY,
    body               BLOB NOT NULL,
    certificate_blake3 TEXT NOT NULL,
    receipt            TEXT NOT NULL,
    donor_token        TEXT NOT NULL UNIQUE,
    station_name       TEXT NOT NULL,
    key_id             TEXT NOT NULL,
    issued_at          TEXT NOT NULL,
    received_at        TEXT NOT NULL,
    outcome            TEXT NOT NULL,
    verdict            TEXT,
    operator           TEXT NOT NULL,
    organisation       TEXT NOT NULL,
    site               TEXT NOT NULL,
    donor_reference    TEXT,
    lot                TEXT,
    disk_count         INTEGER NOT NULL,
    review_status      TEXT NOT NULL DEFAULT 'new',
    review_note        TEXT,
    reviewed_by        TEXT,
    reviewed_at        TEXT
);
CREATE INDEX IF NOT EXISTS certificates_received ON certificates(received_at);
CREATE INDEX IF NOT EXISTS certificates_reference ON certificates(donor_reference);
CREATE INDEX IF NOT EXISTS certificates_lot ON certificates(lot);
CREATE TABLE IF NOT EXISTS log (
    position           INTEGER PRIMARY KEY,
    certificate_id     TEXT NOT NULL UNIQUE REFERENCES certificates(id),
    certificate_blake3 TEXT NOT NULL,
    received_at        TEXT NOT NULL,
    previous_hash      TEXT NOT NULL,
    entry_hash         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    kind  TEXT NOT NULL,
    value TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS sessions (
    token      TEXT PRIMARY KEY,
    user       TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS image_keys (
    site       TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    public_key TEXT NOT NULL,
    name       TEXT NOT NULL,
    added_at   TEXT NOT NULL,
    PRIMARY KEY (site, key_id)
);
CREATE TABLE IF NOT EXISTS audits (
    certificate_id TEXT PRIMARY KEY REFERENCES certificates(id),
    body           BLOB NOT NULL,
    received_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS undriven (
    certificate_id      TEXT NOT NULL REFERENCES certificates(id),
    machine_id          TEXT NOT NULL,
    model               TEXT NOT NULL,
    bus                 TEXT NOT NULL,
    address             TEXT NOT NULL,
    vendor_id           TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    subsystem_vendor_id TEXT,
    subsystem_device_id TEXT,
    class               TEXT NOT NULL,
    vendor              TEXT,
    name                TEXT,
    class_name          TEXT
);
CREATE INDEX IF NOT EXISTS undriven_device ON undriven(bus, vendor_id, device_id, class);
CREATE TABLE IF NOT EXISTS audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             TEXT NOT NULL,
    user           TEXT NOT NULL,
    action         TEXT NOT NULL,
    certificate_id TEXT,
    note           TEXT
);
";

/// Opens (creating if needed) the database in `dir` with durable settings and the current schema.
pub fn open(dir: &Path) -> anyhow::Result<Connection> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
    let path = dir.join(DB_FILE);
    let conn = Connection::open(&path).with_context(|| format!("opening database {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .context("switching the database to WAL mode")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.execute_batch(SCHEMA).context("creating the database tables")?;
    migrate(&conn).context("updating the database tables")?;
    Ok(conn)
}

/// Brings tables made by an older version up to date.
fn migrate(conn: &Connection) -> anyhow::Result<()> {
    // Sessions gained `last_seen` (idle timeout); sessions from before count as long unused.
    let has_last_seen: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('sessions') WHERE name = 'last_seen'",
        [],
        |r| r.get(0),
    )?;
    if !has_last_seen {
        if let Err(e) = conn.execute_batch("ALTER TABLE sessions ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0") {
            // Another process (the server, `users add`) may have added it just now.
            if !e.to_string().contains("duplicate column") {
                return Err(e.into());
            }
        }
    }
    // The log became a Merkle tree: entries from before (or any the tree lacks) get their leaves,
    // position N at leaf index N - 1.
    if tree_size(conn)? < log_head(conn)?.0 {
        rebuild_tree(conn)?;
    }
    Ok(())
}

/// Builds the Merkle tree's nodes afresh from the log's entries, in position order, in one
/// transaction (rechecked inside it: another process may have done it just now).
fn rebuild_tree(conn: &Connection) -> anyhow::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> anyhow::Result<()> {
        if tree_size(conn)? >= log_head(conn)?.0 {
            return Ok(());
        }
        conn.execute("DELETE FROM log_nodes", [])?;
        let mut stmt = conn.prepare("SELECT position, certificate_blake3, received_at FROM log ORDER BY position")?;
        let mut rows = stmt.query([])?;
        let mut expected = 1u64;
        while let Some(r) = rows.next()? {
            let position: u64 = r.get(0)?;
            anyhow::ensure!(
                position == expected,
                "log position {expected} is missing; the log cannot become a Merkle tree (run verify-log)"
            );
            let blake3: String = r.get(1)?;
            let received_at: String = r.get(2)?;
            append_leaf(conn, position - 1, tlog::leaf_hash(&blake3, &received_at))?;
            expected += 1;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.context("building the Merkle tree of the log"));
        }
    }
    Ok(())
}

/// Adds leaf `index` to the Merkle tree, with the perfect subtrees it completes.
pub fn append_leaf(conn: &Connection, index: u64, leaf: merkle::Hash) -> anyhow::Result<()> {
    let nodes = merkle::appended_nodes(index, leaf, |level, i| DbTree(conn).perfect(level, i))?;
    let mut insert = conn.prepare_cached("INSERT INTO log_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
    for (level, i, hash) in nodes {
        insert.execute(params![level, i, &hash[..]])?;
    }
    Ok(())
}

/// The Merkle tree as stored in `log_nodes`.
#[derive(Debug, Clone, Copy)]
pub struct DbTree<'a>(pub &'a Connection);

impl merkle::Subtrees for DbTree<'_> {
    type Error = anyhow::Error;
    fn perfect(&self, level: u32, index: u64) -> anyhow::Result<merkle::Hash> {
        let hash: Vec<u8> = self
            .0
            .prepare_cached("SELECT hash FROM log_nodes WHERE level = ?1 AND idx = ?2")?
            .query_row(params![level, index], |r| r.get(0))
            .optional()?
            .ok_or_else(|| anyhow::anyhow!("the Merkle tree lacks node {level}/{index}"))?;
        hash.try_into()
            .map_err(|_| anyhow::anyhow!("Merkle tree node {level}/{index} is not 32 bytes"))
    }
}

/// Number of leaves in the Merkle tree.
pub fn tree_size(conn: &Connection) -> anyhow::Result<u64> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(idx) + 1, 0) FROM log_nodes WHERE level = 0",
        [],
        |r| r.get(0),
    )?)
}

/// The log position (1-based) of a certificate.
pub fn log_position(conn: &Connection, certificate_id: &str) -> anyhow::Result<Option<u64>> {
    Ok(conn
        .prepare_cached("SELECT position FROM log WHERE certificate_id = ?1")?
        .query_row([certificate_id], |r| r.get(0))
        .optional()?)
}

/// A small pool of connections for request handlers (each used by one blocking task at a time).
#[derive(Debug)]
pub struct Pool {
    dir: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    /// A pool over the database in `dir` (opened lazily).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` with a connection. Call from blocking context only.
    pub fn with<T>(&self, f: impl FnOnce(&mut Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let taken = self
            .idle
            .lock()
            .map_err(|_| anyhow::anyhow!("connection pool poisoned"))?
            .pop();
        let mut conn = match taken {
            Some(c) => c,
            None => open(&self.dir)?,
        };
        let out = f(&mut conn);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < 64 {
                idle.push(conn);
            }
        }
        out
    }
}

/// An enrolled station.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Station {
    /// Name given at enrolment.
    pub name: String,
    /// Key id (blake3 prefix of the public key).
    pub key_id: String,
    /// Public key, 64 hex digits.
    pub public_key: String,
    /// When enrolled.
    pub enrolled_at: String,
    /// When revoked, if it was.
    pub revoked_at: Option<String>,
}

fn station_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Station> {
    Ok(Station {
        name: r.get(0)?,
        key_id: r.get(1)?,
        public_key: r.get(2)?,
        enrolled_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

const STATION_COLS: &str = "name, key_id, public_key, enrolled_at, revoked_at";

/// The station with this key id, revoked or not.
pub fn station_by_key_id(conn: &Connection, key_id: &str) -> anyhow::Result<Option<Station>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {STATION_COLS} FROM stations WHERE key_id = ?1"))?
        .query_row([key_id], station_row)
        .optional()?)
}

/// Every station, by name.
pub fn stations(conn: &Connection) -> anyhow::Result<Vec<Station>> {
    let mut stmt = conn.prepare(&format!("SELECT {STATION_COLS} FROM stations ORDER BY name"))?;
    let rows = stmt.query_map([], station_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Enrols a station; fails if the name or key is taken.
pub fn add_station(conn: &Connection, name: &str, key_id: &str, public_key: &str, now: &str) -> anyhow::Result<()> {
    if let Some(s) = station_by_key_id(conn, key_id)? {
        anyhow::bail!("this key is already enrolled as station {:?}", s.name);
    }
    conn.execute(
        "INSERT INTO stations (name, key_id, public_key, enrolled_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, key_id, public_key, now],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            anyhow::anyhow!("a station named {name:?} already exists; choose another name")
        }
        e => anyhow::Error::from(e).context("enrolling the station"),
    })?;
    Ok(())
}

/// An OS image key allowed for a site (`*`: every site).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageKey {
    /// The site as stations write it in their certificates (`station.site`), or `*`.
    pub site: String,
    /// Key id (first 16 bytes of blake3 of the public key, hex).
    pub key_id: String,
    /// The public key, hex.
    pub public_key: String,
    /// A name for people ("image key 2026").
    pub name: String,
    /// When it was added.
    pub added_at: String,
}

/// Allows the image key `key_id` for `site`; adding it again only renames it.
pub fn allow_image_key(conn: &Connection, key: &ImageKey) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO image_keys (site, key_id, public_key, name, added_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (site, key_id) DO UPDATE SET name = excluded.name",
        params![key.site, key.key_id, key.public_key, key.name, key.added_at],
    )
    .context("adding the image key")?;
    Ok(())
}

/// Takes `key_id` off the list of `site`; false when it was not there.
pub fn remove_image_key(conn: &Connection, site: &str, key_id: &str) -> anyhow::Result<bool> {
    Ok(conn.execute("DELETE FROM image_keys WHERE site = ?1 AND key_id = ?2", [site, key_id])? == 1)
}

/// Every allowed image key, by site.
pub fn image_keys(conn: &Connection) -> anyhow::Result<Vec<ImageKey>> {
    let mut stmt =
        conn.prepare("SELECT site, key_id, public_key, name, added_at FROM image_keys ORDER BY site, added_at")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(ImageKey {
                site: r.get(0)?,
                key_id: r.get(1)?,
                public_key: r.get(2)?,
                name: r.get(3)?,
                added_at: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Revokes a station by name; returns false if there is no such station.
pub fn revoke_station(conn: &Connection, name: &str, now: &str) -> anyhow::Result<bool> {
    let n = conn.execute(
        "UPDATE stations SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1",
        params![name, now],
    )?;
    Ok(n == 1)
}

/// What [`set_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetUser {
    /// A new reviewer.
    Added,
    /// A new password for a reviewer; this many of their sessions were ended.
    PasswordChanged {
        /// Sessions ended.
        sessions_ended: usize,
    },
}

/// Adds a reviewer, or sets a reviewer's new password and ends all of their sessions (whoever knew
/// the old password is logged out); audited, in one transaction.
pub fn set_user(conn: &mut Connection, name: &str, password_hash: &str, now: &str) -> anyhow::Result<SetUser> {
    let tx = conn.transaction()?;
    let existed = password_hash_of(&tx, name)?.is_some();
    tx.execute(
        "INSERT INTO users (name, password_hash, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
        params![name, password_hash, now],
    )?;
    let done = if existed {
        let sessions_ended = tx.execute("DELETE FROM sessions WHERE user = ?1", [name])?;
        let note = match sessions_ended {
            1 => "1 session ended (users add)".to_owned(),
            n => format!("{n} sessions ended (users add)"),
        };
        audit_with_note(&tx, name, "password changed", &note, now)?;
        SetUser::PasswordChanged { sessions_ended }
    } else {
        audit_with_note(&tx, name, "reviewer added", "users add", now)?;
        SetUser::Added
    };
    tx.commit()?;
    Ok(done)
}

fn password_hash_of(conn: &Connection, name: &str) -> anyhow::Result<Option<String>> {
    Ok(conn
        .query_row("SELECT password_hash FROM users WHERE name = ?1", [name], |r| r.get(0))
        .optional()?)
}

/// The password hash of a reviewer.
pub fn password_hash(conn: &Connection, name: &str) -> anyhow::Result<Option<String>> {
    password_hash_of(conn, name)
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// 1-based position.
    pub position: u64,
    /// The certificate. Never in the public log (`GET /api/v1/log`): an id opens nothing by itself,
    /// but it names a laptop; the chain needs only the hashes.
    #[serde(skip_serializing)]
    pub certificate_id: String,
    /// blake3 of its canonical bytes.
    pub certificate_blake3: String,
    /// When it was received.
    pub received_at: String,
    /// Hash of the previous entry.
    pub previous_hash: String,
    /// This entry's hash.
    pub entry_hash: String,
}

/// Log entries from position `from` (inclusive), at most `limit`.
pub fn log_entries(conn: &Connection, from: u64, limit: u64) -> anyhow::Result<Vec<LogEntry>> {
    let mut stmt = conn.prepare(
        "SELECT position, certificate_id, certificate_blake3, received_at, previous_hash, entry_hash
         FROM log WHERE position >= ?1 ORDER BY position LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![from, limit], |r| {
            Ok(LogEntry {
                position: r.get(0)?,
                certificate_id: r.get(1)?,
                certificate_blake3: r.get(2)?,
                received_at: r.get(3)?,
                previous_hash: r.get(4)?,
                entry_hash: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The last log entry's position and hash (0 and the genesis hash for an empty log).
pub fn log_head(conn: &Connection) -> anyhow::Result<(u64, String)> {
    Ok(conn
        .query_row(
            "SELECT position, entry_hash FROM log ORDER BY position DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, lapterop_certificate::chain::GENESIS.to_owned())))
}

/// A stored certificate with its review state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredCert {
    /// Certificate id.
    pub id: String,
    /// The document exactly as received.
    #[serde(skip)]
    pub body: Vec<u8>,
    /// The receipt JSON.
    #[serde(skip)]
    pub receipt: String,
    /// Donor page token.
    pub donor_token: String,
    /// Station name.
    pub station_name: String,
    /// Station key id.
    pub key_id: String,
    /// Issued at.
    pub issued_at: String,
    /// Received at.
    pub received_at: String,
    /// Overall outcome (kebab-case).
    pub outcome: String,
    /// Host verdict (kebab-case), if any.
    pub verdict: Option<String>,
    /// Operator name.
    pub operator: String,
    /// Organisation.
    pub organisation: String,
    /// Site.
    pub site: String,
    /// Donor reference.
    pub donor_reference: Option<String>,
    /// Lot.
    pub lot: Option<String>,
    /// Number of disks.
    pub disk_count: u64,
    /// new, approved, rewipe or rejected.
    pub review_status: String,
    /// Reviewer's note.
    pub review_note: Option<String>,
    /// Reviewer.
    pub reviewed_by: Option<String>,
    /// When reviewed.
    pub reviewed_at: Option<String>,
    /// Key id of the signer of the OS image the laptop got, when an install succeeded.
    pub image_signer: Option<String>,
    /// Whether that key is on the allow-list for the certificate's site (`image_keys`); true when
    /// nothing was installed.
    pub image_allowed: bool,
}

/// The columns of [`StoredCert`]; the last two are derived from the stored document and the image key
/// allow-list at query time, so adding a key to the list clears the flag of what came before.
const CERT_COLS: &str = "id, body, receipt, donor_token, station_name, key_id, issued_at, received_at, outcome, verdict,
    operator, organisation, site, donor_reference, lot, disk_count, review_status, review_note, reviewed_by, reviewed_at,
    CASE WHEN json_extract(CAST(body AS TEXT), '$.install.status') = 'installed'
         THEN json_extract(CAST(body AS TEXT), '$.install.signer_key_id') END AS image_signer,
    CASE WHEN json_extract(CAST(body AS TEXT), '$.install.status') = 'installed'
         THEN EXISTS (SELECT 1 FROM image_keys k
                      WHERE k.key_id = json_extract(CAST(certificates.body AS TEXT), '$.install.signer_key_id')
                        AND (k.site = certificates.site OR k.site = '*'))
         ELSE 1 END AS image_allowed";

fn cert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCert> {
    Ok(StoredCert {
        id: r.get(0)?,
        body: r.get(1)?,
        receipt: r.get(2)?,
        donor_token: r.get(3)?,
        station_name: r.get(4)?,
        key_id: r.get(5)?,
        issued_at: r.get(6)?,
        received_at: r.get(7)?,
        outcome: r.get(8)?,
        verdict: r.get(9)?,
        operator: r.get(10)?,
        organisation: r.get(11)?,
        site: r.get(12)?,
        donor_reference: r.get(13)?,
        lot: r.get(14)?,
        disk_count: r.get(15)?,
        review_status: r.get(16)?,
        review_note: r.get(17)?,
        reviewed_by: r.get(18)?,
        reviewed_at: r.get(19)?,
        image_signer: r.get(20)?,
        image_allowed: r.get(21)?,
    })
}

/// A certificate by id.
pub fn cert_by_id(conn: &Connection, id: &str) -> anyhow::Result<Option<StoredCert>> {
    Ok(conn
        .query_row(
            &format!("SELECT {CERT_COLS} FROM certificates WHERE id = ?1"),
            [id],
            cert_row,
        )
        .optional()?)
}

/// A certificate by donor token.
pub fn cert_by_token(conn: &Connection, token: &str) -> anyhow::Result<Option<StoredCert>> {
    Ok(conn
        .query_row(
            &format!("SELECT {CERT_COLS} FROM certificates WHERE donor_token = ?1"),
            [token],
            cert_row,
        )
        .optional()?)
}

/// Filters of the review queue and the CSV export; empty strings mean "any".
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Review status: new, approved, rewipe, rejected, or empty for all.
    pub status: String,
    /// Overall outcome.
    pub outcome: String,
    /// Station name.
    pub station: String,
    /// Host verdict.
    pub verdict: String,
    /// Received on or after this date (YYYY-MM-DD).
    pub from: String,
    /// Received on or before this date (YYYY-MM-DD).
    pub to: String,
    /// `unlisted`: only certificates whose installed image was signed by a key not allowed for the site.
    pub image: String,
}

/// Certificates matching `filter`, newest first, at most `limit`.
pub fn certs(conn: &Connection, filter: &Filter, limit: u64) -> anyhow::Result<Vec<StoredCert>> {
    let mut sql = format!("SELECT {CERT_COLS} FROM certificates WHERE 1=1");
    let mut args: Vec<String> = Vec::new();
    for (col, value) in [
        ("review_status", &filter.status),
        ("outcome", &filter.outcome),
        ("station_name", &filter.station),
        ("verdict", &filter.verdict),
    ] {
        if !value.is_empty() {
            args.push(value.clone());
            sql.push_str(&format!(" AND {col} = ?{}", args.len()));
        }
    }
    if !filter.from.is_empty() {
        args.push(filter.from.clone());
        sql.push_str(&format!(" AND received_at >= ?{}", args.len()));
    }
    if !filter.to.is_empty() {
        // Dates compare as text; anything on that day sorts before the next day.
        args.push(format!("{}T99", filter.to));
        sql.push_str(&format!(" AND received_at < ?{}", args.len()));
    }
    if filter.image == "unlisted" {
        sql.push_str(" AND image_signer IS NOT NULL AND NOT image_allowed");
    }
    sql.push_str(&format!(" ORDER BY received_at DESC, id DESC LIMIT {limit}"));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), cert_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Certificates of a donor batch (by donor reference or lot), oldest first.
pub fn certs_in_batch(conn: &Connection, kind: &str, value: &str) -> anyhow::Result<Vec<StoredCert>> {
    let col = if kind == "lot" { "lot" } else { "donor_reference" };
    let mut stmt = conn.prepare(&format!(
        "SELECT {CERT_COLS} FROM certificates WHERE {col} = ?1 ORDER BY received_at, id"
    ))?;
    let rows = stmt.query_map([value], cert_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The batch (kind, value) behind a batch token.
pub fn batch_by_token(conn: &Connection, token: &str) -> anyhow::Result<Option<(String, String)>> {
    Ok(conn
        .query_row("SELECT kind, value FROM batches WHERE token = ?1", [token], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?)
}

/// The token of a batch, if the batch exists.
pub fn batch_token(conn: &Connection, kind: &str, value: &str) -> anyhow::Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT token FROM batches WHERE kind = ?1 AND value = ?2",
            [kind, value],
            |r| r.get(0),
        )
        .optional()?)
}

/// Stations names, for filter menus.
pub fn station_names(conn: &Connection) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM stations ORDER BY name")?;
    let rows = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Records a review decision and its audit entry in one transaction.
pub fn review(
    conn: &mut Connection,
    id: &str,
    status: &str,
    note: &str,
    user: &str,
    now: &str,
) -> anyhow::Result<bool> {
    let tx = conn.transaction()?;
    let n = tx.execute(
        "UPDATE certificates SET review_status = ?2, review_note = ?3, reviewed_by = ?4, reviewed_at = ?5 WHERE id = ?1",
        params![id, status, note, user, now],
    )?;
    if n == 1 {
        tx.execute(
            "INSERT INTO audit (at, user, action, certificate_id, note) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now, user, status, id, note],
        )?;
    }
    tx.commit()?;
    Ok(n == 1)
}

/// Adds an audit entry that concerns no certificate (log in, log out).
pub fn audit(conn: &Connection, user: &str, action: &str, now: &str) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO audit (at, user, action) VALUES (?1, ?2, ?3)",
        params![now, user, action],
    )?;
    Ok(())
}

/// Adds an audit entry with a note that concerns no certificate (a failed or refused login).
pub fn audit_with_note(conn: &Connection, user: &str, action: &str, note: &str, now: &str) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO audit (at, user, action, note) VALUES (?1, ?2, ?3, ?4)",
        params![now, user, action, note],
    )?;
    Ok(())
}

/// One audit entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    /// When.
    pub at: String,
    /// Who.
    pub user: String,
    /// What.
    pub action: String,
    /// Which certificate.
    pub certificate_id: Option<String>,
    /// Note.
    pub note: Option<String>,
}

/// The newest audit entries, optionally for one certificate.
pub fn audit_entries(conn: &Connection, certificate_id: Option<&str>, limit: u64) -> anyhow::Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT at, user, action, certificate_id, note FROM audit
         WHERE ?1 IS NULL OR certificate_id = ?1 ORDER BY id DESC LIMIT {limit}"
    ))?;
    let rows = stmt
        .query_map([certificate_id], |r| {
            Ok(AuditEntry {
                at: r.get(0)?,
                user: r.get(1)?,
                action: r.get(2)?,
                certificate_id: r.get(3)?,
                note: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// A review session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Reviewer.
    pub user: String,
    /// CSRF token for forms of this session.
    pub csrf: String,
}

/// Creates a session at `now` (unix seconds), and removes sessions that have ended.
pub fn create_session(conn: &Connection, token: &str, user: &str, csrf: &str, now: i64) -> anyhow::Result<()> {
    conn.execute(
        "DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen <= ?1 - ?2",
        params![now, SESSION_IDLE_SECONDS],
    )?;
    conn.execute(
        "INSERT INTO sessions (token, user, csrf, expires_at, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token, user, csrf, now + SESSION_SECONDS, now],
    )?;
    Ok(())
}

/// The live session behind a token at `now`: not past its lifetime and used within the idle limit.
/// Using it refreshes its last use (written at most once a minute).
pub fn session(conn: &Connection, token: &str, now: i64) -> anyhow::Result<Option<Session>> {
    let found = conn
        .query_row(
            "SELECT user, csrf, last_seen FROM sessions WHERE token = ?1 AND expires_at > ?2 AND last_seen > ?2 - ?3",
            params![token, now, SESSION_IDLE_SECONDS],
            |r| {
                Ok((
                    Session {
                        user: r.get(0)?,
                        csrf: r.get(1)?,
                    },
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((session, last_seen)) = found else {
        return Ok(None);
    };
    if now - last_seen >= SESSION_TOUCH_SECONDS {
        conn.execute(
            "UPDATE sessions SET last_seen = ?2 WHERE token = ?1",
            params![token, now],
        )?;
    }
    Ok(Some(session))
}

/// Ends a session.
pub fn delete_session(conn: &Connection, token: &str) -> anyhow::Result<()> {
    conn.execute("DELETE FROM sessions WHERE token = ?1", [token])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path()).unwrap();
        (dir, conn)
    }

    #[test]
    fn a_session_ends_after_30_minutes_unused_and_after_12_hours_used() {
        let (_dir, conn) = db();
        let t0 = 1_800_000_000;
        create_session(&conn, "tok", "lead", "csrf", t0).unwrap();
        assert!(session(&conn, "tok", t0 + 60).unwrap().is_some());
        // Used at 29 minutes: alive 29 minutes after that.
        assert!(session(&conn, "tok", t0 + 29 * 60).unwrap().is_some());
        assert!(session(&conn, "tok", t0 + 58 * 60).unwrap().is_some());
        // Then unused for 30 minutes: ended, and stays ended.
        assert!(session(&conn, "tok", t0 + 88 * 60).unwrap().is_none());
        assert!(session(&conn, "tok", t0 + 88 * 60 + 1).unwrap().is_none());

        // Used every 20 minutes, it still ends after 12 hours.
        create_session(&conn, "busy", "lead", "csrf", t0).unwrap();
        let mut t = t0;
        while t + 20 * 60 < t0 + SESSION_SECONDS {
            t += 20 * 60;
            assert!(session(&conn, "busy", t).unwrap().is_some(), "alive at {}", t - t0);
        }
        assert!(session(&conn, "busy", t0 + SESSION_SECONDS).unwrap().is_none());
    }

    #[test]
    fn last_use_is_written_at_most_once_a_minute() {
        let (_dir, conn) = db();
        let t0 = 1_800_000_000;
        create_session(&conn, "tok", "lead", "csrf", t0).unwrap();
        let seen = || -> i64 {
            conn.query_row("SELECT last_seen FROM sessions WHERE token = 'tok'", [], |r| r.get(0))
                .unwrap()
        };
        session(&conn, "tok", t0 + 30).unwrap();
        assert_eq!(seen(), t0);
        session(&conn, "tok", t0 + 61).unwrap();
        assert_eq!(seen(), t0 + 61);
    }

    #[test]
    fn a_new_password_ends_that_reviewers_sessions_only() {
        let (_dir, mut conn) = db();
        let now = "2026-11-01T10:00:00Z";
        assert_eq!(set_user(&mut conn, "lead", "hash1", now).unwrap(), SetUser::Added);
        assert_eq!(set_user(&mut conn, "other", "hash1", now).unwrap(), SetUser::Added);
        let t0 = 1_800_000_000;
        for (token, user) in [("a", "lead"), ("b", "lead"), ("c", "other")] {
            create_session(&conn, token, user, "csrf", t0).unwrap();
        }
        assert_eq!(
            set_user(&mut conn, "lead", "hash2", now).unwrap(),
            SetUser::PasswordChanged { sessions_ended: 2 }
        );
        assert!(session(&conn, "a", t0 + 1).unwrap().is_none());
        assert!(session(&conn, "b", t0 + 1).unwrap().is_none());
        assert!(session(&conn, "c", t0 + 1).unwrap().is_some());
        assert_eq!(password_hash(&conn, "lead").unwrap().as_deref(), Some("hash2"));
        let audit = audit_entries(&conn, None, 10).unwrap();
        assert_eq!(
            (
                audit[0].user.as_str(),
                audit[0].action.as_str(),
                audit[0].note.as_deref()
            ),
            ("lead", "password changed", Some("2 sessions ended (users add)"))
        );
    }

    #[test]
    fn sessions_of_an_older_database_gain_last_seen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE sessions (token TEXT PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL,
                 expires_at INTEGER NOT NULL);
                 INSERT INTO sessions VALUES ('old', 'lead', 'csrf', 9999999999);",
            )
            .unwrap();
        }
        let conn = open(dir.path()).unwrap();
        // Counted as long unused: the old session has ended.
        assert!(session(&conn, "old", 1_800_000_000).unwrap().is_none());
        create_session(&conn, "new", "lead", "csrf", 1_800_000_000).unwrap();
        assert!(session(&conn, "new", 1_800_000_001).unwrap().is_some());
    }
}
