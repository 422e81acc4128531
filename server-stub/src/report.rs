//! CSV export for reporting: one row per certificate with its ISO week, outcome, methods and review.
//!
//! Fields are quoted per RFC 4180. A field that a spreadsheet would run as a formula (starting with
//! `=`, `+`, `-`, `@`, tab or carriage return) gets a leading apostrophe, since operator names and
//! donor references come from stations.

use lapterop_certificate::{self as cert, StepOutcome};

use crate::store::StoredCert;

const HEADER: [&str; 20] = [
    "certificate_id",
    "received_at",
    "week",
    "issued_at",
    "station",
    "organisation",
    "site",
    "operator",
    "outcome",
    "verdict",
    "review_status",
    "reviewed_by",
    "donor_reference",
    "lot",
    "disks",
    "disk_serials",
    "methods",
    "nist_categories",
    "image_signer",
    "image_key_allowed",
];

/// The CSV text for these certificates.
pub fn csv(rows: &[StoredCert]) -> String {
    let mut out = String::new();
    line(&mut out, HEADER.iter().map(|s| (*s).to_owned()));
    for r in rows {
        let (serials, methods, nist) = match cert::parse(&r.body) {
            Ok((c, _)) => {
                let serials: Vec<String> = c.disks.iter().filter_map(|d| d.serial.clone()).collect();
                let mut methods: Vec<String> = c
                    .disks
                    .iter()
                    .flat_map(|d| d.steps.iter())
                    .filter(|s| s.outcome == StepOutcome::Completed)
                    .map(|s| crate::ingest::kebab(&s.kind))
                    .collect();
                methods.sort();
                methods.dedup();
                let nist: Vec<String> = c.disks.iter().map(|d| crate::ingest::kebab(&d.nist_category)).collect();
                (serials.join(" "), methods.join("+"), nist.join(" "))
            }
            Err(_) => Default::default(),
        };
        line(
            &mut out,
            [
                r.id.clone(),
                r.received_at.clone(),
                iso_week(&r.received_at),
                r.issued_at.clone(),
                r.station_name.clone(),
                r.organisation.clone(),
                r.site.clone(),
                r.operator.clone(),
                r.outcome.clone(),
                r.verdict.clone().unwrap_or_default(),
                r.review_status.clone(),
                r.reviewed_by.clone().unwrap_or_default(),
                r.donor_reference.clone().unwrap_or_default(),
                r.lot.clone().unwrap_or_default(),
                r.disk_count.to_string(),
                serials,
                methods,
                nist,
                r.image_signer.clone().unwrap_or_default(),
                match (&r.image_signer, r.image_allowed) {
                    (None, _) => String::new(),
                    (Some(_), true) => "yes".into(),
                    (Some(_), false) => "no".into(),
                },
            ],
        );
    }
    out
}

fn line(out: &mut String, fields: impl IntoIterator<Item = String>) {
    let fields: Vec<String> = fields.into_iter().map(|f| field(&f)).collect();
    out.push_str(&fields.join(","));
    out.push_str("\r\n");
}

fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// ISO 8601 week (`2026-W48`) of an RFC 3339 time; empty if it does not parse.
fn iso_week(t: &str) -> String {
    match time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let (year, week, _) = t.to_iso_week_date();
            format!("{year}-W{week:02}")
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1"), "'-1");
    }

    #[test]
    fn iso_weeks() {
        assert_eq!(iso_week("2026-11-26T14:00:00Z"), "2026-W48");
        assert_eq!(iso_week("2027-01-01T00:00:00Z"), "2026-W53");
        assert_eq!(iso_week("garbage"), "");
    }
}
