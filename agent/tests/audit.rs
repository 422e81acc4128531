//! The hardware audit against recorded trees built byte-exactly from the specifications: SMBIOS
//! (DMTF DSP0134 3.7 structure layouts and entry points), EDID (VESA E-EDID 1.4 base block) and the
//! power_supply class (kernel ABI `sysfs-class-power`). The generator below writes each laptop shape as a
//! `sys`/`proc` tree in a temporary directory; the real `lapterop-agent audit --root` binary reads it,
//! and its JSON must equal the golden file in `tests/fixtures/audit/` (set `LAPTEROP_UPDATE_GOLDEN=1` to
//! rewrite them after a deliberate format change, then review the diff).

// The fixture helpers are test code too: a failed conversion there is a broken fixture.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use lapterop_agent::audit::{self, Audit, Policy};
use lapterop_certificate::model::VerdictStatus;

// ---------------------------------------------------------------------------------------------------
// SMBIOS structure table and entry points (DSP0134 §5.2, §6.1, §7)
// ---------------------------------------------------------------------------------------------------

/// An SMBIOS structure table under construction.
#[derive(Default)]
struct Smbios {
    table: Vec<u8>,
    count: u16,
    max_struct: u16,
}

impl Smbios {
    /// Appends one structure: 4-byte header (type, length, handle), formatted area, string-set.
    fn add(&mut self, ty: u8, handle: u16, formatted: &[u8], strings: &[&str]) -> &mut Self {
        let start = self.table.len();
        self.table.push(ty);
        self.table.push(u8::try_from(4 + formatted.len()).unwrap());
        self.table.extend_from_slice(&handle.to_le_bytes());
        self.table.extend_from_slice(formatted);
        if strings.is_empty() {
            self.table.extend_from_slice(&[0, 0]);
        } else {
            for s in strings {
                assert!(
                    !s.is_empty(),
                    "SMBIOS strings are never empty (§6.1.3): use string number 0"
                );
                self.table.extend_from_slice(s.as_bytes());
                self.table.push(0);
            }
            self.table.push(0);
        }
        self.count += 1;
        self.max_struct = self.max_struct.max(u16::try_from(self.table.len() - start).unwrap());
        self
    }

    /// Type 127, end of table.
    fn end(&mut self) -> &mut Self {
        self.add(127, 0xFEFF, &[], &[])
    }

    /// SMBIOS 3.x 64-bit entry point (§5.2.2), 24 bytes.
    fn entry_v3(&self, minor: u8) -> Vec<u8> {
        let mut ep = b"_SM3_".to_vec();
        ep.extend_from_slice(&[0, 0x18, 3, minor, 0, 1, 0]);
        ep.extend_from_slice(&u32::try_from(self.table.len()).unwrap().to_le_bytes());
        ep.extend_from_slice(&0x000F_0000u64.to_le_bytes());
        ep[5] = checksum(&ep);
        ep
    }

    /// SMBIOS 2.x 32-bit entry point (§5.2.1), 31 bytes with the `_DMI_` intermediate part.
    fn entry_v2(&self, minor: u8) -> Vec<u8> {
        let mut ep = b"_SM_".to_vec();
        ep.extend_from_slice(&[0, 0x1F, 2, minor]);
        ep.extend_from_slice(&self.max_struct.to_le_bytes());
        ep.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        ep.extend_from_slice(b"_DMI_");
        ep.push(0);
        ep.extend_from_slice(&u16::try_from(self.table.len()).unwrap().to_le_bytes());
        ep.extend_from_slice(&0x000F_1000u32.to_le_bytes());
        ep.extend_from_slice(&self.count.to_le_bytes());
        ep.push(0x20 + minor);
        ep[0x15] = checksum(&ep[0x10..0x1F]);
        ep[4] = checksum(&ep);
        assert_eq!(ep.len(), 0x1F);
        ep
    }
}

/// The byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

fn w(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}

fn dw(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// Type 1, System Information (§7.2), 0x1B bytes. Strings: vendor, product, version, serial, sku, family.
fn system(t: &mut Smbios, uuid: [u8; 16], s: [&str; 6]) {
    let mut f = vec![1, 2, 3, 4];
    f.extend(uuid);
    f.extend([0x06, 5, 6]); // wake-up: power switch; SKU; family
    t.add(1, 0x0001, &f, &s);
}

/// Type 2, Baseboard (§7.3), 0x0F bytes. Strings: vendor, product, version, serial, asset, location.
fn board(t: &mut Smbios, s: [&str; 6]) {
    let mut f = vec![1, 2, 3, 4, 5, 0x01, 6];
    f.extend(w(0x0003)); // chassis handle
    f.extend([0x0A, 0]); // motherboard, no contained objects
    t.add(2, 0x0002, &f, &s);
}

/// Type 3, Chassis (§7.4), 0x16 bytes. Strings: vendor, version, serial, asset tag, SKU.
fn chassis(t: &mut Smbios, kind: u8, s: [&str; 5]) {
    let mut f = vec![1, kind, 2, 3, 4, 3, 3, 3, 3];
    f.extend(dw(0)); // OEM-defined
    f.extend([0, 1, 0, 0, 5]); // height, power cords, no contained elements, SKU string
    t.add(3, 0x0003, &f, &s);
}

/// Type 4, Processor (§7.5), 0x30 bytes (3.0 layout). Strings: socket, manufacturer, version.
fn processor(t: &mut Smbios, mhz: u16, cores: u8, threads: u8, s: [&str; 3]) {
    let mut f = vec![1, 0x03, 0xFE, 2]; // socket, central processor, family in family 2, manufacturer
    f.extend(0xBFEB_FBFF_0008_06EAu64.to_le_bytes()); // processor id (CPUID 1 EAX/EDX)
    f.extend([3, 0x8B]); // version string, voltage
    f.extend(w(100));
    f.extend(w(mhz));
    f.extend(w(mhz));
    f.extend([0x41, 0x01]); // populated + enabled; upgrade: other
    f.extend(w(0xFFFF));
    f.extend(w(0xFFFF));
    f.extend(w(0xFFFF));
    f.extend([0, 0, 0, cores, cores, threads]);
    f.extend(w(0x00EC)); // characteristics: 64-bit, multi-core, HT, execute protection, virtualisation
    f.extend(w(0x00CD)); // family 2: Core i5
    f.extend(w(u16::from(cores)));
    f.extend(w(u16::from(cores)));
    f.extend(w(u16::from(threads)));
    t.add(4, 0x0004, &f, &s);
}

/// Type 16, Physical Memory Array (§7.17), 0x17 bytes.
fn memory_array(t: &mut Smbios, handle: u16, max_kib: u32, slots: u16) {
    let mut f = vec![0x03, 0x03, 0x03]; // system board, system memory, no ECC
    f.extend(dw(max_kib));
    f.extend(w(0xFFFE));
    f.extend(w(slots));
    f.extend(0u64.to_le_bytes());
    t.add(16, handle, &f, &[]);
}

/// Type 17, Memory Device (§7.18), 0x28 bytes (2.8 layout). `size_mib` 0 = empty slot.
/// Strings: locator, bank, then (installed only) manufacturer, serial, asset tag, part number.
#[allow(clippy::too_many_arguments)]
fn memory_device(t: &mut Smbios, handle: u16, array: u16, size_mib: u16, form: u8, kind: u8, mts: u16, s: &[&str]) {
    let installed = size_mib != 0;
    let mut f = Vec::new();
    f.extend(w(array));
    f.extend(w(0xFFFE));
    f.extend(w(if installed { 64 } else { 0xFFFF }));
    f.extend(w(if installed { 64 } else { 0xFFFF }));
    f.extend(w(size_mib));
    f.extend([form, 0, 1, 2, if installed { kind } else { 0x02 }]);
    f.extend(w(if installed { 0x0080 } else { 0x0004 })); // synchronous / unknown
    f.extend(w(if installed { mts } else { 0 }));
    let (m, sn, a, p) = if installed { (3, 4, 5, 6) } else { (0, 0, 0, 0) };
    f.extend([m, sn, a, p, u8::from(installed)]);
    f.extend(dw(0));
    f.extend(w(if installed { mts } else { 0 }));
    f.extend(w(if installed { 1200 } else { 0 }));
    f.extend(w(if installed { 1200 } else { 0 }));
    f.extend(w(if installed { 1200 } else { 0 }));
    t.add(17, handle, &f, s);
}

// ---------------------------------------------------------------------------------------------------
// EDID 1.4 base block (VESA E-EDID Release A, Revision 2, §3)
// ---------------------------------------------------------------------------------------------------

struct Panel {
    pnp: &'static str,
    product: u16,
    year: u16,
    cm: (u8, u8),
    mm: (u16, u16),
    res: (u16, u16),
    name: &'static str,
}

fn edid(p: &Panel) -> Vec<u8> {
    let mut e = vec![0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00];
    let l = |i: usize| u16::from(p.pnp.as_bytes()[i] - b'A' + 1);
    e.extend(((l(0) << 10) | (l(1) << 5) | l(2)).to_be_bytes()); // §3.4.1, big-endian
    e.extend(p.product.to_le_bytes());
    e.extend(0u32.to_le_bytes()); // no serial number
    e.push(1); // week
    e.push(u8::try_from(p.year - 1990).unwrap());
    e.extend([1, 4]); // EDID 1.4
    e.push(0xA5); // digital, 8 bits per colour, DisplayPort
    e.extend([p.cm.0, p.cm.1]);
    e.push(0x78); // gamma 2.2
    e.push(0x0A); // RGB 4:4:4, preferred timing is native, continuous frequency off
    e.extend([0xEE, 0x95, 0xA3, 0x54, 0x4C, 0x99, 0x26, 0x0F, 0x50, 0x54]); // chromaticity (sRGB)
    e.extend([0, 0, 0]); // no established timings
    e.extend([0x01; 16]); // standard timings unused
                          // Detailed timing descriptor 1 (§3.10.2): pixel clock 10 kHz units, active/blanking, image size.
    let (hb, vb) = (160u16, 40u16);
    e.extend(14_250u16.to_le_bytes());
    e.push(lo(p.res.0));
    e.push(lo(hb));
    e.push((hi(p.res.0) << 4) | hi(hb));
    e.push(lo(p.res.1));
    e.push(lo(vb));
    e.push((hi(p.res.1) << 4) | hi(vb));
    e.extend([48, 32, 0x35, 0x00]); // sync offset/width
    e.push(lo(p.mm.0));
    e.push(lo(p.mm.1));
    e.push((hi(p.mm.0) << 4) | hi(p.mm.1));
    e.extend([0, 0, 0x18]); // no border, digital separate sync
                            // Descriptor 2: display product name (tag FC), 13 bytes, 0x0A then spaces.
    e.extend([0, 0, 0, 0xFC, 0]);
    let mut name = p.name.as_bytes().to_vec();
    name.push(0x0A);
    name.resize(13, 0x20);
    e.extend(name);
    // Descriptors 3-4: dummy (tag 10).
    for _ in 0..2 {
        e.extend([0, 0, 0, 0x10]);
        e.extend([0; 14]);
    }
    e.push(0); // no extension blocks
    let c = checksum(&e);
    e.push(c);
    assert_eq!(e.len(), 128);
    e
}

fn lo(v: u16) -> u8 {
    u8::try_from(v & 0xFF).unwrap()
}

fn hi(v: u16) -> u8 {
    u8::try_from((v >> 8) & 0x0F).unwrap()
}

// ---------------------------------------------------------------------------------------------------
// A laptop tree: sys/, proc/ and the disk list
// ---------------------------------------------------------------------------------------------------

struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(name: &str) -> Self {
        // Tests run in parallel threads of one process and several build the same shape.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("lapterop-audit-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        Self { root }
    }

    fn file(&self, rel: &str, bytes: impl AsRef<[u8]>) -> &Self {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
        self
    }

    fn link(&self, rel: &str, target: &str) -> &Self {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
        self
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn dmi(&self, entry: &[u8], table: &[u8]) {
        self.file("sys/firmware/dmi/tables/smbios_entry_point", entry);
        self.file("sys/firmware/dmi/tables/DMI", table);
    }

    /// `/proc/cpuinfo` in the x86 layout: one block per logical CPU.
    fn cpuinfo(&self, model: &str, cores: u32, threads: u32, flags: &str) {
        let mut text = String::new();
        for n in 0..threads {
            text.push_str(&format!(
                "processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: {model}\n\
                 physical id\t: 0\nsiblings\t: {threads}\ncore id\t\t: {}\ncpu cores\t: {cores}\n\
                 flags\t\t: {flags}\n\n",
                n % cores
            ));
        }
        self.file("proc/cpuinfo", text);
    }

    fn meminfo(&self, kib: u64) {
        self.file(
            "proc/meminfo",
            format!("MemTotal:       {kib} kB\nMemFree:         1000000 kB\n"),
        );
    }

    /// A power_supply entry: `attrs` are (attribute, value) pairs (sysfs-class-power names).
    fn power_supply(&self, name: &str, attrs: &[(&str, &str)]) {
        for (a, v) in attrs {
            self.file(&format!("sys/class/power_supply/{name}/{a}"), format!("{v}\n"));
        }
    }

    fn connector(&self, name: &str, edid: &[u8]) {
        self.file(&format!("sys/class/drm/{name}/edid"), edid);
        self.file(
            &format!("sys/class/drm/{name}/status"),
            if edid.is_empty() {
                "disconnected\n"
            } else {
                "connected\n"
            },
        );
    }

    fn net(&self, name: &str, mac: &str, bus: &str, driver: &str, wireless: bool, up: bool) {
        let base = format!("sys/class/net/{name}");
        self.file(&format!("{base}/address"), format!("{mac}\n"));
        self.file(&format!("{base}/operstate"), if up { "up\n" } else { "down\n" });
        if up {
            self.file(&format!("{base}/carrier"), "1\n");
            self.file(&format!("{base}/speed"), "1000\n");
        } else {
            self.file(&format!("{base}/carrier"), "0\n");
            self.file(&format!("{base}/speed"), "-1\n");
        }
        self.link(
            &format!("{base}/device/driver"),
            &format!("../../../../bus/{bus}/drivers/{driver}"),
        );
        self.link(&format!("{base}/device/subsystem"), &format!("../../../../bus/{bus}"));
        if wireless {
            self.file(&format!("{base}/wireless/.keep"), "");
        }
    }

    fn pci(&self, addr: &str, vendor: u16, device: u16, class: u32, driver: &str) {
        let base = format!("sys/bus/pci/devices/{addr}");
        self.file(&format!("{base}/vendor"), format!("0x{vendor:04x}\n"));
        self.file(&format!("{base}/device"), format!("0x{device:04x}\n"));
        self.file(&format!("{base}/class"), format!("0x{class:06x}\n"));
        self.link(&format!("{base}/driver"), &format!("../../../bus/pci/drivers/{driver}"));
    }

    fn usb(&self, port: &str, vendor: u16, product: u16, product_name: &str, interfaces: &[(u8, u8, u8)]) {
        let base = format!("sys/bus/usb/devices/{port}");
        self.file(&format!("{base}/idVendor"), format!("{vendor:04x}\n"));
        self.file(&format!("{base}/idProduct"), format!("{product:04x}\n"));
        self.file(&format!("{base}/product"), format!("{product_name}\n"));
        for (i, (c, s, p)) in interfaces.iter().enumerate() {
            let b = format!("sys/bus/usb/devices/{port}:1.{i}");
            self.file(&format!("{b}/bInterfaceClass"), format!("{c:02x}\n"));
            self.file(&format!("{b}/bInterfaceSubClass"), format!("{s:02x}\n"));
            self.file(&format!("{b}/bInterfaceProtocol"), format!("{p:02x}\n"));
        }
    }

    fn disks(&self, json: &str) {
        self.file("disks.json", json);
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Shape 1, "worn": a 14" business laptop whose battery holds 44% of its design capacity.
/// SMBIOS 3.2; 8 GiB in one of two SODIMM slots; NVMe SSD; eDP panel; Intel GPU, Wi-Fi, webcam.
fn worn() -> Tree {
    let t = Tree::new("worn");
    let mut s = Smbios::default();
    ids(
        &mut s,
        ((1, 40), ["LENOVO", "N24ET64W (1.39 )", "06/15/2021"]),
        [
            0x44, 0x45, 0x4c, 0x4c, 0x42, 0x00, 0x10, 0x39, 0x80, 0x52, 0xb4, 0xc0, 0x4f, 0x4d, 0x32, 0x32,
        ],
        [
            "LENOVO",
            "20L5CTO1WW",
            "ThinkPad T480",
            "PF1ABCDE",
            "LENOVO_MT_20L5_BU_Think_FM_ThinkPad T480",
            "ThinkPad T480",
        ],
        [
            "LENOVO",
            "20L5CTO1WW",
            "SDK0J40697 WIN",
            "L1HF81A00AB",
            "Not Available",
            "Not Available",
        ],
        (
            0x0A,
            ["LENOVO", "None", "PF1ABCDE", "No Asset Information", "LENOVO_MT_20L5"],
        ),
    );
    processor(
        &mut s,
        3400,
        4,
        8,
        [
            "U3E1",
            "Intel(R) Corporation",
            "Intel(R) Core(TM) i5-8350U CPU @ 1.70GHz",
        ],
    );
    memory_array(&mut s, 0x0010, 32 << 20, 2);
    memory_device(
        &mut s,
        0x0011,
        0x0010,
        8192,
        0x0D,
        0x1A,
        2400,
        &[
            "ChannelA-DIMM0",
            "BANK 0",
            "Samsung",
            "35A1B2C3",
            "None",
            "M471A1K43CB1-CRC",
        ],
    );
    memory_device(
        &mut s,
        0x0012,
        0x0010,
        0,
        0x0D,
        0x1A,
        2400,
        &["ChannelB-DIMM0", "BANK 2"],
    );
    s.end();
    t.dmi(&s.entry_v3(2), &s.table);
    t.cpuinfo(
        "Intel(R) Core(TM) i5-8350U CPU @ 1.70GHz",
        4,
        8,
        "fpu vme de pse tsc msr pae lm constant_tsc vmx est",
    );
    t.meminfo(7_990_000);
    t.power_supply(
        "BAT0",
        &[
            ("type", "Battery"),
            ("present", "1"),
            ("status", "Discharging"),
            ("technology", "Li-poly"),
            ("manufacturer", "SMP"),
            ("model_name", "01AV427"),
            ("serial_number", "  625"),
            ("energy_full_design", "24050000"),
            ("energy_full", "10710000"),
            ("energy_now", "5000000"),
            ("capacity", "46"),
            ("cycle_count", "811"),
        ],
    );
    t.power_supply("AC", &[("type", "Mains"), ("online", "1")]);
    t.power_supply(
        "hid-0003:046D:4069.0005-battery",
        &[("type", "Battery"), ("scope", "Device"), ("capacity", "80")],
    );
    let panel = Panel {
        pnp: "AUO",
        product: 0x313d,
        year: 2017,
        cm: (31, 17),
        mm: (309, 174),
        res: (1920, 1080),
        name: "B140HAN03.1",
    };
    t.connector("card0-eDP-1", &edid(&panel));
    t.connector("card0-DP-1", &[]);
    t.net("enp0s31f6", "8C:16:45:01:02:03", "pci", "e1000e", false, false);
    t.net("wlp3s0", "f8:59:71:0a:0b:0c", "pci", "iwlwifi", true, true);
    t.pci("0000:00:02.0", 0x8086, 0x5917, 0x030000, "i915");
    t.pci("0000:00:1f.3", 0x8086, 0x9d71, 0x040300, "snd_hda_intel");
    t.pci("0000:00:1f.6", 0x8086, 0x15d7, 0x020000, "e1000e");
    t.pci("0000:03:00.0", 0x8086, 0x24fd, 0x028000, "iwlwifi");
    t.pci("0000:04:00.0", 0x144d, 0xa808, 0x010802, "nvme");
    t.usb(
        "1-8",
        0x5986,
        0x2113,
        "Integrated Camera",
        &[(0x0e, 0x01, 0x00), (0x0e, 0x02, 0x00)],
    );
    t.usb("1-7", 0x8087, 0x0a2b, "", &[(0xe0, 0x01, 0x01), (0xe0, 0x01, 0x01)]);
    t.file("sys/bus/usb/devices/usb1/idVendor", "1d6b\n");
    t.disks(
        r#"[{"name":"nvme0n1","model":"SAMSUNG MZVLB256HAHQ-000L7","serial":"S41GNX0M123456","size_bytes":256060514304,
            "rotational":false,"transport":"nvme",
            "nvme":{"critical_warning":0,"percentage_used":3,"media_errors":0,"power_on_hours":4120}}]"#,
    );
    t
}

/// The identity structures every shape has: types 0, 1, 2 and 3.
fn ids(
    s: &mut Smbios,
    bios: ((u8, u8), [&str; 3]),
    uuid: [u8; 16],
    sys: [&str; 6],
    brd: [&str; 6],
    (kind, chs): (u8, [&str; 5]),
) {
    s.add(0, 0x0000, &bios_formatted(bios.0 .0, bios.0 .1), &bios.1);
    system(s, uuid, sys);
    board(s, brd);
    chassis(s, kind, chs);
}

/// Type 0 formatted area (§7.1) with a given system BIOS release.
fn bios_formatted(major: u8, minor: u8) -> Vec<u8> {
    let mut f = vec![1, 2];
    f.extend(w(0xE800));
    f.extend([3, 0xFF]);
    f.extend(0x0000_0000_0001_0880u64.to_le_bytes());
    f.extend([0x03, 0x0D, major, minor, 0xFF, 0xFF]);
    f
}

/// Shape 2, "placeholder": a white-box 15.6" laptop whose firmware was never filled in (system serial
/// "To Be Filled By O.E.M.", board serial "Default string", chassis serial "Chassis Serial Number").
/// SMBIOS 2.8 with the 32-bit entry point; 4 GiB soldered LPDDR4; SATA SSD; LVDS panel; battery reporting
/// charge (µAh) instead of energy; the AC adapter is offline.
fn placeholder() -> Tree {
    let t = Tree::new("placeholder");
    let mut s = Smbios::default();
    ids(
        &mut s,
        ((5, 12), ["American Megatrends Inc.", "1.07.12RTR1", "03/27/2019"]),
        [
            0x5e, 0x1a, 0x9d, 0x7c, 0x2b, 0x61, 0xe8, 0x11, 0xa1, 0x5d, 0x80, 0xfa, 0x5b, 0x11, 0x22, 0x33,
        ],
        [
            "Notebook",
            "N650DU",
            "Not Applicable",
            "To Be Filled By O.E.M.",
            "Not Applicable",
            "Not Applicable",
        ],
        [
            "Notebook",
            "N650DU",
            "Not Applicable",
            "Default string",
            "Default string",
            "Default string",
        ],
        (
            0x09,
            [
                "No Enclosure",
                "N/A",
                "Chassis Serial Number",
                "No Asset Tag",
                "Default string",
            ],
        ),
    );
    processor(
        &mut s,
        2400,
        2,
        4,
        [
            "U3E1",
            "Intel(R) Corporation",
            "Intel(R) Core(TM) i3-7100U CPU @ 2.40GHz",
        ],
    );
    memory_array(&mut s, 0x0010, 8 << 20, 1);
    memory_device(
        &mut s,
        0x0011,
        0x0010,
        4096,
        0x0B,
        0x1E,
        2133,
        &[
            "Onboard",
            "BANK 0",
            "Micron",
            "00000000",
            "Not Specified",
            "MT53B512M32D2NP",
        ],
    );
    s.end();
    t.dmi(&s.entry_v2(8), &s.table);
    t.cpuinfo(
        "Intel(R) Core(TM) i3-7100U CPU @ 2.40GHz",
        2,
        4,
        "fpu vme de pse tsc msr pae lm constant_tsc vmx",
    );
    t.meminfo(3_913_000);
    t.power_supply(
        "BAT0",
        &[
            ("type", "Battery"),
            ("present", "1"),
            ("status", "Discharging"),
            ("technology", "Li-ion"),
            ("manufacturer", "Notebook"),
            ("model_name", "BAT"),
            ("charge_full_design", "3275000"),
            ("charge_full", "2890000"),
            ("charge_now", "2000000"),
            ("capacity", "69"),
            ("cycle_count", "0"),
        ],
    );
    t.power_supply("ADP1", &[("type", "Mains"), ("online", "0")]);
    let panel = Panel {
        pnp: "CMN",
        product: 0x15bb,
        year: 2018,
        cm: (34, 19),
        mm: (344, 193),
        res: (1366, 768),
        name: "N156BGA-EA3",
    };
    t.connector("card0-LVDS-1", &edid(&panel));
    t.connector("card0-VGA-1", &[]);
    t.net("enp2s0", "80:fa:5b:11:22:33", "pci", "r8169", false, true);
    t.net("wlp3s0", "9c:b6:d0:44:55:66", "pci", "ath10k_pci", true, false);
    t.net("enx001122334455", "00:11:22:33:44:55", "usb", "r8152", false, false);
    t.pci("0000:00:02.0", 0x8086, 0x5916, 0x030000, "i915");
    t.pci("0000:02:00.0", 0x10ec, 0x8168, 0x020000, "r8169");
    t.disks(
        r#"[{"name":"sda","model":"KINGSTON SA400S37120G","serial":"50026B7782A1B2C3","size_bytes":120034123776,
            "rotational":false,"transport":"sata",
            "ata":{"reallocated_sectors":0,"power_on_hours":2210,"reported_uncorrectable":0,"command_timeout":0,
                   "pending_sectors":0,"offline_uncorrectable":0,"crc_errors":0,"wear_percent_used":8}},
           {"name":"sdb","model":"Lapterop Boot Stick","serial":"4C530001230101","size_bytes":16008609792,
            "rotational":false,"transport":"usb"}]"#,
    );
    t
}

/// Shape 3, "two disks": a 15.6" laptop with four SODIMM slots of which two hold 8 GiB modules, an NVMe
/// SSD and a SATA hard disk. SMBIOS 3.3. Everything meets the default policy.
fn two_disks() -> Tree {
    let t = Tree::new("two-disks");
    let mut s = Smbios::default();
    ids(
        &mut s,
        ((1, 21), ["Dell Inc.", "1.21.0", "11/08/2022"]),
        [
            0x44, 0x45, 0x4c, 0x4c, 0x35, 0x00, 0x10, 0x4a, 0x80, 0x33, 0xb7, 0xc0, 0x4f, 0x44, 0x4b, 0x32,
        ],
        [
            "Dell Inc.",
            "Precision 7530",
            "Not Specified",
            "7DK2J3X",
            "0866",
            "Precision",
        ],
        [
            "Dell Inc.",
            "0DN0D7",
            "A00",
            "/7DK2J3X/CNWS2008A1002A/",
            "Not Specified",
            "Not Specified",
        ],
        (
            0x0A,
            [
                "Dell Inc.",
                "Not Specified",
                "7DK2J3X",
                "Not Specified",
                "Not Specified",
            ],
        ),
    );
    processor(
        &mut s,
        4600,
        6,
        12,
        [
            "U3E1",
            "Intel(R) Corporation",
            "Intel(R) Core(TM) i7-8850H CPU @ 2.60GHz",
        ],
    );
    memory_array(&mut s, 0x1000, 0x8000_0000, 4);
    let mods: [(&str, u16); 4] = [("DIMM A", 8192), ("DIMM B", 0), ("DIMM C", 8192), ("DIMM D", 0)];
    for (i, (slot, size)) in mods.iter().enumerate() {
        let h = 0x1100 + u16::try_from(i).unwrap();
        if *size == 0 {
            memory_device(&mut s, h, 0x1000, 0, 0x0D, 0x1A, 2666, &[slot, "Not Specified"]);
        } else {
            let serial = format!("1A2B3C4{i}");
            memory_device(
                &mut s,
                h,
                0x1000,
                *size,
                0x0D,
                0x1A,
                2666,
                &[
                    slot,
                    "Not Specified",
                    "SK Hynix",
                    &serial,
                    "01193300",
                    "HMA81GS6CJR8N-VK",
                ],
            );
        }
    }
    s.end();
    t.dmi(&s.entry_v3(3), &s.table);
    t.cpuinfo(
        "Intel(R) Core(TM) i7-8850H CPU @ 2.60GHz",
        6,
        12,
        "fpu vme de pse tsc msr pae lm constant_tsc vmx est",
    );
    t.meminfo(16_165_508);
    t.power_supply(
        "BAT0",
        &[
            ("type", "Battery"),
            ("present", "1"),
            ("status", "Full"),
            ("technology", "Li-poly"),
            ("manufacturer", "SMP"),
            ("model_name", "DELL 451-BCBW"),
            ("energy_full_design", "97000000"),
            ("energy_full", "79540000"),
            ("capacity", "100"),
            ("cycle_count", "143"),
        ],
    );
    t.power_supply("AC", &[("type", "Mains"), ("online", "1")]);
    t.power_supply("ucsi-source-psy-USBC000:001", &[("type", "USB"), ("online", "0")]);
    let panel = Panel {
        pnp: "SHP",
        product: 0x148a,
        year: 2018,
        cm: (34, 19),
        mm: (344, 194),
        res: (3840, 2160),
        name: "LQ156D1",
    };
    t.connector("card0-eDP-1", &edid(&panel));
    t.net("enp0s31f6", "54:bf:64:aa:bb:cc", "pci", "e1000e", false, true);
    t.net("wlp59s0", "9c:b6:d0:dd:ee:ff", "pci", "ath10k_pci", true, false);
    t.pci("0000:00:02.0", 0x8086, 0x3e9b, 0x030000, "i915");
    t.pci("0000:01:00.0", 0x10de, 0x1cbc, 0x030200, "nouveau");
    t.pci("0000:00:1f.3", 0x8086, 0xa348, 0x040300, "snd_hda_intel");
    t.usb(
        "1-5",
        0x0c45,
        0x671d,
        "Integrated_Webcam_HD",
        &[(0x0e, 0x01, 0x00), (0x0e, 0x02, 0x00)],
    );
    t.usb("1-14", 0x0cf3, 0xe300, "", &[(0xe0, 0x01, 0x01), (0xe0, 0x01, 0x01)]);
    t.disks(
        r#"[{"name":"nvme0n1","model":"PM981 NVMe Samsung 512GB","serial":"S3ZHNX0K654321","size_bytes":512110190592,
            "rotational":false,"transport":"nvme",
            "nvme":{"critical_warning":0,"percentage_used":1,"media_errors":0,"power_on_hours":9012}},
           {"name":"sda","model":"ST1000LM035-1RK172","serial":"WL1234AB","size_bytes":1000204886016,
            "rotational":true,"transport":"sata",
            "ata":{"reallocated_sectors":0,"power_on_hours":9100,"reported_uncorrectable":0,"command_timeout":0,
                   "pending_sectors":0,"offline_uncorrectable":0,"crc_errors":0}}]"#,
    );
    t
}

// ---------------------------------------------------------------------------------------------------
// Running the audit
// ---------------------------------------------------------------------------------------------------

/// Runs the real binary on `tree`; returns (exit success, stdout).
fn agent(tree: &Tree, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lapterop-agent"))
        .arg("audit")
        .arg("--root")
        .arg(&tree.root)
        .arg("--disks")
        .arg(tree.path("disks.json"))
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The binary's `--json` output for `tree`, checked against `tests/fixtures/audit/NAME.json`.
fn golden(tree: &Tree, name: &str) -> Audit {
    let (ok, json, err) = agent(tree, &["--json"]);
    assert!(ok, "audit failed: {err}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/audit/{name}.json"));
    if std::env::var_os("LAPTEROP_UPDATE_GOLDEN").is_some() {
        fs::write(&path, &json).unwrap();
    }
    let want = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(json, want, "{name}: the audit differs from {}", path.display());
    serde_json::from_str(&json).unwrap()
}

#[test]
fn worn_battery_laptop_needs_a_battery() {
    let t = worn();
    let a = golden(&t, "worn");
    let sys = a.system.as_ref().unwrap();
    assert_eq!(sys.serial.as_deref(), Some("PF1ABCDE"));
    assert_eq!(sys.uuid.as_deref(), Some("4c4c4544-0042-3910-8052-b4c04f4d3232"));
    assert_eq!(a.chassis.as_ref().unwrap().kind.as_deref(), Some("notebook"));
    assert_eq!(a.smbios_version.as_deref(), Some("3.2"));
    let b = &a.batteries[..];
    assert_eq!(b.len(), 1, "the mouse battery (scope Device) is not the laptop's");
    assert_eq!(b[0].health_percent, Some(44)); // 10.71 / 24.05 Wh = 44.5%
    assert_eq!(b[0].cycle_count, Some(811));
    assert_eq!(
        (a.memory.slots, a.memory.slots_used, a.memory.installed_bytes),
        (Some(2), Some(1), Some(8 << 30))
    );
    let s = &a.screens[0];
    assert_eq!(
        (s.manufacturer.as_deref(), s.native_width, s.native_height),
        (Some("AUO"), Some(1920), Some(1080))
    );
    assert_eq!(s.diagonal_tenth_inches, Some(140)); // 309 x 174 mm = 13.96"
    assert_eq!(a.verdict.status, VerdictStatus::NeedsParts);
    assert_eq!(a.verdict.needs, ["battery"]);
    assert!(a.features.webcam && a.features.bluetooth && a.features.audio);
    assert!(a.placeholder_fields.is_empty(), "{:?}", a.placeholder_fields);
    assert_eq!(
        a.identity.keys,
        ["system.serial", "system.uuid", "board.serial", "net.onboard_mac"]
    );
    // The identity rule of docs/audit.md, computed here from the values.
    let rule = "lapterop.device-id/v1\nsystem.serial=pf1abcde\nsystem.uuid=4c4c4544-0042-3910-8052-b4c04f4d3232\n\
                board.serial=l1hf81a00ab\nnet.onboard_mac=8c:16:45:01:02:03\n";
    assert_eq!(a.identity.device_id, blake3::hash(rule.as_bytes()).to_hex().to_string());
    assert!(a.gaps.is_empty(), "{:?}", a.gaps);
    // The human summary says the same.
    let (_, text, _) = agent(&t, &[]);
    assert!(text.contains("BAT0 44% health, 811 cycles"), "{text}");
    assert!(text.contains("NEEDS-PARTS: battery"), "{text}");
}

#[test]
fn placeholder_serials_are_flagged_and_identity_still_works() {
    let t = placeholder();
    let a = golden(&t, "placeholder");
    assert_eq!(a.smbios_version.as_deref(), Some("2.8"));
    assert_eq!(
        a.placeholder_fields,
        ["system.serial", "board.serial", "chassis.serial"]
    );
    assert_eq!(
        a.system.as_ref().unwrap().serial.as_deref(),
        Some("To Be Filled By O.E.M.")
    );
    // The UUID and the onboard wired MAC identify it; the USB dongle's MAC does not count.
    assert_eq!(a.identity.keys, ["system.uuid", "net.onboard_mac"]);
    assert_eq!(a.batteries[0].health_percent, Some(88)); // 2.890 / 3.275 Ah
    assert!(a.memory.modules[0].soldered());
    assert_eq!(a.screens[0].diagonal_tenth_inches, Some(155));
    assert_eq!(a.verdict.status, VerdictStatus::NeedsParts);
    assert_eq!(a.verdict.needs, ["charger"]);
    // The same laptop with another placeholder for the serial keeps its identity.
    let again = audit::run(&t.root, Some(vec![]), &Policy::default());
    assert_eq!(
        again.identity.device_id, a.identity.device_id,
        "disks do not enter when firmware keys exist"
    );
}

#[test]
fn two_disks_four_slots_two_used_is_ready() {
    let t = two_disks();
    let a = golden(&t, "two-disks");
    assert_eq!((a.memory.slots, a.memory.slots_used), (Some(4), Some(2)));
    assert_eq!(a.memory.installed_bytes, Some(16 << 30));
    let used: Vec<_> = a
        .memory
        .modules
        .iter()
        .filter(|m| m.installed)
        .map(|m| m.locator.clone().unwrap())
        .collect();
    assert_eq!(used, ["DIMM A", "DIMM C"]);
    assert_eq!(a.disks.as_ref().unwrap().len(), 2);
    assert_eq!(a.features.gpus.len(), 2);
    assert_eq!(a.verdict.status, VerdictStatus::Ready, "{:?}", a.verdict);
    assert!(a.verdict.needs.is_empty() && a.verdict.reasons.is_empty());
    // A stricter site: 32 GiB minimum and only two parts allowed.
    let site = t.path("site.toml");
    fs::write(
        &site,
        "[station]\nname = \"bench 1\"\n\n[refurbishment]\nmin_ram_mib = 32768\nmax_parts = 0\n",
    )
    .unwrap();
    let (ok, json, err) = agent(&t, &["--json", "--policy", site.to_str().unwrap()]);
    assert!(ok, "{err}");
    let strict: Audit = serde_json::from_str(&json).unwrap();
    assert_eq!(strict.verdict.status, VerdictStatus::PartsOnly);
    assert_eq!(strict.verdict.needs, ["ram"]);
    assert_eq!(
        strict.verdict.reasons,
        [
            "16384 MiB of memory (2 of 4 slots used); the site minimum is 32768 MiB",
            "parts needed: ram (1); the site allows at most 0"
        ]
    );
    // A typo in the policy is refused with exit code 2 and a one-line error.
    fs::write(&site, "[refurbishment]\nmin_ram = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lapterop-agent"))
        .args(["audit", "--policy", site.to_str().unwrap(), "--root"])
        .arg(&t.root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("min_ram") && err.lines().count() == 1, "{err}");
}

#[test]
fn qemu_recorded_tree() {
    // Recorded from a real guest by tests/fixtures/audit/qemu/record.sh (see its README).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit/qemu/tree");
    let out = Command::new(env!("CARGO_BIN_EXE_lapterop-agent"))
        .args(["audit", "--json", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success());
    let json = String::from_utf8(out.stdout).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit/qemu.json");
    if std::env::var_os("LAPTEROP_UPDATE_GOLDEN").is_some() {
        fs::write(&path, &json).unwrap();
    }
    assert_eq!(
        json,
        fs::read_to_string(&path).unwrap(),
        "the audit differs from {}",
        path.display()
    );
    let a: Audit = serde_json::from_str(&json).unwrap();
    // The values given to QEMU with -smbios come back, the UUID in RFC 4122 order.
    let sys = a.system.as_ref().unwrap();
    assert_eq!(sys.serial.as_deref(), Some("LAPTEROP-QEMU-0001"));
    assert_eq!(sys.uuid.as_deref(), Some("6a1f0c1e-9d2b-4c3a-8e5f-0123456789ab"));
    assert_eq!(a.board.as_ref().unwrap().serial.as_deref(), Some("BOARD-QEMU-0001"));
    assert_eq!(a.chassis.as_ref().unwrap().asset_tag.as_deref(), Some("ASSET-42"));
    assert_eq!(a.memory.modules[0].serial.as_deref(), Some("RAM-0001"));
    assert_eq!(a.memory.installed_bytes, Some(2 << 30));
    assert_eq!(a.network[0].mac.as_deref(), Some("52:54:00:12:34:56"));
    assert!(a
        .pci
        .iter()
        .any(|d| d.name.as_deref() == Some("QEMU NVM Express Controller")));
    assert_eq!(a.screens[0].name.as_deref(), Some("QEMU Monitor"));
    assert!(a.gaps.is_empty(), "{:?}", a.gaps);
    // No disk list was given: a person must look, so never ready.
    assert!(a.verdict.needs.contains(&"inspection".to_string()));
    // The agent run inside the same guest on its live /sys and /proc (guest-audit.json) found the same
    // identity, firmware and memory as the audit of the recorded tree.
    let guest: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("../guest-audit.json")).unwrap()).unwrap();
    let here: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in ["firmware", "system", "board", "chassis", "memory", "identity"] {
        assert_eq!(here[key], guest[key], "{key}: recorded tree and live guest differ");
    }
}

#[test]
fn disk_health_and_policy_rules() {
    let t = two_disks();
    let mut disks: Vec<audit::DiskSummary> = serde_json::from_slice(&fs::read(t.path("disks.json")).unwrap()).unwrap();
    disks[1].ata.as_mut().unwrap().reallocated_sectors = Some(24);
    disks[1].ata.as_mut().unwrap().pending_sectors = Some(3);
    disks[0].nvme.as_mut().unwrap().critical_warning = 0x04;
    let a = audit::run(&t.root, Some(disks.clone()), &Policy::default());
    assert_eq!(a.verdict.status, VerdictStatus::NeedsParts);
    assert_eq!(a.verdict.needs, ["disk"]);
    assert_eq!(
        a.verdict.reasons,
        [
            "disk nvme0n1 is worn or failing: NVMe critical warning 0x04",
            "disk sda is worn or failing: 24 reallocated sectors (max 10), 3 pending or uncorrectable sectors (max 0)",
        ]
    );
    // Only the hard disk left, and the site wants an SSD.
    let hdd: Vec<_> = disks
        .iter()
        .filter(|d| d.rotational)
        .cloned()
        .map(|mut d| {
            d.ata = Some(audit::AtaHealth::default());
            d
        })
        .collect();
    let a = audit::run(&t.root, Some(hdd), &Policy::default());
    assert_eq!(a.verdict.needs, ["disk"]);
    assert_eq!(
        a.verdict.reasons,
        ["sda is a hard disk; the site requires an SSD of at least 120 GB"]
    );
    // No disk list at all: never "ready", a person must look.
    let a = audit::run(&t.root, None, &Policy::default());
    assert_eq!(a.verdict.needs, ["inspection"]);
}

#[test]
fn host_section_carries_identity_summary_verdict_and_audit_hash() {
    let t = worn();
    let a = audit::run(
        &t.root,
        Some(serde_json::from_slice(&fs::read(t.path("disks.json")).unwrap()).unwrap()),
        &Policy::default(),
    );
    let bytes = audit::to_json(&a);
    let host = audit::host_section(&a, &bytes);
    assert_eq!(host.audit_blake3, blake3::hash(&bytes).to_hex().to_string());
    assert_eq!(host.device_id, a.identity.device_id);
    assert_eq!(host.system.serial.as_deref(), Some("PF1ABCDE"));
    assert_eq!(host.audit.cpu_cores, Some(4));
    assert_eq!(host.audit.cpu_threads, Some(8));
    assert_eq!(host.audit.memory_slots, Some(2));
    assert_eq!(host.audit.battery_health_percent, Some(44));
    assert_eq!(host.audit.screen.as_deref(), Some("14.0\" 1920x1080 AUO"));
    assert_eq!(host.audit.network, ["wired e1000e", "wireless iwlwifi"]);
    assert_eq!(host.verdict, a.verdict);
    // The Host section is valid certificate JSON (deny_unknown_fields round trip).
    let json = serde_json::to_string(&host).unwrap();
    let back: lapterop_certificate::model::Host = serde_json::from_str(&json).unwrap();
    assert_eq!(back, host);
}

// ---------------------------------------------------------------------------------------------------
// Corrupt and truncated inputs: a partial report with the gap named, never a panic
// ---------------------------------------------------------------------------------------------------

/// Cut points for a file of `len` bytes: empty, one byte, a third, half, all but one.
fn cuts(len: usize) -> Vec<usize> {
    let mut v = vec![0, 1, len / 3, len / 2, len.saturating_sub(1)];
    v.dedup();
    v
}

fn gaps_in(a: &Audit, area: &str) -> Vec<String> {
    a.gaps
        .iter()
        .filter(|g| g.area.starts_with(area))
        .map(ToString::to_string)
        .collect()
}

#[test]
fn truncated_and_corrupt_inputs_give_named_gaps() {
    for make in [worn as fn() -> Tree, placeholder, two_disks] {
        let t = make();
        let base = audit::run(&t.root, None, &Policy::default());
        assert!(base.gaps.is_empty(), "{:?}", base.gaps);
        let files = [
            ("sys/firmware/dmi/tables/DMI", "smbios"),
            ("sys/firmware/dmi/tables/smbios_entry_point", "smbios"),
            ("proc/cpuinfo", "cpu"),
            ("proc/meminfo", "memory"),
        ];
        for (rel, area) in files {
            let original = fs::read(t.path(rel)).unwrap();
            for cut in cuts(original.len()) {
                fs::write(t.path(rel), &original[..cut]).unwrap();
                let a = audit::run(&t.root, None, &Policy::default());
                // A binary table cut anywhere is incomplete; a text file cut after its first record
                // still holds that record.
                if area == "smbios" || cut <= 1 {
                    assert!(
                        !gaps_in(&a, area).is_empty(),
                        "{rel} cut at {cut}: no {area} gap in {:?}",
                        a.gaps
                    );
                }
                // Everything else is still read.
                if area != "cpu" {
                    assert_eq!(a.cpu, base.cpu, "{rel} cut at {cut}");
                }
                if area != "smbios" {
                    assert_eq!(a.system, base.system, "{rel} cut at {cut}");
                }
                assert_eq!(a.batteries, base.batteries);
            }
            // Flipped bytes at several points: no panic; the entry point or a string may be wrong, and a
            // flip that breaks the structure chain is reported.
            for at in cuts(original.len()).into_iter().filter(|c| *c < original.len()) {
                let mut bad = original.clone();
                bad[at] ^= 0xFF;
                fs::write(t.path(rel), &bad).unwrap();
                let _ = audit::run(&t.root, None, &Policy::default());
            }
            fs::remove_file(t.path(rel)).unwrap();
            let a = audit::run(&t.root, None, &Policy::default());
            assert!(!gaps_in(&a, area).is_empty(), "{rel} missing: no gap");
            fs::write(t.path(rel), &original).unwrap();
        }
        // A structure whose length byte is too small for its type, and one that runs off the table.
        let dmi = t.path("sys/firmware/dmi/tables/DMI");
        let original = fs::read(&dmi).unwrap();
        let type1 = find_structure(&original, 1);
        let mut short = original.clone();
        short[type1 + 1] = 6;
        fs::write(&dmi, &short).unwrap();
        let a = audit::run(&t.root, None, &Policy::default());
        assert!(!gaps_in(&a, "smbios").is_empty(), "{:?}", a.gaps);
        let mut long = original.clone();
        long[type1 + 1] = 0xFF;
        fs::write(&dmi, &long).unwrap();
        let a = audit::run(&t.root, None, &Policy::default());
        assert!(!gaps_in(&a, "smbios").is_empty(), "{:?}", a.gaps);
        fs::write(&dmi, &original).unwrap();

        // EDID: truncated, garbage, and a wrong checksum.
        let panel = fs::read_dir(t.path("sys/class/drm"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.contains("eDP") || n.contains("LVDS"))
            .unwrap();
        let rel = format!("sys/class/drm/{panel}/edid");
        let original = fs::read(t.path(&rel)).unwrap();
        for cut in cuts(original.len()) {
            fs::write(t.path(&rel), &original[..cut]).unwrap();
            let a = audit::run(&t.root, None, &Policy::default());
            if cut == 0 {
                // An empty EDID is the kernel saying nothing answers on the panel connector.
                assert!(gaps_in(&a, "screen").is_empty(), "{:?}", a.gaps);
                assert!(a.verdict.needs.contains(&"screen".to_string()), "{:?}", a.verdict);
            } else {
                assert!(!gaps_in(&a, "screen").is_empty(), "EDID cut at {cut}");
                assert!(
                    !a.verdict.needs.contains(&"screen".to_string()),
                    "an unreadable panel is not a missing one"
                );
                assert!(a.verdict.needs.contains(&"inspection".to_string()));
            }
        }
        let mut bad = original.clone();
        bad[60] ^= 0x10;
        fs::write(t.path(&rel), &bad).unwrap();
        let a = audit::run(&t.root, None, &Policy::default());
        assert!(
            gaps_in(&a, "screen").iter().any(|g| g.contains("checksum")),
            "{:?}",
            a.gaps
        );
        fs::write(t.path(&rel), [0xAB; 256]).unwrap();
        let a = audit::run(&t.root, None, &Policy::default());
        assert!(
            gaps_in(&a, "screen").iter().any(|g| g.contains("header")),
            "{:?}",
            a.gaps
        );
        fs::write(t.path(&rel), &original).unwrap();

        // Battery: capacity files unreadable.
        let cap = ["energy_full", "charge_full"]
            .into_iter()
            .map(|f| t.path(&format!("sys/class/power_supply/BAT0/{f}")))
            .find(|p| p.exists())
            .unwrap();
        let original = fs::read(&cap).unwrap();
        fs::write(&cap, "garbage\n").unwrap();
        let a = audit::run(&t.root, None, &Policy::default());
        assert!(!gaps_in(&a, "battery BAT0").is_empty(), "{:?}", a.gaps);
        assert!(a.verdict.needs.contains(&"inspection".to_string()));
        fs::write(&cap, original).unwrap();

        // Nothing at all under the root: every source is named.
        let empty = Tree::new("empty");
        let a = audit::run(&empty.root, None, &Policy::default());
        for area in ["smbios", "cpu", "memory"] {
            assert!(!gaps_in(&a, area).is_empty(), "{area}: {:?}", a.gaps);
        }
        assert_ne!(a.verdict.status, VerdictStatus::Ready);
    }
}

#[test]
fn random_corruption_never_panics() {
    // A fixed-seed xorshift, so a failure is reproducible.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for make in [worn as fn() -> Tree, placeholder, two_disks] {
        let t = make();
        let entry = fs::read(t.path("sys/firmware/dmi/tables/smbios_entry_point")).unwrap();
        let table = fs::read(t.path("sys/firmware/dmi/tables/DMI")).unwrap();
        let panel = ["card0-eDP-1", "card0-LVDS-1"]
            .into_iter()
            .map(|c| t.path(&format!("sys/class/drm/{c}/edid")))
            .find(|p| p.exists())
            .unwrap();
        let edid = fs::read(panel).unwrap();
        for round in 0..2000 {
            let (mut e, mut d, mut p) = (entry.clone(), table.clone(), edid.clone());
            for _ in 0..=(round % 4) {
                let r = usize::try_from(next()).unwrap();
                let v = u8::try_from(next() & 0xFF).unwrap();
                match r % 3 {
                    0 => {
                        let n = e.len();
                        e[r / 3 % n] = v;
                    }
                    1 => {
                        let n = d.len();
                        d[r / 3 % n] = v;
                    }
                    _ => {
                        let n = p.len();
                        p[r / 3 % n] = v;
                    }
                }
            }
            let cut = usize::try_from(next()).unwrap() % (d.len() + 1);
            if round % 5 == 0 {
                d.truncate(cut);
            }
            let mut gaps = Vec::new();
            let _ = audit::smbios::parse(&e, d, &mut gaps);
            let _ = audit::edid::parse(&p);
        }
    }
}

/// Offset of the first structure of type `ty` in a table.
fn find_structure(table: &[u8], ty: u8) -> usize {
    let mut at = 0;
    loop {
        if table[at] == ty {
            return at;
        }
        let mut s = at + usize::from(table[at + 1]);
        while !(table[s] == 0 && table[s + 1] == 0) {
            s += 1;
        }
        at = s + 2;
    }
}

// ---------------------------------------------------------------------------------------------------
// power_supply trees of real laptops (tests/fixtures/power; where each value comes from: its README)
// ---------------------------------------------------------------------------------------------------

fn power_tree(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/power")
        .join(name)
}

/// The real binary's `audit --json` of `root`, and its summary text.
fn audit_root(root: &Path) -> (Audit, String) {
    let (a, _, text) = audit_root_json(root);
    (a, text)
}

/// [`audit_root`] with the JSON as printed.
fn audit_root_json(root: &Path) -> (Audit, String, String) {
    let run = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lapterop-agent"));
        cmd.arg("audit").arg("--root").arg(root);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let json = run(true);
    (serde_json::from_str(&json).unwrap(), json, run(false))
}

/// The real binary's pre-flight finding `LAP-P07` on `root` with a minimum of `min` percent: the
/// English "found" text, or `None` when the battery does not stop the job.
fn low_battery_finding(root: &Path, min: u32) -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = Command::new(env!("CARGO_BIN_EXE_lapterop-agent"))
        .args(["preflight", "--json", "--lang", "en", "--root"])
        .arg(root)
        .args(["--battery-min", &min.to_string(), "--now", &now.to_string()])
        .output()
        .unwrap();
    // Exit 1: the tree has no disk and no network, which stop the job too; only P07 is looked at here.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    findings
        .iter()
        .find(|f| f["code"] == "LAP-P07")
        .map(|f| f["found"].as_str().unwrap().to_string())
}

fn power_gaps(a: &Audit) -> Vec<String> {
    let mut g = gaps_in(a, "battery");
    g.extend(gaps_in(a, "power_supply"));
    g
}

/// Copies a recorded tree into a temporary one (to change one attribute for a rule's other side).
fn copy_tree(from: &Path, to: &Tree) {
    for entry in fs::read_dir(from.join("sys/class/power_supply")).unwrap() {
        let entry = entry.unwrap();
        for attr in fs::read_dir(entry.path()).unwrap() {
            let attr = attr.unwrap();
            let rel = format!(
                "sys/class/power_supply/{}/{}",
                entry.file_name().to_str().unwrap(),
                attr.file_name().to_str().unwrap()
            );
            to.file(&rel, fs::read(attr.path()).unwrap());
        }
    }
}

#[test]
fn power_of_real_laptops_thinkpad_with_two_batteries() {
    let root = power_tree("thinkpad-t480");
    let (a, text) = audit_root(&root);
    let b: Vec<(&str, Option<u32>, Option<u32>)> = a
        .batteries
        .iter()
        .map(|b| (b.name.as_str(), b.health_percent, b.cycle_count))
        .collect();
    // 13.6 of 24.0 Wh and 10.1 of 23.9 Wh, each with its own cycles.
    assert_eq!(b, [("BAT0", Some(56), Some(965)), ("BAT1", Some(42), Some(156))]);
    assert!(power_gaps(&a).is_empty(), "{:?}", a.gaps);
    assert_eq!(audit::battery::level(&a.batteries), Some(52));
    // Both batteries are worn and named; no battery is missing.
    assert!(a.verdict.needs.contains(&"battery".to_string()), "{:?}", a.verdict);
    for want in [
        "battery BAT0 holds 56% of its design capacity (minimum 60%)",
        "battery BAT1 holds 42% of its design capacity (minimum 60%)",
    ] {
        assert!(
            a.verdict.reasons.iter().any(|r| r == want),
            "{want}: {:?}",
            a.verdict.reasons
        );
    }
    assert!(
        !a.verdict.reasons.iter().any(|r| r.contains("no battery")),
        "{:?}",
        a.verdict
    );
    // The AC adapter is there; the figures were read on battery, so it gives no power.
    assert_eq!(a.chargers.len(), 1);
    assert_eq!(
        (
            a.chargers[0].name.as_str(),
            a.chargers[0].kind.as_str(),
            a.chargers[0].online
        ),
        ("AC", "Mains", Some(false))
    );
    assert!(a.verdict.needs.contains(&"charger".to_string()), "{:?}", a.verdict);
    // The certificate's summary carries the worn one of the two, whichever the kernel lists first.
    let s = audit::summary(&a);
    assert_eq!((s.battery_health_percent, s.battery_cycles), (Some(42), Some(156)));
    assert!(
        text.contains("Battery:  BAT0 56% health, 965 cycles, design 24.0 Wh (SMP 01AV421)"),
        "{text}"
    );
    assert!(
        text.contains("Battery:  BAT1 42% health, 156 cycles, design 23.9 Wh (LGC 01AV490)"),
        "{text}"
    );
    assert!(text.contains("Charger:  AC AC adapter, no power"), "{text}");
    // Pre-flight counts both batteries: 12.451 of 23.7 Wh is 52%, not the inner pack's 21%.
    assert_eq!(low_battery_finding(&root, 30), None);
    assert_eq!(
        low_battery_finding(&root, 60).as_deref(),
        Some("The battery is at 52% and not charging.")
    );
}

#[test]
fn power_of_real_laptops_dell_in_charge_units() {
    let root = power_tree("dell-xps15-9560");
    let (a, text) = audit_root(&root);
    assert_eq!(a.batteries.len(), 1);
    let b = &a.batteries[0];
    assert_eq!(
        (b.charge_full_design_uah, b.charge_full_uah, b.charge_now_uah),
        (Some(8_509_000), Some(2_871_000), Some(2_713_000))
    );
    assert_eq!((b.energy_full_design_uwh, b.energy_full_uwh), (None, None));
    assert_eq!(b.health_percent, Some(33), "2.871 of 8.509 Ah");
    assert_eq!(
        b.cycle_count, None,
        "cycle_count 0 is 'not available', not a new battery"
    );
    // 8.509 Ah at 11.4 V: the 97 Wh pack of this model.
    assert_eq!(b.voltage_min_design_uv, Some(11_400_000));
    assert_eq!(b.design_uwh(), Some(97_002_600));
    assert!(
        text.contains("Battery:  BAT0 33% health, design 97.0 Wh (SMP DELL GPM0365)"),
        "{text}"
    );
    assert!(power_gaps(&a).is_empty(), "{:?}", a.gaps);
    assert_eq!(audit::summary(&a).battery_cycles, None);
    assert!(
        a.verdict
            .reasons
            .iter()
            .any(|r| r == "battery BAT0 holds 33% of its design capacity (minimum 60%)"),
        "{:?}",
        a.verdict
    );
    // The AC adapter is online ("Not charging" is the battery holding still on AC): no charger needed,
    // and no low-battery stop however high the minimum.
    assert_eq!(a.chargers[0].online, Some(true));
    assert!(!a.verdict.needs.contains(&"charger".to_string()), "{:?}", a.verdict);
    assert_eq!(low_battery_finding(&root, 99), None);
}

#[test]
fn power_of_real_laptops_usb_c_source_is_a_charger_not_a_battery() {
    let root = power_tree("lenovo-usbc-dock");
    let (a, text) = audit_root(&root);
    let names: Vec<&str> = a.batteries.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["BAT0"], "the UCSI source is not a battery");
    assert_eq!(
        (a.batteries[0].health_percent, a.batteries[0].cycle_count),
        (Some(95), Some(9))
    );
    assert_eq!(a.chargers.len(), 1);
    let c = &a.chargers[0];
    assert_eq!(
        (c.name.as_str(), c.kind.as_str(), c.online),
        ("ucsi-source-psy-USBC000:001", "USB", Some(true))
    );
    assert!(power_gaps(&a).is_empty(), "{:?}", a.gaps);
    assert!(
        !a.verdict.needs.iter().any(|n| n == "battery" || n == "charger"),
        "{:?}",
        a.verdict
    );
    assert!(
        text.contains("Charger:  ucsi-source-psy-USBC000:001 USB-C/USB power, power in"),
        "{text}"
    );
    // Power comes in through USB-C: no stop even at a 99% minimum. The same laptop with the dock
    // unplugged (the one attribute changed in a copy) stops at 99%, on its battery's own 96%.
    assert_eq!(low_battery_finding(&root, 99), None);
    let unplugged = Tree::new("usbc-unplugged");
    copy_tree(&root, &unplugged);
    unplugged.file("sys/class/power_supply/ucsi-source-psy-USBC000:001/online", "0\n");
    assert_eq!(
        low_battery_finding(&unplugged.root, 99).as_deref(),
        Some("The battery is at 96% and not charging.")
    );
}

#[test]
fn power_sources_of_a_graphics_card_and_usb_c_power_with_the_ac_device_off() {
    // The Dell tree with its AC adapter device reading 0.
    let t = Tree::new("power-rules");
    copy_tree(&power_tree("dell-xps15-9560"), &t);
    t.file("sys/class/power_supply/AC/online", "0\n");
    // A graphics card's USB-C port (the kernel marks its UCSI source `scope` Device) powers nothing in
    // the laptop, even when something is plugged in.
    t.power_supply(
        "ucsi-source-psy-1-0008",
        &[("type", "USB"), ("scope", "Device"), ("online", "1")],
    );
    let a = audit::run(&t.root, None, &Policy::default());
    assert_eq!(a.chargers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["AC"]);
    assert!(a.verdict.needs.contains(&"charger".to_string()), "{:?}", a.verdict);
    assert_eq!(
        low_battery_finding(&t.root, 99).as_deref(),
        Some("The battery is at 94% and not charging.")
    );
    // The laptop's own USB-C source online: power comes in although the AC device says 0.
    t.power_supply(
        "ucsi-source-psy-USBC000:001",
        &[("type", "USB"), ("scope", "System"), ("online", "1")],
    );
    let a = audit::run(&t.root, None, &Policy::default());
    assert!(!a.verdict.needs.contains(&"charger".to_string()), "{:?}", a.verdict);
    assert_eq!(low_battery_finding(&t.root, 99), None);
}

// ---------------------------------------------------------------------------------------------------
// Hardware no driver took (tests/fixtures/undriven; sources in its README)
// ---------------------------------------------------------------------------------------------------

#[test]
fn undriven_hardware_of_a_real_thinkpad() {
    use lapterop_certificate::hardware::Bus;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/undriven/thinkpad-t480");
    let (a, json, text) = audit_root_json(&root);
    // Pinned: the collection server's tests upload this very document as a T480's audit.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit/undriven-t480.json");
    if std::env::var_os("LAPTEROP_UPDATE_GOLDEN").is_some() {
        fs::write(&path, &json).unwrap();
    }
    assert_eq!(
        json,
        fs::read_to_string(&path).unwrap(),
        "the audit differs from {}",
        path.display()
    );
    let listed: Vec<(Bus, &str, String, &str)> = a
        .undriven
        .iter()
        .map(|d| {
            (
                d.bus,
                d.address.as_str(),
                format!("{}:{}", d.vendor_id, d.device_id),
                d.class.as_str(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (Bus::Pci, "0000:00:02.0", "8086:5917".to_string(), "030000"),
            (Bus::Pci, "0000:00:04.0", "8086:1903".to_string(), "118000"),
            (Bus::Pci, "0000:00:08.0", "8086:1911".to_string(), "088000"),
            (Bus::Pci, "0000:00:14.2", "8086:9d31".to_string(), "118000"),
            (Bus::Pci, "0000:00:16.0", "8086:9d3a".to_string(), "078000"),
            (Bus::Pci, "0000:00:1f.0", "8086:9d4e".to_string(), "060100"),
            (Bus::Pci, "0000:00:1f.2", "8086:9d21".to_string(), "058000"),
            (Bus::Pci, "0000:00:1f.3", "8086:9d71".to_string(), "040300"),
            (Bus::Pci, "0000:00:1f.4", "8086:9d23".to_string(), "0c0500"),
            (Bus::Pci, "0000:03:00.0", "8086:24fd".to_string(), "028000"),
            (Bus::Usb, "1-8:1.0", "04f2:b604".to_string(), "0e:01:00"),
            (Bus::Usb, "1-8:1.1", "04f2:b604".to_string(), "0e:02:00"),
        ],
        "driven functions (xhci, pcieport, e1000e, nvme, hub, usb-storage) are not listed"
    );
    assert!(a.undriven.iter().all(|d| d.well_formed()), "{:?}", a.undriven);
    let wifi = a.undriven.iter().find(|d| d.address == "0000:03:00.0").unwrap();
    // Names from the pci.ids compiled into the agent; the subsystem is the card's, not the laptop's.
    assert_eq!(wifi.vendor.as_deref(), Some("Intel Corporation"));
    assert_eq!(wifi.name.as_deref(), Some("Wireless 8265 / 8275"));
    assert_eq!(wifi.class_name.as_deref(), Some("Network controller"));
    assert_eq!(
        (wifi.subsystem_vendor_id.as_deref(), wifi.subsystem_device_id.as_deref()),
        (Some("8086"), Some("0010"))
    );
    let smbus = a.undriven.iter().find(|d| d.address == "0000:00:1f.4").unwrap();
    assert_eq!(smbus.class_name.as_deref(), Some("SMBus"));
    assert_eq!(smbus.subsystem_vendor_id.as_deref(), Some("17aa"));
    // USB: named after the device (usb.ids), classed by the interface.
    let camera: Vec<_> = a.undriven.iter().filter(|d| d.bus == Bus::Usb).collect();
    assert_eq!(camera[0].vendor.as_deref(), Some("Chicony Electronics Co., Ltd"));
    assert_eq!(camera[0].name.as_deref(), Some("Integrated Camera (1280x720@30)"));
    assert_eq!(
        camera.iter().map(|d| d.class_name.as_deref()).collect::<Vec<_>>(),
        [Some("Video / Video Control"), Some("Video / Video Streaming")]
    );
    assert_eq!(
        (
            camera[0].subsystem_vendor_id.as_ref(),
            camera[0].subsystem_device_id.as_ref()
        ),
        (None, None)
    );
    // The PCI list still carries every function, with its subsystem ids.
    assert_eq!(a.pci.len(), 18);
    assert!(a.pci.iter().all(|d| d.subsystem_vendor_id.is_some()));
    assert!(
        text.contains("No driver: 0000:03:00.0 8086:24fd Intel Corporation Wireless 8265 / 8275 (Network controller)"),
        "{text}"
    );
    // The list is part of the stored audit and reads back as the server reads it.
    let digest: lapterop_certificate::hardware::AuditDigest = serde_json::from_slice(&audit::to_json(&a)).unwrap();
    assert_eq!(digest.schema, audit::AUDIT_SCHEMA);
    assert_eq!(digest.undriven, a.undriven);
}
