//! `lapterop-cert`: make station keys, verify and show certificates (also from a donor PDF), print the
//! schema.
//!
//! Exit codes: 0 valid / done; 1 the certificate is invalid or tampered (the reason is printed);
//! 2 usage error or unreadable input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lapterop_certificate::{self as cert, keys, Certificate, OutcomeStatus};

/// Make keys, verify and show Lapterop erasure certificates.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make an Ed25519 key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files; neither may exist yet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a certificate's format, rules and signature. Exit 0 valid, 1 invalid, 2 unreadable.
    Verify {
        /// The certificate (JSON).
        file: PathBuf,
        /// The station's public key file (PREFIX.pub).
        #[arg(long)]
        key: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a server receipt's format, log entry hash and signature.
    VerifyReceipt {
        /// The receipt (JSON).
        file: PathBuf,
        /// The server's public key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a donor PDF: the certificate, the receipt and the keys it carries as attachments.
    ///
    /// Keys taken from the PDF prove that nothing was changed since signing (integrity), not who signed
    /// (origin): anyone can make a PDF with their own keys. Give --station-key and --server-key, obtained
    /// from the organisation, to pin them. Exit 0 valid, 1 invalid, 2 unreadable.
    VerifyPdf {
        /// The donor PDF.
        file: PathBuf,
        /// The station's public key file, instead of the one in the PDF.
        #[arg(long)]
        station_key: Option<PathBuf>,
        /// The server's public key file, instead of the one in the PDF.
        #[arg(long)]
        server_key: Option<PathBuf>,
    },
    /// Print a human summary of a certificate (does not check the signature; use verify).
    Show {
        /// The certificate (JSON).
        file: PathBuf,
    },
    /// Print the JSON Schema of the certificate and the receipt.
    Schema,
    /// Print the key id of a public key file.
    KeyId {
        /// The public key file (PREFIX.pub).
        key: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lapterop-cert: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Keygen { out } => {
            let key = keys::generate()?;
            let (k, p) = keys::write_keypair(&out, &key)?;
            println!("secret key: {} (keep it on the stick only)", k.display());
            println!("public key: {} (enrol it on the server)", p.display());
            println!("key id:     {}", keys::key_id(&key.verifying_key()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { file, key, json } => {
            let bytes = read(&file)?;
            let key = keys::read_public_key(&key)?;
            match cert::verify(&bytes, &key) {
                Ok(c) => {
                    if json {
                        let out = serde_json::json!({"valid": true, "id": c.id, "outcome": c.overall_outcome()});
                        println!("{out}");
                    } else {
                        println!("valid: certificate {} signed by station key {}", c.id, c.station.key_id);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    if json {
                        println!("{}", serde_json::json!({"valid": false, "error": e.to_string()}));
                    } else {
                        println!("INVALID: {e}");
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::VerifyReceipt { file, key } => {
            let bytes = read(&file)?;
            let key = keys::read_public_key(&key)?;
            match cert::chain::verify_receipt(&bytes, &key) {
                Ok(r) => {
                    println!(
                        "valid: receipt for certificate {} at log position {}",
                        r.certificate_id, r.position
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("INVALID: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::VerifyPdf {
            file,
            station_key,
            server_key,
        } => verify_pdf(&file, station_key.as_deref(), server_key.as_deref()),
        Command::Show { file } => {
            let bytes = read(&file)?;
            match cert::parse(&bytes) {
                Ok((c, _)) => {
                    print!("{}", summary(&c));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("INVALID: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Schema => {
            print!("{}", cert::schema_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::KeyId { key } => {
            println!("{}", keys::key_id(&keys::read_public_key(&key)?));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify_pdf(file: &Path, station_key: Option<&Path>, server_key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bytes = read(&file.to_path_buf())?;
    let station = station_key.map(keys::read_public_key).transpose()?;
    let server = server_key.map(keys::read_public_key).transpose()?;
    let check = match cert::attachments::verify_pdf(&bytes, station, server) {
        Ok(c) => c,
        Err(e) => {
            println!("INVALID: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    match &check.certificate {
        Ok(c) => println!("valid: certificate {} signed by station key {}", c.id, c.station.key_id),
        Err(e) => println!("INVALID: {e}"),
    }
    match &check.receipt {
        Ok(r) => println!(
            "valid: receipt for this certificate at log position {}, received {}",
            r.position, r.received_at
        ),
        Err(e) => println!("INVALID: {e}"),
    }
    if !check.keys_from_pdf.is_empty() {
        println!(
            "note: the {} key{} taken from the PDF itself: this proves the files were not changed since they \
             were signed (integrity), not who signed them (origin). To prove origin, pin the keys you got \
             from the organisation: --station-key STATION.pub --server-key SERVER.pub",
            check.keys_from_pdf.join(" and "),
            if check.keys_from_pdf.len() > 1 {
                "s were"
            } else {
                " was"
            }
        );
    }
    Ok(if check.valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn outcome_words(s: OutcomeStatus) -> &'static str {
    match s {
        OutcomeStatus::Erased => "ERASED",
        OutcomeStatus::ErasedWithExceptions => "ERASED WITH EXCEPTIONS",
        OutcomeStatus::NotErased => "NOT ERASED",
    }
}

fn gib(bytes: u64) -> String {
    // Display only: precision loss above 2^53 bytes is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let g = bytes as f64 / f64::from(1u32 << 30);
    format!("{g:.1} GiB")
}

fn summary(c: &Certificate) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Certificate {}  ({})", c.id, outcome_words(c.overall_outcome()));
    let _ = writeln!(s, "  issued     {}", c.issued_at);
    let _ = writeln!(
        s,
        "  station    {} / {} (key {})",
        c.station.organisation, c.station.site, c.station.key_id
    );
    let _ = writeln!(s, "  operator   {}", c.operator.name);
    if let Some(v) = &c.verifier {
        let _ = writeln!(s, "  verifier   {}", v.name);
    }
    let _ = writeln!(
        s,
        "  agent      {} ({})",
        c.agent.version,
        &c.agent.binary_blake3[..16.min(c.agent.binary_blake3.len())]
    );
    if let Some(h) = &c.host {
        let sys = &h.system;
        let _ = writeln!(
            s,
            "  laptop     {} {} serial {}{}",
            sys.vendor.as_deref().unwrap_or("?"),
            sys.product.as_deref().unwrap_or("?"),
            sys.serial.as_deref().unwrap_or("?"),
            if h.placeholder_fields.is_empty() {
                String::new()
            } else {
                format!(" (placeholders: {})", h.placeholder_fields.join(", "))
            }
        );
        let _ = writeln!(s, "  verdict    {:?} {}", h.verdict.status, h.verdict.needs.join(", "));
    }
    for d in &c.disks {
        let _ = writeln!(
            s,
            "  disk {}: {} serial {} {} ({:?}) -> {} [{:?}]",
            d.device,
            d.model.as_deref().unwrap_or("?"),
            d.serial.as_deref().unwrap_or("?"),
            gib(d.capacity_bytes),
            d.transport,
            outcome_words(d.outcome.status),
            d.nist_category
        );
        for st in &d.steps {
            let _ = writeln!(
                s,
                "      step {:?}: {:?}{}",
                st.kind,
                st.outcome,
                st.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            );
        }
        if let Some(v) = &d.verification {
            let _ = writeln!(
                s,
                "      verify {:?}: {} read, {} mismatched blocks, read-back blake3 {}",
                v.mode,
                gib(v.bytes_read),
                v.mismatched_blocks,
                v.readback_blake3
            );
        }
        for e in &d.outcome.exceptions {
            let _ = writeln!(s, "      exception {:?}: {}", e.kind, e.detail);
        }
        if let Some(r) = &d.outcome.reason {
            let _ = writeln!(s, "      reason: {r}");
        }
    }
    if let Some(i) = &c.install {
        let _ = writeln!(
            s,
            "  install    {} on {}: {:?}{}",
            i.image_label(),
            i.target_device,
            i.status,
            i.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        );
    }
    let _ = writeln!(
        s,
        "  signed     {}",
        if c.signature.is_some() {
            "yes (check with: lapterop-cert verify FILE --key STATION.pub)"
        } else {
            "NO"
        }
    );
    s
}
