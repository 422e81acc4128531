//! Parsing with limits, and the invariants a valid certificate keeps.
//!
//! Parsing goes in four steps, each of which names the field it rejects: size limit; JSON syntax
//! (serde_json's recursion limit stops deeply nested input); a walk over every value (string length,
//! integers exact in an IEEE 754 double, no fractions); the typed model with unknown fields denied;
//! then [`invariants`], the rules of `docs/certificate.md` ("an `erased` disk has no failed step", ...).

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::*;

/// Largest certificate document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Longest string value accepted, in bytes.
pub const MAX_STRING_BYTES: usize = 4096;
/// Largest integer accepted: 2^53 - 1, exact in every JSON implementation.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Most disks one certificate may list.
pub const MAX_DISKS: usize = 64;
/// Largest sector size accepted.
const MAX_SECTOR: u32 = 65536;

/// Why a document is not a valid certificate. Every variant names the field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Over [`MAX_DOCUMENT_BYTES`].
    #[error("the document is {size} bytes; a certificate is at most {limit} bytes")]
    TooLarge {
        /// Size seen.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Not JSON at all (or nested too deeply).
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// Another schema version.
    #[error("schema: {0:?} is not a version this program reads (it reads \"lapterop.certificate/v1\")")]
    UnknownSchema(String),
    /// A field has the wrong type, is unknown, missing, or breaks a rule.
    #[error("{}", join_violations(.0))]
    Invalid(Vec<Violation>),
}

impl ParseError {
    /// The violations, if this error is about fields.
    pub fn violations(&self) -> &[Violation] {
        match self {
            Self::Invalid(v) => v,
            _ => &[],
        }
    }
}

/// One broken rule, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted path of the field, e.g. `disks[0].outcome.status`.
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn join_violations(v: &[Violation]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Parses a certificate from bytes: limits, syntax, types, then invariants.
/// Returns the typed certificate and the document as received (for the signing input).
pub fn parse(bytes: &[u8]) -> Result<(Certificate, Value), ParseError> {
    let value = parse_value(bytes)?;
    match value.get("schema") {
        Some(Value::String(s)) if s == SCHEMA_V1 => {}
        Some(Value::String(s)) => return Err(ParseError::UnknownSchema(s.clone())),
        Some(_) => return Err(invalid("schema", "must be the string \"lapterop.certificate/v1\"")),
        None => return Err(invalid("schema", "missing; a certificate names its schema version")),
    }
    let cert: Certificate = typed(bytes)?;
    let violations = invariants(&cert);
    if violations.is_empty() {
        Ok((cert, value))
    } else {
        Err(ParseError::Invalid(violations))
    }
}

/// Parses a server receipt from bytes (limits, syntax, types and field formats).
pub fn parse_receipt(bytes: &[u8]) -> Result<(Receipt, Value), ParseError> {
    let value = parse_value(bytes)?;
    let receipt: Receipt = typed(bytes)?;
    let mut c = Checker::default();
    if receipt.schema != RECEIPT_SCHEMA_V1 {
        c.fail("schema", "must be \"lapterop.receipt/v1\"");
    }
    c.uuid7("certificate_id", &receipt.certificate_id);
    c.hash("certificate_blake3", &receipt.certificate_blake3);
    c.time("received_at", &receipt.received_at);
    c.hash("previous_hash", &receipt.previous_hash);
    c.hash("entry_hash", &receipt.entry_hash);
    if receipt.position == 0 {
        c.fail("position", "positions start at 1");
    }
    if let Some(sig) = &receipt.signature {
        c.signature("signature", sig);
    }
    if c.0.is_empty() {
        Ok((receipt, value))
    } else {
        Err(ParseError::Invalid(c.0))
    }
}

/// Size limit, syntax, and the value walk.
pub(crate) fn parse_value(bytes: &[u8]) -> Result<Value, ParseError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ParseError::TooLarge {
            size: bytes.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ParseError::Syntax(e.to_string()))?;
    if !value.is_object() {
        return Err(invalid("(document)", "must be a JSON object"));
    }
    let mut c = Checker::default();
    walk(&value, &mut String::new(), &mut c);
    if c.0.is_empty() {
        Ok(value)
    } else {
        Err(ParseError::Invalid(c.0))
    }
}

/// The typed model, straight from the bytes so that duplicate members are caught (a `Value` would
/// silently keep the last one, and another parser might keep the first).
pub(crate) fn typed<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "(document)".to_owned() } else { path };
        invalid(&field, &e.into_inner().to_string())
    })
}

fn invalid(field: &str, message: &str) -> ParseError {
    ParseError::Invalid(vec![Violation {
        field: field.to_owned(),
        message: message.to_owned(),
    }])
}

/// Checks every string and number, whatever its place, so the typed step never sees a 10 MB string
/// or a number that another implementation would read differently.
fn walk(value: &Value, path: &mut String, c: &mut Checker) {
    match value {
        Value::String(s) if s.len() > MAX_STRING_BYTES => c.fail(
            path,
            &format!("string of {} bytes; at most {MAX_STRING_BYTES} allowed", s.len()),
        ),
        Value::Number(n) => match n.as_u64() {
            Some(u) if u <= MAX_SAFE_INTEGER => {}
            Some(_) => c.fail(path, "integer larger than 2^53 - 1"),
            None if n.is_i64() => c.fail(path, "negative numbers are never valid here"),
            None => c.fail(path, "fractions and exponents are never used; give a whole number"),
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, c);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(item, path, c);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Collects violations.
#[derive(Default)]
struct Checker(Vec<Violation>);

impl Checker {
    fn fail(&mut self, field: &str, message: &str) {
        if self.0.len() < 50 {
            self.0.push(Violation {
                field: field.to_owned(),
                message: message.to_owned(),
            });
        }
    }

    fn require(&mut self, ok: bool, field: &str, message: &str) {
        if !ok {
            self.fail(field, message);
        }
    }

    fn hex(&mut self, field: &str, value: &str, digits: usize) {
        let ok = value.len() == digits && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        self.require(ok, field, &format!("must be {digits} lower-case hex digits"));
    }

    fn hash(&mut self, field: &str, value: &str) {
        self.hex(field, value, 64);
    }

    fn text(&mut self, field: &str, value: &str) {
        self.require(!value.trim().is_empty(), field, "must not be empty");
    }

    fn time(&mut self, field: &str, value: &str) -> Option<OffsetDateTime> {
        match OffsetDateTime::parse(value, &Rfc3339) {
            Ok(t) if value.ends_with('Z') => Some(t),
            _ => {
                self.fail(field, "must be an RFC 3339 time in UTC, like 2026-11-26T14:30:00Z");
                None
            }
        }
    }

    fn opt_time(&mut self, field: &str, value: &Option<String>) -> Option<OffsetDateTime> {
        value.as_deref().and_then(|v| self.time(field, v))
    }

    fn order(&mut self, field: &str, start: Option<OffsetDateTime>, end: Option<OffsetDateTime>) {
        if let (Some(s), Some(e)) = (start, end) {
            self.require(s <= e, field, "finishes before it starts");
        }
    }

    fn uuid7(&mut self, field: &str, value: &str) {
        let ok = uuid::Uuid::try_parse(value)
            .map(|u| u.get_version_num() == 7 && u.hyphenated().to_string() == value)
            .unwrap_or(false);
        self.require(ok, field, "must be a UUIDv7 in lower-case hyphenated form");
    }

    fn signature(&mut self, field: &str, sig: &SignatureBlock) {
        self.require(
            sig.algorithm == crate::keys::ALGORITHM,
            &format!("{field}.algorithm"),
            "must be \"ed25519\"",
        );
        self.hex(&format!("{field}.key_id"), &sig.key_id, 32);
        self.hex(&format!("{field}.value"), &sig.value, 128);
    }
}

/// Every rule a certificate keeps beyond its types. Empty when valid.
pub fn invariants(cert: &Certificate) -> Vec<Violation> {
    let mut c = Checker::default();
    c.require(
        cert.schema == SCHEMA_V1,
        "schema",
        "must be \"lapterop.certificate/v1\"",
    );
    c.uuid7("id", &cert.id);
    let issued = c.time("issued_at", &cert.issued_at);
    c.text("agent.version", &cert.agent.version);
    c.hash("agent.binary_blake3", &cert.agent.binary_blake3);
    c.hex("station.key_id", &cert.station.key_id, 32);
    c.text("station.organisation", &cert.station.organisation);
    c.text("station.site", &cert.station.site);
    c.text("operator.name", &cert.operator.name);
    if let Some(v) = &cert.verifier {
        c.text("verifier.name", &v.name);
    }
    if let Some(sig) = &cert.signature {
        c.signature("signature", sig);
        c.require(
            sig.key_id == cert.station.key_id,
            "signature.key_id",
            "must equal station.key_id",
        );
    }
    if let Some(host) = &cert.host {
        c.hash("host.device_id", &host.device_id);
        c.hash("host.audit_blake3", &host.audit_blake3);
        let v = &host.verdict;
        match v.status {
            VerdictStatus::Ready => c.require(v.needs.is_empty(), "host.verdict.needs", "must be empty when ready"),
            VerdictStatus::NeedsParts => {
                c.require(!v.needs.is_empty(), "host.verdict.needs", "must list the parts needed")
            }
            VerdictStatus::PartsOnly => c.require(
                !v.reasons.is_empty(),
                "host.verdict.reasons",
                "must say why it is for parts only",
            ),
        }
        if let (Some(slots), Some(used)) = (host.audit.memory_slots, host.audit.memory_slots_used) {
            c.require(
                used <= slots,
                "host.audit.memory_slots_used",
                "more slots used than the board has",
            );
        }
    }
    c.require(!cert.disks.is_empty(), "disks", "a certificate lists at least one disk");
    c.require(cert.disks.len() <= MAX_DISKS, "disks", "too many disks");
    for (i, disk) in cert.disks.iter().enumerate() {
        check_disk(&mut c, &format!("disks[{i}]"), disk, issued);
    }
    c.require(cert.not_touched.len() <= MAX_DISKS, "not_touched", "too many disks");
    for (i, u) in cert.not_touched.iter().enumerate() {
        c.text(&format!("not_touched[{i}].device"), &u.device);
        c.require(
            !cert.disks.iter().any(|d| d.device == u.device),
            &format!("not_touched[{i}].device"),
            "a disk is either in disks or in not_touched, not both",
        );
    }
    if let Some(inst) = &cert.install {
        check_install(&mut c, inst, &cert.disks);
    }
    c.0
}

fn check_disk(c: &mut Checker, at: &str, d: &DiskRecord, issued: Option<OffsetDateTime>) {
    let f = |name: &str| format!("{at}.{name}");
    c.text(&f("device"), &d.device);
    let sector_ok = |s: u32| s.is_power_of_two() && (512..=MAX_SECTOR).contains(&s);
    c.require(
        sector_ok(d.logical_sector_size),
        &f("logical_sector_size"),
        "must be a power of two from 512 to 65536",
    );
    c.require(
        sector_ok(d.physical_sector_size) && d.physical_sector_size >= d.logical_sector_size,
        &f("physical_sector_size"),
        "must be a power of two, at least the logical sector size",
    );
    c.require(d.capacity_bytes > 0, &f("capacity_bytes"), "must be more than zero");
    let lss = u64::from(d.logical_sector_size.max(1));
    c.require(
        d.capacity_bytes % lss == 0,
        &f("capacity_bytes"),
        "must be a whole number of logical sectors",
    );
    let sectors = d.capacity_bytes / lss;

    for (name, area) in [("hpa", &d.hidden_areas.hpa), ("dco", &d.hidden_areas.dco)] {
        if let Some(a) = area {
            c.require(
                a.native_sectors > a.visible_sectors,
                &f(&format!("hidden_areas.{name}.native_sectors")),
                "a hidden area has more native than visible sectors",
            );
            if a.action != HiddenAreaAction::LeftInPlace {
                c.require(
                    a.native_sectors <= sectors,
                    &f("capacity_bytes"),
                    "must cover the native sectors of an exposed hidden area",
                );
            }
        }
        if area.is_some() {
            c.require(
                d.hidden_areas.check == HiddenAreaCheck::Checked,
                &f("hidden_areas.check"),
                "must be checked when a hidden area is listed",
            );
        }
    }

    let range_ok = |r: &ErrorRange| r.count > 0 && r.lba.checked_add(r.count).is_some_and(|end| end <= sectors);
    let mut any_error = false;
    let mut purge_done = false;
    let mut full_overwrite = false;
    for (j, s) in d.steps.iter().enumerate() {
        let sf = |name: &str| format!("{at}.steps[{j}].{name}");
        let started = c.opt_time(&sf("started_at"), &s.started_at);
        let finished = c.opt_time(&sf("finished_at"), &s.finished_at);
        c.order(&sf("finished_at"), started, finished);
        if let (Some(fin), Some(iss)) = (finished, issued) {
            c.require(fin <= iss, &sf("finished_at"), "is after the certificate was issued");
        }
        if s.outcome != StepOutcome::Completed {
            c.require(
                s.reason.as_deref().is_some_and(|r| !r.trim().is_empty()),
                &sf("reason"),
                "required unless the step completed",
            );
        }
        c.require(
            s.bytes <= d.capacity_bytes,
            &sf("bytes"),
            "more bytes than the disk has",
        );
        for (k, r) in s.error_ranges.iter().enumerate() {
            c.require(
                range_ok(r),
                &sf(&format!("error_ranges[{k}]")),
                "range is empty or past the end of the disk",
            );
        }
        // A failed `unfreeze` only means no firmware purge could be used; it erased nothing and failed
        // to erase nothing.
        // Nor does a `discard` after the verified overwrite: it can only free blocks already erased.
        let failed = s.outcome == StepOutcome::Failed && !matches!(s.kind, StepKind::Unfreeze | StepKind::Discard);
        if failed || s.outcome == StepOutcome::Interrupted || !s.error_ranges.is_empty() {
            any_error = true;
        }
        if s.kind == StepKind::Overwrite {
            match &s.pattern {
                None => c.fail(&sf("pattern"), "an overwrite names its pattern"),
                Some(p) if p.kind == PatternKind::ChangedFromMarker => {
                    c.fail(&sf("pattern.kind"), "an overwrite writes zero or random");
                }
                Some(p) => check_pattern(c, &sf("pattern"), p),
            }
            // A failed pass that went to the end (with itemised bad ranges) still covered the rest.
            let went_through = matches!(s.outcome, StepOutcome::Completed | StepOutcome::Failed);
            if went_through && s.bytes == d.capacity_bytes {
                full_overwrite = true;
            }
            if s.outcome == StepOutcome::Completed {
                c.require(
                    s.bytes == d.capacity_bytes,
                    &sf("bytes"),
                    "a completed overwrite covers the whole capacity",
                );
            }
        }
        if s.kind.is_purge() {
            if s.outcome == StepOutcome::Completed {
                purge_done = true;
            }
            if s.outcome != StepOutcome::Skipped {
                c.require(
                    s.firmware.is_some(),
                    &sf("firmware"),
                    "a firmware command that ran carries its evidence",
                );
            }
        }
        if let Some(p) = &s.pass {
            c.require(
                p.number >= 1 && p.number <= p.of,
                &sf("pass"),
                "pass number must be from 1 to the pass count",
            );
        }
    }

    let mut verified_clean = false;
    if let Some(v) = &d.verification {
        let vf = |name: &str| format!("{at}.verification.{name}");
        check_pattern(c, &vf("expected"), &v.expected);
        if v.expected.kind == PatternKind::ChangedFromMarker {
            // The sampled check after a purge alone: the samples read after the purge are the
            // read-back, against the marker written before it.
            c.require(
                v.mode == VerifyMode::Sample,
                &vf("mode"),
                "changed-from-marker is a sampled check",
            );
            c.require(
                v.firmware_before_blake3.is_some() && v.firmware_after_blake3.as_ref() == Some(&v.readback_blake3),
                &vf("firmware_after_blake3"),
                "changed-from-marker reads back the samples just after the purge",
            );
            c.require(
                d.steps
                    .iter()
                    .any(|s| s.kind.is_purge() && s.outcome == StepOutcome::Completed),
                &vf("expected"),
                "changed-from-marker needs a completed firmware purge",
            );
            c.require(
                !d.steps.iter().any(|s| s.kind == StepKind::Overwrite),
                &vf("expected"),
                "after an overwrite the read-back expects its pattern",
            );
        }
        c.hash(&vf("readback_blake3"), &v.readback_blake3);
        for (name, h) in [
            ("pre_wipe_sample_blake3", &v.pre_wipe_sample_blake3),
            ("firmware_before_blake3", &v.firmware_before_blake3),
            ("firmware_after_blake3", &v.firmware_after_blake3),
        ] {
            if let Some(h) = h {
                c.hash(&vf(name), h);
            }
        }
        let started = c.time(&vf("started_at"), &v.started_at);
        let finished = c.time(&vf("finished_at"), &v.finished_at);
        c.order(&vf("finished_at"), started, finished);
        c.require(
            v.bytes_read <= d.capacity_bytes,
            &vf("bytes_read"),
            "more bytes than the disk has",
        );
        c.require(
            v.mismatched_blocks <= sectors,
            &vf("mismatched_blocks"),
            "more blocks than the disk has",
        );
        for (k, r) in v.error_ranges.iter().enumerate() {
            c.require(
                range_ok(r),
                &vf(&format!("error_ranges[{k}]")),
                "range is empty or past the end of the disk",
            );
        }
        let mismatch_sum: u64 = v
            .error_ranges
            .iter()
            .filter(|r| r.op == RangeOp::Mismatch)
            .map(|r| r.count)
            .fold(0, u64::saturating_add);
        c.require(
            mismatch_sum == v.mismatched_blocks,
            &vf("mismatched_blocks"),
            "must equal the blocks of the mismatch ranges",
        );
        match (v.mode, &v.sample) {
            (VerifyMode::Full, Some(_)) => c.fail(&vf("sample"), "only for mode sample"),
            (VerifyMode::Full, None) => {}
            (VerifyMode::Sample, None) => c.fail(&vf("sample"), "mode sample records its plan"),
            (VerifyMode::Sample, Some(p)) => check_sample_plan(c, &vf("sample"), p, d.capacity_bytes, lss),
        }
        let complete = match v.mode {
            VerifyMode::Full => v.bytes_read == d.capacity_bytes,
            VerifyMode::Sample => v.sample.as_ref().is_some_and(|p| p.planned_bytes == v.bytes_read),
        };
        verified_clean = v.bytes_read > 0 && complete && v.mismatched_blocks == 0 && v.error_ranges.is_empty();
        if v.mismatched_blocks > 0 || !v.error_ranges.is_empty() {
            any_error = true;
        }
    }

    let mut boot_area_left = false;
    for (j, area) in d.boot_areas.iter().enumerate() {
        let bf = format!("{at}.boot_areas[{j}]");
        check_disk(c, &bf, area, issued);
        c.require(
            area.boot_areas.is_empty(),
            &format!("{bf}.boot_areas"),
            "a boot area has no boot areas",
        );
        c.require(d.transport == Transport::Mmc, &bf, "only an eMMC has boot areas");
        boot_area_left |= area.outcome.status != OutcomeStatus::Erased;
    }

    let hidden_left = [&d.hidden_areas.hpa, &d.hidden_areas.dco]
        .iter()
        .any(|a| a.as_ref().is_some_and(|a| a.action == HiddenAreaAction::LeftInPlace));
    let hidden_unchecked = d.hidden_areas.check == HiddenAreaCheck::Unavailable;

    let of = |name: &str| format!("{at}.outcome.{name}");
    let o = &d.outcome;
    match o.status {
        OutcomeStatus::Erased => {
            c.require(
                o.exceptions.is_empty(),
                &of("exceptions"),
                "an erased disk has no exceptions",
            );
            c.require(
                !any_error,
                &of("status"),
                "cannot be erased: a step failed or reported bad ranges, or verification found errors",
            );
            c.require(
                d.verification.is_some(),
                &f("verification"),
                "an erased disk was read back",
            );
            c.require(
                d.verification.is_none() || verified_clean,
                &f("verification"),
                "an erased disk's verification read everything it planned, with no mismatch or error",
            );
            c.require(
                !hidden_left,
                &of("status"),
                "cannot be erased: a hidden area was left in place",
            );
            c.require(
                !hidden_unchecked,
                &of("status"),
                "cannot be erased: hidden areas could not be checked",
            );
            c.require(
                !boot_area_left,
                &of("status"),
                "cannot be erased: a boot area was not erased",
            );
            c.require(
                full_overwrite || purge_done,
                &f("steps"),
                "an erased disk has a completed overwrite or purge",
            );
            c.require(
                d.nist_category != NistCategory::None,
                &f("nist_category"),
                "an erased disk reached clear or purge",
            );
        }
        OutcomeStatus::ErasedWithExceptions => {
            c.require(!o.exceptions.is_empty(), &of("exceptions"), "itemise every exception");
            c.require(d.verification.is_some(), &f("verification"), "the disk was read back");
            c.require(
                full_overwrite || purge_done || d.steps.iter().any(|s| s.kind == StepKind::Overwrite),
                &f("steps"),
                "something was erased",
            );
            c.require(
                d.nist_category != NistCategory::None,
                &f("nist_category"),
                "reached clear or purge",
            );
            c.require(
                !hidden_left || o.exceptions.iter().any(|e| e.kind == ExceptionKind::HiddenAreaLeft),
                &of("exceptions"),
                "a hidden area left in place is an exception",
            );
            c.require(
                !boot_area_left || o.exceptions.iter().any(|e| e.kind == ExceptionKind::BootAreaNotErased),
                &of("exceptions"),
                "a boot area that was not erased is an exception",
            );
            for (k, e) in o.exceptions.iter().enumerate() {
                c.text(&of(&format!("exceptions[{k}].detail")), &e.detail);
                if let Some(r) = &e.range {
                    c.require(
                        range_ok(r),
                        &of(&format!("exceptions[{k}].range")),
                        "range is empty or past the end of the disk",
                    );
                }
            }
        }
        OutcomeStatus::NotErased => {
            c.require(
                o.reason.as_deref().is_some_and(|r| !r.trim().is_empty()),
                &of("reason"),
                "say why the disk was not erased",
            );
            c.require(
                d.nist_category == NistCategory::None,
                &f("nist_category"),
                "a disk that was not erased reached no category",
            );
        }
    }
    if o.status != OutcomeStatus::NotErased {
        c.require(o.reason.is_none(), &of("reason"), "only for not-erased");
    }
    if d.nist_category == NistCategory::Purge {
        c.require(
            purge_done,
            &f("nist_category"),
            "purge needs a completed firmware purge step",
        );
    }
    if d.nist_category == NistCategory::Clear {
        c.require(
            full_overwrite || purge_done,
            &f("nist_category"),
            "clear needs an overwrite that went through the whole capacity",
        );
    }
}

fn check_pattern(c: &mut Checker, at: &str, p: &Pattern) {
    match p.kind {
        PatternKind::Zero | PatternKind::ChangedFromMarker => {
            c.require(
                p.seed_commitment.is_none(),
                &format!("{at}.seed_commitment"),
                "only for random",
            );
        }
        PatternKind::Random => {
            c.require(
                p.generator.is_some(),
                &format!("{at}.generator"),
                "a random pattern names its generator",
            );
            match &p.seed_commitment {
                Some(h) => c.hash(&format!("{at}.seed_commitment"), h),
                None => c.fail(&format!("{at}.seed_commitment"), "a random pattern commits to its seed"),
            }
        }
    }
}

/// NIST SP 800-88 Rev. 1 §4.7: at least 1000 sections (or every block when the device has fewer),
/// at least 2 samples per section, at least 10 % of the media in all.
fn check_sample_plan(c: &mut Checker, at: &str, p: &SamplePlan, capacity: u64, lss: u64) {
    let sectors = capacity / lss;
    c.hex(&format!("{at}.seed"), &p.seed, 64);
    c.require(
        p.sample_bytes > 0 && p.sample_bytes % lss == 0,
        &format!("{at}.sample_bytes"),
        "a whole number of sectors",
    );
    c.require(
        p.sections >= 1000 || p.sections >= sectors / 2,
        &format!("{at}.sections"),
        "at least 1000 sections",
    );
    c.require(
        p.samples_per_section >= 2,
        &format!("{at}.samples_per_section"),
        "at least 2 samples per section",
    );
    c.require(
        p.planned_bytes.saturating_mul(10) >= capacity && p.planned_bytes <= capacity,
        &format!("{at}.planned_bytes"),
        "at least 10 % of the media, at most all of it",
    );
}

fn check_install(c: &mut Checker, i: &InstallRecord, disks: &[DiskRecord]) {
    // The image's identity: all four when the image was opened, none when it never could be.
    let identity = [&i.image_name, &i.image_version, &i.root_hash, &i.signer_key_id];
    c.require(
        identity.iter().all(|f| f.is_some()) || identity.iter().all(|f| f.is_none()),
        "install.image_name",
        "image_name, image_version, root_hash and signer_key_id come together",
    );
    if let Some(v) = &i.image_name {
        c.text("install.image_name", v);
    }
    if let Some(v) = &i.image_version {
        c.text("install.image_version", v);
    }
    if let Some(v) = &i.root_hash {
        c.hash("install.root_hash", v);
    }
    if let Some(v) = &i.signer_key_id {
        c.hex("install.signer_key_id", v, 32);
    }
    c.require(
        disks.iter().any(|d| d.device == i.target_device),
        "install.target_device",
        "must be one of the disks",
    );
    let s = c.time("install.started_at", &i.started_at);
    let e = c.time("install.finished_at", &i.finished_at);
    c.order("install.finished_at", s, e);
    c.require(
        i.chunk_mismatches <= i.chunks_verified,
        "install.chunk_mismatches",
        "more mismatches than chunks checked",
    );
    match i.status {
        InstallStatus::Installed => {
            c.require(
                i.chunk_mismatches == 0,
                "install.status",
                "cannot be installed with mismatched chunks",
            );
            c.require(i.reason.is_none(), "install.reason", "only for a failed install");
            c.require(
                i.root_hash.is_some(),
                "install.root_hash",
                "an installed image names its image (name, version, root hash, signer)",
            );
            c.require(
                i.bytes_written > 0,
                "install.bytes_written",
                "an install writes something",
            );
        }
        InstallStatus::Failed => c.require(
            i.reason.as_deref().is_some_and(|r| !r.trim().is_empty()),
            "install.reason",
            "say why it failed",
        ),
    }
}
