//! The full audits stations upload beside their certificates, and the review page "hardware the stick
//! did not drive": every PCI function and USB interface no driver took on the stick, grouped by device
//! over all laptops, so a workshop lead sees which drivers to add to the stick.
//!
//! A station puts the audit after its certificate (`PUT /api/v1/certificates/{id}/audit`). No key is
//! needed: the audit is kept only when its blake3 is the `host.audit_blake3` of the stored, signed
//! certificate, so the only bytes anyone can put are the ones the station signed. The document is kept
//! as received; its `undriven` list ([`lapterop_certificate::hardware`]) is copied into a table with
//! the laptop's device id and model for the page. Names are the stick's (the pci.ids and usb.ids built
//! into the agent); the server groups by ids and has no database of its own (`docs/audit.md`).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use lapterop_certificate::hardware::{AuditDigest, Bus, UndrivenDevice, AUDIT_SCHEMA};
use lapterop_certificate::validate::MAX_DOCUMENT_BYTES;
use lapterop_certificate::{self as cert, SmbiosSystem};
use minijinja::context;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::json;

use crate::store;
use crate::views::Lang;
use crate::web::{self, Answer, AppState, OrInternal, PageLang};

/// The audit upload and the review page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/certificates/{id}/audit", put(put_audit))
        .route("/review/hardware", get(page))
}

/// Why an audit was not kept (422). One answer whether the id is unknown, names a disk-only run or
/// names another audit, so that the upload tells nobody which certificate ids exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no stored certificate with this id names an audit with blake3 {got} (its host.audit_blake3): send the \
     certificate first, then the audit file stored beside it, unchanged"
)]
pub struct AuditRefusal {
    /// blake3 of what was sent.
    pub got: String,
}

/// What [`accept_audit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored now (201): this many functions without a driver listed, this many left out because
    /// their ids are not the audit's hex form.
    Created {
        /// Rows kept for the page.
        undriven: usize,
        /// Entries left out.
        skipped: usize,
    },
    /// The same audit was stored already (200).
    Existing,
}

/// The laptop model in words, for grouping on the page: the SMBIOS product, or for Lenovo the version
/// (Lenovo's product is a machine type such as `20L5CTO1WW`, the version is `ThinkPad T480`), led by
/// the vendor unless the name already starts with it. `unknown model` when the firmware left a
/// placeholder.
pub fn model_of(system: &SmbiosSystem, placeholder_fields: &[String]) -> String {
    let flagged = |f: &str| placeholder_fields.iter().any(|p| p == f);
    let clean = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let vendor = clean(&system.vendor).filter(|_| !flagged("system.vendor"));
    let lenovo = vendor.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("lenovo"));
    let product = clean(&system.product).filter(|_| !flagged("system.product"));
    let name = match (lenovo, clean(&system.version)) {
        (true, Some(version)) if !placeholder_like(&version) => Some(version),
        _ => product,
    };
    match (vendor, name) {
        (Some(v), Some(n)) => {
            let first = v.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
            if n.to_ascii_lowercase().starts_with(&first) {
                n
            } else {
                format!("{v} {n}")
            }
        }
        (None, Some(n)) => n,
        _ => "unknown model".to_owned(),
    }
}

/// Versions firmware fills with nothing useful ("None", "Not Specified", "To Be Filled By O.E.M.").
fn placeholder_like(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    [
        "none",
        "not specified",
        "not applicable",
        "to be filled by o.e.m.",
        "default string",
        "n/a",
    ]
    .contains(&l.as_str())
}

/// Keeps the audit `body` of certificate `id` when its blake3 is the certificate's
/// `host.audit_blake3`, with its `undriven` list copied for the page, in one transaction.
pub fn accept_audit(
    conn: &mut Connection,
    id: &str,
    body: &[u8],
    now: &str,
) -> anyhow::Result<Result<Accepted, AuditRefusal>> {
    let got = blake3::hash(body).to_hex().to_string();
    let refused = || Ok(Err(AuditRefusal { got: got.clone() }));
    let Some(stored) = store::cert_by_id(conn, id)? else {
        return refused();
    };
    let (c, _) = cert::parse(&stored.body).map_err(|e| anyhow::anyhow!("stored certificate {id}: {e}"))?;
    let Some(host) = c.host.filter(|h| h.audit_blake3 == got) else {
        return refused();
    };
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let existed: Option<i64> = tx
        .query_row("SELECT 1 FROM audits WHERE certificate_id = ?1", [id], |r| r.get(0))
        .optional()?;
    if existed.is_some() {
        return Ok(Ok(Accepted::Existing));
    }
    tx.execute(
        "INSERT INTO audits (certificate_id, body, received_at) VALUES (?1, ?2, ?3)",
        params![id, body, now],
    )?;
    // The station signed these bytes, so they are kept whatever they hold; only entries that can be
    // grouped go to the page (an audit from an older agent has no list at all).
    let listed = match serde_json::from_slice::<AuditDigest>(body) {
        Ok(d) if d.schema == AUDIT_SCHEMA => d.undriven,
        Ok(d) => {
            eprintln!(
                "lapterop-server: audit of {id} has schema {:?}; its hardware list is not read",
                d.schema
            );
            Vec::new()
        }
        Err(e) => {
            eprintln!("lapterop-server: audit of {id}: its hardware list is not readable ({e}); kept as received");
            Vec::new()
        }
    };
    let model = model_of(&host.system, &host.placeholder_fields);
    let (good, bad): (Vec<UndrivenDevice>, Vec<UndrivenDevice>) =
        listed.into_iter().partition(UndrivenDevice::well_formed);
    for d in &good {
        tx.prepare_cached(
            "INSERT INTO undriven (certificate_id, machine_id, model, bus, address, vendor_id, device_id,
                subsystem_vendor_id, subsystem_device_id, class, vendor, name, class_name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            id,
            host.device_id,
            model,
            d.bus.as_str(),
            d.address,
            d.vendor_id,
            d.device_id,
            d.subsystem_vendor_id,
            d.subsystem_device_id,
            d.class,
            d.vendor,
            d.name,
            d.class_name,
        ])?;
    }
    tx.commit()?;
    Ok(Ok(Accepted::Created {
        undriven: good.len(),
        skipped: bad.len(),
    }))
}

async fn put_audit(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let too_large = || {
        web::json_error(
            413,
            &format!("the body is larger than {MAX_DOCUMENT_BYTES} bytes"),
            None,
            &[],
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return too_large();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_DOCUMENT_BYTES).await else {
        return too_large();
    };
    let bytes = bytes.to_vec();
    let id2 = id.clone();
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let result = web::db(&app, move |_, c| accept_audit(c, &id2, &bytes, &cert::now_utc())).await;
    let answer = |status: StatusCode, undriven: Option<(usize, usize)>| {
        let mut body = json!({"certificate_id": id, "audit_blake3": hash});
        if let Some((kept, skipped)) = undriven {
            body["undriven"] = json!(kept);
            body["undriven_skipped"] = json!(skipped);
        }
        (status, axum::Json(body)).into_response()
    };
    match result {
        Ok(Ok(Accepted::Created { undriven, skipped })) => answer(StatusCode::CREATED, Some((undriven, skipped))),
        Ok(Ok(Accepted::Existing)) => answer(StatusCode::OK, None),
        Ok(Err(r)) => web::json_error(422, &r.to_string(), Some("host.audit_blake3"), &[]),
        Err(e) => web::internal(&e),
    }
}

/// One laptop model a device was seen in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelCount {
    /// The model in words ([`model_of`]).
    pub model: String,
    /// Distinct laptops (device ids) of that model.
    pub laptops: u64,
}

/// One device on the page: every laptop where a function with these ids and this class had no driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceGroup {
    /// An HTML id built from the ids (`pci-8086-24fd-028000`).
    pub key: String,
    /// `pci` or `usb`.
    pub bus: String,
    /// Vendor id.
    pub vendor_id: String,
    /// Device or product id.
    pub device_id: String,
    /// Class code (`028000`, `0e:01:00`).
    pub class: String,
    /// Vendor name, as the stick named it.
    pub vendor: Option<String>,
    /// Device name, as the stick named it.
    pub name: Option<String>,
    /// Class name.
    pub class_name: Option<String>,
    /// What the stick would need a driver for, in words; `None` when the job does not need it.
    pub purpose: Option<String>,
    /// Distinct laptops.
    pub laptops: u64,
    /// Models, most laptops first.
    pub models: Vec<ModelCount>,
}

/// What a driver for a function of `class` on `bus` would give the stick, in words: disks, network,
/// the screen check, eMMC, USB ports, a keyboard and mouse. `None` for hardware the job does not use (audio,
/// Wi-Fi is network too, camera, sensors, bridges nothing binds).
pub fn purpose(bus: Bus, class: &str, lang: Lang) -> Option<String> {
    let what = match bus {
        Bus::Pci => match class.get(0..4)? {
            c if c.starts_with("01") => ("disks", "schijven"),
            c if c.starts_with("02") => ("network", "netwerk"),
            c if c.starts_with("03") => ("screen check", "schermcontrole"),
            "0805" => ("eMMC and SD cards", "eMMC en SD-kaarten"),
            "0c03" => ("USB ports", "USB-poorten"),
            _ => return None,
        },
        Bus::Usb => match class.get(0..2)? {
            "08" => ("disks", "schijven"),
            "02" | "0a" => ("network", "netwerk"),
            "03" => ("keyboard and mouse", "toetsenbord en muis"),
            "09" => ("USB ports", "USB-poorten"),
            _ => return None,
        },
    };
    Some(lang.pick(what.0, what.1))
}

/// Every device without a driver over all stored audits, grouped by bus, ids and class: the ones the
/// job needs first, then the most laptops.
pub fn groups(conn: &Connection, lang: Lang) -> anyhow::Result<Vec<DeviceGroup>> {
    type Key = (String, String, String, String);
    let mut by_key: BTreeMap<Key, DeviceGroup> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT bus, vendor_id, device_id, class, COUNT(DISTINCT machine_id), MAX(vendor), MAX(name), MAX(class_name)
         FROM undriven GROUP BY bus, vendor_id, device_id, class",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let key: Key = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let bus = if key.0 == "usb" { Bus::Usb } else { Bus::Pci };
        let html_key = format!("{}-{}-{}-{}", key.0, key.1, key.2, key.3.replace(':', "-"));
        by_key.insert(
            key.clone(),
            DeviceGroup {
                key: html_key,
                bus: key.0.clone(),
                vendor_id: key.1.clone(),
                device_id: key.2.clone(),
                class: key.3.clone(),
                vendor: r.get(5)?,
                name: r.get(6)?,
                class_name: r.get(7)?,
                purpose: purpose(bus, &key.3, lang),
                laptops: r.get(4)?,
                models: Vec::new(),
            },
        );
    }
    let mut stmt = conn.prepare(
        "SELECT bus, vendor_id, device_id, class, model, COUNT(DISTINCT machine_id) FROM undriven
         GROUP BY bus, vendor_id, device_id, class, model",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let key: Key = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        if let Some(g) = by_key.get_mut(&key) {
            g.models.push(ModelCount {
                model: r.get(4)?,
                laptops: r.get(5)?,
            });
        }
    }
    let mut out: Vec<DeviceGroup> = by_key.into_values().collect();
    for g in &mut out {
        g.models
            .sort_by(|a, b| b.laptops.cmp(&a.laptops).then_with(|| a.model.cmp(&b.model)));
    }
    out.sort_by(|a, b| {
        b.purpose
            .is_some()
            .cmp(&a.purpose.is_some())
            .then_with(|| b.laptops.cmp(&a.laptops))
            .then_with(|| a.key.cmp(&b.key))
    });
    Ok(out)
}

/// How many laptops the page covers: (distinct laptops with an audit stored, certificates of a laptop
/// whose audit is not stored).
pub fn coverage(conn: &Connection) -> anyhow::Result<(u64, u64)> {
    let with: u64 = conn.query_row(
        "SELECT COUNT(DISTINCT json_extract(CAST(c.body AS TEXT), '$.host.device_id'))
         FROM audits a JOIN certificates c ON c.id = a.certificate_id",
        [],
        |r| r.get(0),
    )?;
    let without: u64 = conn.query_row(
        "SELECT COUNT(*) FROM certificates c
         WHERE json_extract(CAST(c.body AS TEXT), '$.host') IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM audits a WHERE a.certificate_id = c.id)",
        [],
        |r| r.get(0),
    )?;
    Ok((with, without))
}

/// The line above the table: how many laptops it covers, and how many certificates came without an
/// audit (their hardware is not counted).
fn coverage_words(lang: Lang, with: u64, without: u64) -> String {
    let covered = match (lang, with) {
        (Lang::En, 1) => "From the audit of 1 laptop".to_owned(),
        (Lang::En, n) => format!("From the audits of {n} laptops"),
        (Lang::Nl, 1) => "Uit de audit van 1 laptop".to_owned(),
        (Lang::Nl, n) => format!("Uit de audits van {n} laptops"),
    };
    let missing = match (lang, without) {
        (_, 0) => String::new(),
        (Lang::En, 1) => "; 1 certificate came without an audit and is not counted".to_owned(),
        (Lang::En, n) => format!("; {n} certificates came without an audit and are not counted"),
        (Lang::Nl, 1) => "; 1 certificaat kwam zonder audit en telt niet mee".to_owned(),
        (Lang::Nl, n) => format!("; {n} certificaten kwamen zonder audit en tellen niet mee"),
    };
    format!("{covered}{missing}.")
}

async fn page(State(app): State<AppState>, headers: HeaderMap, page: PageLang) -> Answer {
    let (_, s) = crate::review::session(&app, &headers).await?;
    let lang = page.lang;
    let (groups, (with, without)) = web::db(&app, move |_, c| Ok((groups(c, lang)?, coverage(c)?)))
        .await
        .or_500()?;
    let coverage = coverage_words(lang, with, without);
    Ok(page.render(
        &app,
        "hardware.html",
        context! {
            title => lang.pick("Hardware the stick did not drive", "Hardware die de stick niet aanstuurde"),
            user => s.user,
            csrf => s.csrf,
            groups => groups,
            coverage => coverage,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(vendor: &str, product: &str, version: &str) -> SmbiosSystem {
        SmbiosSystem {
            vendor: Some(vendor.into()),
            product: Some(product.into()),
            version: Some(version.into()),
            ..SmbiosSystem::default()
        }
    }

    #[test]
    fn models_read_as_people_name_them() {
        assert_eq!(
            model_of(&system("LENOVO", "20L5CTO1WW", "ThinkPad T480"), &[]),
            "LENOVO ThinkPad T480"
        );
        assert_eq!(
            model_of(&system("Dell Inc.", "Latitude 5480", "Not Specified"), &[]),
            "Dell Inc. Latitude 5480"
        );
        assert_eq!(
            model_of(&system("HP", "HP EliteBook 840 G5", ""), &[]),
            "HP EliteBook 840 G5"
        );
        assert_eq!(
            model_of(&system("LENOVO", "20L5CTO1WW", "None"), &[]),
            "LENOVO 20L5CTO1WW"
        );
        let flagged = ["system.product".to_string()];
        assert_eq!(
            model_of(&system("Notebook", "To Be Filled By O.E.M.", "x"), &flagged),
            "unknown model"
        );
    }

    #[test]
    fn the_coverage_line_counts_in_words() {
        assert_eq!(coverage_words(Lang::En, 1, 0), "From the audit of 1 laptop.");
        assert_eq!(
            coverage_words(Lang::En, 3, 2),
            "From the audits of 3 laptops; 2 certificates came without an audit and are not counted."
        );
        assert_eq!(
            coverage_words(Lang::Nl, 0, 1),
            "Uit de audits van 0 laptops; 1 certificaat kwam zonder audit en telt niet mee."
        );
    }

    #[test]
    fn purposes_name_what_the_job_needs_only() {
        let en = |bus, class| purpose(bus, class, Lang::En);
        assert_eq!(en(Bus::Pci, "010802").as_deref(), Some("disks"));
        assert_eq!(en(Bus::Pci, "028000").as_deref(), Some("network"));
        assert_eq!(en(Bus::Pci, "080501").as_deref(), Some("eMMC and SD cards"));
        assert_eq!(en(Bus::Pci, "0c0330").as_deref(), Some("USB ports"));
        assert_eq!(en(Bus::Pci, "040300"), None);
        assert_eq!(en(Bus::Pci, "060100"), None);
        assert_eq!(en(Bus::Usb, "08:06:50").as_deref(), Some("disks"));
        assert_eq!(en(Bus::Usb, "0e:01:00"), None);
        assert_eq!(purpose(Bus::Pci, "030000", Lang::Nl).as_deref(), Some("schermcontrole"));
    }
}
