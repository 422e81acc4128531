//! The Lapterop erasure certificate: the one format the agent, the server and every outside checker
//! share.
//!
//! This crate owns the types ([`model`]), the canonical bytes a signature covers ([`canonical`], RFC
//! 8785), the keys ([`keys`], Ed25519 with a blake3 key id), the parsing limits and invariants
//! ([`validate`]: an `erased` disk can never carry a failed step, a mismatch or a hidden area left
//! behind) and the server's receipt and append-only log ([`chain`]). The JSON Schema in `docs/` is
//! generated from these types by [`schema_json`]. One part of the full audit stored beside the
//! certificate is shared too: the hardware the stick had no driver for ([`hardware`]), which the agent
//! writes and the server gathers.
//!
//! Programs use [`Certificate::sign`] to issue and [`verify`] to check. Verification always works on
//! the document exactly as received, so a checker written in another language gets the same bytes.

pub mod attachments;
pub mod canonical;
pub mod chain;
pub mod hardware;
pub mod io;
pub mod keys;
pub mod lead_password;
pub mod merkle;
pub mod model;
pub mod request;
pub mod sample;
pub mod tlog;
pub mod validate;

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use model::*;

/// Where a Lapterop stick's marker file sits on its FAT data partition (it holds the stick id). The
/// image builder writes it, GRUB and the agent's init find the stick by it, and the agent refuses to
/// write any disk that carries it.
pub const STICK_MARKER: &str = "lapterop/stick.id";

/// Where the stick's FAT partition carries its full module tree, `lapterop/modules/<kernel
/// release>/` (the initramfs's modules plus network, graphics and power, with depmod's index). The
/// image builder writes it; the agent's init bind-mounts it over `/lib/modules/<release>` once the
/// stick is mounted and loads what the hardware asks for.
pub const STICK_MODULES: &str = "lapterop/modules";

/// Where the stick's FAT partition carries the firmware those modules name (the kernel's firmware
/// loader is pointed there by the agent's init).
pub const STICK_FIRMWARE: &str = "lapterop/firmware";
pub use validate::{parse, ParseError, Violation};

use serde_json::Value;

/// Why a certificate does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not a valid document (syntax, types, limits or invariants).
    #[error("invalid certificate: {0}")]
    Parse(#[from] ParseError),
    /// No `signature` member.
    #[error("the certificate is not signed")]
    Unsigned,
    /// The signature does not check out.
    #[error("{0}")]
    Signature(#[from] keys::SignatureError),
    /// The document could not be canonicalised.
    #[error("{0}")]
    Canonical(#[from] canonical::CanonicalError),
}

/// Why a certificate could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The certificate breaks a rule; we never sign such a certificate.
    #[error("refusing to sign an invalid certificate: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Violation>),
    /// The document could not be canonicalised.
    #[error("{0}")]
    Canonical(#[from] canonical::CanonicalError),
    /// The types could not be turned into JSON (cannot happen for these types).
    #[error("serialising the certificate: {0}")]
    Json(#[from] serde_json::Error),
}

impl InstallRecord {
    /// `name version` of the image, or a note that the image was never read (a failed install).
    pub fn image_label(&self) -> String {
        match (&self.image_name, &self.image_version) {
            (Some(n), Some(v)) => format!("{n} {v}"),
            _ => "(image not read)".to_owned(),
        }
    }
}

/// Everything a new certificate says, before it gets its time and signature: the one way the agent
/// assembles a certificate (the whole-laptop job and the `wipe` command alike).
#[derive(Debug, Clone)]
pub struct Draft {
    /// The agent that ran.
    pub agent: AgentInfo,
    /// The signing station (its `key_id` is set when signing).
    pub station: StationInfo,
    /// Who ran the job.
    pub operator: Person,
    /// Who checked it.
    pub verifier: Option<Person>,
    /// Donor reference, lot, asset tag.
    pub donor: Option<DonorInfo>,
    /// The laptop; `None` for a disk-only run.
    pub host: Option<Host>,
    /// Every disk considered.
    pub disks: Vec<DiskRecord>,
    /// Disks left alone on purpose.
    pub not_touched: Vec<UntouchedDisk>,
    /// The OS install.
    pub install: Option<InstallRecord>,
}

impl Draft {
    /// The certificate `id` of this draft, issued now and signed with `key`; refused (never signed)
    /// when it breaks a rule.
    pub fn sign(self, id: String, key: &SigningKey) -> Result<Certificate, SignError> {
        let mut c = Certificate {
            schema: SCHEMA_V1.to_owned(),
            id,
            issued_at: now_utc(),
            agent: self.agent,
            station: self.station,
            operator: self.operator,
            verifier: self.verifier,
            donor: self.donor,
            host: self.host,
            disks: self.disks,
            not_touched: self.not_touched,
            install: self.install,
            signature: None,
        };
        c.sign(key)?;
        Ok(c)
    }
}

impl Certificate {
    /// The document as JSON.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    /// Sets `station.key_id` to the key's id, checks every invariant, and signs.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), SignError> {
        self.station.key_id = keys::key_id(&key.verifying_key());
        self.signature = None;
        let violations = validate::invariants(self);
        if !violations.is_empty() {
            return Err(SignError::Invalid(violations));
        }
        let input = canonical::signing_input(&self.to_value()?)?;
        self.signature = Some(keys::sign_bytes(key, &input));
        Ok(())
    }

    /// The document as written to files: pretty JSON with a final newline.
    pub fn to_pretty_json(&self) -> Result<String, serde_json::Error> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }

    /// Outcome over all disks: the worst disk's status.
    pub fn overall_outcome(&self) -> OutcomeStatus {
        let rank = |s: OutcomeStatus| match s {
            OutcomeStatus::Erased => 0,
            OutcomeStatus::ErasedWithExceptions => 1,
            OutcomeStatus::NotErased => 2,
        };
        self.disks
            .iter()
            .map(|d| d.outcome.status)
            .max_by_key(|s| rank(*s))
            .unwrap_or(OutcomeStatus::NotErased)
    }
}

/// Parses `bytes` and checks its invariants and its signature against `key`.
pub fn verify(bytes: &[u8], key: &VerifyingKey) -> Result<Certificate, VerifyError> {
    let (cert, value) = validate::parse(bytes)?;
    let block = cert.signature.as_ref().ok_or(VerifyError::Unsigned)?;
    let input = canonical::signing_input(&value)?;
    keys::verify_bytes(key, &input, block)?;
    Ok(cert)
}

/// blake3 of a document's full canonical bytes (signature included), lower-case hex.
pub fn document_blake3(document: &Value) -> Result<String, canonical::CanonicalError> {
    Ok(blake3::hash(&canonical::canonical_bytes(document)?)
        .to_hex()
        .to_string())
}

/// A new certificate id (UUIDv7: milliseconds since 1970, then 74 random bits).
///
/// The random bits come from `getrandom(2)` called directly (getrandom 0.2), not from `uuid`'s own
/// generator: that one looks the libc function up with `dlsym`, which finds nothing in the agent's
/// static binary, and falls back to polling `/dev/random` until the kernel's pool is ready. Polling does
/// not start the kernel's jitter entropy collection the way a blocking `getrandom(2)` does, so on a
/// machine without RDRAND (QEMU's default CPU, older laptops) the agent waited minutes with the wipe
/// done and the result never shown (issue 14).
pub fn new_id() -> Result<String, getrandom::Error> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut random = [0u8; 10];
    getrandom::getrandom(&mut random)?;
    Ok(uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .hyphenated()
        .to_string())
}

/// The current time, RFC 3339 UTC with whole seconds.
pub fn now_utc() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

/// Formats a time as RFC 3339 UTC with whole seconds.
pub fn format_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The JSON Schema of the certificate and the receipt, generated from the types.
pub fn schema_json() -> String {
    let mut schema = schemars::schema_for!(Certificate);
    let receipt = schemars::schema_for!(Receipt);
    schema.insert(
        "$id".into(),
        Value::String("https://lapterop.invalid/schema/certificate-v1.json".into()),
    );
    let defs = schema
        .ensure_object()
        .entry("$defs")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(defs) = defs {
        defs.insert("Receipt".into(), receipt.to_value());
    }
    // Pretty JSON of a Value cannot fail.
    serde_json::to_string_pretty(&schema.to_value()).unwrap_or_default() + "\n"
}
