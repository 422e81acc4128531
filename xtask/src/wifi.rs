//! A Wi-Fi access point for the stick's acceptance test, inside the guest and on the test's side only.
//!
//! The stick itself is not changed but for its test copy's `grub.cfg`: GRUB loads a second,
//! test-only initramfs after the stick's (`/boot/wifi-ap.img`; the kernel unpacks both into one
//! tree) and the kernel starts [`INIT`] from it (`rdinit=`), which sets up the access point and then
//! `exec`s the stick's own `/init`, so the agent runs as PID 1 exactly as on a laptop. The access
//! point is real radio traffic between two simulated radios: `mac80211_hwsim radios=2`
//! (`drivers/net/wireless/mac80211_hwsim.c`; a Debian kernel module the stick does not ship), the
//! first radio moved into a network namespace of its own (`iw phy PHY set netns PID`), where Debian's
//! `hostapd` serves two WPA2-PSK networks and busybox's `udhcpd` leases addresses. The agent sees only
//! the second radio, `wlan1`, and joins over the air. hostapd, iw and the module come from the pinned
//! packages ([`lapterop_image_builder::debian::TEST_ONLY_ROLES`]); their libraries are found like
//! the supplicant's ([`lapterop_image_builder::dynlink`]).
//!
//! The access point's namespace has no route anywhere: what the agent sends over Wi-Fi (its upload)
//! ends there, and the guest has no other network, so nothing leaves the guest.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use lapterop_image_builder::debian::{self, Cache, Lock};
use lapterop_image_builder::dynlink;
use lapterop_image_builder::initramfs::Initramfs;
use lapterop_image_builder::kmod::KernelTree;

/// The network that takes the site's passphrase.
pub const SSID: &str = "lapterop-werkplaats";
/// Its passphrase, in the site config and in hostapd's.
pub const PASSPHRASE: &str = "werkplaats-2026";
/// The network whose passphrase the site config has wrong (listed first in the site config, so the
/// supplicant tries it first and must report the refused key).
pub const WRONG_SSID: &str = "lapterop-bibliotheek";
/// The wrong network's real passphrase (hostapd's).
pub const WRONG_REAL_PASSPHRASE: &str = "bibliotheek-2026";
/// What the site config says for it.
pub const WRONG_SITE_PASSPHRASE: &str = "bibliotheek-2025";
/// The access point's subnet (`.1` is the access point).
pub const SUBNET: &str = "192.168.77";
/// udhcpd's lease, in seconds (its minimum): udhcpc renews after half of it.
pub const LEASE_SECONDS: u32 = 60;
/// The test init's path in the guest.
pub const INIT: &str = "lapterop-test/init";
/// The access point's script.
const AP_SCRIPT: &str = "lapterop-test/ap.sh";
/// Where the test initramfs goes on the stick's FAT.
pub const STICK_PATH: &str = "boot/wifi-ap.img";
/// Prefix of every console line of the access point's side.
pub const PREFIX: &str = "lapterop-test-ap:";

/// The `[[network.wifi]]` blocks for the site config: the wrong passphrase first, then the right one.
pub fn site_networks() -> String {
    format!(
        "\n[[network.wifi]]\nssid = \"{WRONG_SSID}\"\npassphrase = \"{WRONG_SITE_PASSPHRASE}\"\n\n\
         [[network.wifi]]\nssid = \"{SSID}\"\npassphrase = \"{PASSPHRASE}\"\n"
    )
}

fn hostapd_conf() -> String {
    // Two BSSes on one radio (hostapd.conf `bss=`), WPA2-PSK with CCMP; the second BSSID differs
    // from the radio's address (hwsim's 02:00:00:00:00:00) in its last bit, which hostapd's BSSID
    // mask check accepts.
    format!(
        "interface=wlan0\ndriver=nl80211\nhw_mode=g\nchannel=1\n\
         ssid={SSID}\nwpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase={PASSPHRASE}\n\n\
         bss=wlan0_1\nbssid=02:00:00:00:00:01\n\
         ssid={WRONG_SSID}\nwpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase={WRONG_REAL_PASSPHRASE}\n"
    )
}

fn udhcpd_conf() -> String {
    format!(
        "start {SUBNET}.100\nend {SUBNET}.150\ninterface wlan0\nlease_file /lapterop-test/udhcpd.leases\n\
         option subnet 255.255.255.0\noption lease {LEASE_SECONDS}\n"
    )
}

/// The test init: the modules, the namespace, hostapd and udhcpd, then the stick's `/init`.
fn init_script(modules: &[String]) -> String {
    let insmod: String = modules
        .iter()
        .map(|m| {
            let args = if m.ends_with("mac80211_hwsim.ko") {
                " radios=2"
            } else {
                ""
            };
            format!("insmod /lapterop-test/modules/{m}{args} || say \"insmod {m} failed\"\n")
        })
        .collect();
    format!(
        r#"#!/bin/sh
# Test only (xtask/src/wifi.rs): a WPA2-PSK access point on the first of two mac80211_hwsim radios,
# in its own network namespace, then the stick's own /init as PID 1.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
say() {{ echo "{PREFIX} $*"; }}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp
{insmod}i=0
while [ ! -e /sys/class/net/wlan1 ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
phy=$(cat /sys/class/net/wlan0/phy80211/name)
unshare -n sleep 100000 &
ns=$!
sleep 0.2
iw phy "$phy" set netns "$ns" || say "moving $phy failed"
nsenter -t "$ns" -n sh /{AP_SCRIPT} &
sleep 3
say "access point on $phy (wlan0) in the network namespace of pid $ns; left for the agent: $(ls /sys/class/net | tr '\n' ' ')"
exec /init
"#
    )
}

/// What runs in the access point's namespace: hostapd, then udhcpd, their lines on the console.
fn ap_script() -> String {
    format!(
        r#"#!/bin/sh
# Test only (xtask/src/wifi.rs), inside the access point's network namespace.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# Each line is written whole, so it does not mix with the agent's.
tag() {{ while IFS= read -r l; do echo "{PREFIX} $1: $l"; done; }}
ip link set lo up
ip addr add {SUBNET}.1/24 dev wlan0
hostapd /lapterop-test/hostapd.conf 2>&1 | tag hostapd &
sleep 2
udhcpd -f /lapterop-test/udhcpd.conf 2>&1 | tag udhcpd &
wait
"#
    )
}

/// The modules to insmod, in order: `names` with their dependencies (modules.dep lists a module's
/// dependencies so that loading them from the last to the first works), each once.
fn module_order(kernel: &KernelTree, names: &[&str]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let dir = kernel.module_dir();
    let dep = fs::read_to_string(dir.join("modules.dep")).context("reading modules.dep")?;
    let lines: BTreeMap<String, Vec<String>> = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, deps)| (m.to_owned(), deps.split_whitespace().map(str::to_owned).collect()))
        .collect();
    let mut order: Vec<String> = Vec::new();
    for name in names {
        let file = format!("/{name}.ko");
        let (module, deps) = lines
            .iter()
            .find(|(m, _)| m.ends_with(&file))
            .with_context(|| format!("{name} is not in the pinned kernel's modules.dep"))?;
        for m in deps.iter().rev().chain([module]) {
            if !order.contains(m) {
                order.push(m.clone());
            }
        }
    }
    Ok(order
        .into_iter()
        .map(|m| {
            let base = m.rsplit('/').next().unwrap_or(&m).to_owned();
            (base, dir.join(&m))
        })
        .collect())
}

/// Writes the test-only initramfs to `out`.
pub fn access_point_initrd(out: &Path) -> anyhow::Result<()> {
    let lock = Lock::read(&debian::default_lock_path())?;
    let cache = Cache::new(debian::default_cache_dir());
    let kernel = KernelTree::open(&cache.extract(lock.get("kernel")?)?)?;
    let mut roots = Vec::new();
    for role in debian::TEST_ONLY_ROLES.iter().chain(debian::SUPPLICANT_ROLES) {
        roots.push(cache.extract(lock.get(role)?)?);
    }
    let mut fs_tree = Initramfs::new();
    let closure = dynlink::closure(
        &[("usr/sbin/hostapd", "usr/sbin/hostapd"), ("sbin/iw", "sbin/iw")],
        &roots,
    )?;
    // The stick's initramfs has the same libraries; the later archive's copy wins, which is the same
    // file from the same package.
    for (at, source) in &closure.files {
        fs_tree.file(at, source)?;
    }
    for (at, target) in &closure.links {
        fs_tree.symlink(at, target)?;
    }
    // The access point's keys (CCMP: "ccm(aes)") need the crypto templates ccm and ctr; the kernel
    // would ask modprobe for them, but the stick's module tree is not mounted yet when hostapd starts.
    let modules = module_order(&kernel, &["mac80211_hwsim", "ctr", "ccm"])?;
    let mut names = Vec::new();
    for (name, path) in &modules {
        fs_tree.file(&format!("lapterop-test/modules/{name}"), path)?;
        names.push(name.clone());
    }
    fs_tree.bytes(INIT, 0o755, init_script(&names))?;
    fs_tree.bytes(AP_SCRIPT, 0o755, ap_script())?;
    fs_tree.bytes("lapterop-test/hostapd.conf", 0o644, hostapd_conf())?;
    fs_tree.bytes("lapterop-test/udhcpd.conf", 0o644, udhcpd_conf())?;
    // udhcpd reads its leases at start (outside /tmp, which the stick's init mounts over).
    fs_tree.bytes("lapterop-test/udhcpd.leases", 0o644, Vec::new())?;
    fs_tree.write_zstd(out, 0, 3)?;
    Ok(())
}

/// Adds the access point to the stick image `stick` (a test copy): the test initramfs on its FAT
/// and a `grub.cfg` whose entries load it after the stick's and start [`INIT`].
pub fn add_access_point(stick: &Path, work: &Path) -> anyhow::Result<()> {
    let initrd = work.join("wifi-ap.img");
    access_point_initrd(&initrd)?;
    let cfg = String::from_utf8(crate::e2e::stick_file_of(stick, "boot/grub/grub.cfg")?)?;
    ensure!(
        cfg.contains("initrd /boot/initrd.img\n") && cfg.contains("linux /boot/vmlinuz "),
        "the stick's grub.cfg has no `linux` and `initrd` lines to extend:\n{cfg}"
    );
    let cfg = cfg
        .replace(
            "initrd /boot/initrd.img\n",
            &format!("initrd /boot/initrd.img /{STICK_PATH}\n"),
        )
        .replace("linux /boot/vmlinuz ", &format!("linux /boot/vmlinuz rdinit=/{INIT} "));
    let cfg_file = work.join("grub-wifi.cfg");
    fs::write(&cfg_file, cfg)?;
    for (from, to) in [(&initrd, STICK_PATH), (&cfg_file, "boot/grub/grub.cfg")] {
        crate::e2e::stick_put(stick, from, to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_point_serves_both_networks_and_the_site_lists_the_wrong_one_first() {
        let conf = hostapd_conf();
        assert!(conf.contains(&format!("ssid={SSID}\n")) && conf.contains(&format!("ssid={WRONG_SSID}\n")));
        assert!(conf.contains(&format!("wpa_passphrase={PASSPHRASE}\n")));
        assert_ne!(WRONG_REAL_PASSPHRASE, WRONG_SITE_PASSPHRASE);
        let site = site_networks();
        assert!(site.find(WRONG_SSID) < site.find(&format!("\"{SSID}\"")), "{site}");
        assert!(!site.contains(WRONG_REAL_PASSPHRASE));
        // The script loads hwsim with two radios and hands over to the stick's init.
        let script = init_script(&["cfg80211.ko".into(), "mac80211_hwsim.ko".into()]);
        assert!(script.contains("mac80211_hwsim.ko radios=2"));
        assert!(script.trim_end().ends_with("exec /init"));
    }
}
