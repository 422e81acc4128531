//! Benchmark driver for `scripts/bench-osimage.sh` (release build): packs a disk image, or installs an
//! image onto a regular file, and prints per-stage times and throughput. Signed with a fixture key:
//! for measurements only.
//!
//! ```text
//! osimage-bench pack DISK.raw OUT.osimg LEVEL
//! osimage-bench install IMAGE.osimg TARGET SECTOR_SIZE [--no-read-back]
//! osimage-bench key PREFIX          (writes PREFIX.key and PREFIX.pub of the benchmark key)
//! ```

use std::fs::{File, OpenOptions};
use std::process::ExitCode;
use std::time::Instant;

use lapterop_certificate::keys::fixture_key;
use lapterop_osimage::{install, pack, FileTarget, Image, InstallOptions, PackOptions, SeekSource};

fn mbps(bytes: u64, secs: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / 1_048_576.0 / secs.max(1e-9)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let key = fixture_key("osimage benchmark");
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["pack", disk, out, level] => {
            let mut opts = PackOptions::new("bench", "1");
            opts.level = level.parse().unwrap_or(3);
            let t = Instant::now();
            match pack(disk.as_ref(), out.as_ref(), &key, &opts) {
                Ok(s) => {
                    let secs = t.elapsed().as_secs_f64();
                    println!(
                        "pack: {secs:.2} s; data {} MiB, zero {} MiB, skip {} MiB, file {} MiB, root {}",
                        s.data_bytes >> 20,
                        s.zero_bytes >> 20,
                        s.skip_bytes >> 20,
                        s.file_bytes >> 20,
                        s.root
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pack failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ["key", prefix] => match lapterop_certificate::keys::write_keypair(prefix.as_ref(), &key) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("writing the benchmark key: {e}");
                ExitCode::FAILURE
            }
        },
        ["install", image, target, sector, rest @ ..] => {
            let t = Instant::now();
            let file = match File::open(image) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("opening {image}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut image = match Image::open(SeekSource(std::io::BufReader::new(file)), &key.verifying_key()) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let target = OpenOptions::new()
                .read(true)
                .write(true)
                .open(target)
                .and_then(|f| FileTarget::new(f, sector.parse().unwrap_or(512)));
            let target = match target {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("opening the target: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = InstallOptions {
                read_back: !rest.contains(&"--no-read-back"),
                ..InstallOptions::default()
            };
            match install(&mut image, &target, &options, &|_| {}) {
                Ok(r) => {
                    let m = image.manifest();
                    let data = m.bytes_of(lapterop_osimage::ExtentKind::Data);
                    let zero = m.bytes_of(lapterop_osimage::ExtentKind::Zero);
                    println!(
                        "install: {:.2} s wall; data {} MiB, zero {} MiB; read {:.2} s, decode {:.2} s ({:.0} MiB/s per thread), write {:.2} s ({:.0} MiB/s per thread), read-back {:.2} s ({}); {} chunks verified",
                        t.elapsed().as_secs_f64(),
                        data >> 20,
                        zero >> 20,
                        r.read_time.as_secs_f64(),
                        r.decode_time.as_secs_f64(),
                        mbps(data, r.decode_time.as_secs_f64()),
                        r.write_time.as_secs_f64(),
                        mbps(data + zero, r.write_time.as_secs_f64()),
                        r.verify_time.as_secs_f64(),
                        if options.read_back {
                            format!("{:.0} MiB/s", mbps(data, r.verify_time.as_secs_f64()))
                        } else {
                            "off".to_owned()
                        },
                        r.chunks_verified
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!(
                "usage: osimage-bench pack DISK OUT LEVEL | install IMAGE TARGET SECTOR [--no-read-back] | key PREFIX"
            );
            ExitCode::from(2)
        }
    }
}
