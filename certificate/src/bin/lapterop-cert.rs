//! `lapterop-cert`: make station keys, verify and show certificates (also from a donor PDF), print the
//! schema.
//!
//! Exit codes: 0 valid / done; 1 the certificate is invalid or tampered, or the log is inconsistent
//! (the reason is printed); 2 usage error, unreadable input or an unreachable server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lapterop_certificate::{self as cert, keys, tlog, Certificate, OutcomeStatus};

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
    /// Check that a certificate is in the server's transparency log: its receipt, an inclusion proof
    /// and a signed tree head, from files or fetched from the donor page. Exit 0 included, 1 not.
    VerifyInclusion {
        /// The server's public key file (server.pub).
        #[arg(long)]
        key: PathBuf,
        /// The receipt (receipt.json).
        #[arg(long, required_unless_present = "url")]
        receipt: Option<PathBuf>,
        /// The inclusion proof (inclusion.json from the donor page).
        #[arg(long, required_unless_present = "url")]
        proof: Option<PathBuf>,
        /// A signed tree head to check against (from /api/v1/log/sth or log-monitor's state); without
        /// it, the head inside the proof.
        #[arg(long)]
        tree_head: Option<PathBuf>,
        /// The certificate (certificate.json): also check that the receipt is for these exact bytes.
        #[arg(long)]
        certificate: Option<PathBuf>,
        /// The donor page URL (https://server/d/TOKEN): fetch the receipt and the proof from there.
        #[arg(long, conflicts_with_all = ["receipt", "proof"])]
        url: Option<String>,
    },
    /// Watch a server's transparency log: fetch its signed tree head, check that it extends the last
    /// one seen (consistency proof) and keep the heads in the state file. Exit 0 consistent, 1 the log
    /// was rewritten or forked, 2 unreachable or unreadable.
    LogMonitor {
        /// The server's base URL (https://server).
        url: String,
        /// The state file: the heads seen so far (created on first use).
        #[arg(long)]
        state: PathBuf,
        /// The server's public key file (server.pub), obtained out of band.
        #[arg(long)]
        key: PathBuf,
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
        Command::VerifyInclusion {
            key,
            receipt,
            proof,
            tree_head,
            certificate,
            url,
        } => {
            let key = keys::read_public_key(&key)?;
            let head = tree_head.as_ref().map(read).transpose()?;
            let (receipt, proof) = match (url, receipt, proof) {
                (Some(url), _, _) => {
                    let base = url.trim_end_matches('/');
                    let size = match &head {
                        Some(h) => format!("?tree_size={}", tlog::verify_tree_head(h, &key)?.0.tree_size),
                        None => String::new(),
                    };
                    (
                        fetch(&format!("{base}/receipt.json"))?,
                        fetch(&format!("{base}/inclusion.json{size}"))?,
                    )
                }
                (None, Some(r), Some(p)) => (read(&r)?, read(&p)?),
                _ => anyhow::bail!("give --receipt and --proof, or --url"),
            };
            let certificate = certificate.as_ref().map(read).transpose()?;
            match check_inclusion(&key, &receipt, &proof, head.as_deref(), certificate.as_deref()) {
                Ok((r, h)) => {
                    println!(
                        "included: certificate {} (log position {}) is in the log of {} entries with root {} \
                         (tree head of {})",
                        r.certificate_id, r.position, h.tree_size, h.root_hash, h.timestamp
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("NOT INCLUDED: {e:#}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::LogMonitor { url, state, key } => log_monitor(&url, &state, &keys::read_public_key(&key)?),
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

/// A GET of `url`: the body of a 200 answer (at most 1 MiB), else an error naming the URL.
fn fetch(url: &str) -> anyhow::Result<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| anyhow::anyhow!("fetching {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .map_err(|e| anyhow::anyhow!("reading the answer of {url}: {e}"))?;
    anyhow::ensure!(
        status == 200,
        "{url} answered {status}: {}",
        String::from_utf8_lossy(&body).chars().take(300).collect::<String>()
    );
    Ok(body)
}

/// Receipt, proof, and tree head (given, else the proof's) all check out with the server key.
fn check_inclusion(
    key: &cert::VerifyingKey,
    receipt: &[u8],
    proof: &[u8],
    head: Option<&[u8]>,
    certificate: Option<&[u8]>,
) -> anyhow::Result<(cert::Receipt, tlog::TreeHead)> {
    let receipt = cert::chain::verify_receipt(receipt, key).map_err(|e| anyhow::anyhow!("receipt: {e}"))?;
    if let Some(bytes) = certificate {
        let (_, value) = cert::parse(bytes).map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
        anyhow::ensure!(
            cert::document_blake3(&value)? == receipt.certificate_blake3,
            "the receipt is for another certificate (certificate_blake3 differs)"
        );
    }
    let proof = tlog::parse_inclusion(proof, key).map_err(|e| anyhow::anyhow!("inclusion proof: {e}"))?;
    let head = match head {
        Some(bytes) => tlog::verify_tree_head(bytes, key)?.0,
        None => proof
            .tree_head
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the proof carries no tree head; give --tree-head"))?,
    };
    tlog::check_inclusion(&receipt, &proof, &head)?;
    Ok((receipt, head))
}

/// What log-monitor keeps between runs.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct MonitorState {
    /// Always `lapterop.log-monitor/v1`.
    schema: String,
    /// The server watched.
    server: String,
    /// Every distinct signed tree head seen, oldest first.
    heads: Vec<tlog::TreeHead>,
}

const MONITOR_SCHEMA: &str = "lapterop.log-monitor/v1";

fn log_monitor(url: &str, state_path: &std::path::Path, key: &cert::VerifyingKey) -> anyhow::Result<ExitCode> {
    let base = url.trim_end_matches('/');
    let mut state = match std::fs::read(state_path) {
        Ok(bytes) => {
            let s: MonitorState = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("reading the state file {}: {e}", state_path.display()))?;
            anyhow::ensure!(
                s.schema == MONITOR_SCHEMA,
                "{} is not a log-monitor state file",
                state_path.display()
            );
            anyhow::ensure!(
                s.server == base,
                "the state file {} watches {}, not {base}; use one state file per server",
                state_path.display(),
                s.server
            );
            s
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => MonitorState {
            schema: MONITOR_SCHEMA.to_owned(),
            server: base.to_owned(),
            heads: Vec::new(),
        },
        Err(e) => anyhow::bail!("reading the state file {}: {e}", state_path.display()),
    };
    let bytes = fetch(&format!("{base}/api/v1/log/sth"))?;
    let new = match tlog::verify_tree_head(&bytes, key) {
        Ok((head, _)) => head,
        Err(e) => {
            println!("INVALID TREE HEAD from {base}: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let verdict = match state.heads.last() {
        None => Ok(()),
        Some(last) if new.tree_size < last.tree_size => Err(format!(
            "the log shrank from {} to {} entries",
            last.tree_size, new.tree_size
        )),
        Some(last) if new.tree_size == last.tree_size => {
            if new.root_hash == last.root_hash {
                Ok(())
            } else {
                Err(format!(
                    "two different logs of {} entries: root {} (seen {}) and now {}",
                    new.tree_size, last.root_hash, last.timestamp, new.root_hash
                ))
            }
        }
        Some(last) => {
            let proof = fetch(&format!(
                "{base}/api/v1/log/consistency?first={}&second={}",
                last.tree_size, new.tree_size
            ))?;
            tlog::parse_consistency(&proof)
                .and_then(|p| tlog::check_consistency(last, &new, &p))
                .map_err(|e| {
                    format!(
                        "the log of {} entries (root {}, seen {}) is not a prefix of the new one of {} entries \
                         (root {}): {e}",
                        last.tree_size, last.root_hash, last.timestamp, new.tree_size, new.root_hash
                    )
                })
        }
    };
    if let Err(why) = verdict {
        let evidence = state_path.with_extension("conflict.json");
        std::fs::write(&evidence, serde_json::to_vec_pretty(&new)?)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", evidence.display()))?;
        println!(
            "INCONSISTENT: {why}. The server rewrote or removed entries it had published, or shows different \
             logs to different people. Keep {} and {} (both heads are signed by the server) as evidence.",
            state_path.display(),
            evidence.display()
        );
        return Ok(ExitCode::from(1));
    }
    let changed = state.heads.last().is_none_or(|l| l.root_hash != new.root_hash);
    if changed {
        state.heads.push(new.clone());
        let tmp = state_path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&state)?)
            .and_then(|()| std::fs::rename(&tmp, state_path))
            .map_err(|e| anyhow::anyhow!("writing the state file {}: {e}", state_path.display()))?;
    }
    println!(
        "consistent: {} entries, root {} ({} heads kept in {})",
        new.tree_size,
        new.root_hash,
        state.heads.len(),
        state_path.display()
    );
    Ok(ExitCode::SUCCESS)
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
