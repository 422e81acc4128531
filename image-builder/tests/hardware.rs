//! The stick's drivers and firmware against real laptops: the `lspci -vvnnk` dumps of 39 notebooks in
//! `tests/data/hardware/` (copied from `shared/hardware/`, see its README), matched against the
//! `modules.alias` files that depmod wrote into a stick the real binary built, read back from the
//! image (the FAT tree with mtools, the initramfs with the `cpio` crate), the way the booted agent
//! matches them. Every PCI function of the reported classes is covered (a shipped module's alias
//! matches), not shipped although Debian's kernel drives it (an alias in the full Debian kernel's
//! `modules.alias` matches), or not driven by Debian at all. The firmware test reads every module on
//! the stick with kmod's `modinfo` and checks the files against the pinned firmware packages.
//!
//! Needs apt, dpkg-deb, depmod and modinfo (kmod), grub-mkimage (grub-common) and mtools; when one is
//! missing the tests fail under `LAPTEROP_REQUIRE_ROOT_TESTS=1` and otherwise say loudly that they
//! were skipped.

// Test helpers outside #[test] functions may panic on any failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use lapterop_image_builder::debian::{self, Cache, Lock};
use lapterop_image_builder::firmware;
use lapterop_image_builder::hardware::{parse_lspci, Category, ModuleAliases, PciFunction};
use lapterop_image_builder::kmod::KernelTree;
use lapterop_testkit::report;

fn tools_present() -> bool {
    let on_path = |tool: &str| {
        ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).exists())
    };
    let tools = [
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("depmod", "kmod"),
        ("modinfo", "kmod"),
        ("grub-mkimage", "grub-common"),
        ("mcopy", "mtools"),
    ];
    let missing: Vec<&str> = tools.iter().filter(|(t, _)| !on_path(t)).map(|(_, p)| *p).collect();
    if missing.is_empty() {
        return true;
    }
    lapterop_testkit::skip(module_path!(), &format!("needs Debian packages {}", missing.join(", ")));
    false
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hardware")
}

/// One laptop of the corpus: its file, its name from MANIFEST.tsv and its PCI functions.
struct Laptop {
    file: String,
    name: String,
    functions: Vec<PciFunction>,
}

fn corpus() -> Vec<Laptop> {
    let manifest = std::fs::read_to_string(data_dir().join("MANIFEST.tsv")).unwrap();
    let mut laptops = Vec::new();
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, vendor, model) = (cols[0], cols[1], cols[2]);
        let text = std::fs::read_to_string(data_dir().join("lspci").join(file)).unwrap();
        let functions = parse_lspci(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!functions.is_empty(), "{file} has no PCI functions");
        laptops.push(Laptop {
            file: file.trim_end_matches(".txt").to_owned(),
            name: format!("{vendor} {model}"),
            functions,
        });
    }
    laptops
}

/// A stick built by the real binary, and what is read back from it.
struct Stick {
    _dir: tempfile::TempDir,
    /// `lapterop/` of the FAT partition, copied out with mcopy.
    fat: PathBuf,
    /// The kernel release.
    kver: String,
    /// `lib/modules/KVER/modules.alias` of the initramfs.
    initramfs_alias: String,
    /// The full Debian kernel's module directory (depmod's index of every module).
    debian_modules: PathBuf,
}

impl Stick {
    fn modules(&self) -> PathBuf {
        self.fat.join("modules").join(&self.kver)
    }
}

fn stick() -> &'static Stick {
    static STICK: OnceLock<Stick> = OnceLock::new();
    STICK.get_or_init(|| {
        let lock = Lock::read(&debian::default_lock_path()).unwrap();
        let cache = Cache::new(debian::default_cache_dir());
        let kernel = KernelTree::open(&cache.extract(lock.get("kernel").unwrap()).unwrap()).unwrap();
        let agent = cache.extract(lock.get("busybox").unwrap()).unwrap().join("bin/busybox");
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("stick.img");
        let out = Command::new(env!("CARGO_BIN_EXE_lapterop-image-builder"))
            .env("SOURCE_DATE_EPOCH", "1764000000")
            .args(["live", "--zstd-level", "3", "--agent"])
            .arg(&agent)
            .arg("--out")
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lapterop-image-builder live failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        report(String::from_utf8_lossy(&out.stdout).trim());
        let copied = Command::new("mcopy")
            .args(["-s", "-n", "-i"])
            .arg(format!("{}@@1M", img.display()))
            .args(["::/lapterop", "::/boot"])
            .arg(dir.path())
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert!(
            copied.status.success(),
            "mcopy: {}",
            String::from_utf8_lossy(&copied.stderr)
        );
        let kver = kernel.kver().to_owned();
        let initramfs_alias = initramfs_file(
            &dir.path().join("boot/initrd.img"),
            &format!("lib/modules/{kver}/modules.alias"),
        );
        Stick {
            fat: dir.path().join("lapterop"),
            kver,
            initramfs_alias,
            debian_modules: kernel.module_dir(),
            _dir: dir,
        }
    })
}

/// One file of a zstd-compressed newc initramfs, as text.
fn initramfs_file(initrd: &Path, name: &str) -> String {
    let mut archive = Vec::new();
    zstd::stream::read::Decoder::new(std::fs::File::open(initrd).unwrap())
        .unwrap()
        .read_to_end(&mut archive)
        .unwrap();
    let mut rest: &[u8] = &archive;
    loop {
        let mut reader = cpio::newc::Reader::new(rest).unwrap();
        assert!(!reader.entry().is_trailer(), "{name} is not in the initramfs");
        if reader.entry().name() == name {
            let mut text = String::new();
            reader.read_to_string(&mut text).unwrap();
            return text;
        }
        rest = reader.finish().unwrap();
    }
}

/// What happens to one function on the stick.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// A module on the stick claims it.
    Covered(BTreeSet<String>),
    /// Debian's kernel has a driver for it that the stick does not ship.
    NotShipped(BTreeSet<String>),
    /// No module of Debian's kernel claims it.
    NoDebianDriver,
}

#[derive(Debug, Default)]
struct Tally {
    functions: usize,
    covered: usize,
    not_shipped: usize,
    no_driver: usize,
}

impl Tally {
    /// Covered functions as a share of those Debian's kernel drives.
    fn share(&self) -> f64 {
        let driven = self.covered + self.not_shipped;
        if driven == 0 {
            1.0
        } else {
            self.covered as f64 / driven as f64
        }
    }
}

fn set(s: BTreeSet<&str>) -> BTreeSet<String> {
    s.into_iter().map(str::to_owned).collect()
}

#[test]
fn the_stick_drives_the_disks_usb_ethernet_and_intel_screens_of_real_laptops() {
    if !tools_present() {
        return;
    }
    let stick = stick();
    let on_stick = ModuleAliases::parse(&std::fs::read_to_string(stick.modules().join("modules.alias")).unwrap());
    let initramfs = ModuleAliases::parse(&stick.initramfs_alias);
    let debian = ModuleAliases::parse(&std::fs::read_to_string(stick.debian_modules.join("modules.alias")).unwrap());
    assert!(
        on_stick.len() > initramfs.len() && debian.len() > on_stick.len(),
        "alias counts: initramfs {}, stick {}, Debian {}",
        initramfs.len(),
        on_stick.len(),
        debian.len()
    );
    let laptops = corpus();
    assert_eq!(laptops.len(), 39, "the corpus has 39 laptops");

    let mut tallies: BTreeMap<Category, Tally> = BTreeMap::new();
    let mut uncovered = Vec::new();
    let mut not_in_initramfs = Vec::new();
    let mut intel_display = Tally::default();
    // Class ff00 holds Realtek's card readers (Debian's rtsx_pci drives them) and a Wi-Fi adapter.
    let mut card_readers = Tally::default();
    for laptop in &laptops {
        for f in &laptop.functions {
            let Some(category) = f.category() else { continue };
            let alias = f.modalias();
            let verdict = match on_stick.modules_for(&alias) {
                m if !m.is_empty() => Verdict::Covered(set(m)),
                _ => match debian.modules_for(&alias) {
                    m if !m.is_empty() => Verdict::NotShipped(set(m)),
                    _ => Verdict::NoDebianDriver,
                },
            };
            // Disks and USB must be driven by the initramfs alone: they come before the stick is mounted.
            if matches!(category, Category::MassStorage | Category::SdHost | Category::UsbHost)
                && matches!(verdict, Verdict::Covered(_))
                && initramfs.modules_for(&alias).is_empty()
            {
                not_in_initramfs.push(format!("{} {}: {f}", laptop.file, laptop.name));
            }
            let tally = tallies.entry(category).or_default();
            tally.functions += 1;
            let intel = category == Category::Display && f.vendor == 0x8086;
            let reader = category == Category::Unassigned && debian.modules_for(&alias).contains("rtsx_pci");
            for (sub, member) in [(&mut intel_display, intel), (&mut card_readers, reader)] {
                if member {
                    sub.functions += 1;
                    match verdict {
                        Verdict::Covered(_) => sub.covered += 1,
                        Verdict::NotShipped(_) => sub.not_shipped += 1,
                        Verdict::NoDebianDriver => sub.no_driver += 1,
                    }
                }
            }
            match &verdict {
                Verdict::Covered(_) => tally.covered += 1,
                Verdict::NotShipped(m) => {
                    tally.not_shipped += 1;
                    let m: Vec<&str> = m.iter().map(String::as_str).collect();
                    uncovered.push((
                        category,
                        format!(
                            "{} {}: {f}: Debian drives it with {}, not shipped",
                            laptop.file,
                            laptop.name,
                            m.join(", ")
                        ),
                    ));
                }
                Verdict::NoDebianDriver => {
                    tally.no_driver += 1;
                    uncovered.push((
                        category,
                        format!("{} {}: {f}: no driver in Debian's kernel", laptop.file, laptop.name),
                    ));
                }
            }
        }
    }

    report(&format!(
        "hardware coverage of the stick (kernel {}), {} laptops; covered = a module on the stick matches, \
         share of the functions Debian's kernel drives:",
        stick.kver,
        laptops.len()
    ));
    for category in Category::ALL {
        let t = tallies
            .get(&category)
            .unwrap_or_else(|| panic!("no {} in the corpus", category.name()));
        report(&format!(
            "  {:<22} {:>3} functions: {:>3} covered ({:5.1}%), {:>2} Debian drives but the stick does not ship, {:>2} no Debian driver",
            category.name(),
            t.functions,
            t.covered,
            100.0 * t.share(),
            t.not_shipped,
            t.no_driver
        ));
    }
    for (name, t) in [
        ("of which Intel display", &intel_display),
        ("card readers (rtsx)", &card_readers),
    ] {
        report(&format!(
            "  {name:<22} {:>3} functions: {:>3} covered ({:5.1}%)",
            t.functions,
            t.covered,
            100.0 * t.share()
        ));
    }
    report("uncovered functions:");
    for (category, line) in &uncovered {
        report(&format!("  [{}] {line}", category.name()));
    }

    let share = |c: Category| tallies[&c].share();
    let full = [Category::MassStorage, Category::SdHost, Category::UsbHost];
    for c in full {
        assert!(
            share(c) == 1.0,
            "{} is not fully covered: {:?}",
            c.name(),
            uncovered.iter().filter(|(k, _)| *k == c).collect::<Vec<_>>()
        );
    }
    assert!(
        share(Category::Ethernet) >= 0.95,
        "Ethernet coverage {:.3}",
        share(Category::Ethernet)
    );
    assert!(
        intel_display.functions > 30 && intel_display.covered == intel_display.functions,
        "Intel display: {intel_display:?}"
    );
    assert!(
        card_readers.functions >= 15 && card_readers.covered == card_readers.functions,
        "Realtek card readers: {card_readers:?}"
    );
    assert!(
        not_in_initramfs.is_empty(),
        "only on the FAT side: {not_in_initramfs:#?}"
    );
    // The corpus has what the report claims to measure: eMMC/SD hosts, NVMe, RAID-mode AHCI, Realtek
    // and Intel Ethernet, and Wi-Fi that is reported but not shipped.
    for (c, at_least) in [
        (Category::MassStorage, 30),
        (Category::SdHost, 10),
        (Category::Ethernet, 25),
        (Category::UsbHost, 50),
    ] {
        assert!(tallies[&c].functions >= at_least, "{}: {:?}", c.name(), tallies[&c]);
    }
    // Wi-Fi: every controller of the corpus (Intel 2200 to 9560 and CNVi, Atheros, Realtek, Broadcom).
    assert!(
        tallies[&Category::WiFi].functions >= 35 && share(Category::WiFi) == 1.0,
        "Wi-Fi is not fully covered: {:?} {:?}",
        tallies[&Category::WiFi],
        uncovered
            .iter()
            .filter(|(k, _)| *k == Category::WiFi)
            .collect::<Vec<_>>()
    );
}

/// Battery and charger (ACPI `PNP0C0A`, `ACPI0003`), UCSI (`PNP0CA0`) and the ACPI eMMC of Bay
/// Trail/Braswell and AMD laptops (`80860F14`, `AMDI0040`; three of the corpus have no PCI storage
/// controller at all) are in the stick's `modules.alias` as depmod wrote it.
#[test]
fn battery_charger_usb_c_and_acpi_emmc_aliases_are_on_the_stick() {
    if !tools_present() {
        return;
    }
    let stick = stick();
    let on_stick = ModuleAliases::parse(&std::fs::read_to_string(stick.modules().join("modules.alias")).unwrap());
    for (glob, module) in [
        ("acpi*:PNP0C0A:*", "battery"),
        ("acpi*:ACPI0003:*", "ac"),
        ("acpi*:PNP0CA0:*", "ucsi_acpi"),
        ("acpi*:80860F14:*", "sdhci_acpi"),
        ("acpi*:AMDI0040:*", "sdhci_acpi"),
    ] {
        assert_eq!(on_stick.module_of_glob(glob), Some(module), "{glob}");
    }
    // A real battery's modalias (what /sys/bus/acpi/devices/PNP0C0A:00/modalias says).
    assert_eq!(
        on_stick.modules_for("acpi:PNP0C0A:").into_iter().collect::<Vec<_>>(),
        ["battery"]
    );
    let initramfs = ModuleAliases::parse(&stick.initramfs_alias);
    assert_eq!(initramfs.module_of_glob("acpi*:80860F14:*"), Some("sdhci_acpi"));
    // The laptops without a PCI disk controller: their eMMC is on ACPI.
    let mut without = 0;
    for laptop in corpus() {
        let has_disk = laptop
            .functions
            .iter()
            .any(|f| matches!(f.category(), Some(Category::MassStorage | Category::SdHost)));
        if !has_disk {
            without += 1;
            report(&format!(
                "{} {}: no PCI disk controller (eMMC on ACPI: sdhci-acpi)",
                laptop.file, laptop.name
            ));
        }
    }
    assert!(without >= 2, "the corpus should hold ACPI-eMMC laptops");
}

/// The firmware files of a package, by name (links followed inside the package).
fn package_firmware(root: &Path, name: &str) -> Option<Vec<u8>> {
    ["lib/firmware", "usr/lib/firmware"]
        .iter()
        .find_map(|d| std::fs::read(root.join(d).join(name)).ok())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn every_packaged_firmware_a_shipped_module_names_is_on_the_stick_and_nothing_else() {
    if !tools_present() {
        return;
    }
    let stick = stick();
    let lock = Lock::read(&debian::default_lock_path()).unwrap();
    let cache = Cache::new(debian::default_cache_dir());
    let packages: Vec<(String, PathBuf)> = debian::NON_FREE_FIRMWARE_ROLES
        .iter()
        .chain(debian::FIRMWARE_ROLES_MAIN)
        .map(|r| {
            let e = lock.get(r).unwrap();
            (e.package.clone(), cache.extract(e).unwrap())
        })
        .collect();
    let mut files = Vec::new();
    walk(&stick.modules(), &mut files);
    let modules: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ko"))
        .collect();
    assert!(modules.len() > 100, "{} modules on the stick", modules.len());
    // kmod's own reader of `.modinfo`, independent of the builder's.
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut left_out = BTreeSet::new();
    for ko in &modules {
        let out = Command::new("modinfo")
            .args(["-F", "firmware"])
            .arg(ko)
            .output()
            .unwrap();
        assert!(out.status.success(), "modinfo {}", ko.display());
        let module = ko.file_stem().unwrap().to_string_lossy().into_owned();
        for name in String::from_utf8(out.stdout).unwrap().lines() {
            // The chip families the stick is for (the builder's policy, lapterop_image_builder::firmware).
            if !firmware::wanted(&module, name) {
                left_out.insert(name.to_owned());
                continue;
            }
            named.entry(name.to_owned()).or_default().insert(module.clone());
        }
    }
    let firmware_dir = stick.fat.join("firmware");
    let mut shipped = Vec::new();
    walk(&firmware_dir, &mut shipped);
    // Every file ships xz-compressed (the kernel reads NAME.xz), under the name the module asks for.
    let shipped: BTreeSet<String> = shipped
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&firmware_dir).unwrap().to_string_lossy().into_owned();
            rel.strip_suffix(firmware::XZ_SUFFIX)
                .unwrap_or_else(|| panic!("{rel} on the stick is not xz-compressed"))
                .to_owned()
        })
        .collect();
    let mut by_package: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    let mut stick_xz: BTreeMap<&str, u64> = BTreeMap::new();
    let mut not_packaged = Vec::new();
    for (name, by) in &named {
        match packages.iter().find_map(|(p, root)| {
            let packaged = firmware::ALTERNATIVES
                .iter()
                .find(|(n, _)| n == name)
                .map_or(name.as_str(), |(_, f)| *f);
            package_firmware(root, packaged).map(|b| (p, b))
        }) {
            Some((package, bytes)) => {
                let file = firmware_dir.join(format!("{name}{}", firmware::XZ_SUFFIX));
                let xz = std::fs::read(&file)
                    .unwrap_or_else(|_| panic!("{name} (named by {by:?}, in {package}) is not on the stick"));
                // The kernel's XZ decoder takes only CRC32 (or no) checks.
                assert_eq!(
                    xz[..8],
                    firmware::XZ_CRC32_HEADER,
                    "{name}.xz: not an xz stream with CRC32"
                );
                let out = Command::new("xz").arg("-dc").arg(&file).output().unwrap();
                assert!(out.status.success(), "xz -dc {}", file.display());
                assert!(out.stdout == bytes, "{name} on the stick differs from {package}'s");
                let e = stick_xz.entry(package).or_default();
                *e += xz.len() as u64;
                let e = by_package.entry(package).or_default();
                e.0 += 1;
                e.1 += bytes.len() as u64;
            }
            None => not_packaged.push(format!(
                "{name} (named by {})",
                by.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
    let unneeded: Vec<&String> = shipped.iter().filter(|s| !named.contains_key(*s)).collect();
    assert!(unneeded.is_empty(), "firmware no shipped module names: {unneeded:?}");
    report(&format!(
        "firmware: {} modules on the stick name {} files; on the stick: {}",
        modules.len(),
        named.len(),
        by_package
            .iter()
            .map(|(p, (n, b))| format!(
                "{n} from {p} ({:.1} MiB, {:.1} MiB xz)",
                *b as f64 / 1048576.0,
                stick_xz[p] as f64 / 1048576.0
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    report(&format!(
        "firmware left out (chip families no donated laptop has): {}",
        left_out.len()
    ));
    report(&format!(
        "firmware named but not packaged by Debian: {}",
        not_packaged.len()
    ));
    for line in &not_packaged {
        report(&format!("  {line}"));
    }
    // What the stick's drivers need from the packages is really there: Realtek's NIC firmware for
    // r8169 and r8152, i915's display firmware (DMC) of the corpus's Skylake/Kaby Lake/Gemini Lake GPUs.
    for want in [
        "rtl_nic/rtl8168h-2.fw",
        "rtl_nic/rtl8153a-4.fw",
        "i915/skl_dmc_ver1_27.bin",
        "i915/kbl_dmc_ver1_04.bin",
        "i915/glk_dmc_ver1_04.bin",
        "tigon/tg3_tso5.bin",
        // Wi-Fi of the corpus and its families, and cfg80211's signed regulatory database.
        "iwlwifi-7260-17.ucode",
        "iwlwifi-7265D-29.ucode",
        "iwlwifi-8265-36.ucode",
        "iwlwifi-9000-pu-b0-jf-b0-46.ucode",
        "iwlwifi-9260-th-b0-jf-b0-46.ucode",
        "iwlwifi-cc-a0-72.ucode",
        "iwlwifi-QuZ-a0-hr-b0-72.ucode",
        "iwlwifi-ty-a0-gf-a0-72.ucode",
        "iwlwifi-2000-6.ucode",
        "ath10k/QCA6174/hw3.0/firmware-6.bin",
        "ath10k/QCA6174/hw3.0/board-2.bin",
        "ath10k/QCA9377/hw1.0/firmware-6.bin",
        "rtw88/rtw8822c_fw.bin",
        "rtw88/rtw8821c_fw.bin",
        "rtw88/rtw8822b_fw.bin",
        "rtlwifi/rtl8192eefw.bin",
        "mediatek/WIFI_RAM_CODE_MT7961_1.bin",
        "brcm/brcmfmac4356-pcie.bin",
        "brcm/bcm43xx-0.fw",
        "regulatory.db",
        "regulatory.db.p7s",
    ] {
        assert!(shipped.contains(want), "{want} is not on the stick");
    }
}
