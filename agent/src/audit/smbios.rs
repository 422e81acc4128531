//! SMBIOS (DMTF DSP0134) from `/sys/firmware/dmi/tables/{smbios_entry_point,DMI}`.
//!
//! The `smbios-lib` crate validates the entry point, splits the structure table and bounds-checks every
//! field and string (each accessor returns an `Option` or a `Result`, and it has no `unsafe` on Linux),
//! so a corrupt or truncated table gives what could be read. We add what it leaves silent: a table that
//! stops before its end-of-table structure, a structure shorter than its type needs, a string number
//! that does not exist. Field offsets below are the ones of DSP0134 3.7, section 7.x of each type.

use lapterop_certificate::model::{SmbiosBoard, SmbiosChassis, SmbiosSystem};
use serde::{Deserialize, Serialize};
use smbioslib::{
    SMBiosData, SMBiosEntryPoint32, SMBiosEntryPoint64, SMBiosStringError, SMBiosVersion, UndefinedStruct,
};

use super::tree::Tree;
use super::Gap;

/// Where Linux exposes the tables.
pub const ENTRY_POINT_PATH: &str = "sys/firmware/dmi/tables/smbios_entry_point";
/// The structure table itself.
pub const TABLE_PATH: &str = "sys/firmware/dmi/tables/DMI";

/// BIOS / UEFI firmware (type 0).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    /// Vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Release date as the firmware writes it (`mm/dd/yyyy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// System BIOS major.minor release, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

/// One populated processor socket (type 4).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Processor {
    /// Socket designation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Version (the model string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Maximum speed in MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_speed_mhz: Option<u32>,
    /// Cores per socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// Threads per socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
}

/// One memory slot (type 17), populated or not.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryModule {
    /// Slot name on the board (`DIMM A`, `ChannelA-DIMM0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locator: Option<String>,
    /// Bank name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<String>,
    /// Whether a module sits in the slot (size known or unknown, but not "not installed").
    pub installed: bool,
    /// Module size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Memory type (`DDR4`, `LPDDR4`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Form factor (`SODIMM`, `DIMM`, `row-of-chips` for soldered memory, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_factor: Option<String>,
    /// Rated speed in MT/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mts: Option<u32>,
    /// Configured speed in MT/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_speed_mts: Option<u32>,
    /// Manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Part number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_number: Option<String>,
    /// Serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

impl MemoryModule {
    /// Soldered memory: the form factor is a chip, a row of chips or a die (cannot be replaced).
    pub fn soldered(&self) -> bool {
        matches!(self.form_factor.as_deref(), Some("chip" | "row-of-chips" | "die"))
    }
}

/// Everything read from the SMBIOS tables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Smbios {
    /// Version from the entry point (`3.3`).
    pub version: Option<String>,
    /// Type 0.
    pub firmware: Option<Firmware>,
    /// Type 1.
    pub system: Option<SmbiosSystem>,
    /// Type 2 (the first one).
    pub board: Option<SmbiosBoard>,
    /// Type 3 (the first one).
    pub chassis: Option<SmbiosChassis>,
    /// Type 4, populated sockets only.
    pub processors: Vec<Processor>,
    /// Type 17 of system-memory arrays, in table order.
    pub memory: Vec<MemoryModule>,
    /// Sum of "number of memory devices" over the system-memory arrays (type 16).
    pub memory_slots_declared: Option<u32>,
    /// Sum of the maximum capacities of the system-memory arrays, in bytes.
    pub memory_max_bytes: Option<u64>,
}

/// Reads and parses the tables under `tree`; every problem becomes a gap.
pub fn read(tree: &Tree, gaps: &mut Vec<Gap>) -> Smbios {
    let entry = match tree.read(ENTRY_POINT_PATH) {
        Ok(bytes) => bytes,
        Err(err) => {
            gaps.push(Gap::new("smbios", format!("cannot read {ENTRY_POINT_PATH}: {err}")));
            return Smbios::default();
        }
    };
    let table = match tree.read(TABLE_PATH) {
        Ok(bytes) => bytes,
        Err(err) => {
            gaps.push(Gap::new("smbios", format!("cannot read {TABLE_PATH}: {err}")));
            return Smbios::default();
        }
    };
    parse(&entry, table, gaps)
}

/// What the entry point says about the table.
struct Entry {
    version: SMBiosVersion,
    /// Exact table length (2.x) or its maximum (3.x).
    table_len: usize,
    exact: bool,
}

/// Validates the entry point with `smbios-lib` (anchor, length, checksums).
fn entry_point(bytes: &[u8]) -> Result<Entry, String> {
    if bytes.starts_with(b"_SM3_") {
        // The crate checks the anchor, the length byte and the checksum over that length.
        let raw = bytes.get(..SMBiosEntryPoint64::MINIMUM_SIZE).unwrap_or(bytes).to_vec();
        let ep = SMBiosEntryPoint64::try_from(raw).map_err(|e| format!("bad SMBIOS 3 entry point: {e}"))?;
        Ok(Entry {
            version: SMBiosVersion::new(ep.major_version(), ep.minor_version(), ep.docrev()),
            table_len: usize::try_from(ep.structure_table_maximum_size()).unwrap_or(usize::MAX),
            exact: false,
        })
    } else if bytes.starts_with(b"_SM_") {
        // The crate expects exactly the 31-byte structure (it panics on a longer slice), so cut it there.
        let raw = bytes.get(..SMBiosEntryPoint32::MINIMUM_SIZE).unwrap_or(bytes).to_vec();
        let ep = SMBiosEntryPoint32::try_from(raw).map_err(|e| format!("bad SMBIOS 2 entry point: {e}"))?;
        Ok(Entry {
            version: SMBiosVersion::new(ep.major_version(), ep.minor_version(), 0),
            table_len: usize::from(ep.structure_table_length()),
            exact: true,
        })
    } else {
        Err("no _SM_ or _SM3_ anchor in the entry point".to_string())
    }
}

/// Parses an entry point and a structure table (pure; the unit under the fixture tests).
pub fn parse(entry_bytes: &[u8], mut table: Vec<u8>, gaps: &mut Vec<Gap>) -> Smbios {
    let mut out = Smbios::default();
    let version = match entry_point(entry_bytes) {
        Ok(entry) => {
            if table.len() < entry.table_len && entry.exact {
                gaps.push(Gap::new(
                    "smbios",
                    format!(
                        "DMI table is {} bytes, the entry point says {}: truncated",
                        table.len(),
                        entry.table_len
                    ),
                ));
            }
            table.truncate(entry.table_len);
            Some(entry.version)
        }
        Err(err) => {
            // Without a version the structures are read at their own lengths, which is what matters.
            gaps.push(Gap::new("smbios", err));
            None
        }
    };
    out.version = version.map(|v| format!("{}.{}", v.major, v.minor));
    let data = SMBiosData::from_vec_and_version(table, version);
    let mut reader = Reader { gaps, version };

    let mut ended = false;
    let mut arrays: Vec<(u16, bool)> = Vec::new(); // (handle, system memory)
    let mut devices: Vec<(Option<u16>, MemoryModule)> = Vec::new();
    for s in data.iter() {
        match s.header.struct_type() {
            0 if out.firmware.is_none() => out.firmware = reader.firmware(s),
            1 if out.system.is_none() => out.system = reader.system(s),
            2 if out.board.is_none() => out.board = reader.board(s),
            3 if out.chassis.is_none() => out.chassis = reader.chassis(s),
            4 => out.processors.extend(reader.processor(s)),
            16 => {
                if let Some((handle, system, slots, max)) = reader.array(s) {
                    arrays.push((handle, system));
                    if system {
                        out.memory_slots_declared = Some(out.memory_slots_declared.unwrap_or(0) + slots);
                        out.memory_max_bytes = max.map(|m| out.memory_max_bytes.unwrap_or(0) + m);
                    }
                }
            }
            17 => devices.extend(reader.memory_device(s)),
            127 => {
                ended = true;
                break;
            }
            _ => {}
        }
    }
    if !ended {
        reader.gaps.push(Gap::new(
            "smbios",
            format!(
                "DMI table stops after {} structures without its end-of-table structure",
                data.iter().count()
            ),
        ));
    }
    if out.system.is_none() {
        reader
            .gaps
            .push(Gap::new("smbios", "no system information (type 1) structure"));
    }
    // Slots of arrays that hold system memory (or of an unknown array: keep rather than lose them).
    out.memory = devices
        .into_iter()
        .filter(
            |(array, _)| match array.and_then(|h| arrays.iter().find(|(a, _)| *a == h)) {
                Some((_, system)) => *system,
                None => true,
            },
        )
        .map(|(_, module)| module)
        .collect();
    out
}

struct Reader<'g> {
    gaps: &'g mut Vec<Gap>,
    version: Option<SMBiosVersion>,
}

impl Reader<'_> {
    /// Structure `s` must have at least `min` bytes of formatted area for the fields we read.
    fn long_enough(&mut self, s: &UndefinedStruct, min: usize, what: &str) -> bool {
        let len = s.fields.len();
        if len < min {
            self.gaps.push(Gap::new(
                "smbios",
                format!(
                    "{what} (type {}) is {len} bytes long, at least {min} needed",
                    s.header.struct_type()
                ),
            ));
            return false;
        }
        true
    }

    /// String field at `offset`, trimmed; `None` when the field holds no string (index 0 or blanks).
    fn string(&mut self, s: &UndefinedStruct, offset: usize, what: &str) -> Option<String> {
        let value = s.get_field_string(offset);
        let text = match value.as_ref() {
            Ok(text) => text.clone(),
            Err(SMBiosStringError::FieldOutOfBounds) => return None,
            Err(SMBiosStringError::InvalidStringNumber(n)) => {
                self.gaps.push(Gap::new(
                    "smbios",
                    format!("{what}: string number {n} is not in the structure"),
                ));
                return None;
            }
            Err(SMBiosStringError::Utf8(_)) => value.to_utf8_lossy()?,
        };
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }

    fn firmware(&mut self, s: &UndefinedStruct) -> Option<Firmware> {
        if !self.long_enough(s, 0x12, "BIOS information") {
            return None;
        }
        let release = match (s.get_field_byte(0x14), s.get_field_byte(0x15)) {
            (Some(major), Some(minor)) if major != 0xFF => Some(format!("{major}.{minor}")),
            _ => None,
        };
        Some(Firmware {
            vendor: self.string(s, 0x04, "bios.vendor"),
            version: self.string(s, 0x05, "bios.version"),
            date: self.string(s, 0x08, "bios.date"),
            release,
        })
    }

    fn system(&mut self, s: &UndefinedStruct) -> Option<SmbiosSystem> {
        if !self.long_enough(s, 0x08, "system information") {
            return None;
        }
        // UUID at 0x08 (SMBIOS 2.1+). Since 2.6 the first three fields are little-endian (7.2.1).
        let uuid = s.get_field_data(0x08, 0x18).map(|raw| {
            let le = self.version.is_none_or(|v| (v.major, v.minor) >= (2, 6));
            format_uuid(raw, le)
        });
        Some(SmbiosSystem {
            vendor: self.string(s, 0x04, "system.vendor"),
            product: self.string(s, 0x05, "system.product"),
            version: self.string(s, 0x06, "system.version"),
            serial: self.string(s, 0x07, "system.serial"),
            uuid,
            sku: self.string(s, 0x19, "system.sku"),
            family: self.string(s, 0x1A, "system.family"),
        })
    }

    fn board(&mut self, s: &UndefinedStruct) -> Option<SmbiosBoard> {
        if !self.long_enough(s, 0x08, "baseboard information") {
            return None;
        }
        Some(SmbiosBoard {
            vendor: self.string(s, 0x04, "board.vendor"),
            product: self.string(s, 0x05, "board.product"),
            version: self.string(s, 0x06, "board.version"),
            serial: self.string(s, 0x07, "board.serial"),
        })
    }

    fn chassis(&mut self, s: &UndefinedStruct) -> Option<SmbiosChassis> {
        if !self.long_enough(s, 0x09, "chassis information") {
            return None;
        }
        Some(SmbiosChassis {
            kind: s.get_field_byte(0x05).map(|t| chassis_kind(t & 0x7F).to_string()),
            vendor: self.string(s, 0x04, "chassis.vendor"),
            serial: self.string(s, 0x07, "chassis.serial"),
            asset_tag: self.string(s, 0x08, "chassis.asset_tag"),
        })
    }

    fn processor(&mut self, s: &UndefinedStruct) -> Option<Processor> {
        if !self.long_enough(s, 0x1A, "processor information") {
            return None;
        }
        // Status bit 6: socket populated (7.5).
        if s.get_field_byte(0x18).is_some_and(|status| status & 0x40 == 0) {
            return None;
        }
        let count = |byte: usize, word: usize| match s.get_field_byte(byte) {
            Some(0) | None => None,
            Some(0xFF) => s
                .get_field_word(word)
                .filter(|w| *w != 0 && *w != 0xFFFF)
                .map(u32::from),
            Some(n) => Some(u32::from(n)),
        };
        Some(Processor {
            socket: self.string(s, 0x04, "processor.socket"),
            manufacturer: self.string(s, 0x07, "processor.manufacturer"),
            version: self.string(s, 0x10, "processor.version"),
            max_speed_mhz: s.get_field_word(0x14).filter(|v| *v != 0).map(u32::from),
            cores: count(0x23, 0x2A),
            threads: count(0x25, 0x2E),
        })
    }

    /// Type 16: (handle, holds system memory, number of devices, maximum capacity in bytes).
    fn array(&mut self, s: &UndefinedStruct) -> Option<(u16, bool, u32, Option<u64>)> {
        if !self.long_enough(s, 0x0F, "physical memory array") {
            return None;
        }
        let system = s.get_field_byte(0x05) == Some(0x03);
        let slots = u32::from(s.get_field_word(0x0D).unwrap_or(0));
        let max = match s.get_field_dword(0x07) {
            Some(0x8000_0000) => s.get_field_qword(0x0F),
            Some(kib) => Some(u64::from(kib) * 1024),
            None => None,
        };
        Some((s.header.handle().0, system, slots, max))
    }

    /// Type 17: (array handle, slot).
    fn memory_device(&mut self, s: &UndefinedStruct) -> Option<(Option<u16>, MemoryModule)> {
        if !self.long_enough(s, 0x15, "memory device") {
            return None;
        }
        let (installed, size_bytes) = match s.get_field_word(0x0C) {
            Some(0) => (false, None),
            Some(0xFFFF) | None => (true, None),
            Some(0x7FFF) => (
                true,
                s.get_field_dword(0x1C).map(|mib| u64::from(mib & 0x7FFF_FFFF) << 20),
            ),
            Some(v) if v & 0x8000 != 0 => (true, Some(u64::from(v & 0x7FFF) << 10)),
            Some(v) => (true, Some(u64::from(v) << 20)),
        };
        let speed = |word: usize, dword: usize| match s.get_field_word(word) {
            Some(0) | None => None,
            Some(0xFFFF) => s.get_field_dword(dword).filter(|v| *v != 0),
            Some(v) => Some(u32::from(v)),
        };
        let mut module = MemoryModule {
            locator: self.string(s, 0x10, "memory.locator"),
            bank: self.string(s, 0x11, "memory.bank"),
            installed,
            size_bytes,
            kind: s.get_field_byte(0x12).and_then(memory_kind).map(str::to_string),
            form_factor: s.get_field_byte(0x0E).and_then(form_factor).map(str::to_string),
            speed_mts: speed(0x15, 0x54),
            configured_speed_mts: speed(0x20, 0x58),
            ..MemoryModule::default()
        };
        if installed {
            module.manufacturer = self.string(s, 0x17, "memory.manufacturer");
            module.serial = self.string(s, 0x18, "memory.serial");
            module.part_number = self.string(s, 0x1A, "memory.part_number");
        }
        let array = s.get_field_word(0x04).filter(|h| *h != 0xFFFE);
        Some((array, module))
    }
}

/// RFC 4122 text of an SMBIOS UUID; `le`: the first three fields are stored little-endian.
fn format_uuid(raw: &[u8], le: bool) -> String {
    let mut b = [0u8; 16];
    for (dst, src) in b.iter_mut().zip(raw) {
        *dst = *src;
    }
    if le {
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
    }
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Chassis type in words (7.4.1).
pub fn chassis_kind(t: u8) -> &'static str {
    match t {
        0x01 => "other",
        0x03 => "desktop",
        0x04 => "low-profile-desktop",
        0x05 => "pizza-box",
        0x06 => "mini-tower",
        0x07 => "tower",
        0x08 => "portable",
        0x09 => "laptop",
        0x0A => "notebook",
        0x0B => "hand-held",
        0x0C => "docking-station",
        0x0D => "all-in-one",
        0x0E => "sub-notebook",
        0x0F => "space-saving",
        0x10 => "lunch-box",
        0x11 => "main-server-chassis",
        0x17 => "rack-mount-chassis",
        0x18 => "sealed-case-pc",
        0x1E => "tablet",
        0x1F => "convertible",
        0x20 => "detachable",
        0x21 => "iot-gateway",
        0x22 => "embedded-pc",
        0x23 => "mini-pc",
        0x24 => "stick-pc",
        _ => "unknown",
    }
}

/// Chassis kinds that carry a battery and a built-in screen.
pub fn is_portable(kind: &str) -> bool {
    matches!(
        kind,
        "portable" | "laptop" | "notebook" | "hand-held" | "sub-notebook" | "tablet" | "convertible" | "detachable"
    )
}

/// Memory device type (7.18.2).
fn memory_kind(t: u8) -> Option<&'static str> {
    Some(match t {
        0x03 => "DRAM",
        0x07 => "RAM",
        0x0F => "SDRAM",
        0x12 => "DDR",
        0x13 => "DDR2",
        0x14 => "DDR2 FB-DIMM",
        0x18 => "DDR3",
        0x19 => "FBD2",
        0x1A => "DDR4",
        0x1B => "LPDDR",
        0x1C => "LPDDR2",
        0x1D => "LPDDR3",
        0x1E => "LPDDR4",
        0x20 => "HBM",
        0x21 => "HBM2",
        0x22 => "DDR5",
        0x23 => "LPDDR5",
        0x24 => "HBM3",
        0x01 => "other",
        _ => return None,
    })
}

/// Memory form factor (7.18.1).
fn form_factor(t: u8) -> Option<&'static str> {
    Some(match t {
        0x01 => "other",
        0x03 => "SIMM",
        0x04 => "SIP",
        0x05 => "chip",
        0x06 => "DIP",
        0x07 => "ZIP",
        0x08 => "proprietary-card",
        0x09 => "DIMM",
        0x0A => "TSOP",
        0x0B => "row-of-chips",
        0x0C => "RIMM",
        0x0D => "SODIMM",
        0x0E => "SRIMM",
        0x0F => "FB-DIMM",
        0x10 => "die",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_little_endian_since_2_6() {
        let raw: Vec<u8> = (0u8..16).collect();
        assert_eq!(format_uuid(&raw, true), "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(format_uuid(&raw, false), "00010203-0405-0607-0809-0a0b0c0d0e0f");
    }

    #[test]
    fn garbage_entry_point_is_a_gap() {
        let mut gaps = Vec::new();
        let out = parse(b"hello", vec![0; 8], &mut gaps);
        assert!(out.system.is_none());
        assert!(gaps.iter().any(|g| g.detail.contains("anchor")), "{gaps:?}");
    }
}
