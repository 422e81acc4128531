//! Coldplug: load the kernel modules the hardware needs, as udev would, without udev.
//!
//! The kernel announces every device with a uevent carrying a `MODALIAS`. We match it against the
//! globs of `modules.alias` (made by `depmod` at image build time), load each module's dependencies
//! from `modules.dep` first (and what its `softdep` asks for: `r8169` does not probe without the
//! `realtek` PHY driver), and repeat while loading modules creates new devices (a host controller
//! brings its disks). Matching and ordering are pure functions here; loading is in [`super::system`].

use std::collections::{BTreeSet, HashMap};

/// The alias and dependency tables of one kernel's module tree.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// (glob, module name) in file order.
    aliases: Vec<(glob::Pattern, String)>,
    /// Module name → (path relative to the module dir, dependency paths in modules.dep order).
    deps: HashMap<String, (String, Vec<String>)>,
    /// Module name → (names to load before it, names to load after it), from `modules.softdep`.
    softdeps: HashMap<String, (Vec<String>, Vec<String>)>,
}

/// Module name of a path: `kernel/drivers/nvme/host/nvme.ko.xz` → `nvme`; `-` and `_` are the same
/// to the kernel, we keep `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl ModuleIndex {
    /// Parses `modules.alias` and `modules.dep` text.
    pub fn parse(alias_text: &str, dep_text: &str) -> Self {
        let aliases = alias_text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                (it.next()? == "alias").then_some(())?;
                let pattern = glob::Pattern::new(it.next()?).ok()?;
                Some((pattern, it.next()?.replace('-', "_")))
            })
            .collect();
        let deps = dep_text
            .lines()
            .filter_map(|l| {
                let (path, rest) = l.split_once(':')?;
                let list = rest.split_whitespace().map(str::to_owned).collect();
                Some((module_name(path), (path.to_owned(), list)))
            })
            .collect();
        Self {
            aliases,
            deps,
            softdeps: HashMap::new(),
        }
    }

    /// Adds depmod's `modules.softdep` lines (`softdep r8169 pre: realtek post: x`).
    pub fn with_softdeps(mut self, softdep_text: &str) -> Self {
        for line in softdep_text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else { continue };
            let entry = self.softdeps.entry(module.replace('-', "_")).or_default();
            let mut post = false;
            for word in words {
                match word {
                    "pre:" => post = false,
                    "post:" => post = true,
                    name if post => entry.1.push(name.to_owned()),
                    name => entry.0.push(name.to_owned()),
                }
            }
        }
        self
    }

    /// Modules whose alias globs match `modalias`, without duplicates, in alias-file order.
    pub fn matches(&self, modalias: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.aliases
            .iter()
            .filter(|(p, _)| p.matches(modalias))
            .filter(|(_, m)| seen.insert(m.clone()))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Paths to load for `module`: its softdeps' `pre:` modules (with their own order) first, then
    /// its dependencies (modules.dep lists the deepest dependency last, so they load right to left),
    /// the module itself, then its `post:` modules; each path once. A softdep may name a module or an
    /// alias (`crypto-crc32c`); one this tree lacks is skipped. `None` when the module is not in
    /// this tree (built in, or not shipped).
    pub fn load_order(&self, module: &str) -> Option<Vec<String>> {
        let mut order = Vec::new();
        let mut visiting = BTreeSet::new();
        self.push_order(&module.replace('-', "_"), &mut order, &mut visiting)
            .then_some(order)
    }

    fn push_order(&self, module: &str, order: &mut Vec<String>, visiting: &mut BTreeSet<String>) -> bool {
        let Some((path, deps)) = self.deps.get(module) else {
            return false;
        };
        if !visiting.insert(module.to_owned()) {
            return true;
        }
        let (pre, post) = self.softdeps.get(module).cloned().unwrap_or_default();
        let soft = |names: &[String], order: &mut Vec<String>, visiting: &mut BTreeSet<String>| {
            for name in names {
                let as_module = name.replace('-', "_");
                if self.deps.contains_key(&as_module) {
                    self.push_order(&as_module, order, visiting);
                } else {
                    for m in self.matches(name) {
                        self.push_order(&m, order, visiting);
                    }
                }
            }
        };
        soft(&pre, order, visiting);
        // Each dependency with its own order, so its softdeps come along (ext4 -> jbd2 -> crc32c).
        for dep in deps.iter().rev() {
            if order.contains(dep) {
                continue;
            }
            let name = module_name(dep);
            let pushed = self.deps.contains_key(&name) && self.push_order(&name, order, visiting);
            if !pushed && !order.contains(dep) {
                order.push(dep.clone());
            }
        }
        if !order.contains(path) {
            order.push(path.clone());
        }
        soft(&post, order, visiting);
        true
    }

    /// Number of modules in the tree.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// True when the tree has no modules.
    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }
}

/// One kernel uevent as received on `NETLINK_KOBJECT_UEVENT`: `ACTION@DEVPATH\0KEY=VALUE\0...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `bind`, ...
    pub action: String,
    /// `/devices/...`.
    pub devpath: String,
    /// Every KEY=VALUE pair.
    pub vars: HashMap<String, String>,
}

impl Uevent {
    /// Parses a kernel uevent message; `None` for messages from udev (`libudev` header) or garbage.
    pub fn parse(msg: &[u8]) -> Option<Self> {
        let mut parts = msg.split(|b| *b == 0).filter(|p| !p.is_empty());
        let head = std::str::from_utf8(parts.next()?).ok()?;
        let (action, devpath) = head.split_once('@')?;
        let vars = parts
            .filter_map(|p| std::str::from_utf8(p).ok())
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        Some(Self {
            action: action.to_owned(),
            devpath: devpath.to_owned(),
            vars,
        })
    }

    /// The `MODALIAS`, if any.
    pub fn modalias(&self) -> Option<&str> {
        self.vars.get("MODALIAS").map(String::as_str)
    }
}

/// The modalias lines of a `uevent` file in sysfs (`KEY=VALUE` lines).
pub fn modalias_of_uevent_file(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("MODALIAS="))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias pci:v*d*sv*sd*bc01sc08i02* nvme
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias virtio:d00000002v* virtio_blk
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip62in* uas
alias fs-vfat vfat
";

    const DEP: &str = "\
kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko: kernel/drivers/ptp/ptp.ko kernel/drivers/pps/pps_core.ko
kernel/drivers/ptp/ptp.ko: kernel/drivers/pps/pps_core.ko
kernel/drivers/pps/pps_core.ko:
kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko
kernel/drivers/nvme/host/nvme-core.ko:
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/usb/storage/uas.ko.xz: kernel/drivers/usb/storage/usb-storage.ko.xz
kernel/drivers/usb/storage/usb-storage.ko.xz:
";

    #[test]
    fn modaliases_match_the_module_globs() {
        let idx = ModuleIndex::parse(ALIAS, DEP);
        // QEMU's e1000e (8086:10d3), NVMe (class 010802), AHCI (class 010601).
        assert_eq!(
            idx.matches("pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"),
            ["e1000e"]
        );
        assert_eq!(
            idx.matches("pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"),
            ["nvme"]
        );
        assert_eq!(
            idx.matches("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
            ["ahci"]
        );
        // Matched on the vendor, not the subsystem vendor.
        assert_eq!(
            idx.matches("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"),
            ["virtio_pci"]
        );
        assert!(idx
            .matches("pci:v000010ECd00008168sv00000000sd00000000bc02sc00i00")
            .is_empty());
        assert_eq!(
            idx.matches("usb:v0BC2p2322d0100dc00dsc00dp00ic08isc06ip62in00"),
            ["uas"]
        );
    }

    #[test]
    fn dependencies_load_first_deepest_first() {
        let idx = ModuleIndex::parse(ALIAS, DEP);
        assert_eq!(
            idx.load_order("e1000e").unwrap(),
            [
                "kernel/drivers/pps/pps_core.ko",
                "kernel/drivers/ptp/ptp.ko",
                "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko"
            ]
        );
        assert_eq!(
            idx.load_order("usb-storage").unwrap(),
            ["kernel/drivers/usb/storage/usb-storage.ko.xz"]
        );
        assert_eq!(idx.load_order("uas").unwrap().len(), 2);
        assert_eq!(
            idx.load_order("nvme_core").unwrap(),
            ["kernel/drivers/nvme/host/nvme-core.ko"]
        );
        assert_eq!(idx.load_order("not_shipped"), None);
        assert_eq!(idx.len(), 8);
        assert_eq!(module_name("kernel/fs/fat/vfat.ko.zst"), "vfat");
    }

    #[test]
    fn softdeps_load_around_the_module() {
        let dep = "\
kernel/drivers/net/ethernet/realtek/r8169.ko: kernel/drivers/net/phy/mdio_devres.ko kernel/drivers/net/phy/libphy.ko
kernel/drivers/net/phy/realtek.ko: kernel/drivers/net/phy/libphy.ko
kernel/drivers/net/phy/mdio_devres.ko: kernel/drivers/net/phy/libphy.ko
kernel/drivers/net/phy/libphy.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/x/after.ko:
";
        let idx = ModuleIndex::parse("alias crypto-crc32c crc32c_generic\n", dep).with_softdeps(
            "# Soft dependencies extracted from modules themselves.\n\
             softdep r8169 pre: realtek post: after not_shipped\nsoftdep jbd2 pre: crypto-crc32c\n",
        );
        assert_eq!(
            idx.load_order("r8169").unwrap(),
            [
                "kernel/drivers/net/phy/libphy.ko",
                "kernel/drivers/net/phy/realtek.ko",
                "kernel/drivers/net/phy/mdio_devres.ko",
                "kernel/drivers/net/ethernet/realtek/r8169.ko",
                "kernel/drivers/x/after.ko",
            ]
        );
        // A softdep by alias resolves through modules.alias.
        assert_eq!(
            idx.load_order("jbd2").unwrap(),
            ["kernel/crypto/crc32c_generic.ko", "kernel/fs/jbd2/jbd2.ko"]
        );
        // A dependency's softdeps come with it.
        assert_eq!(
            idx.load_order("ext4").unwrap(),
            [
                "kernel/crypto/crc32c_generic.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/ext4/ext4.ko"
            ]
        );
    }

    #[test]
    fn uevents_parse_and_udev_messages_are_ignored() {
        let msg = b"add@/devices/pci0000:00/0000:00:03.0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:03.0\0SUBSYSTEM=pci\0MODALIAS=pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00\0SEQNUM=812\0";
        let e = Uevent::parse(msg).unwrap();
        assert_eq!(e.action, "add");
        assert_eq!(e.devpath, "/devices/pci0000:00/0000:00:03.0");
        assert_eq!(e.vars["SUBSYSTEM"], "pci");
        assert!(e.modalias().unwrap().starts_with("pci:v00008086"));
        assert_eq!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(Uevent::parse(b""), None);
        assert_eq!(
            modalias_of_uevent_file("DRIVER=e1000e\nPCI_CLASS=20000\nMODALIAS=pci:v1\n"),
            Some("pci:v1")
        );
    }
}
