//! The certificate outbox on the stick: every certificate is written there atomically (write, fsync,
//! rename, fsync the directory) before any upload is tried, uploads are retried with backoff, and the
//! server's receipt is kept beside the certificate (`ID.receipt.json`). A certificate without a
//! receipt is pending; uploading it again duplicates nothing (the server answers 200 with the same
//! receipt for the same certificate).
//!
//! The full audit stored beside a certificate (`ID.audit.json`) goes to the server right after the
//! certificate is accepted (`PUT /api/v1/certificates/ID/audit`; the server keeps it only when its
//! blake3 is the certificate's signed `host.audit_blake3`), and the receipt is written only once the
//! server holds both: a certificate whose audit did not get through stays pending and both are sent
//! again, which the server answers as already stored.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lapterop_certificate::{chain, Certificate, VerifyingKey};

/// Writes `bytes` to `path` so that a crash leaves either the old file or the whole new one:
/// a temporary file in the same directory, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The outbox directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

/// One certificate in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The certificate id (the file's name without `.json`).
    pub id: String,
    /// The certificate file.
    pub certificate: PathBuf,
    /// Where its receipt is (or will be) kept.
    pub receipt: PathBuf,
    /// The full audit stored beside it (`ID.audit.json`); a disk-only run has none.
    pub audit: PathBuf,
}

impl Outbox {
    /// Opens (and creates) the outbox directory.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_owned() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a signed certificate (and the full audit beside it, when there is one) atomically.
    pub fn store(&self, cert: &Certificate, audit_json: Option<&[u8]>) -> io::Result<Entry> {
        if cert.signature.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "refusing to store an unsigned certificate",
            ));
        }
        let entry = self.entry(&cert.id);
        if let Some(audit) = audit_json {
            write_atomically(&entry.audit, audit)?;
        }
        let text = cert.to_pretty_json().map_err(io::Error::other)?;
        write_atomically(&entry.certificate, text.as_bytes())?;
        Ok(entry)
    }

    fn entry(&self, id: &str) -> Entry {
        Entry {
            id: id.to_owned(),
            certificate: self.dir.join(format!("{id}.json")),
            receipt: self.dir.join(format!("{id}.receipt.json")),
            audit: self.dir.join(format!("{id}.audit.json")),
        }
    }

    /// Every certificate in the outbox, oldest id first (ids are UUIDv7, so by time).
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut ids: Vec<String> = fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .filter(|stem| !stem.contains('.'))
            .collect();
        ids.sort();
        Ok(ids.iter().map(|id| self.entry(id)).collect())
    }

    /// Certificates that have no receipt yet.
    pub fn pending(&self) -> io::Result<Vec<Entry>> {
        Ok(self.entries()?.into_iter().filter(|e| !e.receipt.exists()).collect())
    }
}

/// Why an upload did not produce a receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// No answer (no network, server down, timeout): try again later; the certificate waits.
    #[error("no answer from the server ({0}); the certificate waits in the outbox")]
    Unreachable(String),
    /// The server had a problem (5xx): try again later.
    #[error("the server answered {status}: {body}; will try again")]
    ServerError {
        /// HTTP status.
        status: u16,
        /// What it said.
        body: String,
    },
    /// The server refused the certificate (4xx): retrying will not help; a lead must look.
    #[error("the server refused the certificate ({status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// What it said.
        body: String,
    },
    /// The answer was not a valid receipt for this certificate.
    #[error("the server's receipt is not valid: {0}")]
    BadReceipt(String),
    /// The server took the certificate but refused the full audit stored beside it (4xx): retrying
    /// will not help; a lead must look.
    #[error(
        "the server took the certificate but refused its full audit ({status}): {body}; a lead must compare \
         ID.audit.json on the stick with the certificate's host.audit_blake3"
    )]
    AuditRefused {
        /// HTTP status.
        status: u16,
        /// What it said.
        body: String,
    },
}

impl UploadError {
    /// Worth trying again later.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::ServerError { .. })
    }
}

/// At most this much of a server's error answer is kept (characters).
const ANSWER_CHARS: usize = 300;

fn answer_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(ANSWER_CHARS).collect()
}

/// The status and body (at most 1 MiB) of a server's answer; a request or body that fails is
/// [`UploadError::Unreachable`], its message after `context`.
fn answer(
    sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    context: &str,
) -> Result<(u16, Vec<u8>), UploadError> {
    let unreachable = |e: ureq::Error| UploadError::Unreachable(format!("{context}{e}"));
    let mut response = sent.map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .map_err(unreachable)?;
    Ok((status, body))
}

/// Uploads certificates to one collection server.
#[derive(Debug, Clone)]
pub struct Uploader {
    agent: ureq::Agent,
    url: String,
    server_key: Option<VerifyingKey>,
}

/// Reads `path`, `None` when it does not exist.
fn read_if_there(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Uploader {
    /// `server` is the base URL (`http://host:port`); `server_key`, when known, checks receipts.
    pub fn new(server: &str, server_key: Option<VerifyingKey>, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            agent,
            url: format!("{}/api/v1/certificates", server.trim_end_matches('/')),
            server_key,
        }
    }

    /// Posts one certificate document; returns the receipt bytes after checking them.
    pub fn upload(&self, certificate: &[u8]) -> Result<Vec<u8>, UploadError> {
        let sent = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(certificate);
        let (status, body) = answer(sent, "")?;
        match status {
            200 | 201 => self.check_receipt(certificate, body),
            408 | 429 | 500..=599 => Err(UploadError::ServerError {
                status,
                body: answer_text(&body),
            }),
            _ => Err(UploadError::Refused {
                status,
                body: answer_text(&body),
            }),
        }
    }

    /// Puts the full audit of certificate `id` (the bytes stored beside it) on the server, after the
    /// certificate itself was accepted.
    pub fn upload_audit(&self, id: &str, audit: &[u8]) -> Result<(), UploadError> {
        let sent = self
            .agent
            .put(&format!("{}/{id}/audit", self.url))
            .header("content-type", "application/json")
            .send(audit);
        let (status, body) = answer(sent, "sending the full audit: ")?;
        match status {
            200 | 201 => Ok(()),
            408 | 429 | 500..=599 => Err(UploadError::ServerError {
                status,
                body: format!("sending the full audit: {}", answer_text(&body)),
            }),
            _ => Err(UploadError::AuditRefused {
                status,
                body: answer_text(&body),
            }),
        }
    }

    fn check_receipt(&self, certificate: &[u8], body: Vec<u8>) -> Result<Vec<u8>, UploadError> {
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| UploadError::BadReceipt(e.to_string()))?;
        // The server may wrap the receipt with extra fields (donor URL, ...): accept {"receipt": {...}} too.
        let receipt = value.get("receipt").cloned().unwrap_or(value);
        let bytes = serde_json::to_vec_pretty(&receipt).map_err(|e| UploadError::BadReceipt(e.to_string()))?;
        let parsed = match &self.server_key {
            Some(key) => chain::verify_receipt(&bytes, key).map_err(|e| UploadError::BadReceipt(e.to_string()))?,
            None => {
                lapterop_certificate::validate::parse_receipt(&bytes)
                    .map_err(|e| UploadError::BadReceipt(e.to_string()))?
                    .0
            }
        };
        let (cert, doc) =
            lapterop_certificate::parse(certificate).map_err(|e| UploadError::BadReceipt(e.to_string()))?;
        let hash = lapterop_certificate::document_blake3(&doc).map_err(|e| UploadError::BadReceipt(e.to_string()))?;
        if parsed.certificate_id != cert.id || parsed.certificate_blake3 != hash {
            return Err(UploadError::BadReceipt("the receipt is for another certificate".into()));
        }
        Ok(bytes)
    }
}

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Had a receipt already.
    AlreadyDone,
    /// Uploaded now; the receipt is stored.
    Uploaded,
    /// Not uploaded.
    Failed(UploadError),
}

/// Uploads every pending entry once; stores each receipt atomically beside its certificate.
pub fn upload_pending(outbox: &Outbox, uploader: &Uploader) -> io::Result<Vec<(Entry, Sent)>> {
    let mut out = Vec::new();
    for entry in outbox.entries()? {
        if entry.receipt.exists() {
            out.push((entry, Sent::AlreadyDone));
            continue;
        }
        let bytes = fs::read(&entry.certificate)?;
        let sent = match uploader.upload(&bytes) {
            Ok(receipt) => {
                // The receipt is kept only once the server holds the audit too (see the module docs).
                let audit = match read_if_there(&entry.audit)? {
                    Some(audit) => uploader.upload_audit(&entry.id, &audit),
                    None => Ok(()),
                };
                match audit {
                    Ok(()) => {
                        write_atomically(&entry.receipt, &receipt)?;
                        Sent::Uploaded
                    }
                    Err(e) => Sent::Failed(e),
                }
            }
            Err(e) => Sent::Failed(e),
        };
        out.push((entry, sent));
    }
    Ok(out)
}

/// Uploads pending entries, retrying those that failed for a retryable reason with exponential
/// backoff (`first_delay`, doubling, at most `max_delay`) until none is pending or `attempts` rounds
/// are used. `wait` sleeps (tests pass a no-op).
pub fn upload_with_backoff(
    outbox: &Outbox,
    uploader: &Uploader,
    attempts: u32,
    first_delay: Duration,
    max_delay: Duration,
    wait: &mut dyn FnMut(Duration),
) -> io::Result<Vec<(Entry, Sent)>> {
    let mut delay = first_delay;
    let mut last = upload_pending(outbox, uploader)?;
    for _ in 1..attempts {
        if !last.iter().any(|(_, s)| matches!(s, Sent::Failed(e) if e.retryable())) {
            break;
        }
        wait(delay);
        delay = (delay * 2).min(max_delay);
        last = upload_pending(outbox, uploader)?;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapterop_certificate::{keys, sample};

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lapterop-outbox-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn signed(id_suffix: &str) -> Certificate {
        let key = keys::fixture_key("station");
        let mut c = sample::erased_laptop(String::new());
        c.id = format!("019abc12-3456-7def-8123-4567890000{id_suffix}");
        c.sign(&key).unwrap();
        c
    }

    #[test]
    fn stored_certificates_are_whole_and_pending_until_a_receipt_exists() {
        let dir = tempdir("store");
        let outbox = Outbox::open(&dir).unwrap();
        let a = outbox.store(&signed("01"), Some(b"{\"audit\":1}")).unwrap();
        let b = outbox.store(&signed("02"), None).unwrap();
        assert_eq!(outbox.entries().unwrap(), vec![a.clone(), b.clone()]);
        assert!(dir.join("019abc12-3456-7def-8123-456789000001.audit.json").exists());
        // The stored bytes verify.
        let key = keys::fixture_key("station").verifying_key();
        lapterop_certificate::verify(&fs::read(&a.certificate).unwrap(), &key).unwrap();
        write_atomically(&a.receipt, b"{}").unwrap();
        assert_eq!(outbox.pending().unwrap(), vec![b]);
        // No temporary files are left behind.
        assert!(fs::read_dir(&dir)
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
        let mut unsigned = signed("03");
        unsigned.signature = None;
        assert!(outbox.store(&unsigned, None).is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_server_means_the_certificate_waits() {
        let dir = tempdir("offline");
        let outbox = Outbox::open(&dir).unwrap();
        outbox.store(&signed("04"), None).unwrap();
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up = Uploader::new(&format!("http://127.0.0.1:{port}"), None, Duration::from_secs(2));
        let mut waits = Vec::new();
        let result = upload_with_backoff(
            &outbox,
            &up,
            3,
            Duration::from_secs(1),
            Duration::from_secs(3),
            &mut |d| waits.push(d),
        )
        .unwrap();
        assert!(matches!(&result[0].1, Sent::Failed(UploadError::Unreachable(_))));
        assert_eq!(waits, [Duration::from_secs(1), Duration::from_secs(2)]);
        assert_eq!(outbox.pending().unwrap().len(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_server_that_goes_away_mid_upload_loses_nothing() {
        use std::io::Read;
        let dir = tempdir("away");
        let outbox = Outbox::open(&dir).unwrap();
        let entry = outbox.store(&signed("05"), None).unwrap();
        let before = fs::read(&entry.certificate).unwrap();
        // Accepts each connection, reads part of the request, and hangs up without an answer.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut got = 0;
            for stream in listener.incoming().take(2) {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 64];
                got += stream.read(&mut buf).unwrap();
                drop(stream);
            }
            got
        });
        let up = Uploader::new(&format!("http://{addr}"), None, Duration::from_secs(5));
        let result = upload_with_backoff(
            &outbox,
            &up,
            2,
            Duration::from_millis(10),
            Duration::from_millis(10),
            &mut |_| {},
        )
        .unwrap();
        assert!(server.join().unwrap() > 0, "the server saw the request start");
        match &result[0].1 {
            Sent::Failed(e) => assert!(e.retryable(), "{e}"),
            other => panic!("{other:?}"),
        }
        // Still pending, byte for byte the same, no receipt, no temporary file.
        assert_eq!(outbox.pending().unwrap(), vec![entry.clone()]);
        assert_eq!(fs::read(&entry.certificate).unwrap(), before);
        assert!(!entry.receipt.exists());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    /// Requests a test server saw: (method and path, body).
    type Requests = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

    /// A server on 127.0.0.1 that answers a certificate POST with a receipt signed by `key` and the
    /// n-th audit PUT with `audit_answers[n]` (201 once they run out); it records every request.
    fn script_server(key: lapterop_certificate::SigningKey, audit_answers: Vec<u16>) -> (String, Requests) {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut audits = audit_answers.into_iter();
            for (position, stream) in (1u64..).zip(listener.incoming()) {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                let what = request.split(' ').take(2).collect::<Vec<_>>().join(" ");
                let (status, answer) = if what.starts_with("PUT ") {
                    (audits.next().unwrap_or(201), b"{}".to_vec())
                } else {
                    let (cert, doc) = lapterop_certificate::parse(&body).unwrap();
                    let blake3 = lapterop_certificate::document_blake3(&doc).unwrap();
                    let at = lapterop_certificate::now_utc();
                    let mut r = lapterop_certificate::model::Receipt {
                        schema: lapterop_certificate::model::RECEIPT_SCHEMA_V1.to_string(),
                        certificate_id: cert.id.clone(),
                        entry_hash: chain::entry_hash(chain::GENESIS, position, &blake3, &at),
                        certificate_blake3: blake3,
                        received_at: at,
                        position,
                        previous_hash: chain::GENESIS.to_string(),
                        donor_url: format!("http://127.0.0.1/d/{}", cert.id),
                        signature: None,
                    };
                    chain::sign_receipt(&mut r, &key).unwrap();
                    (201, serde_json::to_vec(&r).unwrap())
                };
                record.lock().unwrap().push((what, body));
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&answer);
            }
        });
        (url, seen)
    }

    #[test]
    fn the_audit_follows_the_certificate_and_the_receipt_waits_for_both() {
        let dir = tempdir("audit");
        let outbox = Outbox::open(&dir).unwrap();
        let with_audit = outbox.store(&signed("06"), Some(b"{\"audit\":6}\n")).unwrap();
        let disk_only = outbox.store(&signed("07"), None).unwrap();
        let server_key = keys::fixture_key("outbox test server");
        // The first audit PUT meets a busy server (503), the second goes through.
        let (url, seen) = script_server(server_key.clone(), vec![503]);
        let up = Uploader::new(&url, Some(server_key.verifying_key()), Duration::from_secs(10));
        let first = upload_pending(&outbox, &up).unwrap();
        assert!(matches!(&first[0].1, Sent::Failed(e) if e.retryable()), "{first:?}");
        assert!(
            !with_audit.receipt.exists(),
            "no receipt while the server lacks the audit"
        );
        assert_eq!(first[1].1, Sent::Uploaded);
        assert!(disk_only.receipt.exists());
        let again = upload_pending(&outbox, &up).unwrap();
        assert_eq!(again[0].1, Sent::Uploaded);
        assert_eq!(again[1].1, Sent::AlreadyDone);
        assert!(with_audit.receipt.exists());
        let seen = seen.lock().unwrap();
        let what: Vec<&str> = seen.iter().map(|(w, _)| w.as_str()).collect();
        let put = format!("PUT /api/v1/certificates/{}/audit", with_audit.id);
        assert_eq!(
            what,
            [
                "POST /api/v1/certificates",
                put.as_str(),
                "POST /api/v1/certificates",
                "POST /api/v1/certificates",
                put.as_str()
            ],
            "the disk-only certificate has no audit to send"
        );
        assert_eq!(seen[1].1, b"{\"audit\":6}\n", "the audit goes as stored");
        assert_eq!(seen[4].1, seen[1].1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_refused_audit_keeps_the_certificate_pending_and_says_what_to_check() {
        let dir = tempdir("audit-refused");
        let outbox = Outbox::open(&dir).unwrap();
        let entry = outbox.store(&signed("08"), Some(b"{\"changed\":true}")).unwrap();
        let server_key = keys::fixture_key("outbox test server");
        let (url, _) = script_server(server_key.clone(), vec![422, 422]);
        let up = Uploader::new(&url, Some(server_key.verifying_key()), Duration::from_secs(10));
        let result = upload_with_backoff(&outbox, &up, 3, Duration::ZERO, Duration::ZERO, &mut |_| {}).unwrap();
        match &result[0].1 {
            Sent::Failed(e @ UploadError::AuditRefused { status: 422, .. }) => {
                assert!(!e.retryable());
                assert!(e.to_string().contains("host.audit_blake3"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(outbox.pending().unwrap(), vec![entry]);
        fs::remove_dir_all(dir).unwrap();
    }
}
