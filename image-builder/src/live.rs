//! The bootable USB stick: one raw image file that boots on BIOS, UEFI and UEFI with Secure Boot.
//!
//! Layout (`docs/live-image.md` has the reasons):
//!
//! ```text
//! sector 0        MBR: GRUB boot.img code, disk signature, one partition (0x0C, active)
//! sector 1..      GRUB core.img (i386-pc), which finds the partition by its marker file
//! 1 MiB ..        FAT32 "LAPTEROP":
//!   EFI/BOOT/BOOTX64.EFI   shim (signed by Microsoft: UEFI CA 2011 and 2023)
//!   EFI/BOOT/grubx64.efi   Debian's signed GRUB
//!   EFI/BOOT/mmx64.efi     MokManager
//!   EFI/BOOT/BOOTIA32.EFI  the same three for 32-bit UEFI (Bay Trail, Cherry Trail), which boot the
//!   EFI/BOOT/grubia32.efi  64-bit kernel in EFI mixed mode
//!   EFI/BOOT/mmia32.efi
//!   EFI/debian/grub.cfg    search the marker, then /boot/grub/grub.cfg
//!   boot/grub/grub.cfg     the menu (normal, nomodeset, rescue shell)
//!   boot/vmlinuz           Debian's signed kernel
//!   boot/initrd.img        ours: the agent as /init, busybox, the modules that find the stick,
//!                          wpa_supplicant with its libraries
//!   lapterop/modules/KVER/ the full module tree: the initramfs's plus network, graphics, power
//!   lapterop/firmware/     the firmware those modules name that Debian packages, as NAME.xz
//!   lapterop/stick.id      the marker: this stick's id (also on the kernel command line)
//!   lapterop/site.toml, station.key, images/*, outbox/ (the image key is only in the initramfs)
//! ```
//!
//! Everything is written into a plain file by this process: no loop device, no mount, no root. The
//! same inputs and `SOURCE_DATE_EPOCH` give the same bytes: the stick id, the volume id and the disk
//! signature are derived from a hash of every input, every timestamp is the epoch, files go in sorted
//! order, and the initramfs is a deterministic cpio compressed single-threaded.
//!
//! **Where modules live.** The initramfs carries only what finding the stick and the laptop's disks
//! need ([`kmod::DEFAULT_REQUEST`]): GRUB reads it through the firmware's slow disk calls, and the
//! kernel unpacks all of it. Network, graphics and power ([`kmod::STICK_REQUEST`]) and their firmware
//! stay on the FAT partition, where the agent's init finds them after mounting the stick (it
//! bind-mounts `lapterop/modules/KVER` over `/lib/modules/KVER` and points the firmware loader at
//! `lapterop/firmware`), so a laptop reads only the files its hardware asks for. The agent must be a
//! static executable: [`build_live`] refuses any other.
//!
//! **Wi-Fi's supplicant** is Debian's dynamically linked `wpa_supplicant`: it goes into the
//! initramfs with its dynamic linker and the closure of the libraries it names ([`dynlink`], about
//! 16 MiB that zstd makes 5.7), because on the FAT partition those bytes would be stored
//! uncompressed. Only it uses the C library; the agent and busybox stay static.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use lapterop_certificate::lead_password::LeadHash;

use crate::debian::{self, Cache, Lock};
use crate::dynlink::{self, Closure, DynlinkError};
use crate::elf::{self, ElfError};
use crate::fat::{self, Content, Tree};
use crate::firmware::{FirmwareError, FirmwareSet};
use crate::grub::{self, MenuOptions};
use crate::initramfs::{Node, Source};
use crate::io::{io_err, IoError};
use crate::kmod::{self, KernelTree};
use crate::mbr::{self, Partition};
use crate::tools;
use crate::{build_initramfs, BuildError, Init, InitramfsSpec};

/// Where the partition starts: 1 MiB, which leaves room for `core.img` and aligns the FAT.
pub const PARTITION_START: u64 = 1 << 20;

/// Free room left on the partition for certificates, receipts and logs.
pub const FREE_ROOM: u64 = 16 << 20;

/// The size budget of a stick image without OS images (issue 17): the tests hold the default build
/// to it.
pub const MAX_BASE_IMAGE: u64 = 128 << 20;

/// Errors of the stick build. Each says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Fetching, module staging or the initramfs failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The lock list or a package failed.
    #[error(transparent)]
    Debian(#[from] debian::DebianError),
    /// GRUB's BIOS part failed.
    #[error(transparent)]
    Grub(#[from] grub::GrubError),
    /// Writing the FAT failed.
    #[error(transparent)]
    Fat(#[from] fat::FatError),
    /// The agent is not a static executable (the message names the file and the build command).
    #[error(transparent)]
    Agent(#[from] ElfError),
    /// Collecting the modules' firmware failed.
    #[error(transparent)]
    Firmware(#[from] FirmwareError),
    /// Staging the stick's module tree failed.
    #[error(transparent)]
    Kmod(#[from] kmod::KmodError),
    /// Gathering the filesystem tools failed.
    #[error(transparent)]
    Tools(#[from] tools::ToolsError),
    /// Collecting `wpa_supplicant`'s libraries failed.
    #[error(transparent)]
    Dynlink(#[from] DynlinkError),
    /// An argument is not usable.
    #[error("{0}")]
    Invalid(String),
    /// A pinned package lacks a file the stick needs.
    #[error(
        "{path} is missing from the unpacked {package}; run `lapterop-image-builder lock refresh` if Debian moved it"
    )]
    MissingFile {
        /// The Debian package.
        package: String,
        /// The file.
        path: PathBuf,
    },
    /// File I/O failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

type Result<T> = std::result::Result<T, LiveError>;

/// The unpacked Debian packages a stick is made of.
#[derive(Debug, Clone)]
pub struct LiveInputs {
    /// The kernel package (with modules.dep).
    pub kernel: KernelTree,
    /// busybox-static.
    pub busybox_root: PathBuf,
    /// `EFI/BOOT/BOOTX64.EFI`: shim.
    pub shim: PathBuf,
    /// `EFI/BOOT/mmx64.efi`: MokManager.
    pub mok_manager: PathBuf,
    /// `EFI/BOOT/grubx64.efi`: Debian's signed GRUB.
    pub grub_efi: PathBuf,
    /// `EFI/BOOT/BOOTIA32.EFI`: shim for 32-bit UEFI.
    pub shim_ia32: PathBuf,
    /// `EFI/BOOT/mmia32.efi`: MokManager for 32-bit UEFI.
    pub mok_manager_ia32: PathBuf,
    /// `EFI/BOOT/grubia32.efi`: Debian's signed GRUB for 32-bit UEFI.
    pub grub_efi_ia32: PathBuf,
    /// The i386-pc module directory of grub-pc-bin (boot.img, kernel.img, *.mod).
    pub grub_pc_dir: PathBuf,
    /// busybox's example DHCP script, used as `/etc/udhcpc.script`.
    pub udhcpc_script: PathBuf,
    /// The unpacked firmware packages ([`debian::NON_FREE_FIRMWARE_ROLES`]), searched in this order.
    pub firmware_packages: Vec<PathBuf>,
    /// The filesystem tools and their library closure ([`tools::closure`]).
    pub tools: Closure,
    /// Where firmware compressed for the stick is kept ([`crate::firmware::compress_all`]).
    pub firmware_xz_cache: PathBuf,
    /// `wpa_supplicant` and its library closure, from the packages of [`debian::SUPPLICANT_ROLES`].
    pub supplicant: Closure,
    /// The lock list's text (part of the stick id).
    pub lock_text: String,
}

/// Fetches, verifies and unpacks every package of `lock` the stick needs.
pub fn fetch_live_inputs(lock: &Lock, cache: &Cache) -> Result<LiveInputs> {
    let base = crate::fetch_inputs(lock, cache)?;
    let find = |role: &str, rel: &str| -> Result<PathBuf> {
        let entry = lock.get(role)?;
        let path = cache.extract(entry)?.join(rel);
        if path.is_file() {
            Ok(path)
        } else {
            Err(LiveError::MissingFile {
                package: entry.package.clone(),
                path,
            })
        }
    };
    let grub_pc_dir = find("grub-pc", "usr/lib/grub/i386-pc/boot.img")?
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    let udhcpc_script = base
        .busybox_root
        .join("usr/share/doc/busybox-static/examples/udhcp/simple.script");
    if !udhcpc_script.is_file() {
        return Err(LiveError::MissingFile {
            package: "busybox-static".into(),
            path: udhcpc_script,
        });
    }
    Ok(LiveInputs {
        kernel: base.kernel,
        busybox_root: base.busybox_root,
        shim: find("shim", "usr/lib/shim/shimx64.efi.signed")?,
        mok_manager: find("shim-helpers", "usr/lib/shim/mmx64.efi.signed")?,
        grub_efi: find("grub-efi", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")?,
        shim_ia32: find("shim-ia32", "usr/lib/shim/shimia32.efi.signed")?,
        mok_manager_ia32: find("helpers-ia32", "usr/lib/shim/mmia32.efi.signed")?,
        grub_efi_ia32: find("grub-ia32", "usr/lib/grub/i386-efi-signed/grubia32.efi.signed")?,
        grub_pc_dir,
        udhcpc_script,
        firmware_packages: debian::NON_FREE_FIRMWARE_ROLES
            .iter()
            .chain(debian::FIRMWARE_ROLES_MAIN)
            .map(|role| Ok(cache.extract(lock.get(role)?)?))
            .collect::<Result<_>>()?,
        tools: tools::closure(lock, cache)?,
        firmware_xz_cache: cache.dir().join("firmware-xz"),
        supplicant: dynlink::closure(
            &[dynlink::SUPPLICANT],
            &debian::SUPPLICANT_ROLES
                .iter()
                .map(|role| Ok(cache.extract(lock.get(role)?)?))
                .collect::<Result<Vec<_>>>()?,
        )?,
        lock_text: lock.render(),
    })
}

/// What to put on the stick.
#[derive(Debug, Clone)]
pub struct LiveSpec {
    /// The static agent (becomes `/init`).
    pub agent: PathBuf,
    /// The site config, copied to `lapterop/site.toml`.
    pub site: Option<PathBuf>,
    /// The station's private key, copied to `lapterop/station.key`.
    pub station_key: Option<PathBuf>,
    /// The image key's public half, baked into the initramfs as `/etc/lapterop/image.pub` (the only image
    /// key the agent trusts; the FAT partition gets no copy).
    pub image_key: Option<PathBuf>,
    /// OS images, copied to `lapterop/images/<file name>`.
    pub os_images: Vec<PathBuf>,
    /// The stick id; derived from the inputs when `None`.
    pub stick_id: Option<String>,
    /// Appended to every menu entry's kernel command line.
    pub extra_cmdline: String,
    /// Modules or module sets in the initramfs.
    pub modules: Vec<String>,
    /// Modules or module sets the stick's FAT adds, loaded once the stick is mounted (with the
    /// firmware they name).
    pub stick_modules: Vec<String>,
    /// zstd level of the initramfs.
    pub zstd_level: i32,
    /// Every timestamp (`SOURCE_DATE_EPOCH`).
    pub epoch: u32,
    /// GRUB menu timeout in seconds.
    pub menu_timeout: u32,
}

impl LiveSpec {
    /// A spec with the defaults: all module sets, zstd 19, a 3-second menu.
    pub fn new(agent: PathBuf, epoch: u32) -> LiveSpec {
        LiveSpec {
            agent,
            site: None,
            station_key: None,
            image_key: None,
            os_images: Vec::new(),
            stick_id: None,
            extra_cmdline: String::new(),
            modules: kmod::DEFAULT_REQUEST.iter().map(|s| (*s).to_owned()).collect(),
            stick_modules: kmod::STICK_REQUEST.iter().map(|s| (*s).to_owned()).collect(),
            zstd_level: 19,
            epoch,
            menu_timeout: 3,
        }
    }
}

/// What was built.
#[derive(Debug, Clone)]
pub struct LiveSummary {
    /// The stick id (marker file and `lapterop.stick=`).
    pub stick_id: String,
    /// Size of the image file.
    pub image_bytes: u64,
    /// Size of the FAT partition.
    pub partition_bytes: u64,
    /// Bytes in use on the partition.
    pub used_bytes: u64,
    /// Bytes free on the partition.
    pub free_bytes: u64,
    /// Size of `boot/initrd.img`.
    pub initrd_bytes: u64,
    /// Files of `wpa_supplicant` and the libraries it loads, in the initramfs.
    pub supplicant_files: usize,
    /// Their bytes before compression.
    pub supplicant_bytes: u64,
    /// Size of `core.img`.
    pub core_bytes: u64,
    /// Kernel release.
    pub kver: String,
    /// Modules loaded on request in the initramfs.
    pub modules: usize,
    /// Module files in the stick's tree (`lapterop/modules/KVER`).
    pub stick_module_files: usize,
    /// Bytes of those module files.
    pub stick_module_bytes: u64,
    /// Bytes of the filesystem tools and their libraries in the initramfs (uncompressed).
    pub tools_bytes: u64,
    /// Firmware files on the stick.
    pub firmware_files: usize,
    /// Bytes of those firmware files on the stick (xz-compressed).
    pub firmware_bytes: u64,
    /// Bytes of those firmware files uncompressed.
    pub firmware_plain_bytes: u64,
    /// Firmware the shipped modules name that no pinned package holds, with the modules naming it.
    pub firmware_missing: Vec<(String, Vec<String>)>,
    /// The FAT volume id.
    pub volume_id: u32,
    /// Whether the site config set a lead password (GRUB's editor and the rescue shell ask for it).
    pub lead_password: bool,
}

/// Whether a stick id can go on the kernel command line and in a file name: 1-64 of `A-Za-z0-9._-`.
pub fn check_stick_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LiveError::Invalid(format!(
            "--stick-id `{id}`: use 1 to 64 letters, digits, `.`, `_` or `-`"
        )))
    }
}

fn hash_file(h: &mut Sha256, label: &str, path: &Path) -> Result<()> {
    let mut f = fs::File::open(path).map_err(io_err("reading", path))?;
    let mut inner = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        inner.update(&buf[..n]);
    }
    h.update(format!("{label}\0{}\0", hex::encode(inner.finalize())));
    Ok(())
}

/// A digest of every input: the lock list, the agent, the data files (content and name), the
/// command line, the module request, the compression level and the epoch.
pub fn input_digest(spec: &LiveSpec, inputs: &LiveInputs) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"lapterop-live-v1\0");
    h.update(inputs.lock_text.as_bytes());
    hash_file(&mut h, "agent", &spec.agent)?;
    for (label, path) in [
        ("site", &spec.site),
        ("station-key", &spec.station_key),
        ("image-key", &spec.image_key),
    ] {
        if let Some(p) = path {
            hash_file(&mut h, label, p)?;
        }
    }
    for image in &spec.os_images {
        hash_file(&mut h, &format!("os-image {}", file_name(image)?), image)?;
    }
    h.update(format!(
        "cmdline\0{}\0modules\0{}\0stick-modules\0{}\0zstd\0{}\0epoch\0{}\0timeout\0{}\0",
        spec.extra_cmdline,
        spec.modules.join(","),
        spec.stick_modules.join(","),
        spec.zstd_level,
        spec.epoch,
        spec.menu_timeout
    ));
    Ok(h.finalize().into())
}

/// Refuses an `--image-key` that is the image key's secret half: a `.key` file, or one whose public
/// half is the `.pub` beside it. Both halves are 64 hex digits, and half of all secrets also read as
/// a valid public key, so without this check a secret given by mistake could be baked into every
/// stick, where anyone holding one could sign OS images.
fn refuse_secret_image_key(key: &Path) -> Result<()> {
    let refuse = || {
        Err(LiveError::Invalid(format!(
            "--image-key {} is the image key's secret half, which must never go on a stick; give the .pub file \
             that `lapterop-cert keygen` wrote beside it",
            key.display()
        )))
    };
    if key.extension().is_some_and(|e| e == "key") {
        return refuse();
    }
    let Ok(secret) = lapterop_certificate::keys::read_signing_key(key) else {
        return Ok(());
    };
    let public = hex::encode(secret.verifying_key().as_bytes());
    let beside = key.with_extension("pub");
    if beside != key && fs::read_to_string(&beside).is_ok_and(|t| t.trim().eq_ignore_ascii_case(&public)) {
        return refuse();
    }
    Ok(())
}

/// The `[lead] password_hash` of the site config, checked; `None` when the site sets none.
pub fn lead_password(site: &Path) -> Result<Option<LeadHash>> {
    let text = fs::read_to_string(site).map_err(io_err("reading", site))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| LiveError::Invalid(format!("--site {}: {}", site.display(), e.message())))?;
    let Some(lead) = table.get("lead") else {
        return Ok(None);
    };
    let hash = lead
        .get("password_hash")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| LiveError::Invalid("--site: [lead] needs password_hash = \"grub.pbkdf2.sha512...\"".into()))?;
    LeadHash::parse(hash)
        .map(Some)
        .map_err(|e| LiveError::Invalid(format!("--site: [lead] password_hash: {e}")))
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| LiveError::Invalid(format!("{} has no usable file name", path.display())))
}

/// The partition size for `content` bytes of allocated clusters: content + [`FREE_ROOM`] + both FATs,
/// in whole MiB, at least what FAT32 needs (65525 clusters).
pub fn partition_size(content: u64, cluster: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let min_clusters = 65_525 + 1024;
    let data = (content + FREE_ROOM).max(min_clusters * cluster);
    let clusters = data / cluster;
    let fats = 2 * clusters * 4;
    let reserved = 32 * 512;
    (data + fats + reserved).div_ceil(MIB) * MIB
}

/// The initramfs nodes of dynamically linked programs' closures, a path shared by several (glibc)
/// once: the files executable, the links as links.
fn program_nodes(closures: &[&Closure]) -> Vec<(String, u32, Node)> {
    let mut nodes = BTreeMap::new();
    for c in closures {
        for (at, source) in &c.files {
            nodes.insert(at.clone(), (0o755, Node::File(Source::Path(source.clone()))));
        }
        for (at, target) in &c.links {
            nodes.insert(at.clone(), (0o777, Node::Symlink(target.clone())));
        }
    }
    nodes.into_iter().map(|(at, (mode, node))| (at, mode, node)).collect()
}

/// Builds the stick image at `out` (written beside it, then renamed), using `work` for intermediate
/// files.
pub fn build_live(spec: &LiveSpec, inputs: &LiveInputs, out: &Path, work: &Path) -> Result<LiveSummary> {
    fs::create_dir_all(work).map_err(io_err("creating", work))?;
    grub::check_cmdline_text(&spec.extra_cmdline)
        .map_err(|why| LiveError::Invalid(format!("--extra-cmdline: {why}")))?;
    for p in [&spec.site, &spec.station_key, &spec.image_key]
        .into_iter()
        .flatten()
        .chain(&spec.os_images)
        .chain([&spec.agent])
    {
        if !p.is_file() {
            return Err(LiveError::Invalid(format!("{} is not a file", p.display())));
        }
    }
    // A dynamically linked agent would find no C library in the initramfs: the laptop would stop
    // at a kernel panic, far from the lead who built the stick.
    elf::check_static_executable(&spec.agent)?;
    let digest = input_digest(spec, inputs)?;
    let stick_id = match &spec.stick_id {
        Some(id) => id.clone(),
        None => hex::encode(&digest[..8]),
    };
    check_stick_id(&stick_id)?;
    let volume_id = u32::from_le_bytes([digest[8], digest[9], digest[10], digest[11]]);
    let disk_signature = u32::from_le_bytes([digest[12], digest[13], digest[14], digest[15]]);

    let lead = match &spec.site {
        Some(site) => lead_password(site)?,
        None => None,
    };

    // The initramfs: the agent as /init, busybox with udhcpc's script, the modules.
    let mut extra = vec![(
        "etc/udhcpc.script".to_owned(),
        0o755,
        fs::read(&inputs.udhcpc_script).map_err(io_err("reading", &inputs.udhcpc_script))?,
    )];
    // The only image key the agent trusts lives here, inside the initramfs; the FAT partition gets no
    // copy (anyone can edit that from a PC). It must be a real public key, or every install would fail.
    if let Some(key) = &spec.image_key {
        refuse_secret_image_key(key)?;
        let public = lapterop_certificate::keys::read_public_key(key).map_err(|e| {
            LiveError::Invalid(format!(
                "--image-key {}: {e}; give the .pub file that `lapterop-cert keygen` wrote beside the image key",
                key.display()
            ))
        })?;
        extra.push((
            "etc/lapterop/image.pub".to_owned(),
            0o644,
            format!("{}\n", hex::encode(public.as_bytes())).into_bytes(),
        ));
    }
    // The rescue shell's guard reads the hash from here, never from the FAT partition.
    if let Some(hash) = &lead {
        extra.push((
            lapterop_certificate::lead_password::INITRAMFS_PATH.to_owned(),
            0o600,
            format!("{hash}\n").into_bytes(),
        ));
    }
    let initrd = work.join("initrd.img");
    let fs_spec = InitramfsSpec {
        kernel: inputs.kernel.clone(),
        busybox_root: inputs.busybox_root.clone(),
        modules: spec.modules.clone(),
        agent: Some(spec.agent.clone()),
        init: Init::Agent,
        extra,
        // resize2fs, e2fsck, ntfsresize, ntfsfix (capture shrinks, install grows) and Wi-Fi's
        // wpa_supplicant, with their libraries at the paths the dynamic linker opens, each once.
        extra_nodes: program_nodes(&[&inputs.tools, &inputs.supplicant]),
        zstd_level: spec.zstd_level,
    };
    let stage = work.join("initramfs-stage");
    let built = build_initramfs(&fs_spec, &stage, &initrd, spec.epoch);
    let _ = fs::remove_dir_all(&stage);
    let built = built?;

    let core = grub::core_img(&inputs.grub_pc_dir, work)?;
    let boot = grub::boot_img(&inputs.grub_pc_dir)?;

    let mut tree = Tree::new();
    tree.file("EFI/BOOT/BOOTX64.EFI", Content::Path(inputs.shim.clone()))?;
    tree.file("EFI/BOOT/grubx64.efi", Content::Path(inputs.grub_efi.clone()))?;
    tree.file("EFI/BOOT/mmx64.efi", Content::Path(inputs.mok_manager.clone()))?;
    // 32-bit UEFI looks for BOOTIA32.EFI; its shim loads grubia32.efi (and mmia32.efi) from the same
    // directory, and that GRUB reads the same /EFI/debian/grub.cfg.
    tree.file("EFI/BOOT/BOOTIA32.EFI", Content::Path(inputs.shim_ia32.clone()))?;
    tree.file("EFI/BOOT/grubia32.efi", Content::Path(inputs.grub_efi_ia32.clone()))?;
    tree.file("EFI/BOOT/mmia32.efi", Content::Path(inputs.mok_manager_ia32.clone()))?;
    tree.file("EFI/debian/grub.cfg", Content::Bytes(grub::EARLY_CFG_EFI.into()))?;
    let menu = grub::menu(&MenuOptions {
        stick_id: stick_id.clone(),
        extra_cmdline: spec.extra_cmdline.clone(),
        timeout: spec.menu_timeout,
        lead_password: lead.as_ref().map(ToString::to_string),
    });
    tree.file("boot/grub/grub.cfg", Content::Bytes(menu.into_bytes()))?;
    tree.file("boot/vmlinuz", Content::Path(inputs.kernel.vmlinuz()))?;
    tree.file("boot/initrd.img", Content::Path(initrd.clone()))?;
    let on_stick = stage_stick_tree(spec, inputs, &work.join("stick-stage"))?;
    add_stick_tree(&mut tree, &on_stick)?;
    tree.file(
        lapterop_certificate::STICK_MARKER,
        Content::Bytes(format!("{stick_id}\n").into_bytes()),
    )?;
    if let Some(p) = &spec.site {
        tree.file("lapterop/site.toml", Content::Path(p.clone()))?;
    }
    if let Some(p) = &spec.station_key {
        tree.file("lapterop/station.key", Content::Path(p.clone()))?;
    }
    for image in &spec.os_images {
        tree.file(
            &format!("lapterop/images/{}", file_name(image)?),
            Content::Path(image.clone()),
        )?;
    }
    tree.dir("lapterop/outbox")?;

    // Small sticks use 512-byte clusters (FAT32 needs 65525 clusters: ~34 MiB); big ones 4 KiB.
    let cluster = if tree.allocated_bytes(512)? + FREE_ROOM < 200 << 20 {
        512
    } else {
        4096
    };
    let part_bytes = partition_size(tree.allocated_bytes(cluster)?, cluster);
    let image_bytes = PARTITION_START + part_bytes;
    let sectors = u32::try_from(part_bytes / 512)
        .map_err(|_| LiveError::Invalid("the OS images make the stick larger than 2 TiB".into()))?;

    let tmp = out.with_extension("img.partial");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err("creating", &tmp))?;
    file.set_len(image_bytes).map_err(io_err("sizing", &tmp))?;
    let sector0 = mbr::mbr(
        &boot[..440],
        disk_signature,
        &[Partition {
            start: u32::try_from(PARTITION_START / 512).unwrap_or(2048),
            sectors,
            kind: mbr::TYPE_FAT32_LBA,
            active: true,
        }],
    );
    file.write_all_at(&sector0, 0)
        .map_err(io_err("writing the MBR of", &tmp))?;
    file.write_all_at(&core, 512)
        .map_err(io_err("writing core.img into", &tmp))?;
    let format = fat::Format {
        start: PARTITION_START,
        size: part_bytes,
        cluster: u32::try_from(cluster).unwrap_or(512),
        volume_id,
        label: "LAPTEROP".into(),
        time: fat::FixedTime::from_epoch(u64::from(spec.epoch)),
    };
    let written = fat::write_partition(&file, &tmp, &format, &tree)?;
    file.sync_all().map_err(io_err("syncing", &tmp))?;
    drop(file);
    fs::rename(&tmp, out).map_err(io_err("renaming into", out))?;
    let initrd_bytes = fs::metadata(&initrd).map_err(io_err("reading", &initrd))?.len();
    Ok(LiveSummary {
        stick_id,
        image_bytes,
        partition_bytes: part_bytes,
        used_bytes: written.used,
        free_bytes: written.free,
        initrd_bytes,
        supplicant_files: inputs.supplicant.files.len(),
        supplicant_bytes: inputs.supplicant.bytes()?,
        core_bytes: core.len() as u64,
        kver: inputs.kernel.kver().to_owned(),
        modules: built.modules.len(),
        stick_module_files: on_stick.module_files.len(),
        stick_module_bytes: on_stick.module_bytes,
        tools_bytes: inputs.tools.bytes()?,
        firmware_files: on_stick.firmware.files.len(),
        firmware_bytes: on_stick.firmware_bytes,
        firmware_plain_bytes: on_stick.firmware.bytes()?,
        firmware_missing: on_stick
            .firmware
            .missing
            .iter()
            .map(|(name, modules)| (name.clone(), modules.iter().cloned().collect()))
            .collect(),
        volume_id,
        lead_password: lead.is_some(),
    })
}

/// The stick's module tree and firmware, staged on the build host.
#[derive(Debug, Clone)]
pub struct StickTree {
    /// The kernel release (the directory name under [`lapterop_certificate::STICK_MODULES`]).
    pub kver: String,
    /// The staged `lib/modules/KVER` (modules and depmod's index).
    pub module_dir: PathBuf,
    /// Every file of it, relative to `module_dir`, sorted.
    pub module_files: Vec<String>,
    /// Bytes of those files.
    pub module_bytes: u64,
    /// The firmware the modules name.
    pub firmware: FirmwareSet,
    /// The stick's firmware files: name with `.xz` → the compressed file.
    pub firmware_files: BTreeMap<String, PathBuf>,
    /// Bytes of those compressed files.
    pub firmware_bytes: u64,
}

/// Stages the stick's module tree in `dest` (emptied first): the closure of the initramfs's request
/// and the stick's own, indexed by depmod, and the firmware its modules name from the pinned packages.
pub fn stage_stick_tree(spec: &LiveSpec, inputs: &LiveInputs, dest: &Path) -> Result<StickTree> {
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(io_err("removing", dest))?;
    }
    let request: Vec<&String> = spec.modules.iter().chain(&spec.stick_modules).collect();
    let names = kmod::expand_request(&request);
    inputs.kernel.stage(&names, dest)?;
    let kver = inputs.kernel.kver().to_owned();
    let module_dir = dest.join("lib/modules").join(&kver);
    let mut module_files = Vec::new();
    list_files(&module_dir, "", &mut module_files)?;
    module_files.sort();
    let mut module_bytes = 0;
    for rel in &module_files {
        let path = module_dir.join(rel);
        module_bytes += fs::metadata(&path).map_err(io_err("reading", &path))?.len();
    }
    let firmware = FirmwareSet::collect(&module_dir, &inputs.firmware_packages)?;
    let firmware_files = crate::firmware::compress_all(&firmware, &inputs.firmware_xz_cache)?;
    let mut firmware_bytes = 0;
    for path in firmware_files.values() {
        firmware_bytes += fs::metadata(path).map_err(io_err("reading", path))?.len();
    }
    Ok(StickTree {
        kver,
        module_dir,
        module_files,
        module_bytes,
        firmware,
        firmware_files,
        firmware_bytes,
    })
}

fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    let io = io_err("listing", dir);
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let ty = entry.file_type().map_err(io)?;
        if ty.is_dir() {
            list_files(&entry.path(), &rel, out)?;
        } else if ty.is_file() {
            out.push(rel);
        } else {
            return Err(LiveError::Invalid(format!(
                "{} is neither a file nor a directory; the FAT partition holds no links",
                entry.path().display()
            )));
        }
    }
    Ok(())
}

/// Puts the staged tree on the FAT: `lapterop/modules/KVER/...` and `lapterop/firmware/...xz`. FAT
/// names ignore case, so two names that differ only in case would overwrite each other: refused.
fn add_stick_tree(tree: &mut Tree, on_stick: &StickTree) -> Result<()> {
    let modules = format!("{}/{}", lapterop_certificate::STICK_MODULES, on_stick.kver);
    let files = on_stick
        .module_files
        .iter()
        .map(|rel| (format!("{modules}/{rel}"), on_stick.module_dir.join(rel)))
        .chain(on_stick.firmware_files.iter().map(|(name, source)| {
            (
                format!("{}/{name}", lapterop_certificate::STICK_FIRMWARE),
                source.clone(),
            )
        }));
    let mut seen = std::collections::BTreeMap::new();
    for (path, source) in files {
        if let Some(other) = seen.insert(path.to_lowercase(), path.clone()) {
            return Err(LiveError::Invalid(format!(
                "`{other}` and `{path}` differ only in case, which the FAT partition cannot tell apart"
            )));
        }
        tree.file(&path, Content::Path(source))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_size_keeps_fat32_cluster_minimum_and_free_room() {
        // Tiny content: the FAT32 minimum decides (65525 clusters of 512 bytes and change).
        let small = partition_size(1 << 20, 512);
        assert!(((65_525 * 512) + (1 << 20)..=40 << 20).contains(&small), "{small}");
        assert_eq!(small % (1 << 20), 0);
        // 30 MiB of content: content + 16 MiB free + FATs.
        let mid = partition_size(30 << 20, 512);
        assert!(((46 << 20)..=(48 << 20)).contains(&mid), "{mid}");
    }

    #[test]
    fn stick_ids_are_checked() {
        assert!(check_stick_id("lapterop-leuven-01").is_ok());
        assert!(check_stick_id("3f2a9c0d11e4b5a6").is_ok());
        for bad in ["", "a b", "x;y", &"a".repeat(65), "é"] {
            assert!(check_stick_id(bad).is_err(), "{bad}");
        }
    }
}
