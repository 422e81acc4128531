//! The donor PDF: the same words as the donor page, on A4, with a QR code back to the page.
//!
//! Built with `printpdf` and the DejaVu Sans font embedded in the binary (Dutch glyphs, free licence:
//! `assets/DejaVuSans.LICENSE`). The QR code is drawn as vector squares, so it prints sharply.
//!
//! The PDF carries the proof itself: `certificate.json`, `receipt.json`, `station.pub` and
//! `server.pub` (and `inclusion.json`, the transparency log's inclusion proof with its signed tree
//! head) as file attachments (the catalog's `/EmbeddedFiles` name tree, and `/AF` with
//! `/AFRelationship /Source` as PDF/A-3 associates files; the document as a whole does not claim PDF/A
//! conformance). Each is an uncompressed `/EmbeddedFile` stream with a direct `/Length`, the structure
//! `lapterop-cert verify-pdf` and the browser verifier (`docs/verify.html`) read.

use printpdf::lopdf::{self, Dictionary, Object, StringFormat};
use printpdf::path::PaintMode;
use printpdf::{Color, Greyscale, IndirectFontRef, Mm, PdfDocument, PdfDocumentReference, PdfLayerReference, Rect};

use crate::views::{CertView, Lang};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

const PAGE_W: f32 = 210.0;
const PAGE_H: f32 = 297.0;
const MARGIN: f32 = 18.0;
/// Characters per line at 10 pt in DejaVu Sans across the text width (measured, with some slack).
const WRAP: usize = 92;

struct Writer {
    doc: PdfDocumentReference,
    layer: PdfLayerReference,
    font: IndirectFontRef,
    y: f32,
    pages: usize,
}

impl Writer {
    fn new_page(&mut self) {
        self.pages += 1;
        let (page, layer) = self
            .doc
            .add_page(Mm(PAGE_W), Mm(PAGE_H), format!("page {}", self.pages));
        self.layer = self.doc.get_page(page).get_layer(layer);
        self.y = PAGE_H - MARGIN;
    }

    /// Writes wrapped text at `size` points, indented `indent` mm.
    fn text(&mut self, size: u8, indent: u8, text: &str) {
        let per_line = WRAP * 10 / usize::from(size.max(1)) - usize::from(indent / 2);
        let (size, indent) = (f32::from(size), f32::from(indent));
        for line in wrap(text, per_line.max(20)) {
            let step = size * 0.5;
            if self.y - step < MARGIN {
                self.new_page();
            }
            self.y -= step;
            self.layer
                .use_text(line, size, Mm(MARGIN + indent), Mm(self.y), &self.font);
        }
    }

    fn gap(&mut self, mm: f32) {
        self.y -= mm;
    }

    fn field(&mut self, label: &str, value: &str) {
        self.text(10, 0, &format!("{label}: {value}"));
    }
}

/// Greedy word wrap at `width` characters (long words are cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_owned();
        while word.chars().count() > width {
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(head);
        }
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The four files a donor needs to check the proof, embedded in the PDF.
#[derive(Debug)]
pub struct Proof<'a> {
    /// The certificate exactly as the station signed and sent it.
    pub certificate: &'a [u8],
    /// The server's signed receipt.
    pub receipt: &'a [u8],
    /// The station's public key (hex), when the station is known.
    pub station_key: Option<&'a str>,
    /// The server's public key (hex).
    pub server_key: &'a str,
    /// The inclusion proof of the certificate in the transparency log, with the signed tree head.
    pub inclusion: Option<&'a [u8]>,
}

/// The PDF bytes for a certificate view, with the proof's files attached.
pub fn certificate_pdf(c: &CertView, url: &str, lang: Lang, proof: &Proof<'_>) -> anyhow::Result<Vec<u8>> {
    let bytes = page_pdf(c, url, lang)?;
    let station = proof.station_key.map(|k| format!("{k}\n"));
    let server = format!("{}\n", proof.server_key);
    let mut files = vec![
        (
            "certificate.json",
            "application/json",
            "The erasure certificate, signed by the station",
            proof.certificate,
        ),
        (
            "receipt.json",
            "application/json",
            "The server's signed receipt",
            proof.receipt,
        ),
    ];
    if let Some(k) = &station {
        files.push(("station.pub", "text/plain", "The station's public key", k.as_bytes()));
    }
    files.push(("server.pub", "text/plain", "The server's public key", server.as_bytes()));
    if let Some(proof) = proof.inclusion {
        files.push((
            "inclusion.json",
            "application/json",
            "The certificate's inclusion proof in the server's transparency log, with the signed tree head",
            proof,
        ));
    }
    attach(&bytes, &files)
}

/// Adds `files` (name, MIME type, description, content) as attachments of the PDF `bytes`.
fn attach(bytes: &[u8], files: &[(&str, &str, &str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    let mut doc = lopdf::Document::load_mem(bytes).map_err(|e| anyhow::anyhow!("reading back the PDF: {e}"))?;
    // Embedded files need PDF 1.4; /AF is PDF 2.0 and PDF/A-3 (ISO 19005-3), which readers of 1.7 ignore.
    doc.version = "1.7".to_owned();
    let text = |s: &str| Object::String(s.as_bytes().to_vec(), StringFormat::Literal);
    let mut names = Vec::new();
    let mut specs = Vec::new();
    for (name, mime, description, content) in files {
        let len = i64::try_from(content.len())?;
        let stream = lopdf::Stream::new(
            dict(vec![
                ("Type", "EmbeddedFile".into()),
                ("Subtype", Object::Name(mime.as_bytes().to_vec())),
                ("Params", dict(vec![("Size", len.into())]).into()),
            ]),
            content.to_vec(),
        )
        .with_compression(false);
        let stream_id = doc.add_object(stream);
        let spec = doc.add_object(dict(vec![
            ("Type", "Filespec".into()),
            ("F", text(name)),
            ("UF", text(name)),
            ("Desc", text(description)),
            ("AFRelationship", "Source".into()),
            (
                "EF",
                dict(vec![("F", stream_id.into()), ("UF", stream_id.into())]).into(),
            ),
        ]));
        names.push(text(name));
        names.push(Object::Reference(spec));
        specs.push(Object::Reference(spec));
    }
    let catalog = doc
        .catalog_mut()
        .map_err(|e| anyhow::anyhow!("the PDF has no catalog: {e}"))?;
    let mut tree = Dictionary::new();
    tree.set("EmbeddedFiles", dict(vec![("Names", names.into())]));
    catalog.set("Names", tree);
    catalog.set("AF", specs);
    // Show the attachments panel when the reader opens the file.
    catalog.set("PageMode", "UseAttachments");
    let mut out = Vec::new();
    doc.save_to(&mut out)
        .map_err(|e| anyhow::anyhow!("writing the PDF: {e}"))?;
    Ok(out)
}

fn dict(entries: Vec<(&str, Object)>) -> Dictionary {
    let mut d = Dictionary::new();
    for (k, v) in entries {
        d.set(k, v);
    }
    d
}

/// The PDF pages for a certificate view.
fn page_pdf(c: &CertView, url: &str, lang: Lang) -> anyhow::Result<Vec<u8>> {
    let title = lang.pick("Proof of data erasure", "Bewijs van gegevenswissing");
    let (doc, page, layer) = PdfDocument::new(&title, Mm(PAGE_W), Mm(PAGE_H), "page 1");
    let font = doc
        .add_external_font(FONT)
        .map_err(|e| anyhow::anyhow!("embedding the font: {e}"))?;
    let layer = doc.get_page(page).get_layer(layer);
    let mut w = Writer {
        doc,
        layer,
        font,
        y: PAGE_H - MARGIN,
        pages: 1,
    };

    qr(&w.layer, url, PAGE_W - MARGIN - 40.0, PAGE_H - MARGIN - 40.0, 40.0);
    w.text(18, 0, &title);
    w.gap(2.0);
    w.text(12, 0, &format!("{}: {}", lang.pick("Result", "Resultaat"), c.outcome));
    w.text(10, 0, &c.summary);
    w.gap(2.0);
    w.field(lang.pick("Certificate", "Certificaat").as_str(), &c.id);
    if let Some(d) = &c.device {
        w.field(lang.pick("Device", "Toestel").as_str(), d);
    }
    if let Some(s) = &c.device_serial {
        w.field(lang.pick("Device serial", "Serienummer toestel").as_str(), s);
    }
    w.field(lang.pick("Erased on", "Gewist op").as_str(), &c.issued_at);
    w.field(
        lang.pick("By", "Door").as_str(),
        &format!("{}, {} ({})", c.operator, c.organisation, c.site),
    );
    if let Some(v) = &c.verifier {
        w.field(lang.pick("Checked by", "Nagekeken door").as_str(), v);
    }
    if let Some(r) = &c.donor_reference {
        w.field(lang.pick("Your reference", "Uw referentie").as_str(), r);
    }
    if let Some(l) = &c.lot {
        w.field(lang.pick("Lot", "Partij").as_str(), l);
    }
    if let Some(a) = &c.asset_tag {
        w.field(lang.pick("Asset tag", "Inventarisnummer").as_str(), a);
    }
    w.field(lang.pick("Review", "Nazicht").as_str(), &c.review);
    // Keep the text clear of the QR code before the disks start.
    w.y = w.y.min(PAGE_H - MARGIN - 44.0);
    w.gap(3.0);
    for (i, d) in c.disks.iter().enumerate() {
        w.text(
            12,
            0,
            &format!("{} {}: {} — {}", lang.pick("Disk", "Schijf"), i + 1, d.model, d.outcome),
        );
        w.field(lang.pick("Serial number", "Serienummer").as_str(), &d.serial);
        w.field(
            lang.pick("Capacity", "Capaciteit").as_str(),
            &format!("{} ({}, {})", d.capacity, d.transport, d.device),
        );
        w.field(lang.pick("Method", "Methode").as_str(), &d.method);
        w.field(lang.pick("Level reached", "Bereikt niveau").as_str(), &d.nist);
        w.field(lang.pick("Check", "Controle").as_str(), &d.verification);
        w.field(lang.pick("Hidden areas", "Verborgen zones").as_str(), &d.hidden);
        for n in &d.notes {
            w.text(10, 4, &format!("• {n}"));
        }
        w.gap(2.0);
    }
    for u in &c.not_touched {
        w.text(10, 0, &format!("• {u}"));
    }
    if !c.not_touched.is_empty() {
        w.gap(2.0);
    }
    if let Some(i) = &c.install {
        w.field(lang.pick("Software", "Software").as_str(), i);
        w.gap(2.0);
    }
    w.text(12, 0, &lang.pick("Signatures", "Handtekeningen"));
    w.field(lang.pick("Station", "Station").as_str(), &c.station_check.text);
    w.field(lang.pick("Server", "Server").as_str(), &c.receipt_check.text);
    w.gap(2.0);
    w.text(12, 0, &lang.pick("Check it yourself", "Zelf nakijken"));
    w.text(
        10,
        0,
        &lang.pick(
            &format!("Open {url} and download certificate.json, station.pub, receipt.json and server.pub. Then run:"),
            &format!("Open {url} en download certificate.json, station.pub, receipt.json en server.pub. Voer dan uit:"),
        ),
    );
    w.text(9, 4, "lapterop-cert verify certificate.json --key station.pub");
    w.text(9, 4, "lapterop-cert verify-receipt receipt.json --key server.pub");
    w.text(
        10,
        0,
        &lang.pick(
            "This PDF carries these files and the log's inclusion proof as attachments: the verifier page linked from the donor page \
             checks this PDF in a browser without any connection, and so does:",
            "Deze PDF draagt deze bestanden en het inclusiebewijs van het logboek als bijlagen: de verificatiepagina waarnaar de donorpagina \
             verwijst controleert deze PDF in een browser zonder enige verbinding, en ook:",
        ),
    );
    w.text(9, 4, "lapterop-cert verify-pdf lapterop-certificate.pdf");
    w.doc
        .save_to_bytes()
        .map_err(|e| anyhow::anyhow!("writing the PDF: {e}"))
}

/// Draws the QR code of `url` as filled squares in a `size` mm box with its lower-left at (x, y).
fn qr(layer: &PdfLayerReference, url: &str, x: f32, y: f32, size: f32) {
    let Ok(code) = qrcode::QrCode::new(url.as_bytes()) else {
        return;
    };
    let n = code.width();
    let quiet = 2;
    // Module counts are tiny (at most 177), so the float conversion is exact.
    let module = size / (n + 2 * quiet) as f32;
    layer.set_fill_color(Color::Greyscale(Greyscale::new(0.0, None)));
    for (i, color) in code.to_colors().iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (col, row) = (i % n + quiet, i / n + quiet);
            let llx = x + col as f32 * module;
            let ury = y + size - row as f32 * module;
            layer.add_rect(Rect::new(Mm(llx), Mm(ury - module), Mm(llx + module), Mm(ury)).with_mode(PaintMode::Fill));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words_and_cuts_long_ones() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
    }
}
