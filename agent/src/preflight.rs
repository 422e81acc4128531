//! Pre-flight: what blocks the job on this laptop, found before anything is written, each with a short
//! code (`LAP-P01`), what was found and what to do in plain words (`docs/lead-guide.md` explains every
//! code).
//!
//! Every check is a pure function of a root directory (`/` on the laptop, a tree built by a test) and of
//! facts the disk layer already has ([`crate::plan::PlanDisk`]: transport, frozen, excluded). It reads
//! `sys/bus/pci/devices` (RAID / Intel VMD / SD host controllers), `sys/bus/platform/devices` (ACPI eMMC
//! hosts), `sys/block` (`mmcblk*`), `sys/class/net` and `proc/net/route` (a link with an IPv4 route),
//! `sys/class/power_supply` (battery level, charger: read by the audit's own reader). Nothing here
//! waits on hardware.

use std::fs;
use std::path::{Path, PathBuf};

use lapterop_certificate::model::Transport;
use serde::Serialize;

use crate::i18n::{Key, Lang};
use crate::network::WifiNow;
use crate::plan::{Exclusion, PlanDisk};

/// Intel Volume Management Device ids (Linux `drivers/pci/controller/vmd.c`, `vmd_ids`): with VMD on,
/// NVMe disks sit behind it and do not appear unless the `vmd` driver is loaded and the BIOS allows it.
const INTEL_VMD: &[u32] = &[
    0x201d, 0x28c0, 0x467f, 0x4c3d, 0x7d0b, 0x9a0b, 0xa77f, 0xad0b, 0xb06f, 0xb60b,
];
const INTEL: u32 = 0x8086;
/// PCI class 01h (mass storage) subclass 04h: RAID controller (Intel RST in RAID mode reports this).
const CLASS_RAID: u32 = 0x0104;
/// PCI class 08h (system peripheral) subclass 05h: SD host controller (eMMC and card readers).
const CLASS_SD_HOST: u32 = 0x0805;
/// ACPI ids of eMMC host controllers (Linux `drivers/mmc/host/sdhci-acpi.c`): Bay Trail / Cherry
/// Trail, Broxton / Apollo Lake, AMD.
const ACPI_EMMC: &[&str] = &["80860F14", "80865ACC", "INT33BB", "AMDI0040"];
/// A clock more than this many seconds after the build floor is far off too (15 years).
const CLOCK_FUTURE_SLACK: i64 = 15 * 365 * 86_400;
/// When the build sets no `SOURCE_DATE_EPOCH`: 2026-11-01T00:00:00Z. No laptop clock is right before it.
const DEFAULT_FLOOR: i64 = 1_793_491_200;

/// The earliest time a correct clock can show: the build's `SOURCE_DATE_EPOCH`, or a fixed floor.
pub fn clock_floor() -> i64 {
    option_env!("SOURCE_DATE_EPOCH")
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_FLOOR)
}

/// A pre-flight code; `docs/lead-guide.md` explains each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Code {
    /// No internal disk, but a RAID / RST / VMD controller.
    P01,
    /// eMMC / SD host without a driver or without its disk.
    P02,
    /// A disk behind a USB bridge.
    P03,
    /// A frozen drive.
    P04,
    /// Clock far off.
    P05,
    /// No network.
    P06,
    /// Battery low and not charging.
    P07,
    /// No internal disk and nothing that could hide one.
    P08,
    /// An SD card is in the card reader and is left alone.
    P09,
    /// A network cable is in, but DHCP gave no address yet.
    P10,
    /// A configured Wi-Fi network refused its passphrase.
    P11,
    /// No cable has an address, and Wi-Fi is joining a configured network.
    P12,
}

impl Code {
    /// The code as shown and logged (`LAP-P01`).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::P01 => "LAP-P01",
            Code::P02 => "LAP-P02",
            Code::P03 => "LAP-P03",
            Code::P04 => "LAP-P04",
            Code::P05 => "LAP-P05",
            Code::P06 => "LAP-P06",
            Code::P07 => "LAP-P07",
            Code::P08 => "LAP-P08",
            Code::P09 => "LAP-P09",
            Code::P10 => "LAP-P10",
            Code::P11 => "LAP-P11",
            Code::P12 => "LAP-P12",
        }
    }

    /// Whether it stops the job (otherwise the volunteer may go on, warned).
    pub fn severity(self) -> Severity {
        match self {
            Code::P01 | Code::P02 | Code::P07 | Code::P08 => Severity::Stop,
            Code::P03 | Code::P04 | Code::P05 | Code::P06 | Code::P09 | Code::P10 | Code::P11 | Code::P12 => {
                Severity::Warn
            }
        }
    }

    fn keys(self) -> (Key, Key) {
        match self {
            Code::P01 => (Key::P01Found, Key::P01Do),
            Code::P02 => (Key::P02Found, Key::P02Do),
            Code::P03 => (Key::P03Found, Key::P03Do),
            Code::P04 => (Key::P04Found, Key::P04Do),
            Code::P05 => (Key::P05Found, Key::P05Do),
            Code::P06 => (Key::P06Found, Key::P06Do),
            Code::P07 => (Key::P07Found, Key::P07Do),
            Code::P08 => (Key::P08Found, Key::P08Do),
            Code::P09 => (Key::P09Found, Key::P09Do),
            Code::P10 => (Key::P10Found, Key::P10Do),
            Code::P11 => (Key::P11Found, Key::P11Do),
            Code::P12 => (Key::P12Found, Key::P12Do),
        }
    }
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The job cannot start until it is solved.
    Stop,
    /// The volunteer may go on; the result will reflect it.
    Warn,
}

/// One thing pre-flight found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The code.
    pub code: Code,
    /// Values for the placeholders of the code's texts (`controller`, `disk`, `model`, `clock`, `percent`).
    pub args: Vec<(String, String)>,
}

impl Finding {
    /// A finding of `code` with its placeholder values.
    pub fn new(code: Code, args: &[(&str, String)]) -> Self {
        Self {
            code,
            args: args.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect(),
        }
    }

    /// What was found, in `lang`.
    pub fn found(&self, lang: Lang) -> String {
        self.text(lang, self.code.keys().0)
    }

    /// What to do, in `lang`.
    pub fn what_to_do(&self, lang: Lang) -> String {
        self.text(lang, self.code.keys().1)
    }

    fn text(&self, lang: Lang, key: Key) -> String {
        let args: Vec<(&str, &str)> = self.args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        lang.fill(key, &args)
    }
}

/// The network as pre-flight finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Net {
    /// A link with carrier and an IPv4 route.
    Routed,
    /// A link with carrier (named), no route: DHCP has not answered.
    Carrier(String),
    /// A Wi-Fi link with carrier (associated), no route yet: the lifecycle is asking for a lease.
    WifiAssociated,
    /// No link with carrier.
    None,
}

/// What pre-flight looks at.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Root holding `sys/` and `proc/`.
    pub root: &'a Path,
    /// The disks the disk layer found (the boot stick marked excluded).
    pub disks: &'a [PlanDisk],
    /// The laptop's clock now, Unix seconds.
    pub now: i64,
    /// Battery level below which an unplugged laptop stops the job, percent.
    pub battery_min_percent: u32,
    /// What Wi-Fi is doing while no link has a lease ([`crate::network::wifi_now`]).
    pub wifi: WifiNow,
}

/// Runs every check; findings come in code order, stops before warnings within the same code.
pub fn check(input: &Input<'_>) -> Vec<Finding> {
    let sys = Sys(input.root.to_path_buf());
    let mut out = Vec::new();
    let internal = input
        .disks
        .iter()
        .any(|d| d.excluded.is_none() && !matches!(d.transport, Transport::Usb | Transport::Loop));

    let pci = sys.pci();
    if !internal {
        let raid: Vec<String> = pci
            .iter()
            .filter(|p| p.class == CLASS_RAID || (p.vendor == INTEL && INTEL_VMD.contains(&p.device)))
            .map(PciFn::describe)
            .collect();
        if !raid.is_empty() {
            out.push(Finding::new(Code::P01, &[("controller", raid.join(", "))]));
        }
    }
    let has_mmcblk = sys.list("sys/block").iter().any(|n| {
        n.strip_prefix("mmcblk")
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
    });
    let mut sd_hosts: Vec<(String, bool)> = pci
        .iter()
        .filter(|p| p.class == CLASS_SD_HOST)
        .map(|p| (p.describe(), p.driver))
        .collect();
    for name in sys.list("sys/bus/platform/devices") {
        if ACPI_EMMC.iter().any(|id| name.starts_with(id)) {
            let bound = sys.exists(&format!("sys/bus/platform/devices/{name}/driver"));
            sd_hosts.push((format!("ACPI {name}"), bound));
        }
    }
    // A host without a driver cannot show its disk. A host with a driver but no disk is only suspicious
    // when no other internal disk exists (otherwise it is an empty card reader).
    let emmc: Vec<String> = sd_hosts
        .into_iter()
        .filter(|(_, bound)| !bound || (!internal && !has_mmcblk))
        .map(|(name, _)| name)
        .collect();
    if !emmc.is_empty() {
        out.push(Finding::new(Code::P02, &[("controller", emmc.join(", "))]));
    }
    if !internal && out.is_empty() {
        out.push(Finding::new(Code::P08, &[]));
    }

    for d in input.disks.iter().filter(|d| d.excluded.is_none()) {
        let model = d.model.clone().unwrap_or_else(|| "?".to_string());
        if d.transport == Transport::Usb {
            out.push(Finding::new(
                Code::P03,
                &[("disk", d.name.clone()), ("model", model.clone())],
            ));
        }
        if d.frozen {
            out.push(Finding::new(Code::P04, &[("disk", d.name.clone()), ("model", model)]));
        }
    }

    for d in input
        .disks
        .iter()
        .filter(|d| d.card && d.excluded == Some(Exclusion::External))
    {
        out.push(Finding::new(
            Code::P09,
            &[("disk", d.name.clone()), ("size", lapterop_words::size(d.size_bytes))],
        ));
    }

    let floor = clock_floor();
    if input.now < floor || input.now > floor.saturating_add(CLOCK_FUTURE_SLACK) {
        out.push(Finding::new(Code::P05, &[("clock", format_clock(input.now))]));
    }
    match sys.network() {
        Net::Routed => {}
        Net::Carrier(link) => out.push(Finding::new(Code::P10, &[("link", link)])),
        // Associated is not joined: the supplicant may still be in the 4-way handshake of a
        // network that then refuses the key.
        Net::WifiAssociated | Net::None => match &input.wifi {
            WifiNow::Refused(ssid) => out.push(Finding::new(Code::P11, &[("ssid", ssid.clone())])),
            WifiNow::Joining(ssid) => out.push(Finding::new(Code::P12, &[("ssid", ssid.clone())])),
            WifiNow::Off => out.push(Finding::new(Code::P06, &[])),
        },
    }
    if let Some(percent) = sys.battery_low(input.battery_min_percent) {
        out.push(Finding::new(Code::P07, &[("percent", percent.to_string())]));
    }
    out.sort_by_key(|f| f.code.as_str());
    out
}

/// Writes each finding to the per-machine log (in English, for the leads), one line per code.
pub fn log(log: &mut crate::sitelog::SiteLog, findings: &[Finding]) -> std::io::Result<()> {
    for f in findings {
        log.append(Some(f.code.as_str()), &f.found(Lang::En))?;
    }
    Ok(())
}

/// Whether any finding stops the job.
pub fn blocked(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.code.severity() == Severity::Stop)
}

/// `2026-11-26 15:04 UTC`; the raw number when out of the calendar's range.
pub fn format_clock(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => format!("{unix} s"),
    }
}

/// One PCI function.
struct PciFn {
    address: String,
    vendor: u32,
    device: u32,
    /// Class code without the programming interface (`0x0104`).
    class: u32,
    driver: bool,
}

impl PciFn {
    fn describe(&self) -> String {
        let what = if self.vendor == INTEL && INTEL_VMD.contains(&self.device) {
            "Intel VMD"
        } else if self.class == CLASS_RAID {
            "RAID"
        } else {
            "SD/eMMC"
        };
        format!("{what} {:04x}:{:04x} @ {}", self.vendor, self.device, self.address)
    }
}

/// A root directory read like sysfs: missing or garbage files are simply absent.
struct Sys(PathBuf);

impl Sys {
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn attr(&self, rel: &str) -> Option<String> {
        let text = fs::read_to_string(self.path(rel)).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }

    fn hex(&self, rel: &str) -> Option<u32> {
        u32::from_str_radix(self.attr(rel)?.trim_start_matches("0x"), 16).ok()
    }

    fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.path(rel)).is_ok()
    }

    fn list(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(rel))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn pci(&self) -> Vec<PciFn> {
        let mut out = Vec::new();
        for address in self.list("sys/bus/pci/devices") {
            let at = |a: &str| format!("sys/bus/pci/devices/{address}/{a}");
            let (Some(vendor), Some(device), Some(class)) =
                (self.hex(&at("vendor")), self.hex(&at("device")), self.hex(&at("class")))
            else {
                continue;
            };
            out.push(PciFn {
                driver: self.exists(&at("driver")),
                address,
                vendor,
                device,
                class: class >> 8,
            });
        }
        out
    }

    /// The network: a hardware interface with carrier and an IPv4 route through it (a route exists once
    /// DHCP gave an address), else the first one with carrier, else none.
    fn network(&self) -> Net {
        let routes = self.attr("proc/net/route").unwrap_or_default();
        let routed: Vec<&str> = routes
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let names = self.list("sys/class/net");
        let with_carrier: Vec<&String> = names
            .iter()
            .filter(|name| {
                let at = |a: &str| format!("sys/class/net/{name}/{a}");
                self.exists(&at("device")) && self.attr(&at("carrier")).as_deref() == Some("1")
            })
            .collect();
        let wireless = |name: &str| {
            let at = |a: &str| format!("sys/class/net/{name}/{a}");
            self.exists(&at("wireless")) || self.exists(&at("phy80211"))
        };
        if with_carrier.iter().any(|n| routed.contains(&n.as_str())) {
            Net::Routed
        } else if let Some(first) = with_carrier.iter().find(|n| !wireless(n)) {
            // A radio's carrier is its association, not a cable.
            Net::Carrier((*first).clone())
        } else if with_carrier.is_empty() {
            Net::None
        } else {
            Net::WifiAssociated
        }
    }

    /// The charge left in the laptop's batteries together when it is below `min` and no power comes in,
    /// read exactly as the audit reads them ([`crate::audit::battery`]): a mouse or a graphics card's
    /// USB-C port is not the laptop's, and two batteries count together.
    fn battery_low(&self, min: u32) -> Option<u32> {
        let (batteries, chargers) = crate::audit::battery::read_root(&self.0);
        crate::audit::battery::low(&batteries, &chargers, min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::{Exclusion, Health, Method};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A sysfs-like tree built in a temporary directory, removed on drop.
    struct Fixture(PathBuf);

    impl Fixture {
        fn new(name: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let root = std::env::temp_dir().join(format!("lapterop-preflight-{}-{n}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            Fixture(root)
        }
        fn file(&self, rel: &str, text: &str) -> &Self {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, format!("{text}\n")).unwrap();
            self
        }
        fn link(&self, rel: &str, target: &str) -> &Self {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, path).unwrap();
            self
        }
        fn pci(&self, addr: &str, vendor: u32, device: u32, class: u32, driver: Option<&str>) -> &Self {
            let at = format!("sys/bus/pci/devices/{addr}");
            self.file(&format!("{at}/vendor"), &format!("0x{vendor:04x}"))
                .file(&format!("{at}/device"), &format!("0x{device:04x}"))
                .file(&format!("{at}/class"), &format!("0x{class:06x}"));
            if let Some(d) = driver {
                self.link(&format!("{at}/driver"), &format!("../../../../bus/pci/drivers/{d}"));
            }
            self
        }
        /// A wired interface up with an IPv4 route: the network is fine.
        fn online(&self) -> &Self {
            self.link(
                "sys/class/net/enp0s31f6/device",
                "../../../devices/pci0000:00/0000:00:1f.6",
            )
            .file("sys/class/net/enp0s31f6/carrier", "1")
            .file(
                "proc/net/route",
                "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     enp0s31f6\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0",
            )
        }
        fn battery(&self, capacity: u32, status: &str, ac_online: bool) -> &Self {
            self.file("sys/class/power_supply/BAT0/type", "Battery")
                .file("sys/class/power_supply/BAT0/present", "1")
                .file("sys/class/power_supply/BAT0/capacity", &capacity.to_string())
                .file("sys/class/power_supply/BAT0/status", status)
                .file("sys/class/power_supply/AC/type", "Mains")
                .file("sys/class/power_supply/AC/online", if ac_online { "1" } else { "0" })
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn disk(name: &str, transport: Transport) -> PlanDisk {
        PlanDisk {
            name: name.into(),
            model: Some("Model X".into()),
            serial: Some("SER1234".into()),
            size_bytes: 256_000_000_000,
            transport,
            rotational: false,
            removable: false,
            card: false,
            health: Health::Good,
            method: Some(Method::Overwrite),
            excluded: None,
            frozen: false,
        }
    }

    fn stick() -> PlanDisk {
        PlanDisk {
            excluded: Some(Exclusion::BootStick),
            removable: true,
            ..disk("sdb", Transport::Usb)
        }
    }

    fn run(f: &Fixture, disks: &[PlanDisk]) -> Vec<Finding> {
        run_with_wifi(f, disks, WifiNow::Off)
    }

    /// [`run`] while Wi-Fi does `wifi`.
    fn run_with_wifi(f: &Fixture, disks: &[PlanDisk], wifi: WifiNow) -> Vec<Finding> {
        check(&Input {
            root: &f.0,
            disks,
            now: clock_floor() + 86_400,
            battery_min_percent: 30,
            wifi,
        })
    }

    #[test]
    fn an_sd_card_left_in_the_reader_is_pointed_out_unless_it_is_wiped() {
        let f = Fixture::new("sd-card");
        f.online();
        let card = PlanDisk {
            card: true,
            excluded: Some(Exclusion::External),
            size_bytes: 64_000_000_000,
            ..disk("mmcblk1", Transport::Mmc)
        };
        let internal = disk("mmcblk0", Transport::Mmc);
        let findings = run(&f, &[internal.clone(), card.clone(), stick()]);
        assert_eq!(codes(&findings), ["LAP-P09"]);
        assert_eq!(findings[0].code.severity(), Severity::Warn);
        assert!(
            findings[0].found(Lang::En).contains("mmcblk1, 64.0 GB"),
            "{}",
            findings[0].found(Lang::En)
        );
        assert!(findings[0].found(Lang::Nl).contains("SD-kaart"));
        // A site that wipes cards: the card is a target like any disk, nothing to point out.
        let wiped = PlanDisk { excluded: None, ..card };
        assert!(codes(&run(&f, &[internal, wiped])).is_empty());
    }

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn a_healthy_laptop_has_no_findings() {
        let f = Fixture::new("healthy");
        f.online()
            .battery(80, "Discharging", false)
            .pci("0000:00:17.0", INTEL, 0x9d03, 0x010601, Some("ahci"));
        let findings = run(&f, &[disk("sda", Transport::Sata), stick()]);
        assert_eq!(codes(&findings), Vec::<&str>::new());
        assert!(!blocked(&findings));
    }

    #[test]
    fn raid_mode_without_disks_says_switch_to_ahci() {
        let f = Fixture::new("raid");
        f.online().pci("0000:00:17.0", INTEL, 0x282a, 0x010400, None);
        let findings = run(&f, &[stick()]);
        assert_eq!(codes(&findings), ["LAP-P01"]);
        assert!(blocked(&findings));
        assert!(
            findings[0].found(Lang::En).contains("RAID 8086:282a @ 0000:00:17.0"),
            "{findings:?}"
        );
        assert!(findings[0].what_to_do(Lang::Nl).contains("AHCI"));
        // The same controller with a disk visible is no problem.
        assert!(run(&f, &[disk("sda", Transport::Sata), stick()]).is_empty());
    }

    #[test]
    fn intel_vmd_is_recognised_by_id_whatever_its_class() {
        let f = Fixture::new("vmd");
        f.online().pci("0000:00:0e.0", INTEL, 0x9a0b, 0x088000, Some("vmd"));
        let findings = run(&f, &[]);
        assert_eq!(codes(&findings), ["LAP-P01"]);
        assert!(
            findings[0].found(Lang::Nl).contains("Intel VMD 8086:9a0b"),
            "{findings:?}"
        );
        // Another vendor's device with the same id is not VMD.
        let g = Fixture::new("not-vmd");
        g.online().pci("0000:00:0e.0", 0x1022, 0x9a0b, 0x088000, None);
        assert_eq!(codes(&run(&g, &[])), ["LAP-P08"]);
    }

    #[test]
    fn emmc_without_driver_or_without_disk() {
        // An ACPI eMMC host with no driver bound: flagged even when another disk exists.
        let f = Fixture::new("emmc-acpi");
        f.online().file("sys/bus/platform/devices/80860F14:00/uevent", "");
        assert_eq!(codes(&run(&f, &[disk("sda", Transport::Sata)])), ["LAP-P02"]);
        // A bound PCI SD host, no mmcblk, no other disk: the eMMC did not come up.
        let g = Fixture::new("emmc-pci");
        g.online()
            .pci("0000:00:1c.0", INTEL, 0x9d2b, 0x080501, Some("sdhci-pci"));
        let findings = run(&g, &[]);
        assert_eq!(codes(&findings), ["LAP-P02"]);
        assert!(findings[0].found(Lang::En).contains("SD/eMMC 8086:9d2b"));
        // With its disk present it is fine; partitions and boot areas do not count as the disk.
        g.file("sys/block/mmcblk0boot0/size", "8192");
        assert_eq!(codes(&run(&g, &[])), ["LAP-P02"]);
        g.file("sys/block/mmcblk0/size", "61071360");
        assert_eq!(codes(&run(&g, &[])), ["LAP-P08"]);
        // A bound card reader beside an internal disk is not a problem.
        assert!(run(&g, &[disk("nvme0n1", Transport::Nvme)]).is_empty());
    }

    #[test]
    fn usb_bridge_and_frozen_drives_warn() {
        let f = Fixture::new("usb-frozen");
        f.online();
        let mut sata = disk("sda", Transport::Sata);
        sata.frozen = true;
        let findings = run(&f, &[sata, disk("sdc", Transport::Usb), stick()]);
        assert_eq!(codes(&findings), ["LAP-P03", "LAP-P04"]);
        assert!(!blocked(&findings));
        assert!(findings[0].found(Lang::En).contains("sdc"));
        assert!(findings[1].found(Lang::Nl).contains("Schijf sda (Model X) is bevroren"));
    }

    #[test]
    fn clock_before_the_build_or_far_ahead_is_flagged() {
        let f = Fixture::new("clock");
        f.online();
        let disks = [disk("sda", Transport::Sata)];
        let at = |now| {
            check(&Input {
                root: &f.0,
                disks: &disks,
                now,
                battery_min_percent: 30,
                wifi: WifiNow::Off,
            })
        };
        let floor = clock_floor();
        assert!(at(floor).is_empty());
        let early = at(floor - 86_400);
        assert_eq!(codes(&early), ["LAP-P05"]);
        assert!(early[0].found(Lang::En).contains(&format_clock(floor - 86_400)));
        assert_eq!(codes(&at(0)), ["LAP-P05"]);
        assert_eq!(codes(&at(floor + 20 * 365 * 86_400)), ["LAP-P05"]);
        assert_eq!(format_clock(0), "1970-01-01 00:00 UTC");
    }

    #[test]
    fn network_needs_carrier_and_an_ipv4_route_on_a_real_interface() {
        let disks = [disk("sda", Transport::Sata)];
        let f = Fixture::new("net-none");
        assert_eq!(codes(&run(&f, &disks)), ["LAP-P06"]);
        f.online();
        assert!(run(&f, &disks).is_empty());
        // Cable pulled.
        f.file("sys/class/net/enp0s31f6/carrier", "0");
        assert_eq!(codes(&run(&f, &disks)), ["LAP-P06"]);
        // Cable in but no address yet (DHCP still asking): its own code, naming the link.
        let g = Fixture::new("net-noroute");
        g.online().file("proc/net/route", "Iface\tDestination\n");
        let found = run(&g, &disks);
        assert_eq!(codes(&found), ["LAP-P10"]);
        assert!(found[0].found(Lang::En).contains("enp0s31f6"), "{:?}", found[0]);
        // Only loopback (no device link) has a route.
        let h = Fixture::new("net-lo");
        h.file("sys/class/net/lo/carrier", "1")
            .file("proc/net/route", "Iface\tDestination\nlo\t0000007F\n");
        assert_eq!(codes(&run(&h, &disks)), ["LAP-P06"]);
        // No carrier anywhere, and the Wi-Fi refused the configured key: that, not "no network".
        let refused = run_with_wifi(&h, &disks, WifiNow::Refused("Bieb".into()));
        assert_eq!(codes(&refused), ["LAP-P11"]);
        assert!(refused[0].found(Lang::En).contains("Bieb") && !blocked(&refused));
        assert!(refused[0].found(Lang::Nl).contains("Bieb"));
        // No carrier anywhere, Wi-Fi joining a configured network: that, not "no network".
        let joining = run_with_wifi(&h, &disks, WifiNow::Joining("Werkplaats".into()));
        assert_eq!(codes(&joining), ["LAP-P12"]);
        assert!(joining[0].found(Lang::En).contains("Werkplaats") && !blocked(&joining));
        assert!(joining[0].found(Lang::Nl).contains("Werkplaats"));
        // A Wi-Fi radio associated (carrier) without a route is no cable: never LAP-P10. While it
        // asks DHCP it is LAP-P12, while the key is being refused LAP-P11; once routed, nothing.
        let w = Fixture::new("net-wifi");
        w.link("sys/class/net/wlan0/device", "../../../devices/pci0000:00/0000:00:14.3")
            .link("sys/class/net/wlan0/phy80211", "../../ieee80211/phy0")
            .file("sys/class/net/wlan0/carrier", "1")
            .file("proc/net/route", "Iface\tDestination\n");
        assert_eq!(codes(&run(&w, &disks)), ["LAP-P06"]);
        let asking = run_with_wifi(&w, &disks, WifiNow::Joining("Werkplaats".into()));
        assert_eq!(codes(&asking), ["LAP-P12"]);
        let refused = run_with_wifi(&w, &disks, WifiNow::Refused("Bieb".into()));
        assert_eq!(codes(&refused), ["LAP-P11"]);
        w.file(
            "proc/net/route",
            "Iface\tDestination\tGateway\nwlan0\t00000000\t014DA8C0",
        );
        assert!(run(&w, &disks).is_empty());
    }

    #[test]
    fn low_battery_stops_only_when_no_power_comes_in() {
        let disks = [disk("sda", Transport::Sata)];
        let low = Fixture::new("bat-low");
        low.online().battery(12, "Discharging", false);
        let findings = run(&low, &disks);
        assert_eq!(codes(&findings), ["LAP-P07"]);
        assert!(blocked(&findings));
        assert_eq!(
            findings[0].found(Lang::Nl),
            "De batterij staat op 12% en laadt niet op."
        );
        for (capacity, status, ac) in [
            (12, "Discharging", true),
            (12, "Charging", false),
            (31, "Discharging", false),
        ] {
            let f = Fixture::new("bat-ok");
            f.online().battery(capacity, status, ac);
            assert!(run(&f, &disks).is_empty(), "{capacity} {status} {ac}");
        }
        // A wireless mouse at 5% is not the laptop's battery.
        let mouse = Fixture::new("bat-mouse");
        mouse
            .online()
            .file("sys/class/power_supply/hidpp_battery_0/type", "Battery")
            .file("sys/class/power_supply/hidpp_battery_0/scope", "Device")
            .file("sys/class/power_supply/hidpp_battery_0/capacity", "5")
            .file("sys/class/power_supply/hidpp_battery_0/status", "Discharging");
        assert!(run(&mouse, &disks).is_empty());
    }

    #[test]
    fn findings_go_to_the_machine_log_with_their_codes() {
        let f = Fixture::new("log");
        let findings = run(&f, &[stick()]);
        let dir = f.0.join("logs");
        let mut site = crate::sitelog::SiteLog::open(&dir, "PF1ABCDE").unwrap();
        log(&mut site, &findings).unwrap();
        let text = fs::read_to_string(site.path()).unwrap();
        let codes: Vec<&str> = text.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
        assert_eq!(codes, ["LAP-P06", "LAP-P08"], "{text}");
        assert!(text.contains("LAP-P06 No network"), "{text}");
    }

    #[test]
    fn no_disk_and_nothing_hiding_one() {
        let f = Fixture::new("empty");
        f.online();
        let findings = run(&f, &[stick()]);
        assert_eq!(codes(&findings), ["LAP-P08"]);
        assert!(blocked(&findings));
    }
}
