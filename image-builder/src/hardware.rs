//! Real laptops' PCI functions and the modules that drive them.
//!
//! The live stick's module set is chosen from `lspci -vvnnk` dumps of real notebooks
//! (`image-builder/tests/data/hardware/`), and its coverage is measured the way the running stick
//! decides it: each function's kernel modalias against the globs of a `modules.alias` file, the
//! same matching the agent's coldplug does (`agent/src/init/coldplug.rs`, both through the `glob`
//! crate, whose `*`, `?` and `[...]` are those of `fnmatch(3)`, which kmod uses).
//!
//! - [`parse_lspci`] reads a dump into [`PciFunction`]s: slot, class and programming interface,
//!   vendor, device and subsystem ids, revision, and the driver the probing kernel bound (a hint,
//!   never the answer);
//! - [`PciFunction::modalias`] is the string the kernel puts in `/sys/bus/pci/devices/*/modalias`
//!   (`drivers/pci/pci-sysfs.c`: `pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X`);
//! - [`ModuleAliases`] is a parsed `modules.alias`, and [`ModuleAliases::modules_for`] the modules
//!   whose globs match a modalias;
//! - [`Category`] groups functions by the classes whose coverage the stick reports.

use std::collections::BTreeSet;
use std::fmt;

/// Errors while reading an `lspci -vvnnk` dump.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    /// A function's first line lacks the `[CCSS]` class or the `[vvvv:dddd]` ids that `-nn` prints.
    #[error("line {line}: `{text}` is not an `lspci -vvnnk` function line (class [CCSS] and ids [vvvv:dddd]); take the dump with `lspci -vvnnk`")]
    BadFunction {
        /// The line number (from 1).
        line: usize,
        /// The text of the line.
        text: String,
    },
    /// A `Subsystem:` line lacks its `[vvvv:dddd]` ids.
    #[error("line {line}: `{text}` has no subsystem ids [vvvv:dddd]; take the dump with `lspci -vvnnk`")]
    BadSubsystem {
        /// The line number (from 1).
        line: usize,
        /// The text of the line.
        text: String,
    },
}

/// One PCI function as `lspci -vvnnk` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    /// `bus:device.function`, e.g. `00:1f.6`.
    pub slot: String,
    /// Base class and subclass, e.g. `0x0200` (Ethernet controller).
    pub class: u16,
    /// Programming interface (`prog-if`), 0 when lspci shows none.
    pub prog_if: u8,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Subsystem vendor id (0 when the function has no `Subsystem:` line).
    pub subsystem_vendor: u16,
    /// Subsystem device id (0 when the function has no `Subsystem:` line).
    pub subsystem_device: u16,
    /// Revision, when lspci shows one.
    pub revision: Option<u8>,
    /// What lspci calls it: `Ethernet controller: Intel Corporation Ethernet Connection I219-LM`.
    pub name: String,
    /// `Kernel driver in use:` on the probing system, a hint only.
    pub driver_in_use: Option<String>,
}

impl PciFunction {
    /// The kernel's modalias of this function (`drivers/pci/pci-sysfs.c`, `modalias_show`).
    pub fn modalias(&self) -> String {
        format!(
            "pci:v{:08X}d{:08X}sv{:08X}sd{:08X}bc{:02X}sc{:02X}i{:02X}",
            self.vendor,
            self.device,
            self.subsystem_vendor,
            self.subsystem_device,
            self.class >> 8,
            self.class & 0xff,
            self.prog_if
        )
    }

    /// The reported category of its class, if it is one the stick reports on.
    pub fn category(&self) -> Option<Category> {
        Category::of(self.class)
    }
}

impl fmt::Display for PciFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{:04x}] {:04x}:{:04x} {}",
            self.slot, self.class, self.vendor, self.device, self.name
        )
    }
}

/// The classes whose coverage the stick reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Class 01xx: SATA/AHCI, RAID mode, NVMe, IDE.
    MassStorage,
    /// Class 0805: SD host controllers, which also host soldered eMMC.
    SdHost,
    /// Class ff00 ("unassigned"): what Realtek's PCIe card readers (RTS5227, RTS522A, RTS525A, ...)
    /// report, and some Wi-Fi adapters (RTL8822BE).
    Unassigned,
    /// Class 0200: wired Ethernet.
    Ethernet,
    /// Class 0280: Wi-Fi and other network controllers (reported, not shipped).
    WiFi,
    /// Class 0c03: USB host controllers.
    UsbHost,
    /// Classes 0300, 0302 and 0380: VGA, 3D and other display controllers.
    Display,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 7] = [
        Category::MassStorage,
        Category::SdHost,
        Category::Unassigned,
        Category::Ethernet,
        Category::WiFi,
        Category::UsbHost,
        Category::Display,
    ];

    /// The category of a `[CCSS]` class.
    pub fn of(class: u16) -> Option<Category> {
        match class {
            0x0100..=0x01ff => Some(Category::MassStorage),
            0x0805 => Some(Category::SdHost),
            0xff00 => Some(Category::Unassigned),
            0x0200 => Some(Category::Ethernet),
            0x0280 => Some(Category::WiFi),
            0x0c03 => Some(Category::UsbHost),
            0x0300 | 0x0302 | 0x0380 => Some(Category::Display),
            _ => None,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Category::MassStorage => "mass storage (01xx)",
            Category::SdHost => "SD host (0805)",
            Category::Unassigned => "unassigned (ff00)",
            Category::Ethernet => "Ethernet (0200)",
            Category::WiFi => "Wi-Fi (0280)",
            Category::UsbHost => "USB host (0c03)",
            Category::Display => "display (03xx)",
        }
    }
}

/// The bracketed hex groups of a line: `[0106]`, `[8086:9d03]`, ...
fn bracketed(line: &str) -> impl Iterator<Item = &str> {
    line.split('[')
        .skip(1)
        .filter_map(|rest| rest.split_once(']').map(|(inside, _)| inside))
}

fn hex4(s: &str) -> Option<u16> {
    (s.len() == 4).then(|| u16::from_str_radix(s, 16).ok()).flatten()
}

/// The last `[vvvv:dddd]` of a line (names may contain other brackets before it).
fn id_pair(line: &str) -> Option<(u16, u16)> {
    bracketed(line)
        .filter_map(|b| {
            let (v, d) = b.split_once(':')?;
            Some((hex4(v)?, hex4(d)?))
        })
        .last()
}

/// The two-digit hex value after `key ` inside parentheses: `(rev 21)`, `(prog-if 01 [AHCI 1.0])`.
fn paren_value(line: &str, key: &str) -> Option<u8> {
    let start = line.find(&format!("({key} "))? + key.len() + 2;
    let value = line.get(start..start + 2)?;
    u8::from_str_radix(value, 16).ok()
}

/// Whether a line starts a function: `00:1f.6 ` (bus:device.function, optionally with a domain).
fn slot_of(line: &str) -> Option<&str> {
    let slot = line.split(' ').next()?;
    let tail = slot.rsplit(':').next()?;
    let (dev, func) = tail.split_once('.')?;
    let ok = slot.contains(':')
        && dev.len() == 2
        && func.len() == 1
        && slot.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    ok.then_some(slot)
}

/// Reads an `lspci -vvnnk` dump. Lines that belong to no function (or are capability details) are
/// skipped; a function line without its class or ids is an error.
pub fn parse_lspci(text: &str) -> Result<Vec<PciFunction>, HardwareError> {
    let mut out: Vec<PciFunction> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(slot) = slot_of(line) {
            let bad = || HardwareError::BadFunction {
                line: index + 1,
                text: line.to_owned(),
            };
            let rest = &line[slot.len()..];
            // The class is the first `[CCSS]` directly followed by `:` (the class name ends there).
            let (class_at, class) = rest
                .match_indices('[')
                .find_map(|(at, _)| {
                    let inner = rest.get(at + 1..at + 5)?;
                    (rest.get(at + 5..at + 7) == Some("]:")).then(|| hex4(inner).map(|c| (at, c)))?
                })
                .ok_or_else(bad)?;
            let (vendor, device) = id_pair(line).ok_or_else(bad)?;
            let class_name = rest[..class_at].trim();
            let after_class = rest[class_at + 7..].trim();
            let device_name = after_class
                .rfind(&format!("[{vendor:04x}:{device:04x}]"))
                .map_or(after_class, |i| after_class[..i].trim());
            out.push(PciFunction {
                slot: slot.to_owned(),
                class,
                prog_if: paren_value(line, "prog-if").unwrap_or(0),
                vendor,
                device,
                subsystem_vendor: 0,
                subsystem_device: 0,
                revision: paren_value(line, "rev"),
                name: format!("{class_name}: {device_name}"),
                driver_in_use: None,
            });
            continue;
        }
        let Some(current) = out.last_mut() else { continue };
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("Subsystem:") {
            let (sv, sd) = id_pair(rest).ok_or_else(|| HardwareError::BadSubsystem {
                line: index + 1,
                text: line.to_owned(),
            })?;
            current.subsystem_vendor = sv;
            current.subsystem_device = sd;
        } else if let Some(driver) = trimmed.strip_prefix("Kernel driver in use:") {
            current.driver_in_use = Some(driver.trim().to_owned());
        }
    }
    Ok(out)
}

/// A parsed `modules.alias`: (glob, module name) in file order.
#[derive(Debug, Clone, Default)]
pub struct ModuleAliases {
    aliases: Vec<(glob::Pattern, String)>,
}

impl ModuleAliases {
    /// Parses `alias GLOB MODULE` lines; comments and other lines are skipped, and so is a glob the
    /// `glob` crate cannot compile (the agent's coldplug skips the same ones).
    pub fn parse(text: &str) -> ModuleAliases {
        let aliases = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next()? == "alias").then_some(())?;
                let pattern = glob::Pattern::new(words.next()?).ok()?;
                Some((pattern, words.next()?.replace('-', "_")))
            })
            .collect();
        ModuleAliases { aliases }
    }

    /// The modules whose globs match `modalias`, sorted, without duplicates.
    pub fn modules_for(&self, modalias: &str) -> BTreeSet<&str> {
        self.aliases
            .iter()
            .filter(|(p, _)| p.matches(modalias))
            .map(|(_, m)| m.as_str())
            .collect()
    }

    /// Whether some module has exactly this alias glob (`acpi*:PNP0C0A:*`), and which.
    pub fn module_of_glob(&self, glob: &str) -> Option<&str> {
        self.aliases
            .iter()
            .find(|(p, _)| p.as_str() == glob)
            .map(|(_, m)| m.as_str())
    }

    /// Number of alias lines read.
    pub fn len(&self) -> usize {
        self.aliases.len()
    }

    /// Whether no alias was read.
    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
00:02.0 VGA compatible controller [0300]: Intel Corporation GeminiLake [UHD Graphics 600] [8086:3185] (rev 06) (prog-if 00 [VGA controller])
\tSubsystem: Lenovo UHD Graphics 605 [17aa:3801]
\tControl: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+
\tKernel driver in use: i915
\tKernel modules: i915

00:17.0 SATA controller [0106]: Intel Corporation Sunrise Point-LP SATA Controller [AHCI mode] [8086:9d03] (rev 21) (prog-if 01 [AHCI 1.0])
\tSubsystem: Dell Sunrise Point-LP SATA Controller [AHCI mode] [1028:06f3]
\tCapabilities: [80] MSI: Enable+ Count=1/1 Maskable- 64bit-
\t\tAddress: fee00418  Data: 0000
\tKernel driver in use: ahci

00:1c.0 SD Host controller [0805]: Intel Corporation Celeron/Pentium Silver Processor SDA Standard Compliant SD Host Controller [8086:31cc] (rev 06) (prog-if 01)
\tSubsystem: Lenovo Device [17aa:380b]

03:00.0 Non-Volatile memory controller [0108]: Samsung Electronics Co Ltd Device [144d:a809] (prog-if 02 [NVM Express])
\tKernel driver in use: nvme
";

    #[test]
    fn functions_are_read_with_their_ids_class_and_prog_if() {
        let f = parse_lspci(DUMP).unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(
            f[0],
            PciFunction {
                slot: "00:02.0".into(),
                class: 0x0300,
                prog_if: 0,
                vendor: 0x8086,
                device: 0x3185,
                subsystem_vendor: 0x17aa,
                subsystem_device: 0x3801,
                revision: Some(6),
                name: "VGA compatible controller: Intel Corporation GeminiLake [UHD Graphics 600]".into(),
                driver_in_use: Some("i915".into()),
            }
        );
        // A bracket inside the name ([AHCI mode]) is neither the class nor the ids.
        assert_eq!((f[1].class, f[1].device, f[1].prog_if), (0x0106, 0x9d03, 1));
        assert_eq!((f[1].subsystem_vendor, f[1].subsystem_device), (0x1028, 0x06f3));
        // "(prog-if 01)" without a name.
        assert_eq!((f[2].class, f[2].prog_if, f[2].revision), (0x0805, 1, Some(6)));
        // No revision, no subsystem line: zeros, as sysfs shows.
        assert_eq!((f[3].revision, f[3].subsystem_vendor, f[3].prog_if), (None, 0, 2));
        assert_eq!(f[3].category(), Some(Category::MassStorage));
    }

    #[test]
    fn modalias_is_the_kernels_format() {
        let f = parse_lspci(DUMP).unwrap();
        // drivers/pci/pci-sysfs.c: "pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X"
        assert_eq!(f[1].modalias(), "pci:v00008086d00009D03sv00001028sd000006F3bc01sc06i01");
        assert_eq!(f[3].modalias(), "pci:v0000144Dd0000A809sv00000000sd00000000bc01sc08i02");
    }

    #[test]
    fn broken_function_lines_are_refused_with_their_number() {
        let err =
            parse_lspci("00:02.0 VGA compatible controller: Intel Corporation GeminiLake (rev 06)\n").unwrap_err();
        assert!(matches!(err, HardwareError::BadFunction { line: 1, .. }), "{err}");
        let err = parse_lspci("00:02.0 VGA [0300]: Intel [8086:3185]\n\tSubsystem: Lenovo\n").unwrap_err();
        assert!(matches!(err, HardwareError::BadSubsystem { line: 2, .. }), "{err}");
    }

    #[test]
    fn aliases_match_like_fnmatch() {
        let aliases = ModuleAliases::parse(
            "# Aliases extracted from modules themselves.\n\
             alias pci:v*d*sv*sd*bc01sc06i01* ahci\n\
             alias pci:v00008086d00009D03sv*sd*bc*sc*i* ahci\n\
             alias pci:v*d*sv*sd*bc01sc08i02* nvme\n\
             alias pci:v000010ECd0000816[89]sv*sd*bc*sc*i* r8169\n\
             alias pci:v00001217d000085?0sv*sd*bc*sc*i* sdhci-pci\n\
             alias acpi*:PNP0C0A:* battery\n\
             softdep r8169 pre: realtek\n",
        );
        assert_eq!(aliases.len(), 6);
        let ahci = "pci:v00008086d00009D03sv00001028sd000006F3bc01sc06i01";
        assert_eq!(aliases.modules_for(ahci).into_iter().collect::<Vec<_>>(), ["ahci"]);
        let r8169 = |d: &str| aliases.modules_for(&format!("pci:v000010ECd0000{d}sv00001028sd00000000bc02sc00i00"));
        assert!(r8169("8168").contains("r8169") && r8169("8169").contains("r8169"));
        assert!(r8169("8136").is_empty(), "[89] is a set, not a wildcard");
        // `?` is one character; `-` in a module name is `_`.
        let o2 = aliases.modules_for("pci:v00001217d00008520sv00000000sd00000000bc08sc05i01");
        assert_eq!(o2.into_iter().collect::<Vec<_>>(), ["sdhci_pci"]);
        assert!(aliases
            .modules_for("pci:v00001217d000085200sv00000000sd00000000bc08sc05i01")
            .is_empty());
        assert_eq!(aliases.module_of_glob("acpi*:PNP0C0A:*"), Some("battery"));
        assert_eq!(aliases.module_of_glob("acpi*:ACPI0003:*"), None);
    }
}
