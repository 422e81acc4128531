//! A certificate in plain words, in Dutch or English, for the donor page, the PDF and the review page;
//! and the template set (auto-escaped HTML).
//!
//! Every page and the PDF render the same [`CertView`], so what the donor reads on screen and on paper
//! is the same. Signatures are checked when the view is built, never taken from a stored flag.
//!
//! The words the volunteer's screen shows too (a disk's outcome, the verdict and the parts, "unknown",
//! "not touched") come from the shared catalogue [`Word`], and sizes, memory and percentages read as
//! `lapterop-words` says, so the page and the screen agree; texts only the pages show are written in
//! place with [`Lang::pick`].

use lapterop_certificate::{
    self as cert, chain, keys, Capability, Certificate, DiskRecord, ExceptionKind, HiddenAreaAction, HiddenAreaCheck,
    NistCategory, OutcomeStatus, PatternKind, Step, StepKind, StepOutcome, Transport, VerdictStatus, VerifyMode,
};
use lapterop_words::{memory, percent, size, Word};
use serde::Serialize;

use crate::store::StoredCert;

/// Page language: the one the agent speaks too (re-exported here for the pages' code).
pub use lapterop_words::Lang;

/// One disk in words.
#[derive(Debug, Clone, Serialize)]
pub struct DiskView {
    /// Kernel name.
    pub device: String,
    /// Model.
    pub model: String,
    /// Serial.
    pub serial: String,
    /// Capacity in words.
    pub capacity: String,
    /// Transport in words.
    pub transport: String,
    /// Method in words.
    pub method: String,
    /// NIST category in words.
    pub nist: String,
    /// Verification in words.
    pub verification: String,
    /// Hidden areas in words.
    pub hidden: String,
    /// Outcome in words.
    pub outcome: String,
    /// `erased`, `erased-with-exceptions` or `not-erased` (for colour).
    pub outcome_code: String,
    /// Exceptions and the not-erased reason.
    pub notes: Vec<String>,
    /// Every step in words.
    pub steps: Vec<String>,
    /// Read-back evidence: hashes, sampling seed, bad ranges.
    pub evidence: Vec<String>,
}

/// A signature check result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Whether it verified just now.
    pub ok: bool,
    /// In words.
    pub text: String,
}

/// A certificate in plain words.
#[derive(Debug, Clone, Serialize)]
pub struct CertView {
    /// Certificate id.
    pub id: String,
    /// Issued at.
    pub issued_at: String,
    /// Received at.
    pub received_at: String,
    /// Overall outcome in words.
    pub outcome: String,
    /// Overall outcome code.
    pub outcome_code: String,
    /// One sentence summing up.
    pub summary: String,
    /// Operator.
    pub operator: String,
    /// Verifier, if any.
    pub verifier: Option<String>,
    /// Organisation.
    pub organisation: String,
    /// Site.
    pub site: String,
    /// Station name (as enrolled).
    pub station: String,
    /// Donor reference.
    pub donor_reference: Option<String>,
    /// Lot.
    pub lot: Option<String>,
    /// Asset tag.
    pub asset_tag: Option<String>,
    /// The laptop in words, if the certificate has a host.
    pub device: Option<String>,
    /// Laptop serial.
    pub device_serial: Option<String>,
    /// Refurbishment verdict in words.
    pub verdict: Option<String>,
    /// Hardware summary lines (review page).
    pub hardware: Vec<String>,
    /// Disks.
    pub disks: Vec<DiskView>,
    /// Disks left alone on purpose, in words (not written; not covered).
    pub not_touched: Vec<String>,
    /// OS install in words.
    pub install: Option<String>,
    /// Whether the installed image's signer key is allowed for the site (review pages); `None` when no
    /// image was installed.
    pub image_check: Option<Check>,
    /// Station signature check.
    pub station_check: Check,
    /// Server receipt check.
    pub receipt_check: Check,
    /// Log position.
    pub position: u64,
    /// Log entry hash.
    pub entry_hash: String,
    /// Review state in words.
    pub review: String,
    /// Review status code.
    pub review_code: String,
}

/// Builds the view; checks both signatures now.
pub fn cert_view(
    stored: &StoredCert,
    station: Option<&crate::store::Station>,
    server_key: &cert::VerifyingKey,
    lang: Lang,
) -> anyhow::Result<CertView> {
    let (c, _) = cert::parse(&stored.body).map_err(|e| anyhow::anyhow!("stored certificate {}: {e}", stored.id))?;
    let revoked = station.and_then(|s| s.revoked_at.clone());
    let station_check = match station.and_then(|s| keys::public_key_from_hex(&s.public_key)) {
        None => Check {
            ok: false,
            text: lang.pick("the station key is not known", "de sleutel van het station is onbekend"),
        },
        Some(k) => match cert::verify(&stored.body, &k) {
            // The station was revoked later (a lost stick): what it signed before still stands, but the
            // page says so with the date instead of a plain "valid". Certificates that arrive after a
            // revocation are refused at ingest.
            Ok(_) if revoked.is_some() => {
                let when = revoked.as_deref().unwrap_or_default();
                let before = stored.received_at.as_str() < when;
                Check {
                    ok: before,
                    text: lang.pick(
                        &format!(
                            "signed by station “{}” (key {}), which was revoked on {when}; this certificate was \
                             received on {}, {} the revocation",
                            stored.station_name,
                            stored.key_id,
                            stored.received_at,
                            if before { "before" } else { "NOT before" }
                        ),
                        &format!(
                            "ondertekend door station “{}” (sleutel {}), dat op {when} werd ingetrokken; dit \
                             certificaat werd ontvangen op {}, {} de intrekking",
                            stored.station_name,
                            stored.key_id,
                            stored.received_at,
                            if before { "vóór" } else { "NIET vóór" }
                        ),
                    ),
                }
            }
            Ok(_) => Check {
                ok: true,
                text: lang.pick(
                    &format!(
                        "valid: signed by station “{}” (key {})",
                        stored.station_name, stored.key_id
                    ),
                    &format!(
                        "geldig: ondertekend door station “{}” (sleutel {})",
                        stored.station_name, stored.key_id
                    ),
                ),
            },
            Err(e) => Check {
                ok: false,
                text: lang.pick(&format!("NOT valid: {e}"), &format!("NIET geldig: {e}")),
            },
        },
    };
    let receipt = chain::verify_receipt(stored.receipt.as_bytes(), server_key);
    let (receipt_check, position, entry_hash) = match receipt {
        Ok(r) if r.certificate_blake3 == cert::document_blake3(&serde_json::from_slice(&stored.body)?)? => (
            Check {
                ok: true,
                text: lang.pick(
                    &format!(
                        "valid: received {} and recorded at position {} of the server log",
                        r.received_at, r.position
                    ),
                    &format!(
                        "geldig: ontvangen op {} en vastgelegd op plaats {} van het serverlogboek",
                        r.received_at, r.position
                    ),
                ),
            },
            r.position,
            r.entry_hash,
        ),
        Ok(r) => (
            Check {
                ok: false,
                text: lang.pick(
                    "NOT valid: the receipt is for other content",
                    "NIET geldig: het ontvangstbewijs hoort bij andere inhoud",
                ),
            },
            r.position,
            r.entry_hash,
        ),
        Err(e) => (
            Check {
                ok: false,
                text: lang.pick(&format!("NOT valid: {e}"), &format!("NIET geldig: {e}")),
            },
            0,
            String::new(),
        ),
    };
    let outcome_status = c.overall_outcome();
    let disks: Vec<DiskView> = c.disks.iter().map(|d| disk_view(d, lang)).collect();
    let n = disks.len();
    let not_touched: Vec<String> = c.not_touched.iter().map(|u| untouched_words(u, lang)).collect();
    // "All data on this device" only when the certificate covers the laptop (a host section) and no
    // internal disk was left out; otherwise the sentence names exactly the disks it covers.
    let whole_device = c.host.is_some()
        && !c
            .not_touched
            .iter()
            .any(|u| u.reason == cert::UntouchedReason::NotChosen);
    let summary = match outcome_status {
        OutcomeStatus::Erased if whole_device => lang.pick(
            &format!("All data on this device's {n} internal disk(s) was erased and checked."),
            &format!("Alle gegevens op de {n} interne schijf/schijven van dit toestel zijn gewist en nagekeken."),
        ),
        OutcomeStatus::Erased => lang.pick(
            &format!(
                "The {n} disk(s) listed below were erased and checked; other disks of this device are not covered \
                 by this certificate."
            ),
            &format!(
                "De {n} schijf/schijven hieronder zijn gewist en nagekeken; andere schijven van dit toestel vallen \
                 niet onder dit certificaat."
            ),
        ),
        OutcomeStatus::ErasedWithExceptions => lang.pick(
            "The disks were erased, with exceptions listed below.",
            "De schijven zijn gewist, met de uitzonderingen die hieronder staan.",
        ),
        OutcomeStatus::NotErased => lang.pick(
            "At least one disk was NOT erased. See below.",
            "Minstens één schijf is NIET gewist. Zie hieronder.",
        ),
    };
    let (device, device_serial, verdict, hardware) = match &c.host {
        Some(h) => {
            let name = [&h.system.vendor, &h.system.product]
                .iter()
                .filter_map(|s| s.as_deref())
                .collect::<Vec<_>>()
                .join(" ");
            let serial = h
                .system
                .serial
                .clone()
                .filter(|_| !h.placeholder_fields.iter().any(|f| f == "system.serial"));
            // The verdict in the words of the agent's audit screen.
            let mut verdict = match h.verdict.status {
                VerdictStatus::Ready => lang.t(Word::Ready).to_owned(),
                VerdictStatus::NeedsParts => {
                    lang.fill(Word::NeedsParts, &[("parts", &Word::parts(lang, &h.verdict.needs))])
                }
                VerdictStatus::PartsOnly => lang.t(Word::PartsOnly).to_owned(),
            };
            for r in &h.verdict.reasons {
                verdict.push_str(&format!("; {r}"));
            }
            let a = &h.audit;
            let mut hw = Vec::new();
            if let Some(cpu) = &a.cpu_model {
                hw.push(format!("CPU: {cpu}"));
            }
            if let Some(m) = a.memory_bytes {
                // Memory is sold in binary units (8 GiB), drives in decimal ones.
                hw.push(format!("{}: {}", lang.pick("Memory", "Geheugen"), memory(m)));
            }
            if let Some(b) = a.battery_health_percent {
                hw.push(format!(
                    "{}: {}",
                    lang.pick("Battery health", "Batterijgezondheid"),
                    percent(b)
                ));
            }
            if let Some(s) = &a.screen {
                hw.push(format!("{}: {s}", lang.pick("Screen", "Scherm")));
            }
            for g in &a.gaps {
                hw.push(format!("{}: {g}", lang.pick("Not read", "Niet gelezen")));
            }
            (Some(name).filter(|n| !n.is_empty()), serial, Some(verdict), hw)
        }
        None => (None, None, None, Vec::new()),
    };
    let (donor_reference, lot, asset_tag) = c.donor.as_ref().map_or((None, None, None), |d| {
        (d.reference.clone(), d.lot.clone(), d.asset_tag.clone())
    });
    let review = match stored.review_status.as_str() {
        "approved" => lang.pick(
            "approved by the workshop lead",
            "goedgekeurd door de werkplaatsverantwoordelijke",
        ),
        "rewipe" => lang.pick("flagged to be wiped again", "gemarkeerd om opnieuw te wissen"),
        "rejected" => lang.pick(
            "rejected by the workshop lead",
            "afgewezen door de werkplaatsverantwoordelijke",
        ),
        _ => lang.pick("waiting for review", "wacht op nazicht"),
    };
    Ok(CertView {
        id: c.id.clone(),
        issued_at: c.issued_at.clone(),
        received_at: stored.received_at.clone(),
        outcome: outcome_words(outcome_status, lang),
        outcome_code: crate::ingest::kebab(&outcome_status),
        summary,
        operator: person(&c.operator),
        verifier: c.verifier.as_ref().map(person),
        organisation: c.station.organisation.clone(),
        site: c.station.site.clone(),
        station: stored.station_name.clone(),
        donor_reference,
        lot,
        asset_tag,
        device,
        device_serial,
        verdict,
        hardware,
        disks,
        not_touched,
        install: install_words(&c, lang),
        image_check: image_check(stored, lang),
        station_check,
        receipt_check,
        position,
        entry_hash,
        review,
        review_code: stored.review_status.clone(),
    })
}

/// A disk that was left alone, in words: what it is and why it was not touched.
fn untouched_words(u: &cert::UntouchedDisk, lang: Lang) -> String {
    let what = [u.model.as_deref(), u.serial.as_deref()]
        .iter()
        .flatten()
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let size = size(u.capacity_bytes);
    let why = match u.reason {
        cert::UntouchedReason::BootStick => lang.pick(
            "the Lapterop stick it was started from",
            "de Lapterop-stick waarmee het werd gestart",
        ),
        cert::UntouchedReason::External => lang.pick(
            "a USB or removable disk, not part of the laptop",
            "een USB- of verwijderbare schijf, geen deel van de laptop",
        ),
        cert::UntouchedReason::NotChosen => lang.pick(
            "an internal disk this run was not asked to erase: its data is NOT erased",
            "een interne schijf die deze keer niet gewist moest worden: de gegevens erop zijn NIET gewist",
        ),
    };
    let label = if what.is_empty() {
        size
    } else {
        format!("{what}, {size}")
    };
    format!("{} ({label}): {} — {why}", u.device, lang.t(Word::NotTouched))
}

/// Whether the installed image came from a key this server allows for the certificate's site.
fn image_check(stored: &StoredCert, lang: Lang) -> Option<Check> {
    let key = stored.image_signer.as_deref()?;
    Some(if stored.image_allowed {
        Check {
            ok: true,
            text: lang.pick(
                &format!("signed by image key {key}, allowed for this site"),
                &format!("ondertekend met beeldsleutel {key}, toegelaten voor deze locatie"),
            ),
        }
    } else {
        Check {
            ok: false,
            text: lang.pick(
                &format!(
                    "NOT allowed: the installed image was signed by key {key}, which is not on this server's list \
                     for site “{}”; find out where the image came from, or allow the key with \
                     `lapterop-server image-keys add`",
                    stored.site
                ),
                &format!(
                    "NIET toegelaten: het geïnstalleerde beeld is ondertekend met sleutel {key}, die niet op de \
                     lijst van deze server staat voor locatie “{}”; zoek uit waar het beeld vandaan komt, of laat \
                     de sleutel toe met `lapterop-server image-keys add`",
                    stored.site
                ),
            ),
        }
    })
}

fn person(p: &cert::Person) -> String {
    match &p.role {
        Some(r) => format!("{} ({r})", p.name),
        None => p.name.clone(),
    }
}

/// Outcome in words: the words of the agent's result screen.
pub fn outcome_words(s: OutcomeStatus, lang: Lang) -> String {
    lang.t(match s {
        OutcomeStatus::Erased => Word::Erased,
        OutcomeStatus::ErasedWithExceptions => Word::ErasedWithExceptions,
        OutcomeStatus::NotErased => Word::NotErased,
    })
    .to_owned()
}

fn step_kind(k: StepKind, lang: Lang) -> String {
    match k {
        StepKind::Overwrite => lang.pick("overwrite of every block", "elke blok overschreven"),
        StepKind::NvmeSanitizeCrypto => {
            lang.pick("NVMe Sanitize (crypto erase)", "NVMe Sanitize (cryptografisch wissen)")
        }
        StepKind::NvmeSanitizeBlock => lang.pick("NVMe Sanitize (block erase)", "NVMe Sanitize (blokken wissen)"),
        StepKind::NvmeSanitizeOverwrite => lang.pick("NVMe Sanitize (overwrite)", "NVMe Sanitize (overschrijven)"),
        StepKind::NvmeFormatCrypto => lang.pick("NVMe Format (crypto erase)", "NVMe Format (cryptografisch wissen)"),
        StepKind::NvmeFormatUser => lang.pick(
            "NVMe Format (user data erase)",
            "NVMe Format (gebruikersgegevens wissen)",
        ),
        StepKind::AtaSanitizeCrypto => lang.pick("ATA Sanitize (crypto scramble)", "ATA Sanitize (cryptografisch)"),
        StepKind::AtaSanitizeBlock => lang.pick("ATA Sanitize (block erase)", "ATA Sanitize (blokken wissen)"),
        StepKind::AtaSanitizeOverwrite => lang.pick("ATA Sanitize (overwrite)", "ATA Sanitize (overschrijven)"),
        StepKind::AtaSecurityErase => lang.pick("ATA Secure Erase", "ATA Secure Erase"),
        StepKind::AtaSecurityEraseEnhanced => lang.pick("ATA Secure Erase (enhanced)", "ATA Secure Erase (uitgebreid)"),
        StepKind::Discard => lang.pick(
            "every block freed again (discard)",
            "alle blokken opnieuw vrijgegeven (discard)",
        ),
        StepKind::MmcSanitize => lang.pick("eMMC Sanitize", "eMMC Sanitize"),
        StepKind::MmcSecureErase => lang.pick("eMMC secure erase", "eMMC veilig wissen"),
        StepKind::TcgPsidRevert => lang.pick(
            "self-encrypting drive reset with its PSID (unlocked for the wipe)",
            "zelfversleutelende schijf teruggezet met haar PSID (ontgrendeld voor het wissen)",
        ),
        StepKind::HpaExpose => lang.pick("hidden area (HPA) opened", "verborgen zone (HPA) geopend"),
        StepKind::HpaRestore => lang.pick("hidden area (HPA) restored", "verborgen zone (HPA) hersteld"),
        StepKind::DcoRestore => lang.pick("DCO reset to factory size", "DCO teruggezet naar fabrieksgrootte"),
        StepKind::Unfreeze => lang.pick(
            "suspend and wake to lift the BIOS freeze",
            "slaapstand en wekken om de BIOS-blokkering op te heffen",
        ),
    }
}

fn capability(c: Capability, lang: Lang) -> String {
    match c {
        Capability::Supported => lang.pick("supported", "ondersteund"),
        Capability::NotSupported => lang.pick("not supported by the drive", "niet ondersteund door de schijf"),
        Capability::Frozen => lang.pick("drive security frozen", "beveiliging van de schijf bevroren"),
        Capability::Locked => lang.pick("drive locked by a password", "schijf vergrendeld met een wachtwoord"),
        Capability::Refused => lang.pick("refused by the drive", "geweigerd door de schijf"),
        Capability::Unknown => lang.pick("support unknown", "ondersteuning onbekend"),
    }
}

fn step_outcome(o: StepOutcome, lang: Lang) -> String {
    match o {
        StepOutcome::Completed => lang.pick("completed", "voltooid"),
        StepOutcome::Failed => lang.pick("FAILED", "MISLUKT"),
        StepOutcome::Skipped => lang.pick("skipped", "overgeslagen"),
        StepOutcome::Interrupted => lang.pick("INTERRUPTED", "ONDERBROKEN"),
    }
}

fn pattern(k: PatternKind, lang: Lang) -> String {
    match k {
        PatternKind::Zero => lang.pick("zeros", "nullen"),
        PatternKind::Random => lang.pick("random data", "willekeurige gegevens"),
        PatternKind::ChangedFromMarker => lang.pick(
            "content changed by the firmware erase (sampled)",
            "inhoud veranderd door het wissen in de firmware (steekproef)",
        ),
    }
}

fn step_words(s: &Step, lang: Lang) -> String {
    let mut out = format!(
        "{}: {} ({})",
        step_kind(s.kind, lang),
        step_outcome(s.outcome, lang),
        capability(s.capability, lang)
    );
    if let Some(p) = &s.pattern {
        out.push_str(&format!(
            ", {} {}",
            lang.pick("pattern", "patroon"),
            pattern(p.kind, lang)
        ));
    }
    if let Some(p) = &s.pass {
        out.push_str(&format!(", {} {}/{}", lang.pick("pass", "doorgang"), p.number, p.of));
    }
    if s.bytes > 0 {
        out.push_str(&format!(", {}", size(s.bytes)));
    }
    if let (Some(a), Some(b)) = (&s.started_at, &s.finished_at) {
        out.push_str(&format!(", {a} – {b}"));
    }
    if let Some(r) = &s.reason {
        out.push_str(&format!(". {}: {r}", lang.pick("Reason", "Reden")));
    }
    for r in &s.error_ranges {
        out.push_str(&format!(
            ". {} {:?} LBA {}+{} (errno {})",
            lang.pick("Error range", "Foutbereik"),
            r.op,
            r.lba,
            r.count,
            r.errno
        ));
    }
    if let Some(f) = &s.firmware {
        out.push_str(&format!(
            ". {}: {} → {}",
            lang.pick("Drive command", "Schijfopdracht"),
            f.command,
            f.status
        ));
        if let Some(st) = &f.final_state {
            out.push_str(&format!(" ({st})"));
        }
    }
    out
}

fn disk_view(d: &DiskRecord, lang: Lang) -> DiskView {
    let done: Vec<String> = d
        .steps
        .iter()
        .filter(|s| {
            s.outcome == StepOutcome::Completed && !matches!(s.kind, StepKind::HpaExpose | StepKind::HpaRestore)
        })
        .map(|s| match (&s.pattern, s.kind) {
            (Some(p), StepKind::Overwrite) => format!(
                "{} {}",
                lang.pick("overwrite of every block with", "elke blok overschreven met"),
                pattern(p.kind, lang)
            ),
            _ => step_kind(s.kind, lang),
        })
        .collect();
    let method = if done.is_empty() {
        lang.pick("nothing completed", "niets voltooid")
    } else {
        done.join(lang.pick(", then ", ", daarna ").as_str())
    };
    let verification = match &d.verification {
        None => lang.pick("not read back", "niet teruggelezen"),
        Some(v) => {
            let how = match (v.mode, &v.sample) {
                (VerifyMode::Full, _) => lang.pick("every byte read back", "elke byte teruggelezen"),
                (VerifyMode::Sample, Some(p)) => lang.pick(
                    &format!(
                        "sampled read-back ({} sections × {} samples, NIST SP 800-88)",
                        p.sections, p.samples_per_section
                    ),
                    &format!(
                        "steekproef teruggelezen ({} delen × {} stalen, NIST SP 800-88)",
                        p.sections, p.samples_per_section
                    ),
                ),
                (VerifyMode::Sample, None) => lang.pick("sampled read-back", "steekproef teruggelezen"),
            };
            let result = if v.mismatched_blocks == 0 && v.error_ranges.is_empty() {
                lang.pick("no difference found", "geen verschil gevonden")
            } else {
                lang.pick(
                    &format!("{} blocks differed or could not be read", v.mismatched_blocks),
                    &format!("{} blokken verschilden of waren onleesbaar", v.mismatched_blocks),
                )
            };
            format!(
                "{how}: {} {}, {result}",
                size(v.bytes_read),
                lang.pick("read", "gelezen")
            )
        }
    };
    let hidden = match d.hidden_areas.check {
        HiddenAreaCheck::NotApplicable => lang.pick("not applicable", "niet van toepassing"),
        HiddenAreaCheck::Unavailable => lang.pick("could not be checked", "kon niet nagekeken worden"),
        HiddenAreaCheck::Checked => {
            let areas: Vec<String> = [("HPA", &d.hidden_areas.hpa), ("DCO", &d.hidden_areas.dco)]
                .iter()
                .filter_map(|(n, a)| a.as_ref().map(|a| (n, a)))
                .map(|(n, a)| {
                    let act = match a.action {
                        HiddenAreaAction::ExposedAndRestored => {
                            lang.pick("opened, erased, restored", "geopend, gewist, hersteld")
                        }
                        HiddenAreaAction::ExposedNotRestored => lang.pick(
                            "opened and erased; its old size returns when the drive is next powered off",
                            "geopend en gewist; de oude grootte komt terug als de schijf uitgeschakeld wordt",
                        ),
                        HiddenAreaAction::Removed => lang.pick("removed and erased", "verwijderd en gewist"),
                        HiddenAreaAction::LeftInPlace => {
                            lang.pick("LEFT IN PLACE, not erased", "BLIJFT STAAN, niet gewist")
                        }
                    };
                    format!("{n}: {act}")
                })
                .collect();
            if areas.is_empty() {
                lang.pick("checked, none found", "nagekeken, geen gevonden")
            } else {
                areas.join("; ")
            }
        }
    };
    let mut notes: Vec<String> = d
        .outcome
        .exceptions
        .iter()
        .map(|e| {
            let kind = match e.kind {
                ExceptionKind::UnwritableRange => lang.pick("could not write", "kon niet schrijven"),
                ExceptionKind::UnreadableRange => lang.pick("could not read back", "kon niet teruglezen"),
                ExceptionKind::MismatchedRange => lang.pick("read back different", "anders teruggelezen"),
                ExceptionKind::HiddenAreaLeft => lang.pick("hidden area left", "verborgen zone blijft"),
                ExceptionKind::HiddenAreaUnchecked => {
                    lang.pick("hidden areas unchecked", "verborgen zones niet nagekeken")
                }
                ExceptionKind::FirmwarePurgeFailed => lang.pick("firmware erase failed", "firmware-wissen mislukt"),
                ExceptionKind::HiddenAreaNotRestored => lang.pick(
                    "hidden area erased but not closed again",
                    "verborgen zone gewist maar niet opnieuw afgesloten",
                ),
                ExceptionKind::BootAreaNotErased => {
                    lang.pick("eMMC boot area not erased", "eMMC-opstartzone niet gewist")
                }
            };
            format!("{kind}: {}", e.detail)
        })
        .collect();
    if let Some(r) = &d.outcome.reason {
        notes.push(format!("{}: {r}", lang.pick("Reason", "Reden")));
    }
    DiskView {
        device: d.device.clone(),
        model: d.model.clone().unwrap_or_else(|| lang.t(Word::Unknown).to_owned()),
        serial: d.serial.clone().unwrap_or_else(|| lang.t(Word::Unknown).to_owned()),
        capacity: size(d.capacity_bytes),
        transport: transport(d.transport, d.rotational, lang),
        method,
        nist: match d.nist_category {
            NistCategory::None => lang.pick("none", "geen"),
            NistCategory::Clear => "NIST SP 800-88 Clear".to_owned(),
            NistCategory::Purge => "NIST SP 800-88 Purge".to_owned(),
        },
        verification,
        hidden,
        outcome: outcome_words(d.outcome.status, lang),
        outcome_code: crate::ingest::kebab(&d.outcome.status),
        notes,
        steps: d.steps.iter().map(|s| step_words(s, lang)).collect(),
        evidence: evidence(d),
    }
}

/// Read-back evidence as printed facts (hashes are not translated).
fn evidence(d: &DiskRecord) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(w) = &d.wwn {
        out.push(format!("WWN {w}"));
    }
    if let Some(f) = &d.firmware {
        out.push(format!("firmware {f}"));
    }
    out.push(format!(
        "sectors {} B logical / {} B physical",
        d.logical_sector_size, d.physical_sector_size
    ));
    if let Some(v) = &d.verification {
        out.push(format!("read-back blake3 {}", v.readback_blake3));
        out.push(format!("verification {} – {}", v.started_at, v.finished_at));
        if let Some(p) = &v.sample {
            out.push(format!(
                "sample seed {}, {} B per sample, {} B planned",
                p.seed, p.sample_bytes, p.planned_bytes
            ));
        }
        for (name, h) in [
            ("pre-wipe sample blake3", &v.pre_wipe_sample_blake3),
            ("before firmware erase blake3", &v.firmware_before_blake3),
            ("after firmware erase blake3", &v.firmware_after_blake3),
        ] {
            if let Some(h) = h {
                out.push(format!("{name} {h}"));
            }
        }
        for r in &v.error_ranges {
            out.push(format!(
                "verify {} LBA {}+{} errno {}",
                crate::ingest::kebab(&r.op),
                r.lba,
                r.count,
                r.errno
            ));
        }
    }
    for s in &d.steps {
        if let Some(p) = s.pattern.as_ref().and_then(|p| p.seed_commitment.as_ref()) {
            out.push(format!("pattern seed commitment {p}"));
        }
    }
    out
}

fn transport(t: Transport, rotational: bool, lang: Lang) -> String {
    let kind = if rotational {
        lang.pick("hard disk", "harde schijf")
    } else {
        lang.pick("solid-state", "SSD")
    };
    let bus = match t {
        Transport::Sata => "SATA",
        Transport::Nvme => "NVMe",
        Transport::Usb => "USB",
        Transport::Mmc => "eMMC/SD",
        Transport::Virtio => "virtio",
        Transport::Scsi => "SCSI/SAS",
        Transport::Loop => "loop",
        Transport::Other => "other",
    };
    format!("{bus} {kind}")
}

fn install_words(c: &Certificate, lang: Lang) -> Option<String> {
    let i = c.install.as_ref()?;
    Some(match i.status {
        cert::InstallStatus::Installed => lang.pick(
            &format!(
                "{} installed on {} and checked ({} chunks)",
                i.image_label(),
                i.target_device,
                i.chunks_verified
            ),
            &format!(
                "{} geïnstalleerd op {} en nagekeken ({} blokken)",
                i.image_label(),
                i.target_device,
                i.chunks_verified
            ),
        ),
        cert::InstallStatus::Failed => lang.pick(
            &format!(
                "installing {} failed: {}",
                i.image_name.as_deref().unwrap_or("the OS image"),
                i.reason.clone().unwrap_or_default()
            ),
            &format!(
                "installeren van {} mislukt: {}",
                i.image_name.as_deref().unwrap_or("de standaardsoftware"),
                i.reason.clone().unwrap_or_default()
            ),
        ),
    })
}

/// The template set. Templates whose name ends in `.html` are auto-escaped.
pub fn templates() -> anyhow::Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    // `t("English", "Nederlands")`: the text in the page's language (context variable `nl`).
    env.add_function(
        "t",
        |state: &minijinja::State<'_, '_>, en: String, nl: String| -> String {
            if state.lookup("nl").is_some_and(|v| v.is_true()) {
                nl
            } else {
                en
            }
        },
    );
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("donor.html", include_str!("templates/donor.html")),
        ("batch.html", include_str!("templates/batch.html")),
        ("login.html", include_str!("templates/login.html")),
        ("queue.html", include_str!("templates/queue.html")),
        ("detail.html", include_str!("templates/detail.html")),
        ("audit.html", include_str!("templates/audit.html")),
        ("hardware.html", include_str!("templates/hardware.html")),
        ("nav.html", include_str!("templates/nav.html")),
    ] {
        env.add_template(name, source)
            .map_err(|e| anyhow::anyhow!("template {name}: {e}"))?;
    }
    Ok(env)
}
