//! Lapterop image builder: the live USB image and the standard OS image. Parses arguments and
//! dispatches to the library.
//!
//! Exit codes: 0 success, 1 any failure (the message says what failed and what to do), 2 usage.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lapterop_image_builder::{build_initramfs, debian, fetch_inputs, initramfs, InitramfsSpec, DEFAULT_INIT};

/// Lapterop image builder: the live USB image and the standard OS image.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The lock list of pinned Debian packages (default: image-builder/debian.lock of this source tree).
    #[arg(long, global = true)]
    lock: Option<PathBuf>,
    /// Download cache (default: $LAPTEROP_CACHE, else target/debian-cache of this source tree).
    #[arg(long, global = true)]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Work with the lock list of pinned Debian packages.
    Lock {
        #[command(subcommand)]
        action: LockCmd,
    },
    /// Download, verify and unpack every pinned package into the cache.
    Fetch,
    /// Build the live initramfs (busybox, modules, agent, /init) as a zstd-compressed cpio.
    Initramfs {
        /// The static agent binary, installed as /bin/lapterop-agent.
        #[arg(long)]
        agent: Option<PathBuf>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Modules or module sets (storage, nic, fs) to ship and load; default: all sets.
        #[arg(long, num_args = 1.., value_delimiter = ',')]
        modules: Vec<String>,
        /// The /init script (default: mount, load modules, rescue shell).
        #[arg(long)]
        init_script: Option<PathBuf>,
        /// zstd compression level.
        #[arg(long, default_value_t = 19)]
        zstd_level: i32,
    },
}

#[derive(Debug, Subcommand)]
enum LockCmd {
    /// Rewrite the lock list from the versions apt offers now (run `apt-get update` first).
    Refresh,
    /// Print the lock list.
    Show,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let lock_path = cli.lock.unwrap_or_else(debian::default_lock_path);
    let cache = debian::Cache::new(cli.cache.unwrap_or_else(debian::default_cache_dir));
    match cli.command {
        Cmd::Lock {
            action: LockCmd::Refresh,
        } => {
            let old = debian::Lock::read(&lock_path).ok();
            let lock = debian::refresh()?;
            lock.write(&lock_path)?;
            for e in &lock.entries {
                let before = old.as_ref().and_then(|o| o.get(&e.role).ok());
                match before {
                    Some(b) if b == e => println!("{:<8} {} {} (unchanged)", e.role, e.package, e.version),
                    Some(b) => println!(
                        "{:<8} {} {} -> {} {}",
                        e.role, b.package, b.version, e.package, e.version
                    ),
                    None => println!("{:<8} {} {} (new)", e.role, e.package, e.version),
                }
            }
            println!("wrote {}; commit it", lock_path.display());
        }
        Cmd::Lock { action: LockCmd::Show } => print!("{}", debian::Lock::read(&lock_path)?.render()),
        Cmd::Fetch => {
            let lock = debian::Lock::read(&lock_path)?;
            for e in &lock.entries {
                let root = cache.extract(e)?;
                println!(
                    "{:<8} {} {} verified, unpacked in {}",
                    e.role,
                    e.package,
                    e.version,
                    root.display()
                );
            }
        }
        Cmd::Initramfs {
            agent,
            out,
            modules,
            init_script,
            zstd_level,
        } => {
            let lock = debian::Lock::read(&lock_path)?;
            let inputs = fetch_inputs(&lock, &cache)?;
            let init = match init_script {
                Some(p) => std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
                None => DEFAULT_INIT.as_bytes().to_vec(),
            };
            let modules = if modules.is_empty() {
                lapterop_image_builder::kmod::DEFAULT_REQUEST
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            } else {
                modules
            };
            let spec = InitramfsSpec {
                kernel: inputs.kernel,
                busybox_root: inputs.busybox_root,
                modules,
                agent,
                init,
                extra: Vec::new(),
                zstd_level,
            };
            let mut stage_name = out.file_name().unwrap_or_default().to_os_string();
            stage_name.push(".stage");
            let stage = out.with_file_name(stage_name);
            let built = build_initramfs(&spec, &stage, &out, initramfs::source_date_epoch()?);
            // The staged modules are only an intermediate; remove them whether the build worked or not.
            let _ = std::fs::remove_dir_all(&stage);
            let built = built?;
            println!(
                "wrote {} ({} entries, {} modules loaded at boot, kernel {})",
                out.display(),
                built.entries,
                built.modules.len(),
                spec.kernel.kver()
            );
        }
    }
    Ok(())
}
