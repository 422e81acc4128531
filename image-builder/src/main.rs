//! Lapterop image builder: the live USB image and the standard OS image. Parses arguments and
//! dispatches to the library.
//!
//! Exit codes: 0 success, 1 any failure (the message says what failed and what to do), 2 usage.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lapterop_image_builder::{
    build_initramfs, debian, fetch_inputs, initramfs, live, Init, InitramfsSpec, DEFAULT_INIT,
};

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
    /// Build the bootable USB stick image (BIOS, UEFI, UEFI with Secure Boot): MBR + one FAT32
    /// partition with shim, GRUB, the signed kernel, our initramfs, the module tree with its firmware
    /// and the site's data.
    Live {
        /// The static agent binary (becomes /init); a dynamically linked one is refused.
        #[arg(long)]
        agent: PathBuf,
        /// Output image file (written beside it, then renamed).
        #[arg(long)]
        out: PathBuf,
        /// Site config, copied to lapterop/site.toml on the stick.
        #[arg(long)]
        site: Option<PathBuf>,
        /// Station private key, copied to lapterop/station.key.
        #[arg(long)]
        station_key: Option<PathBuf>,
        /// Image key's public half, baked into the initramfs: the only key the stick trusts for OS images.
        #[arg(long)]
        image_key: Option<PathBuf>,
        /// An OS image to carry in lapterop/images/ (repeatable).
        #[arg(long = "os-image")]
        os_images: Vec<PathBuf>,
        /// The stick id (marker file and lapterop.stick=); default: derived from all inputs.
        #[arg(long)]
        stick_id: Option<String>,
        /// Text appended to every menu entry's kernel command line, e.g. "lapterop.net=0".
        #[arg(long, default_value = "")]
        extra_cmdline: String,
        /// Modules or module sets in the initramfs; default: storage, usb, fs.
        #[arg(long, num_args = 1.., value_delimiter = ',')]
        modules: Vec<String>,
        /// Modules or module sets the stick's FAT adds (loaded once the stick is mounted, with their
        /// firmware); default: nic, usb-net, display, power.
        #[arg(long, num_args = 1.., value_delimiter = ',')]
        stick_modules: Vec<String>,
        /// zstd level of the initramfs.
        #[arg(long, default_value_t = 19)]
        zstd_level: i32,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hash the lead password for the site config: reads the password from standard input and prints
    /// the `[lead]` table to paste into site.toml (GRUB's editor and the stick's rescue shell then ask
    /// for it).
    LeadPassword,
    /// Pack, inspect and verify the standard OS image (docs/os-image.md).
    OsImage {
        #[command(subcommand)]
        action: OsImageCmd,
    },
    /// Build the live initramfs (busybox, modules, agent, /init) as a zstd-compressed cpio.
    Initramfs {
        /// The static agent binary, installed as /bin/lapterop-agent.
        #[arg(long)]
        agent: Option<PathBuf>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Modules or module sets (storage, usb, fs, nic, usb-net, display, power) to ship and load;
        /// default: storage, usb, fs.
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

/// `os-image` actions.
#[derive(Debug, Subcommand)]
enum OsImageCmd {
    /// Pack a captured GPT disk image into a signed Lapterop OS image.
    Pack {
        /// The captured disk (raw, GPT).
        #[arg(long)]
        input: PathBuf,
        /// Image name, e.g. leuven-pupil-desktop.
        #[arg(long)]
        name: String,
        /// Image version, e.g. 2026.11.
        #[arg(long)]
        version: String,
        /// The image signing key (PREFIX.key from `lapterop-cert keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Output file (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// zstd level (19 is the default; lower packs faster).
        #[arg(long, default_value_t = 19)]
        level: i32,
        /// Keep the last filesystem at the reference disk's size instead of shrinking a copy of it
        /// (ext4 with resize2fs, NTFS with ntfsresize) to its data plus a margin; the image then
        /// needs a disk as large as the reference.
        #[arg(long)]
        no_shrink: bool,
    },
    /// Print the manifest: partitions, extents, sizes, root hash. With --key the signature is checked
    /// first; without it the manifest is shown marked as unchecked.
    Inspect {
        /// The OS image.
        file: PathBuf,
        /// The image key's public half.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Check everything: header, signature, manifest rules, and every frame's blake3. Exit 0 valid, 1 not.
    Verify {
        /// The OS image.
        file: PathBuf,
        /// The image key's public half.
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum LockCmd {
    /// Rewrite the lock list from the versions apt offers now (run `apt-get update` first; the lists
    /// for an architecture the host's apt does not list, i386, are fetched into the cache).
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
            let lock = debian::refresh(&cache)?;
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
        Cmd::OsImage { action } => os_image(action)?,
        Cmd::Live {
            agent,
            out,
            site,
            station_key,
            image_key,
            os_images,
            stick_id,
            extra_cmdline,
            modules,
            stick_modules,
            zstd_level,
            json,
        } => {
            // An agent that cannot be /init is refused before anything is fetched.
            lapterop_image_builder::elf::check_static_executable(&agent).map_err(live::LiveError::from)?;
            let lock = debian::Lock::read(&lock_path)?;
            let inputs = live::fetch_live_inputs(&lock, &cache)?;
            let mut spec = live::LiveSpec::new(agent, initramfs::source_date_epoch()?);
            spec.site = site;
            spec.station_key = station_key;
            spec.image_key = image_key;
            spec.os_images = os_images;
            spec.stick_id = stick_id;
            spec.extra_cmdline = extra_cmdline;
            spec.zstd_level = zstd_level;
            if !modules.is_empty() {
                spec.modules = modules;
            }
            if !stick_modules.is_empty() {
                spec.stick_modules = stick_modules;
            }
            let mut work_name = out.file_name().unwrap_or_default().to_os_string();
            work_name.push(".work");
            let work = out.with_file_name(work_name);
            let built = live::build_live(&spec, &inputs, &out, &work);
            // The work directory holds only intermediates; remove it whether the build worked or not.
            let _ = std::fs::remove_dir_all(&work);
            let s = built.with_context(|| format!("building the stick image {}", out.display()))?;
            if !s.lead_password {
                eprintln!(
                    "note: the site config sets no lead password ([lead] password_hash, see `lapterop-image-builder \
                     lead-password`): anyone at a laptop's keyboard can edit the GRUB menu and open the rescue shell, \
                     which can read the station key"
                );
            }
            if json {
                let v = serde_json::json!({
                    "image": out,
                    "lead_password": s.lead_password,
                    "stick_id": s.stick_id,
                    "image_bytes": s.image_bytes,
                    "partition_bytes": s.partition_bytes,
                    "used_bytes": s.used_bytes,
                    "free_bytes": s.free_bytes,
                    "initrd_bytes": s.initrd_bytes,
                    "core_img_bytes": s.core_bytes,
                    "kernel": s.kver,
                    "initramfs_modules": s.modules,
                    "stick_module_files": s.stick_module_files,
                    "stick_module_bytes": s.stick_module_bytes,
                    "tools_bytes": s.tools_bytes,
                    "firmware_files": s.firmware_files,
                    "firmware_bytes": s.firmware_bytes,
                    "firmware_uncompressed_bytes": s.firmware_plain_bytes,
                    "supplicant_files": s.supplicant_files,
                    "supplicant_bytes": s.supplicant_bytes,
                    "firmware_not_packaged": s.firmware_missing.iter().map(|(name, modules)| {
                        serde_json::json!({"file": name, "named_by": modules})
                    }).collect::<Vec<_>>(),
                    "volume_id": format!("{:04X}-{:04X}", s.volume_id >> 16, s.volume_id & 0xFFFF),
                });
                println!("{v:#}");
            } else {
                println!(
                    "wrote {}: {:.1} MiB (FAT32 partition {} MiB: {:.1} MiB used, {:.1} MiB free); stick id {}; \
                     kernel {}, initrd {:.1} MiB, core.img {} KiB",
                    out.display(),
                    s.image_bytes as f64 / 1048576.0,
                    s.partition_bytes >> 20,
                    s.used_bytes as f64 / 1048576.0,
                    s.free_bytes as f64 / 1048576.0,
                    s.stick_id,
                    s.kver,
                    s.initrd_bytes as f64 / 1048576.0,
                    s.core_bytes >> 10
                );
                println!(
                    "modules: {} loaded from the initramfs; {} files ({:.1} MiB) in lapterop/modules; firmware: {} files \
                     ({:.1} MiB xz-compressed, {:.1} MiB uncompressed) in lapterop/firmware, {} named by a module but \
                     not packaged by Debian; filesystem tools {:.1} MiB and wpa_supplicant with {} libraries ({:.1} MiB) \
                     uncompressed in the initrd",
                    s.modules,
                    s.stick_module_files,
                    s.stick_module_bytes as f64 / 1048576.0,
                    s.firmware_files,
                    s.firmware_bytes as f64 / 1048576.0,
                    s.firmware_plain_bytes as f64 / 1048576.0,
                    s.firmware_missing.len(),
                    s.tools_bytes as f64 / 1048576.0,
                    s.supplicant_files.saturating_sub(1),
                    s.supplicant_bytes as f64 / 1048576.0
                );
            }
        }
        Cmd::LeadPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let hash = lapterop_certificate::lead_password::LeadHash::new(password.trim_end_matches(['\r', '\n']))?;
            println!("[lead]\npassword_hash = \"{hash}\"");
        }
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
                Some(p) => Init::Script(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?),
                None => Init::Script(DEFAULT_INIT.as_bytes().to_vec()),
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
                extra_nodes: Vec::new(),
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

fn os_image(action: OsImageCmd) -> anyhow::Result<()> {
    use anyhow::Context;
    use lapterop_certificate::keys;
    use lapterop_osimage::reader::{Image, SeekSource};
    match action {
        OsImageCmd::Pack {
            input,
            name,
            version,
            key,
            out,
            level,
            no_shrink,
        } => {
            let signing = keys::read_signing_key(&key)?;
            let mut opts = lapterop_osimage::pack::PackOptions::new(&name, &version);
            opts.level = level;
            opts.shrink_last = !no_shrink;
            let s = lapterop_osimage::pack::pack(&input, &out, &signing, &opts)
                .with_context(|| format!("packing {}", input.display()))?;
            println!(
                "{}: root {}; data {} MiB, zero {} MiB, skipped {} MiB; file {} MiB; min target {} MiB",
                out.display(),
                s.root,
                s.data_bytes >> 20,
                s.zero_bytes >> 20,
                s.skip_bytes >> 20,
                s.file_bytes >> 20,
                s.min_disk_bytes >> 20
            );
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
        }
        OsImageCmd::Inspect { file, key } => match key {
            Some(key) => {
                let trusted = keys::read_public_key(&key)?;
                let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
                let img =
                    Image::open(SeekSource(f), &trusted).with_context(|| format!("checking {}", file.display()))?;
                println!("signature: valid (key {})", img.signer_key_id());
                print!(
                    "{}",
                    lapterop_osimage::reader::inspect(img.manifest(), img.signer_key_id())
                );
            }
            None => {
                let bytes = read_head(&file)?;
                let header = lapterop_osimage::format::Header::decode(&bytes)?;
                let end = usize::try_from(lapterop_osimage::format::HEADER_LEN as u64 + header.manifest_len)?;
                let manifest: lapterop_osimage::Manifest = serde_json::from_slice(
                    bytes
                        .get(lapterop_osimage::format::HEADER_LEN..end)
                        .context("the file ends inside its manifest")?,
                )?;
                println!("signature: NOT checked (give --key IMAGE.pub to check it)");
                print!("{}", lapterop_osimage::reader::inspect(&manifest, "unchecked"));
            }
        },
        OsImageCmd::Verify { file, key } => {
            let trusted = keys::read_public_key(&key)?;
            let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let result = Image::open(SeekSource(f), &trusted).and_then(|mut img| img.verify());
            match result {
                Ok(v) => println!(
                    "valid: {} frames, {} MiB of data, every blake3 matches",
                    v.frames,
                    v.bytes >> 20
                ),
                Err(e) => {
                    println!("INVALID: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    Ok(())
}

/// The header and manifest of an image file (at most 64 MiB are read).
fn read_head(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(file)?;
    let mut head = vec![0u8; lapterop_osimage::format::HEADER_LEN];
    f.read_exact(&mut head)?;
    let header = lapterop_osimage::format::Header::decode(&head)?;
    let want = header.manifest_len.min(64 << 20);
    f.take(want).read_to_end(&mut head)?;
    Ok(head)
}
