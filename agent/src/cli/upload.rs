//! `lapterop-agent upload`: send the outbox.

use crate::outbox::{upload_with_backoff, Outbox, Sent, Uploader};
use std::path::Path;
use std::time::Duration;

/// `lapterop-agent upload`: pushes every pending certificate of `dir` to `server`. Exit code 0 when
/// every certificate has a receipt, 1 when the server refused one (a lead must look), 3 when some
/// still wait for the network.
pub fn upload_command(server: &str, dir: &Path, server_key: Option<&Path>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let key = match server_key.map(lapterop_certificate::keys::read_public_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("lapterop-agent upload: {e}");
            return ExitCode::from(2);
        }
    };
    let outbox = match Outbox::open(dir) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("lapterop-agent upload: opening the outbox {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    let uploader = Uploader::new(server, key, Duration::from_secs(30));
    let results = match upload_with_backoff(
        &outbox,
        &uploader,
        4,
        Duration::from_secs(2),
        Duration::from_secs(30),
        &mut std::thread::sleep,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lapterop-agent upload: reading the outbox {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    let (mut refused, mut waiting) = (0, 0);
    for (entry, sent) in &results {
        let name = entry
            .certificate
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match sent {
            Sent::AlreadyDone => println!("{name}: already uploaded"),
            Sent::Uploaded => println!("{name}: uploaded, receipt stored"),
            Sent::Failed(e) => {
                if e.retryable() {
                    waiting += 1;
                } else {
                    refused += 1;
                }
                println!("{name}: {e}");
            }
        }
    }
    println!(
        "{} certificates: {} refused, {} waiting",
        results.len(),
        refused,
        waiting
    );
    if refused > 0 {
        ExitCode::from(1)
    } else if waiting > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
