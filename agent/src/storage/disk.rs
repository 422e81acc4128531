//! Disk discovery from sysfs and the safety rules that decide whether a disk may be written at all.
//!
//! [`Discovery::scan`] lists every whole block device with its identity (model, serial, firmware, WWN),
//! transport, geometry and its partitions with their mounts, swap use and holders, read from
//! `/sys/block`, `/proc/self/mountinfo` and `/proc/swaps` (never from another tool's text output).
//! Software devices (device-mapper, md RAID, zram, nbd, ram disks, loop devices unless named) and
//! optical drives are not disks of the laptop; an eMMC's boot areas are listed with their eMMC, not
//! as disks of their own.
//! [`refusals`] names every reason a disk must not be touched: it or a partition is mounted, is swap,
//! has holders (device-mapper, md, LVM), is read-only, or is the Lapterop boot stick (a partition with
//! the `LAPTEROP.STICK` marker file, or a partition UUID the live image lists). [`claim`] then opens a
//! disk that passed with `O_EXCL | O_DIRECT`, so that nothing can mount or claim it while we hold it;
//! a disk that cannot be opened exclusively is refused too. Nothing is ever written to a refused disk.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use lapterop_certificate::Transport;
use serde::Serialize;

use crate::sys::{self, Access, SysError};

/// Name of the marker file in the root of the live stick's data partition.
pub const STICK_MARKER: &str = lapterop_certificate::STICK_MARKER;
/// Environment variable with the boot stick's partition UUIDs, comma-separated.
pub const STICK_PARTUUIDS_ENV: &str = "LAPTEROP_STICK_PARTUUIDS";

/// One partition of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// Kernel name (`sda1`, `nvme0n1p1`).
    pub name: String,
    /// Partition UUID (GPT partition GUID or MBR `disk-id-NN`), lower case, when the kernel reports it.
    pub partuuid: Option<String>,
    /// Where it is mounted.
    pub mounts: Vec<String>,
    /// True when it is active swap.
    pub swap: bool,
    /// Devices stacked on it (`dm-0`, `md127`).
    pub holders: Vec<String>,
}

/// One whole block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// Kernel name (`sda`, `nvme0n1`, `loop3`).
    pub name: String,
    /// Device node.
    pub path: PathBuf,
    /// Model as the drive reports it.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Firmware revision.
    pub firmware: Option<String>,
    /// World-wide name / EUI-64 / NGUID.
    pub wwn: Option<String>,
    /// How it is attached.
    pub transport: Transport,
    /// Spinning media.
    pub rotational: bool,
    /// Removable media flag from the kernel.
    pub removable: bool,
    /// An SD card in a card reader (`device/type` is `SD`): the donor's card, not the laptop's own
    /// storage (an eMMC says `MMC`). The kernel never sets `removable` on it.
    pub card: bool,
    /// The kernel marks it read-only.
    pub read_only: bool,
    /// Capacity in bytes.
    pub capacity_bytes: u64,
    /// Logical sector size in bytes.
    pub logical_sector_size: u32,
    /// Physical sector size in bytes.
    pub physical_sector_size: u32,
    /// Backing file of a loop device.
    pub backing_file: Option<String>,
    /// Where the whole disk is mounted (a filesystem without a partition table).
    pub mounts: Vec<String>,
    /// The whole disk is active swap.
    pub swap: bool,
    /// Devices stacked on the whole disk.
    pub holders: Vec<String>,
    /// Its partitions.
    pub partitions: Vec<Partition>,
    /// The boot areas of an eMMC (`mmcblk0boot0`, `mmcblk0boot1`): separate block devices of the same
    /// chip, wiped with it and recorded in its disk record.
    pub boot_areas: Vec<BootArea>,
    /// Size of an eMMC's replay-protected memory block (RPMB), which no host command can erase and
    /// which is left alone (and said so).
    pub rpmb_bytes: Option<u64>,
}

/// One boot area of an eMMC (JESD84-B51 §6.3.2 "Boot partition"): the kernel's own block device,
/// kept read-only (`force_ro`) unless the wipe lifts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootArea {
    /// Kernel name (`mmcblk0boot0`).
    pub name: String,
    /// Device node.
    pub path: PathBuf,
    /// Capacity in bytes.
    pub capacity_bytes: u64,
    /// The kernel's `force_ro` switch (set by default), in `/sys/block/<name>/force_ro`.
    pub force_ro: bool,
}

/// What a name in `/sys/block` is, by the kernel's naming of its drivers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BlockKind {
    /// A disk of its own.
    Disk,
    /// Made by software from other devices or from memory (device-mapper, md RAID, zram, nbd, ram,
    /// loop) or an optical drive / floppy: never a disk of the laptop.
    Virtual,
    /// A boot area of the eMMC named.
    BootArea(String),
    /// The RPMB of the eMMC named (a block device on kernels before 6.x).
    Rpmb,
}

fn block_kind(name: &str) -> BlockKind {
    const VIRTUAL: [&str; 9] = ["ram", "loop", "dm-", "md", "zram", "nbd", "sr", "fd", "drbd"];
    if VIRTUAL.iter().any(|p| name.starts_with(p)) {
        return BlockKind::Virtual;
    }
    if let Some(rest) = name.strip_prefix("mmcblk") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (num, tail) = rest.split_at(digits);
        if digits > 0 {
            if tail == "rpmb" {
                return BlockKind::Rpmb;
            }
            if tail
                .strip_prefix("boot")
                .is_some_and(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
            {
                return BlockKind::BootArea(format!("mmcblk{num}"));
            }
        }
    }
    BlockKind::Disk
}

#[cfg(test)]
impl Disk {
    /// A plain internal SSD on virtio with no identity, partitions or users, for tests to adjust.
    pub fn for_tests(name: &str, path: &Path, capacity_bytes: u64) -> Disk {
        Disk {
            name: name.into(),
            path: path.to_owned(),
            model: None,
            serial: None,
            firmware: None,
            wwn: None,
            transport: Transport::Virtio,
            rotational: false,
            removable: false,
            card: false,
            read_only: false,
            capacity_bytes,
            logical_sector_size: 512,
            physical_sector_size: 512,
            backing_file: None,
            mounts: Vec::new(),
            swap: false,
            holders: Vec::new(),
            partitions: Vec::new(),
            boot_areas: Vec::new(),
            rpmb_bytes: None,
        }
    }
}

/// Why a disk must not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The disk or one of its partitions is mounted.
    Mounted {
        /// Device that is mounted.
        device: String,
        /// Mount point.
        at: String,
    },
    /// The disk or a partition is active swap.
    Swap {
        /// Device used as swap.
        device: String,
    },
    /// Another block device is stacked on it.
    Holders {
        /// Device that is held.
        device: String,
        /// The holders.
        holders: Vec<String>,
    },
    /// The kernel marks it read-only.
    ReadOnly,
    /// It is the Lapterop boot stick.
    BootStick {
        /// How it was recognised.
        why: String,
    },
    /// It could not be opened exclusively: something else holds it.
    InUse,
    /// Opening or probing it failed.
    Unusable {
        /// What failed.
        error: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mounted { device, at } => write!(f, "{device} is mounted at {at}; unmount it first"),
            Self::Swap { device } => write!(f, "{device} is in use as swap; run swapoff first"),
            Self::Holders { device, holders } => write!(
                f,
                "{device} is held by {} (RAID, LVM or device-mapper); stop those first",
                holders.join(", ")
            ),
            Self::ReadOnly => write!(f, "the device is read-only (write-protect switch?)"),
            Self::BootStick { why } => write!(f, "this is the Lapterop boot stick ({why})"),
            Self::InUse => write!(
                f,
                "the device is in use by another program (cannot open it exclusively)"
            ),
            Self::Unusable { error } => write!(f, "{error}"),
        }
    }
}

impl Serialize for Refusal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// How the boot stick is recognised besides its marker file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SafetyConfig {
    /// Partition UUIDs of the boot stick (lower case).
    pub stick_partuuids: Vec<String>,
}

impl SafetyConfig {
    /// The given UUIDs plus those in `LAPTEROP_STICK_PARTUUIDS`.
    pub fn from_env(extra: &[String]) -> Self {
        let mut stick_partuuids: Vec<String> = extra.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
        if let Ok(v) = std::env::var(STICK_PARTUUIDS_ENV) {
            stick_partuuids.extend(
                v.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty()),
            );
        }
        Self { stick_partuuids }
    }
}

/// Where discovery reads from; [`Discovery::system`] for the real machine, a temporary tree in tests.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// `/sys/block`.
    pub sys_block: PathBuf,
    /// `/proc/self/mountinfo`.
    pub mountinfo: PathBuf,
    /// `/proc/swaps`.
    pub swaps: PathBuf,
    /// `/dev`.
    pub dev: PathBuf,
}

/// One mount: device number and mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    dev: String,
    at: String,
}

impl Discovery {
    /// The running system.
    pub fn system() -> Self {
        Self {
            sys_block: "/sys/block".into(),
            mountinfo: "/proc/self/mountinfo".into(),
            swaps: "/proc/swaps".into(),
            dev: "/dev".into(),
        }
    }

    /// A recorded tree: `root/sys/block`, `root/proc/self/mountinfo`, `root/proc/swaps`, `root/dev`
    /// (`scripts/record-storage-tree.sh` writes one; `/` is the running system).
    pub fn at(root: &Path) -> Self {
        Self {
            sys_block: root.join("sys/block"),
            mountinfo: root.join("proc/self/mountinfo"),
            swaps: root.join("proc/swaps"),
            dev: root.join("dev"),
        }
    }

    /// Every whole block device with a non-zero size, sorted by name.
    pub fn scan(&self) -> anyhow::Result<Vec<Disk>> {
        use anyhow::Context;
        let mounts = parse_mountinfo(&read_or_empty(&self.mountinfo));
        let swaps = parse_swaps(&read_or_empty(&self.swaps));
        let mut disks = Vec::new();
        let entries =
            std::fs::read_dir(&self.sys_block).with_context(|| format!("listing {}", self.sys_block.display()))?;
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            match block_kind(&name) {
                BlockKind::Disk => disks.extend(self.disk(&name, &mounts, &swaps)),
                // Boot areas are listed with their eMMC; the rest is never the laptop's disk.
                BlockKind::BootArea(_) | BlockKind::Virtual | BlockKind::Rpmb => {}
            }
        }
        disks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(disks)
    }

    /// The boot areas of the eMMC `name`, from `/sys/block/<name>boot<N>`.
    fn boot_areas(&self, name: &str) -> Vec<BootArea> {
        let mut v: Vec<BootArea> = list_dir(&self.sys_block)
            .into_iter()
            .filter(|n| block_kind(n) == BlockKind::BootArea(name.to_string()))
            .filter_map(|n| {
                let base = self.sys_block.join(&n);
                let sectors: u64 = read_trim(&base.join("size"))?.parse().ok()?;
                Some(BootArea {
                    path: self.dev.join(&n),
                    capacity_bytes: sectors.saturating_mul(512),
                    force_ro: read_trim(&base.join("force_ro")).as_deref() != Some("0"),
                    name: n,
                })
            })
            .filter(|b| b.capacity_bytes > 0)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The whole disk a user named (`/dev/sdb`, `sdb`, a `/dev/disk/by-id/...` link).
    pub fn find(&self, device: &str) -> anyhow::Result<Disk> {
        let p = Path::new(device);
        let name = if p.components().count() == 1 {
            device.to_string()
        } else {
            let real = std::fs::canonicalize(p)
                .map_err(|e| anyhow::anyhow!("{device}: {e}; give a device such as /dev/sdb"))?;
            real.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        if let BlockKind::BootArea(parent) = block_kind(&name) {
            anyhow::bail!(
                "{device} is a boot area of the eMMC {}; give the whole eMMC, its boot areas are wiped with it",
                self.dev.join(parent).display()
            );
        }
        // Only the named disk is examined (its partition table may be read); others are not opened.
        let mounts = parse_mountinfo(&read_or_empty(&self.mountinfo));
        let swaps = parse_swaps(&read_or_empty(&self.swaps));
        if !name.is_empty() && !name.starts_with('.') && self.sys_block.join(&name).is_dir() {
            if let Some(d) = self.disk(&name, &mounts, &swaps) {
                return Ok(d);
            }
        }
        let holder = std::fs::read_dir(&self.sys_block)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| !name.is_empty() && e.path().join(&name).join("partition").exists());
        if let Some(e) = holder {
            anyhow::bail!(
                "{device} is a partition of {}; give the whole disk",
                self.dev.join(e.file_name()).display()
            );
        }
        anyhow::bail!("{device} is not a disk this machine has (see `lapterop-agent disks`)")
    }

    fn disk(&self, name: &str, mounts: &[Mount], swaps: &[String]) -> Option<Disk> {
        let base = self.sys_block.join(name);
        let sectors: u64 = read_trim(&base.join("size"))?.parse().ok()?;
        if sectors == 0 {
            return None;
        }
        let dev = read_trim(&base.join("dev")).unwrap_or_default();
        let num = |f: &str| read_trim(&base.join(f)).and_then(|s| s.parse::<u32>().ok());
        let flag = |f: &str| read_trim(&base.join(f)).is_some_and(|s| s == "1");
        let mut partitions = Vec::new();
        let mut table_uuids: Option<Vec<(u32, String)>> = None;
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                let pname = e.file_name().to_string_lossy().into_owned();
                let pdir = base.join(&pname);
                if !pdir.join("partition").exists() {
                    continue;
                }
                let pdev = read_trim(&pdir.join("dev")).unwrap_or_default();
                let number = read_trim(&pdir.join("partition")).and_then(|n| n.parse::<u32>().ok());
                let partuuid = self.partuuid(&pdir, &pname).or_else(|| {
                    table_uuids
                        .get_or_insert_with(|| read_partition_uuids(&self.dev.join(name)))
                        .iter()
                        .find(|(n, _)| Some(*n) == number)
                        .map(|(_, u)| u.clone())
                });
                partitions.push(Partition {
                    partuuid,
                    mounts: mounts_of(mounts, &pdev),
                    swap: swaps.iter().any(|s| s == &pname),
                    holders: list_dir(&pdir.join("holders")),
                    name: pname,
                });
            }
        }
        partitions.sort_by(|a, b| a.name.cmp(&b.name));
        let devdir = base.join("device");
        // NVMe and SCSI have it on the device, virtio-blk on the disk itself (`/sys/block/vda/serial`).
        let serial = read_trim(&devdir.join("serial"))
            .or_else(|| read_trim(&base.join("serial")))
            .or_else(|| vpd_serial(&devdir.join("vpd_pg80")));
        let firmware = read_trim(&devdir.join("firmware_rev"))
            .or_else(|| read_trim(&devdir.join("rev")))
            .or_else(|| read_trim(&devdir.join("fwrev")));
        let wwn = read_trim(&base.join("wwid")).or_else(|| read_trim(&devdir.join("wwid")));
        let is_mmc = name.starts_with("mmcblk");
        Some(Disk {
            path: self.dev.join(name),
            // An eMMC or SD card has no `model`; its CID product name is `name` (`DF4064`).
            model: read_trim(&devdir.join("model"))
                .or_else(|| is_mmc.then(|| read_trim(&devdir.join("name"))).flatten()),
            serial,
            firmware,
            wwn,
            transport: transport(name, &base),
            rotational: flag("queue/rotational"),
            removable: flag("removable"),
            card: name.starts_with("mmcblk") && read_trim(&devdir.join("type")).as_deref() == Some("SD"),
            read_only: flag("ro"),
            capacity_bytes: sectors.saturating_mul(512),
            logical_sector_size: num("queue/logical_block_size").unwrap_or(512),
            physical_sector_size: num("queue/physical_block_size").unwrap_or(512),
            backing_file: read_trim(&base.join("loop/backing_file")),
            mounts: mounts_of(mounts, &dev),
            swap: swaps.iter().any(|s| s == name),
            holders: list_dir(&base.join("holders")),
            partitions,
            boot_areas: if is_mmc { self.boot_areas(name) } else { Vec::new() },
            // EXT_CSD RPMB_SIZE_MULT [168] as the kernel exports it: units of 128 KiB.
            rpmb_bytes: if is_mmc {
                read_trim(&devdir.join("raw_rpmb_size_mult"))
                    .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                    .filter(|m| *m > 0)
                    .map(|m| m * 128 * 1024)
            } else {
                None
            },
            name: name.to_string(),
        })
    }

    /// PARTUUID from the partition's uevent (kernel ≥ 5.x), else from udev's `/dev/disk/by-partuuid`.
    fn partuuid(&self, pdir: &Path, pname: &str) -> Option<String> {
        let from_uevent = read_or_empty(&pdir.join("uevent"))
            .lines()
            .find_map(|l| l.strip_prefix("PARTUUID=").map(|v| v.trim().to_ascii_lowercase()));
        from_uevent.or_else(|| {
            std::fs::read_dir(self.dev.join("disk/by-partuuid"))
                .ok()?
                .flatten()
                .find(|e| {
                    std::fs::read_link(e.path())
                        .ok()
                        .is_some_and(|t| t.file_name().is_some_and(|n| n == pname))
                })
                .map(|e| e.file_name().to_string_lossy().to_ascii_lowercase())
        })
    }
}

/// Partition UUIDs straight from the partition table, for kernels and initramfs without them in
/// uevent or udev links: MBR `DISKID-NN` (disk signature at byte 440, little-endian, as the kernel
/// prints it) and GPT unique partition GUIDs. Empty when the device cannot be read.
fn read_partition_uuids(dev: &Path) -> Vec<(u32, String)> {
    use std::io::Read;
    let Ok(f) = sys::open_block_device(dev, Access::Probe) else {
        return Vec::new();
    };
    let mut head = vec![0u8; 34 * 4096];
    let mut n = 0;
    let mut f = f;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    head.truncate(n);
    parse_partition_uuids(&head)
}

/// The pure part of [`read_partition_uuids`]: `head` is the start of the disk.
fn parse_partition_uuids(head: &[u8]) -> Vec<(u32, String)> {
    let le32 = |b: &[u8], at: usize| b.get(at..at + 4).map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]));
    let le64 = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .and_then(|x| x.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if head.get(510..512) != Some(&[0x55, 0xAA]) {
        return Vec::new();
    }
    let protective = head.get(450) == Some(&0xEE);
    if !protective {
        let Some(id) = le32(head, 440) else { return Vec::new() };
        return (1..=4u32)
            .filter(|i| head.get(446 + 16 * (*i as usize - 1) + 4).is_some_and(|t| *t != 0))
            .map(|i| (i, format!("{id:08x}-{i:02x}")))
            .collect();
    }
    // GPT: the header is at LBA 1; try 512- and 4096-byte sectors.
    for ss in [512usize, 4096] {
        let Some(h) = head.get(ss..ss + 92) else { continue };
        if &h[..8] != b"EFI PART" {
            continue;
        }
        let (Some(lba), Some(count), Some(size)) = (le64(h, 72), le32(h, 80), le32(h, 84)) else {
            continue;
        };
        let (Ok(lba), Ok(size)) = (usize::try_from(lba), usize::try_from(size)) else {
            continue;
        };
        let mut out = Vec::new();
        for i in 0..count.min(128) {
            let at = lba * ss + i as usize * size;
            let Some(e) = head.get(at..at + 32) else { break };
            if e[..16].iter().all(|b| *b == 0) {
                continue;
            }
            let g = &e[16..32];
            out.push((
                i + 1,
                format!(
                    "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
                    g[3],
                    g[2],
                    g[1],
                    g[0],
                    g[5],
                    g[4],
                    g[7],
                    g[6],
                    hex::encode(&g[8..10]),
                    hex::encode(&g[10..16])
                ),
            ));
        }
        return out;
    }
    Vec::new()
}

/// Every reason this disk must not be written, from what discovery saw (no device is opened).
pub fn refusals(disk: &Disk, cfg: &SafetyConfig) -> Vec<Refusal> {
    let mut out = Vec::new();
    let whole = std::iter::once((&disk.name, &disk.mounts, disk.swap, &disk.holders, None));
    let parts = disk
        .partitions
        .iter()
        .map(|p| (&p.name, &p.mounts, p.swap, &p.holders, p.partuuid.as_ref()));
    for (name, mounts, swap, holders, partuuid) in whole.chain(parts) {
        for at in mounts {
            if Path::new(at).join(STICK_MARKER).exists() {
                out.push(Refusal::BootStick {
                    why: format!("{at} on {name} holds {STICK_MARKER}"),
                });
            }
            out.push(Refusal::Mounted {
                device: name.clone(),
                at: at.clone(),
            });
        }
        if swap {
            out.push(Refusal::Swap { device: name.clone() });
        }
        if !holders.is_empty() {
            out.push(Refusal::Holders {
                device: name.clone(),
                holders: holders.clone(),
            });
        }
        if let Some(u) = partuuid {
            if cfg.stick_partuuids.iter().any(|s| s == u) {
                out.push(Refusal::BootStick {
                    why: format!("partition {name} has the stick's partition UUID {u}"),
                });
            }
        }
    }
    if disk.read_only {
        out.push(Refusal::ReadOnly);
    }
    out
}

/// A disk we hold open with `O_EXCL | O_DIRECT`, with its geometry as the kernel reports it.
#[derive(Debug)]
pub struct Claimed {
    /// The disk as discovered.
    pub disk: Disk,
    /// The open device; nothing else can claim or mount it while this lives.
    pub file: File,
    /// `BLKGETSIZE64`.
    pub capacity_bytes: u64,
    /// `BLKSSZGET`.
    pub logical_sector_size: u32,
    /// `BLKPBSZGET`.
    pub physical_sector_size: u32,
}

/// The reasons a disk was refused, as one line.
pub fn refusal_text(why: &[Refusal]) -> String {
    why.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Checks every safety rule and opens the disk exclusively for writing, or says why not.
pub fn claim(disk: &Disk, cfg: &SafetyConfig) -> Result<Claimed, Vec<Refusal>> {
    let refused = refusals(disk, cfg);
    if !refused.is_empty() {
        return Err(refused);
    }
    let file = sys::open_block_device(&disk.path, Access::ExclusiveDirect).map_err(|e| vec![open_refusal(e)])?;
    // A Lapterop stick that is not mounted carries its marker all the same: read its partitions
    // (read-only, a second descriptor; the exclusive one keeps everyone else out meanwhile).
    let sector = disk.logical_sector_size.max(512);
    if let Ok(mut ro) = File::open(&disk.path) {
        // A disk whose first sectors cannot be read is no readable stick; it is wiped, and its errors
        // are recorded by the wipe.
        if let Ok(Some((offset, id))) = crate::stickmark::find(&mut ro, sector) {
            return Err(vec![Refusal::BootStick {
                why: format!("the FAT file system at byte {offset} holds {STICK_MARKER} (stick {id})"),
            }]);
        }
    }
    let unusable = |e: SysError| vec![Refusal::Unusable { error: e.to_string() }];
    if sys::is_read_only(&file).map_err(unusable)? {
        return Err(vec![Refusal::ReadOnly]);
    }
    let capacity_bytes = sys::block_size_bytes(&file).map_err(unusable)?;
    let logical_sector_size = sys::logical_sector_size(&file).map_err(unusable)?;
    let physical_sector_size = sys::physical_sector_size(&file).map_err(unusable)?;
    if logical_sector_size == 0 || capacity_bytes == 0 || capacity_bytes % u64::from(logical_sector_size) != 0 {
        return Err(vec![Refusal::Unusable {
            error: format!(
                "capacity {capacity_bytes} bytes is not a whole number of {logical_sector_size}-byte sectors"
            ),
        }]);
    }
    Ok(Claimed {
        disk: disk.clone(),
        file,
        capacity_bytes,
        logical_sector_size,
        physical_sector_size: physical_sector_size.max(logical_sector_size),
    })
}

/// Whether the disk can be opened exclusively right now (for the `disks` listing; closes it again).
pub fn probe_exclusive(disk: &Disk) -> Option<Refusal> {
    sys::open_block_device(&disk.path, Access::ExclusiveRead)
        .err()
        .map(open_refusal)
}

fn open_refusal(e: SysError) -> Refusal {
    if e.is_busy() {
        Refusal::InUse
    } else {
        Refusal::Unusable { error: e.to_string() }
    }
}

fn transport(name: &str, base: &Path) -> Transport {
    let real = std::fs::canonicalize(base)
        .unwrap_or_else(|_| base.to_path_buf())
        .to_string_lossy()
        .into_owned();
    if name.starts_with("loop") {
        Transport::Loop
    } else if real.contains("/usb") {
        Transport::Usb
    } else if name.starts_with("nvme") {
        Transport::Nvme
    } else if name.starts_with("mmcblk") {
        Transport::Mmc
    } else if name.starts_with("vd") || real.contains("/virtio") {
        Transport::Virtio
    } else if real.contains("/ata") {
        Transport::Sata
    } else if base.join("device/scsi_device").exists() || name.starts_with("sd") {
        Transport::Scsi
    } else {
        Transport::Other
    }
}

fn read_or_empty(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn read_trim(p: &Path) -> Option<String> {
    let s = std::fs::read_to_string(p).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn list_dir(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// SCSI VPD page 0x80 (unit serial number): 4-byte header, then the serial in ASCII.
fn vpd_serial(p: &Path) -> Option<String> {
    let bytes = std::fs::read(p).ok()?;
    let len = usize::from(*bytes.get(3)?);
    let s = String::from_utf8_lossy(bytes.get(4..4 + len)?).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some(Mount {
                dev: (*f.get(2)?).to_string(),
                at: unescape(f.get(4)?),
            })
        })
        .collect()
}

fn mounts_of(mounts: &[Mount], dev: &str) -> Vec<String> {
    if dev.is_empty() {
        return Vec::new();
    }
    mounts.iter().filter(|m| m.dev == dev).map(|m| m.at.clone()).collect()
}

/// Kernel names of the block devices in `/proc/swaps` (swap files are covered by the mount check).
fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(unescape)
        .filter(|p| p.starts_with("/dev/"))
        .filter_map(|p| {
            let real = std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(&p));
            real.file_name().map(|n| n.to_string_lossy().into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    /// A fake sysfs: sda (SATA-like, two partitions, sda1 mounted, sda2 swap), sdb (clean), sdc (held by
    /// dm-0, read-only), loop0 (size 0: skipped), sdd (stick: partition UUID listed).
    fn fake(root: &Path) -> Discovery {
        let sb = root.join("sys/block");
        let disk = |name: &str, dev: &str, size: &str| {
            write(&sb.join(name).join("size"), size);
            write(&sb.join(name).join("dev"), dev);
            write(&sb.join(name).join("queue/logical_block_size"), "512\n");
            write(&sb.join(name).join("queue/physical_block_size"), "4096\n");
            write(&sb.join(name).join("queue/rotational"), "0\n");
            write(&sb.join(name).join("ro"), "0\n");
        };
        let part = |disk: &str, name: &str, dev: &str, uuid: &str| {
            let d = sb.join(disk).join(name);
            write(&d.join("partition"), "1\n");
            write(&d.join("dev"), dev);
            write(&d.join("uevent"), &format!("MAJOR=8\nPARTN=1\nPARTUUID={uuid}\n"));
        };
        disk("sda", "8:0\n", "1000215216\n");
        write(&sb.join("sda/device/model"), "Samsung SSD 860 \n");
        write(&sb.join("sda/device/rev"), "RVT04B6Q\n");
        write(&sb.join("sda/device/wwid"), "naa.5002538e40a1b2c3\n");
        let mut vpd = vec![0u8, 0x80, 0, 8];
        vpd.extend_from_slice(b"S3Z9NB0K");
        std::fs::write(sb.join("sda/device/vpd_pg80"), vpd).unwrap();
        part("sda", "sda1", "8:1\n", "AAAA-01");
        part("sda", "sda2", "8:2\n", "aaaa-02");
        disk("sdb", "8:16\n", "2048\n");
        disk("sdc", "8:32\n", "2048\n");
        write(&sb.join("sdc/ro"), "1\n");
        write(&sb.join("sdc/holders/dm-0"), "");
        disk("loop0", "7:0\n", "0\n");
        disk("sdd", "8:48\n", "2048\n");
        part("sdd", "sdd1", "8:49\n", "1234abcd-01");
        let mnt = root.join("mnt\\stick");
        std::fs::create_dir_all(&mnt).unwrap();
        let mountinfo = format!(
            "22 27 0:21 / /proc rw - proc proc rw\n30 27 8:1 / {} rw - ext4 /dev/sda1 rw\n",
            root.join("mnt\\134stick").display()
        );
        write(&root.join("mountinfo"), &mountinfo);
        write(
            &root.join("swaps"),
            "Filename Type Size Used Priority\n/dev/sda2 partition 1000 0 -2\n",
        );
        Discovery {
            sys_block: sb,
            mountinfo: root.join("mountinfo"),
            swaps: root.join("swaps"),
            dev: root.join("dev"),
        }
    }

    /// The kernel's view of an eMMC and of an SD card (`drivers/mmc/core/bus.c`, `type`: `MMC`,
    /// `SD`), as on an HP Stream 11 with a card in its reader: neither carries `removable`.
    #[test]
    fn an_sd_card_is_a_card_and_an_emmc_is_not() {
        let t = tempfile::tempdir().unwrap();
        let d = fake(t.path());
        for (name, dev, kind, serial) in [
            ("mmcblk0", "179:0\n", "MMC\n", "0x1a2b3c4d\n"),
            ("mmcblk1", "179:8\n", "SD\n", "0xdeadbeef\n"),
        ] {
            let b = d.sys_block.join(name);
            write(&b.join("size"), "61071360\n");
            write(&b.join("dev"), dev);
            write(&b.join("removable"), "0\n");
            write(&b.join("device/type"), kind);
            write(&b.join("device/serial"), serial);
        }
        let disks = d.scan().unwrap();
        let by = |n: &str| disks.iter().find(|d| d.name == n).unwrap();
        assert_eq!(by("mmcblk0").transport, Transport::Mmc);
        assert!(!by("mmcblk0").card, "the laptop's eMMC is its own storage");
        assert!(by("mmcblk1").card && !by("mmcblk1").removable);
        assert!(!by("sda").card);
    }

    /// What the kernel's mmc block driver makes for a 32 GB eMMC (`drivers/mmc/core/block.c`:
    /// `mmcblk0` plus the boot areas `mmcblk0boot0`/`boot1` as their own read-only disks, the RPMB as
    /// `mmcblk0rpmb`), next to the software devices a live system can have.
    #[test]
    fn boot_areas_belong_to_their_emmc_and_software_devices_are_not_disks() {
        let t = tempfile::tempdir().unwrap();
        let d = fake(t.path());
        let dev = |name: &str, size: &str| {
            write(&d.sys_block.join(name).join("size"), size);
            write(&d.sys_block.join(name).join("dev"), "1:1\n");
        };
        dev("mmcblk0", "61071360\n");
        write(&d.sys_block.join("mmcblk0/device/type"), "MMC\n");
        write(&d.sys_block.join("mmcblk0/device/name"), "DF4032\n");
        write(&d.sys_block.join("mmcblk0/device/raw_rpmb_size_mult"), "0x20\n");
        for b in ["mmcblk0boot0", "mmcblk0boot1"] {
            dev(b, "8192\n");
            write(&d.sys_block.join(b).join("force_ro"), "1\n");
            write(&d.sys_block.join(b).join("ro"), "1\n");
        }
        dev("mmcblk0rpmb", "8192\n");
        for soft in ["dm-0", "md127", "zram0", "nbd0", "sr0", "ram0", "loop7"] {
            dev(soft, "2048\n");
        }
        let disks = d.scan().unwrap();
        let names: Vec<_> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["mmcblk0", "sda", "sdb", "sdc", "sdd"]);
        let emmc = &disks[0];
        assert_eq!(emmc.transport, Transport::Mmc);
        let areas: Vec<_> = emmc
            .boot_areas
            .iter()
            .map(|b| (b.name.as_str(), b.capacity_bytes, b.force_ro))
            .collect();
        assert_eq!(
            areas,
            [("mmcblk0boot0", 4 << 20, true), ("mmcblk0boot1", 4 << 20, true)]
        );
        assert_eq!(emmc.boot_areas[0].path, d.dev.join("mmcblk0boot0"));
        assert_eq!(emmc.rpmb_bytes, Some(4 << 20), "RPMB_SIZE_MULT 0x20 x 128 KiB");
        assert!(!emmc.read_only, "the boot areas' force_ro is not the eMMC's");
        assert!(disks[1].boot_areas.is_empty() && disks[1].rpmb_bytes.is_none());
        let e = d.find("mmcblk0boot1").unwrap_err().to_string();
        assert!(
            e.contains("boot area of the eMMC") && e.ends_with("wiped with it"),
            "{e}"
        );
        // Named explicitly, a loop device is a disk (the tests and `wipe --device` use them).
        assert_eq!(d.find("loop7").unwrap().transport, Transport::Loop);
    }

    #[test]
    fn scan_reads_identity_geometry_and_usage() {
        let t = tempfile::tempdir().unwrap();
        let d = fake(t.path());
        let disks = d.scan().unwrap();
        let names: Vec<_> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "sdb", "sdc", "sdd"], "loop0 is not scanned");
        let sda = &disks[0];
        assert_eq!(sda.model.as_deref(), Some("Samsung SSD 860"));
        assert_eq!(sda.serial.as_deref(), Some("S3Z9NB0K"));
        assert_eq!(sda.firmware.as_deref(), Some("RVT04B6Q"));
        assert_eq!(sda.wwn.as_deref(), Some("naa.5002538e40a1b2c3"));
        assert_eq!(sda.capacity_bytes, 1_000_215_216 * 512);
        assert_eq!((sda.logical_sector_size, sda.physical_sector_size), (512, 4096));
        assert_eq!(sda.partitions.len(), 2);
        assert_eq!(sda.partitions[0].partuuid.as_deref(), Some("aaaa-01"));
        assert_eq!(
            sda.partitions[0].mounts,
            [t.path().join("mnt\\stick").display().to_string()]
        );
        assert!(sda.partitions[1].swap);
        assert_eq!(disks[2].holders, ["dm-0"]);
        assert!(disks[2].read_only);
    }

    #[test]
    fn refusals_name_every_reason() {
        let t = tempfile::tempdir().unwrap();
        let d = fake(t.path());
        let disks = d.scan().unwrap();
        let cfg = SafetyConfig {
            stick_partuuids: vec!["1234abcd-01".into()],
        };
        let r = refusals(&disks[0], &cfg);
        assert!(
            matches!(&r[0], Refusal::Mounted { device, .. } if device == "sda1"),
            "{r:?}"
        );
        assert!(r
            .iter()
            .any(|r| matches!(r, Refusal::Swap { device } if device == "sda2")));
        assert!(refusals(&disks[1], &cfg).is_empty(), "sdb is free");
        let r = refusals(&disks[2], &cfg);
        assert!(r.contains(&Refusal::ReadOnly));
        assert!(r.iter().any(|r| matches!(r, Refusal::Holders { .. })));
        let r = refusals(&disks[3], &cfg);
        assert!(matches!(&r[..], [Refusal::BootStick { .. }]), "{r:?}");
        // The marker file on a mounted partition marks the stick, whatever its UUID.
        let marker = t.path().join("mnt\\stick").join(STICK_MARKER);
        std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
        std::fs::write(&marker, "").unwrap();
        let r = refusals(&d.scan().unwrap()[0], &SafetyConfig::default());
        assert!(r.iter().any(|r| matches!(r, Refusal::BootStick { .. })), "{r:?}");
    }

    #[test]
    fn find_refuses_partitions_and_unknown_names() {
        let t = tempfile::tempdir().unwrap();
        let d = fake(t.path());
        assert_eq!(d.find("sdb").unwrap().name, "sdb");
        assert!(d.find("sda1").unwrap_err().to_string().contains("partition of"));
        assert!(d.find("sdz").is_err());
    }

    #[test]
    fn partition_uuids_from_mbr_and_gpt() {
        let mut mbr = vec![0u8; 4096];
        mbr[440..444].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
        mbr[446 + 4] = 0x83;
        mbr[446 + 16 + 4] = 0x0c;
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        assert_eq!(
            parse_partition_uuids(&mbr),
            [(1, "1234abcd-01".to_string()), (2, "1234abcd-02".to_string())]
        );
        // GPT with one entry whose unique GUID is 01020304-0506-0708-090a-0b0c0d0e0f10 (mixed endian).
        let mut gpt = vec![0u8; 34 * 512];
        gpt[450] = 0xEE;
        gpt[510] = 0x55;
        gpt[511] = 0xAA;
        gpt[512..520].copy_from_slice(b"EFI PART");
        gpt[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        gpt[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        gpt[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        gpt[1024] = 0xAF; // type GUID not zero
        gpt[1024 + 16..1024 + 32].copy_from_slice(&[4, 3, 2, 1, 6, 5, 8, 7, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(
            parse_partition_uuids(&gpt),
            [(1, "01020304-0506-0708-090a-0b0c0d0e0f10".to_string())]
        );
        assert!(parse_partition_uuids(&[0u8; 512]).is_empty());
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape("/a\\\\b"), "/a\\\\b");
    }
}
