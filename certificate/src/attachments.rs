//! The files attached to a Lapterop donor PDF (`certificate.json`, `receipt.json`, `station.pub`,
//! `server.pub`), read without a PDF library.
//!
//! The server's PDF writer (`server-stub/src/pdf.rs`) adds each file as a `/Filespec` dictionary whose
//! `/EF /F` names an uncompressed `/EmbeddedFile` stream with a direct `/Length`. This module reads
//! exactly that structure, by the same rules as the browser verifier (`docs/verify.html`,
//! `pdfAttachments`): every `N G obj` is indexed (a later definition of the same object wins, as in an
//! incremental update); each object that says `/Type /Filespec` gives a name (`/UF`, else `/F`, a
//! literal string) and a stream reference; the stream's bytes are the `/Length` bytes after `stream`
//! and its end of line. A PDF re-saved by another program (compressed streams, object streams) is
//! refused with a message saying to use the original.

use std::collections::{BTreeMap, HashMap};

use crate::{chain, keys, Certificate, Receipt, VerifyingKey};

/// Why the attachments could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// Not a PDF at all.
    #[error("not a PDF file (it does not start with %PDF-)")]
    NotPdf,
    /// No `%%EOF` at the end: the download stopped early.
    #[error("the PDF is cut short (it does not end with %%EOF): download it again")]
    CutShort,
    /// A file specification points at an object that is not there.
    #[error("the PDF names an attachment {0} whose stream is missing")]
    MissingStream(String),
    /// The stream is compressed or otherwise encoded.
    #[error(
        "the attachment {0} is compressed: this PDF was re-saved by another program; use the original from the donor page"
    )]
    Filtered(String),
    /// No direct length.
    #[error("the attachment {0} has no direct /Length")]
    NoLength(String),
    /// The file ends inside the stream.
    #[error("the PDF is cut short: the attachment {0} ends past the end of the file")]
    Truncated(String),
    /// The certificate or the receipt is not attached.
    #[error(
        "the PDF does not carry certificate.json and receipt.json (a PDF from before attachments, or not a Lapterop donor PDF)"
    )]
    NotCarried,
    /// Two attachments with one name: which one counts would be a guess.
    #[error("the PDF carries two attachments named {0}")]
    Duplicate(String),
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// Digits at `i`: their value and the index after them.
fn digits(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let end = i + b.get(i..)?.iter().take_while(|c| c.is_ascii_digit()).count();
    let n = std::str::from_utf8(b.get(i..end)?).ok()?.parse().ok()?;
    Some((n, end))
}

/// At least one whitespace byte at `i`, then digits.
fn ws_digits(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let j = skip_ws(b, i);
    if j == i {
        return None;
    }
    digits(b, j)
}

/// `N G R` (an indirect reference) after at least one whitespace byte at `i`.
fn reference(b: &[u8], i: usize) -> Option<((u64, u64), usize)> {
    let (n, i) = ws_digits(b, i)?;
    let (g, i) = ws_digits(b, i)?;
    let j = skip_ws(b, i);
    (j > i && b.get(j) == Some(&b'R')).then_some(((n, g), j + 1))
}

/// Every `N G obj`: object id to the index just after `obj`.
fn objects(b: &[u8]) -> HashMap<(u64, u64), usize> {
    let mut out = HashMap::new();
    let mut at = 0;
    while let Some(p) = find(b, b"obj", at) {
        at = p + 3;
        if b.get(p + 3).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            continue;
        }
        // Backwards: whitespace, generation, whitespace, number, then a delimiter or the start.
        let mut i = p;
        let ws_back = |i: &mut usize| {
            let s = *i;
            while *i > 0 && is_ws(b[*i - 1]) {
                *i -= 1;
            }
            *i < s
        };
        let digits_back = |i: &mut usize| {
            let s = *i;
            while *i > 0 && b[*i - 1].is_ascii_digit() {
                *i -= 1;
            }
            *i < s
        };
        if !ws_back(&mut i) || !digits_back(&mut i) {
            continue;
        }
        let gen_at = i;
        if !ws_back(&mut i) || !digits_back(&mut i) {
            continue;
        }
        if i > 0 && !(is_ws(b[i - 1]) || b[i - 1] == b'>' || b[i - 1] == b']') {
            continue;
        }
        if let (Some((n, _)), Some((g, _))) = (digits(b, i), digits(b, gen_at)) {
            out.insert((n, g), p + 3);
        }
    }
    out
}

/// The first literal string after `key` (then optional whitespace) that has no escape in it.
fn literal_after(body: &[u8], key: &[u8]) -> Option<String> {
    let mut at = 0;
    while let Some(p) = find(body, key, at) {
        at = p + 1;
        let j = skip_ws(body, p + key.len());
        if body.get(j) != Some(&b'(') {
            continue;
        }
        let rest = &body[j + 1..];
        let Some(end) = rest.iter().position(|c| *c == b')' || *c == b'\\') else {
            continue;
        };
        if rest[end] == b')' {
            // Latin-1, as the browser verifier decodes the file; our names are ASCII.
            return Some(rest[..end].iter().map(|&c| char::from(c)).collect());
        }
    }
    None
}

/// The stream reference in `/EF << ... /F N G R ... >>`.
fn embedded_ref(body: &[u8]) -> Option<(u64, u64)> {
    let mut at = 0;
    while let Some(p) = find(body, b"/EF", at) {
        at = p + 1;
        let j = skip_ws(body, p + 3);
        if body.get(j..j + 2) != Some(b"<<") {
            continue;
        }
        let inner_end = body[j + 2..]
            .iter()
            .position(|c| *c == b'>')
            .map_or(body.len(), |e| e + j + 2);
        let inner = &body[j + 2..inner_end];
        let mut k = 0;
        while let Some(f) = find(inner, b"/F", k) {
            k = f + 1;
            if let Some((id, _)) = reference(inner, f + 2) {
                return Some(id);
            }
        }
    }
    None
}

fn is_filespec(body: &[u8]) -> bool {
    let mut at = 0;
    while let Some(p) = find(body, b"/Type", at) {
        at = p + 1;
        let j = skip_ws(body, p + 5);
        if body.get(j..j + 9) == Some(b"/Filespec")
            && !body.get(j + 9).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return true;
        }
    }
    false
}

/// The attached files of a PDF, by name.
pub fn extract(pdf: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, AttachmentError> {
    if !pdf.starts_with(b"%PDF-") {
        return Err(AttachmentError::NotPdf);
    }
    // A PDF ends with `%%EOF` and at most an end of line (ISO 32000-1 §7.5.5); allow some slack.
    if find(&pdf[pdf.len().saturating_sub(32)..], b"%%EOF", 0).is_none() {
        return Err(AttachmentError::CutShort);
    }
    let objects = objects(pdf);
    let mut files = BTreeMap::new();
    let mut starts: Vec<usize> = objects.values().copied().collect();
    starts.sort_unstable();
    for start in starts {
        let end = find(pdf, b"endobj", start).unwrap_or(pdf.len());
        let body = &pdf[start..end];
        if !is_filespec(body) {
            continue;
        }
        let name = literal_after(body, b"/UF").or_else(|| literal_after(body, b"/F"));
        let (Some(name), Some(id)) = (name, embedded_ref(body)) else {
            continue;
        };
        let at = *objects
            .get(&id)
            .ok_or_else(|| AttachmentError::MissingStream(name.clone()))?;
        let head_end = find(pdf, b"stream", at).unwrap_or(pdf.len());
        let head = &pdf[at..head_end];
        if find(head, b"/Filter", 0).is_some() {
            return Err(AttachmentError::Filtered(name));
        }
        let length = find(head, b"/Length", 0)
            .and_then(|p| ws_digits(head, p + 7))
            // `/Length N G R` is indirect: refused, as the browser verifier does.
            .filter(|(_, after)| ws_digits(head, *after).is_none_or(|(_, a)| head.get(skip_ws(head, a)) != Some(&b'R')))
            .map(|(n, _)| n)
            .ok_or_else(|| AttachmentError::NoLength(name.clone()))?;
        let mut p = head_end + b"stream".len();
        if pdf.get(p) == Some(&b'\r') {
            p += 1;
        }
        if pdf.get(p) == Some(&b'\n') {
            p += 1;
        }
        let content = usize::try_from(length)
            .ok()
            .and_then(|n| pdf.get(p..p.checked_add(n)?))
            .ok_or_else(|| AttachmentError::Truncated(name.clone()))?;
        if files.insert(name.clone(), content.to_vec()).is_some() {
            return Err(AttachmentError::Duplicate(name));
        }
    }
    Ok(files)
}

/// What a donor PDF's attachments prove: each part's result, the reason when it failed.
#[derive(Debug)]
pub struct PdfCheck {
    /// The certificate with its station signature.
    pub certificate: Result<Certificate, String>,
    /// The receipt with its server signature, and that it names this certificate.
    pub receipt: Result<Receipt, String>,
    /// Which keys came from the PDF itself (`"station"`, `"server"`): those prove integrity, not origin.
    pub keys_from_pdf: Vec<&'static str>,
}

impl PdfCheck {
    /// Everything checked out.
    pub fn valid(&self) -> bool {
        self.certificate.is_ok() && self.receipt.is_ok()
    }
}

/// A key given by the caller, else the one the PDF carries as `name`.
fn key_for(
    given: Option<VerifyingKey>,
    files: &BTreeMap<String, Vec<u8>>,
    name: &str,
    label: &'static str,
    from_pdf: &mut Vec<&'static str>,
) -> Result<VerifyingKey, String> {
    if let Some(k) = given {
        return Ok(k);
    }
    let bytes = files
        .get(name)
        .ok_or_else(|| format!("the PDF carries no {name}; give the {label} key"))?;
    from_pdf.push(label);
    keys::public_key_from_hex(&String::from_utf8_lossy(bytes))
        .ok_or_else(|| format!("the PDF's {name} is not a valid Lapterop public key file"))
}

/// Checks a donor PDF: the attached certificate against the station key and the attached receipt
/// against the server key (each the one given, else the PDF's own), and that the receipt names this
/// certificate. `Err` when the attachments cannot be read at all.
pub fn verify_pdf(
    pdf: &[u8],
    station_key: Option<VerifyingKey>,
    server_key: Option<VerifyingKey>,
) -> Result<PdfCheck, AttachmentError> {
    let files = extract(pdf)?;
    let (Some(certificate), Some(receipt)) = (files.get("certificate.json"), files.get("receipt.json")) else {
        return Err(AttachmentError::NotCarried);
    };
    let mut from_pdf = Vec::new();
    let station = key_for(station_key, &files, "station.pub", "station", &mut from_pdf);
    let server = key_for(server_key, &files, "server.pub", "server", &mut from_pdf);
    let certificate_check = station.and_then(|k| crate::verify(certificate, &k).map_err(|e| e.to_string()));
    let receipt_check = server.and_then(|k| {
        let r = chain::verify_receipt(receipt, &k).map_err(|e| format!("receipt: {e}"))?;
        let own = serde_json::from_slice(certificate)
            .ok()
            .and_then(|v| crate::document_blake3(&v).ok());
        if own.as_deref() == Some(r.certificate_blake3.as_str()) {
            Ok(r)
        } else {
            Err(format!(
                "the receipt is for another certificate: its certificate_blake3 is {}, this certificate's is {}",
                r.certificate_blake3,
                own.as_deref().unwrap_or("(unreadable)")
            ))
        }
    });
    Ok(PdfCheck {
        certificate: certificate_check,
        receipt: receipt_check,
        keys_from_pdf: from_pdf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PDF: &[u8] = b"%PDF-1.7\n1 0 obj\n<</Type/Catalog>>\nendobj\n\
        5 0 obj\n<</Type/EmbeddedFile/Length 5/Params<</Size 5>>>>stream\nhello\nendstream\nendobj\n\
        6 0 obj\n<</Type /Filespec /F(a.txt)/UF(a.txt)/EF<</F 5 0 R/UF 5 0 R>>>>\nendobj\n%%EOF\n";

    #[test]
    fn reads_an_uncompressed_attachment() {
        let files = extract(PDF).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files["a.txt"], b"hello");
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        assert_eq!(extract(b"hello"), Err(AttachmentError::NotPdf));
        let cut = &PDF[..PDF.len() - 10];
        assert_eq!(extract(cut), Err(AttachmentError::CutShort));
        let name = || "a.txt".to_owned();
        for (from, to, error) in [
            ("Length 5", "Length 500", AttachmentError::Truncated(name())),
            (
                "/Length 5",
                "/Filter/FlateDecode/Length 5",
                AttachmentError::Filtered(name()),
            ),
            ("/Length 5", "/Length 7 0 R", AttachmentError::NoLength(name())),
            ("/F 5 0 R", "/F 9 0 R", AttachmentError::MissingStream(name())),
        ] {
            let changed = String::from_utf8_lossy(PDF).replace(from, to);
            assert_eq!(extract(changed.as_bytes()), Err(error), "{to}");
        }
    }
}
