//! The container: fixed header, manifest, signature block, zstd frames. `docs/os-image-format.md` is
//! the specification; this module is its only implementation in the project.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// First eight bytes of every image file.
pub const MAGIC: [u8; 8] = *b"LAPOSIMG";
/// The format version this code writes.
pub const FORMAT_VERSION: u32 = 2;
/// Every format version this code reads (version 1 images stay installable).
pub const READ_VERSIONS: [u32; 2] = [1, 2];
/// Granularity of partition sizes and extents in format version 2 (version 1: [`BLOCK`]).
pub const SECTOR: u64 = 512;
/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 64;
/// Granularity of every extent offset and length.
pub const BLOCK: u64 = 4096;
/// Largest uncompressed `data` extent (one zstd frame each).
pub const MAX_CHUNK: u64 = 4 * 1024 * 1024;
/// Partition alignment on the target, in bytes.
pub const ALIGNMENT: u64 = 1024 * 1024;
/// Largest manifest the reader accepts (a 1 TiB image of 4 MiB chunks needs about 40 MiB).
pub const MAX_MANIFEST_LEN: u64 = 64 * 1024 * 1024;
/// Largest signature block the reader accepts.
pub const MAX_SIGNATURE_LEN: u64 = 4096;
/// Domain separation prefix of the signed bytes (followed by the manifest bytes as stored).
pub const SIGNING_PREFIX: &[u8] = b"lapterop-os-image-manifest-v1\n";

/// The parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version (1).
    pub version: u32,
    /// Manifest length in bytes.
    pub manifest_len: u64,
    /// Signature block length in bytes.
    pub signature_len: u64,
    /// Length of the frame section in bytes.
    pub data_len: u64,
}

/// Why a header is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than 64 bytes.
    #[error("the file is shorter than the 64-byte header: not a complete Lapterop OS image")]
    Short,
    /// Wrong magic.
    #[error("not a Lapterop OS image (magic bytes differ)")]
    Magic,
    /// Header checksum mismatch.
    #[error("the image header is corrupt (header checksum mismatch)")]
    Checksum,
    /// A version this code does not know.
    #[error(
        "image format version {0} is not supported (this program reads versions 1 and {FORMAT_VERSION}); use a matching agent"
    )]
    Version(u32),
    /// Non-zero flags or reserved bytes, or lengths out of range.
    #[error("the image header is invalid: {0}")]
    Invalid(&'static str),
}

impl Header {
    /// Offset of the first frame byte in the file.
    pub fn data_offset(&self) -> u64 {
        HEADER_LEN as u64 + self.manifest_len + self.signature_len
    }

    /// Total file length the header announces.
    pub fn file_len(&self) -> u64 {
        self.data_offset() + self.data_len
    }

    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        // 12..16 flags, zero in version 1.
        out[16..24].copy_from_slice(&self.manifest_len.to_le_bytes());
        out[24..32].copy_from_slice(&self.signature_len.to_le_bytes());
        out[32..40].copy_from_slice(&self.data_offset().to_le_bytes());
        out[40..48].copy_from_slice(&self.data_len.to_le_bytes());
        // 48..56 reserved, zero.
        let sum = blake3::hash(&out[0..56]);
        out[56..64].copy_from_slice(&sum.as_bytes()[0..8]);
        out
    }

    /// Parses and checks the 64 header bytes (magic, checksum, version, flags, lengths).
    pub fn decode(bytes: &[u8]) -> Result<Header, HeaderError> {
        let bytes = bytes.get(0..HEADER_LEN).ok_or(HeaderError::Short)?;
        if bytes[0..8] != MAGIC {
            return Err(HeaderError::Magic);
        }
        if blake3::hash(&bytes[0..56]).as_bytes()[0..8] != bytes[56..64] {
            return Err(HeaderError::Checksum);
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let version = u32_at(8);
        if !READ_VERSIONS.contains(&version) {
            return Err(HeaderError::Version(version));
        }
        if u32_at(12) != 0 || u64_at(48) != 0 {
            return Err(HeaderError::Invalid("flags or reserved bytes are not zero"));
        }
        let header = Header {
            version,
            manifest_len: u64_at(16),
            signature_len: u64_at(24),
            data_len: u64_at(40),
        };
        if header.manifest_len == 0 || header.manifest_len > MAX_MANIFEST_LEN {
            return Err(HeaderError::Invalid("manifest length out of range"));
        }
        if header.signature_len == 0 || header.signature_len > MAX_SIGNATURE_LEN {
            return Err(HeaderError::Invalid("signature length out of range"));
        }
        if u64_at(32) != header.data_offset() {
            return Err(HeaderError::Invalid(
                "data offset does not follow manifest and signature",
            ));
        }
        if header.data_offset().checked_add(header.data_len).is_none() {
            return Err(HeaderError::Invalid("data length out of range"));
        }
        Ok(header)
    }
}

/// The signed description of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, equal to the header's.
    pub format: u32,
    /// What the image is.
    pub image: ImageInfo,
    /// The partition table the installer lays out.
    pub table: TableInfo,
    /// Partitions in table order.
    pub partitions: Vec<Partition>,
    /// Root hash: blake3 of the RFC 8785 form of this manifest without `root`, lower-case hex.
    pub root: String,
}

/// Image identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInfo {
    /// Image name, for example `lapterop-standard`.
    pub name: String,
    /// Image version, for example `2026.11`.
    pub version: String,
    /// When it was packed, RFC 3339 UTC.
    pub created: String,
    /// Name and version of the packer.
    pub builder: String,
    /// CPU architecture of the installed system, for example `x86_64`.
    pub arch: String,
    /// Smallest disk, in bytes, the image fits on at any supported sector size.
    pub min_disk_bytes: u64,
}

/// Partition table policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableInfo {
    /// Always `gpt`.
    pub kind: String,
    /// Partition start alignment in bytes (1 MiB).
    pub alignment_bytes: u64,
    /// `random` or a fixed disk GUID.
    pub disk_guid: String,
}

/// Filesystem inside a partition, as far as the packer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    /// ext2/3/4 (free blocks from the block bitmaps).
    Ext4,
    /// NTFS (free clusters from `$Bitmap`; format version 2).
    Ntfs,
    /// FAT32 (free clusters from the FAT).
    Fat32,
    /// Anything else: nothing was skipped.
    Other,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// GPT partition name.
    pub label: String,
    /// GPT partition type GUID, upper-case text form.
    pub type_guid: String,
    /// `random` or a fixed unique partition GUID.
    pub partition_guid: String,
    /// GPT attribute bits.
    pub attributes: u64,
    /// The partition's size (version 2: a multiple of 512; version 1: of 4096), its minimum with `grow`.
    pub size_bytes: u64,
    /// The partition fills the disk up to the backup GPT (only the last partition may grow); an
    /// ext4 or NTFS filesystem in it is grown to the partition after install (version 2).
    pub grow: bool,
    /// Version 2: bytes the filesystem itself covers, and the extents with it (`[0, fs_bytes)`);
    /// `[fs_bytes, size_bytes)` lies past the filesystem inside the partition and is left alone.
    /// Absent in version 1 (the extents cover `size_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_bytes: Option<u64>,
    /// Version 2: the filesystem's allocation unit in bytes (ext4 block, FAT or NTFS cluster), if
    /// known; a target whose logical sector size is larger is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_block_size: Option<u32>,
    /// What the packer found inside.
    pub filesystem: Filesystem,
    /// Logical sector size the filesystem records, if it records one (FAT: bytes per sector).
    pub fs_sector_size: Option<u32>,
    /// Target logical sector sizes this partition can be installed on.
    pub sector_sizes: Vec<u32>,
    /// Sorted, contiguous extents covering `[0, size_bytes)`.
    pub extents: Vec<Extent>,
}

/// What an extent holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtentKind {
    /// Bytes stored in one zstd frame.
    Data,
    /// In use and all zero: the installer must make it read as zero.
    Zero,
    /// Free in the filesystem's allocation map: left as it is.
    Skip,
}

/// A byte range of a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extent {
    /// Offset within the partition, multiple of 512 (version 1: 4096).
    pub offset: u64,
    /// Length, multiple of 512 (version 1: 4096), not zero; at most 4 MiB for `data`.
    pub length: u64,
    /// Data, zero or skip.
    pub kind: ExtentKind,
    /// `data`: blake3 of the uncompressed bytes, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// `data`: offset of the frame from the start of the frame section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_offset: Option<u64>,
    /// `data`: length of the compressed frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_length: Option<u64>,
}

/// Names one extent in errors and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentRef {
    /// Index of the partition in the manifest (0-based).
    pub partition: usize,
    /// Partition label.
    pub label: String,
    /// Index of the extent in the partition (0-based).
    pub extent: usize,
    /// Offset within the partition.
    pub offset: u64,
    /// Length.
    pub length: u64,
}

impl std::fmt::Display for ExtentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "partition {} ({:?}) extent {} at offset {} length {}",
            self.partition + 1,
            self.label,
            self.extent,
            self.offset,
            self.length
        )
    }
}

/// A manifest rule that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the image manifest is invalid: {0}")]
pub struct ManifestError(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, ManifestError> {
    Err(ManifestError(msg.into()))
}

/// Root hash of a manifest value: blake3 of the RFC 8785 form without the `root` member.
pub fn root_hash(manifest: &Value) -> Result<String, ManifestError> {
    let Value::Object(map) = manifest else {
        return bad("not a JSON object");
    };
    let mut without = map.clone();
    without.remove("root");
    let bytes = lapterop_certificate::canonical::canonical_bytes(&Value::Object(without))
        .map_err(|e| ManifestError(e.to_string()))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

fn is_guid(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok() && text.len() == 36
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Manifest {
    /// Checks every structural rule of the specification; `data_len` is the header's frame section length.
    pub fn check(&self, data_len: u64) -> Result<(), ManifestError> {
        self.check_version(data_len, FORMAT_VERSION)
    }

    /// [`Manifest::check`] for an image whose header says `version`.
    pub fn check_version(&self, data_len: u64, version: u32) -> Result<(), ManifestError> {
        if self.format != version || !READ_VERSIONS.contains(&version) {
            return bad(format!("format {} differs from the header's {version}", self.format));
        }
        let unit = if version == 1 { BLOCK } else { SECTOR };
        if self.table.kind != "gpt" || self.table.alignment_bytes != ALIGNMENT {
            return bad("table must be gpt with 1 MiB alignment");
        }
        if self.table.disk_guid != "random" && !is_guid(&self.table.disk_guid) {
            return bad("table.disk_guid is neither \"random\" nor a GUID");
        }
        if self.partitions.is_empty() || self.partitions.len() > 128 {
            return bad("an image has 1 to 128 partitions");
        }
        let mut next_frame = 0u64;
        let mut layout_bytes = ALIGNMENT;
        for (pi, p) in self.partitions.iter().enumerate() {
            let name = format!("partition {} ({:?})", pi + 1, p.label);
            if p.label.encode_utf16().count() > 36 {
                return bad(format!("{name}: label longer than 36 UTF-16 units"));
            }
            if !is_guid(&p.type_guid) || (p.partition_guid != "random" && !is_guid(&p.partition_guid)) {
                return bad(format!("{name}: type or partition GUID malformed"));
            }
            if p.grow && pi + 1 != self.partitions.len() {
                return bad(format!("{name}: only the last partition may grow"));
            }
            if p.size_bytes == 0 || p.size_bytes % unit != 0 {
                return bad(format!("{name}: size_bytes is not a non-zero multiple of {unit}"));
            }
            if version == 1 && (p.fs_bytes.is_some() || p.fs_block_size.is_some() || p.filesystem == Filesystem::Ntfs) {
                return bad(format!(
                    "{name}: fs_bytes, fs_block_size and ntfs are version 2 members"
                ));
            }
            let covered = p.fs_bytes.unwrap_or(p.size_bytes);
            if covered == 0 || covered % unit != 0 || covered > p.size_bytes {
                return bad(format!(
                    "{name}: fs_bytes is not a non-zero multiple of {unit} at most size_bytes"
                ));
            }
            if p.fs_block_size.is_some_and(|b| b == 0 || b % 512 != 0) {
                return bad(format!("{name}: fs_block_size is not a multiple of 512"));
            }
            if p.sector_sizes.is_empty() || p.sector_sizes.iter().any(|s| *s != 512 && *s != 4096) {
                return bad(format!("{name}: sector_sizes must list 512 and/or 4096"));
            }
            let mut pos = 0u64;
            for (ei, e) in p.extents.iter().enumerate() {
                let here = format!("{name} extent {ei}");
                if e.offset != pos {
                    return bad(format!(
                        "{here}: starts at {} instead of {pos} (extents must be sorted and contiguous)",
                        e.offset
                    ));
                }
                if e.length == 0 || e.length % unit != 0 || e.offset % unit != 0 {
                    return bad(format!("{here}: offset or length not a non-zero multiple of {unit}"));
                }
                pos = match pos.checked_add(e.length) {
                    Some(v) if v <= covered => v,
                    _ => {
                        return bad(format!(
                            "{here}: runs past the filesystem's end (fs_bytes or size_bytes)"
                        ))
                    }
                };
                match e.kind {
                    ExtentKind::Data => {
                        let (Some(hash), Some(off), Some(len)) = (&e.blake3, e.frame_offset, e.frame_length) else {
                            return bad(format!(
                                "{here}: data extent without blake3, frame_offset and frame_length"
                            ));
                        };
                        if e.length > MAX_CHUNK || !is_hex64(hash) {
                            return bad(format!("{here}: longer than 4 MiB or blake3 malformed"));
                        }
                        if off != next_frame || len == 0 {
                            return bad(format!("{here}: frame at {off} instead of {next_frame} (frames are contiguous, in manifest order)"));
                        }
                        next_frame = match off.checked_add(len) {
                            Some(v) if v <= data_len => v,
                            _ => return bad(format!("{here}: frame runs past the frame section")),
                        };
                    }
                    ExtentKind::Zero | ExtentKind::Skip => {
                        if e.blake3.is_some() || e.frame_offset.is_some() || e.frame_length.is_some() {
                            return bad(format!("{here}: zero/skip extent with frame fields"));
                        }
                    }
                }
            }
            if pos != covered {
                return bad(format!("{name}: extents cover {pos} bytes, the filesystem {covered}"));
            }
            layout_bytes = layout_bytes
                .checked_add(p.size_bytes.div_ceil(ALIGNMENT) * ALIGNMENT)
                .ok_or_else(|| ManifestError("sizes overflow".into()))?;
        }
        if next_frame != data_len {
            return bad(format!(
                "frames cover {next_frame} bytes, the frame section has {data_len}"
            ));
        }
        if self.image.min_disk_bytes < layout_bytes + ALIGNMENT {
            return bad("image.min_disk_bytes is smaller than the partitions need");
        }
        Ok(())
    }

    /// Every data extent with its reference, in frame order.
    pub fn data_extents(&self) -> impl Iterator<Item = (ExtentRef, &Extent)> {
        self.extents_of(ExtentKind::Data)
    }

    /// Every extent of one kind with its reference.
    pub fn extents_of(&self, kind: ExtentKind) -> impl Iterator<Item = (ExtentRef, &Extent)> {
        self.partitions.iter().enumerate().flat_map(move |(pi, p)| {
            p.extents
                .iter()
                .enumerate()
                .filter(move |(_, e)| e.kind == kind)
                .map(move |(ei, e)| {
                    (
                        ExtentRef {
                            partition: pi,
                            label: p.label.clone(),
                            extent: ei,
                            offset: e.offset,
                            length: e.length,
                        },
                        e,
                    )
                })
        })
    }

    /// Bytes in extents of one kind.
    pub fn bytes_of(&self, kind: ExtentKind) -> u64 {
        self.extents_of(kind).map(|(_, e)| e.length).sum()
    }
}

/// Smallest disk (bytes) the partitions fit on: 1 MiB before, each partition rounded up to 1 MiB,
/// 1 MiB after (the backup GPT needs 16.5 KiB at 512-byte and 20 KiB at 4096-byte sectors).
pub fn min_disk_bytes(partitions: &[Partition]) -> u64 {
    ALIGNMENT
        + partitions
            .iter()
            .map(|p| p.size_bytes.div_ceil(ALIGNMENT) * ALIGNMENT)
            .sum::<u64>()
        + ALIGNMENT
}
