//! PCI and USB devices from `/sys/bus/{pci,usb}/devices`, named from the pci.ids and usb.ids databases
//! compiled into the binary (`pci-ids`, `usb-ids` crates), the features a volunteer asks about
//! (graphics, webcam, audio, Bluetooth, wireless), and the functions no driver took ([`undriven`]):
//! a PCI function without a `driver` link, a USB interface without one.
//!
//! The names are the stick's: the databases are built into the agent (no `pci.ids` file is needed on
//! the stick, and the names a volunteer sees on the stick and a lead sees on the server agree). They
//! are as new as the crates the agent was built with; an id newer than that has no name, and the ids
//! are always there.

use lapterop_certificate::hardware::{Bus, UndrivenDevice};
use serde::{Deserialize, Serialize};

use super::tree::Tree;

const PCI: &str = "sys/bus/pci/devices";
const USB: &str = "sys/bus/usb/devices";

/// One PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciDevice {
    /// Bus address (`0000:00:02.0`).
    pub address: String,
    /// Vendor id, four hex digits.
    pub vendor_id: String,
    /// Device id, four hex digits.
    pub device_id: String,
    /// Class code, six hex digits (class, subclass, programming interface).
    pub class: String,
    /// Subsystem vendor id (the board maker), four hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_vendor_id: Option<String>,
    /// Subsystem device id, four hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_device_id: Option<String>,
    /// Vendor name from pci.ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Device name from pci.ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Subclass name from pci.ids (`VGA compatible controller`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Bound driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

/// One USB device (not a root hub).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbDevice {
    /// Port path (`1-4`, `3-1.2`).
    pub port: String,
    /// Vendor id, four hex digits.
    pub vendor_id: String,
    /// Product id, four hex digits.
    pub product_id: String,
    /// Vendor name (usb.ids, else the device's own string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Product name (usb.ids, else the device's own string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Interface classes `cc:ss:pp` (hex), in interface order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
}

/// Reads the PCI functions.
pub fn read_pci(tree: &Tree) -> Vec<PciDevice> {
    let Ok(names) = tree.list(PCI) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for address in names {
        let at = |attr: &str| format!("{PCI}/{address}/{attr}");
        let (Some(vendor), Some(device)) = (tree.attr_hex(&at("vendor")), tree.attr_hex(&at("device"))) else {
            continue;
        };
        let (Ok(vendor), Ok(device)) = (u16::try_from(vendor), u16::try_from(device)) else {
            continue;
        };
        let class = tree.attr_hex(&at("class")).unwrap_or(0) & 0x00FF_FFFF;
        let [_, base, sub, _] = class.to_be_bytes();
        let known = pci_ids::Device::from_vid_pid(vendor, device);
        let vendor_name = known
            .map(|d| d.vendor().name())
            .or_else(|| <pci_ids::Vendor as pci_ids::FromId<u16>>::from_id(vendor).map(|v| v.name()));
        let subsystem = |attr: &str| {
            tree.attr_hex(&at(attr))
                .and_then(|v| u16::try_from(v).ok())
                .map(|v| format!("{v:04x}"))
        };
        out.push(PciDevice {
            vendor_id: format!("{vendor:04x}"),
            device_id: format!("{device:04x}"),
            class: format!("{class:06x}"),
            subsystem_vendor_id: subsystem("subsystem_vendor"),
            subsystem_device_id: subsystem("subsystem_device"),
            vendor: vendor_name.map(str::to_string),
            name: known.map(|d| d.name().to_string()),
            class_name: pci_ids::Subclass::from_cid_sid(base, sub).map(|s| s.name().to_string()),
            driver: tree.link_name(&at("driver")),
            address,
        });
    }
    out
}

/// Reads the USB devices (interfaces `1-4:1.0` and root hubs `usb1` are folded in or left out).
pub fn read_usb(tree: &Tree) -> Vec<UsbDevice> {
    let Ok(names) = tree.list(USB) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for port in names.iter().filter(|n| !n.contains(':') && !n.starts_with("usb")) {
        let at = |attr: &str| format!("{USB}/{port}/{attr}");
        let (Some(vendor), Some(product)) = (tree.attr_hex(&at("idVendor")), tree.attr_hex(&at("idProduct"))) else {
            continue;
        };
        let (Ok(vendor), Ok(product)) = (u16::try_from(vendor), u16::try_from(product)) else {
            continue;
        };
        let known = usb_ids::Device::from_vid_pid(vendor, product);
        let vendor_name = known
            .map(|d| d.vendor().name().to_string())
            .or_else(|| <usb_ids::Vendor as usb_ids::FromId<u16>>::from_id(vendor).map(|v| v.name().to_string()))
            .or_else(|| tree.attr(&at("manufacturer")));
        let prefix = format!("{port}:");
        let interfaces = names
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .filter_map(|n| {
                let at = |attr: &str| format!("{USB}/{n}/{attr}");
                let c = tree.attr_hex(&at("bInterfaceClass"))?;
                let s = tree.attr_hex(&at("bInterfaceSubClass")).unwrap_or(0);
                let p = tree.attr_hex(&at("bInterfaceProtocol")).unwrap_or(0);
                Some(format!("{c:02x}:{s:02x}:{p:02x}"))
            })
            .collect();
        out.push(UsbDevice {
            port: port.clone(),
            vendor_id: format!("{vendor:04x}"),
            product_id: format!("{product:04x}"),
            vendor: vendor_name,
            name: known
                .map(|d| d.name().to_string())
                .or_else(|| tree.attr(&at("product"))),
            interfaces,
        });
    }
    out
}

/// Every PCI function and USB interface that no driver was bound to: a PCI function from `pci`
/// (read by [`read_pci`]) whose `driver` link is missing, and each USB interface (`1-7:1.0`) without
/// a `driver` link, named after its device (`idVendor`, `idProduct`) and its own class. Root hubs
/// always have the hub driver; an interface whose device cannot be read is left out.
pub fn undriven(tree: &Tree, pci: &[PciDevice]) -> Vec<UndrivenDevice> {
    let mut out: Vec<UndrivenDevice> = pci
        .iter()
        .filter(|d| d.driver.is_none())
        .map(|d| UndrivenDevice {
            bus: Bus::Pci,
            address: d.address.clone(),
            vendor_id: d.vendor_id.clone(),
            device_id: d.device_id.clone(),
            subsystem_vendor_id: d.subsystem_vendor_id.clone(),
            subsystem_device_id: d.subsystem_device_id.clone(),
            class: d.class.clone(),
            vendor: d.vendor.clone(),
            name: d.name.clone(),
            class_name: d.class_name.clone(),
        })
        .collect();
    let Ok(names) = tree.list(USB) else {
        return out;
    };
    for interface in names.iter().filter(|n| n.contains(':')) {
        let at = |attr: &str| format!("{USB}/{interface}/{attr}");
        if tree.exists(&at("driver")) {
            continue;
        }
        let Some(port) = interface.split(':').next() else {
            continue;
        };
        let dev = |attr: &str| format!("{USB}/{port}/{attr}");
        let (Some(vendor), Some(product)) = (
            tree.attr_hex(&dev("idVendor")).and_then(|v| u16::try_from(v).ok()),
            tree.attr_hex(&dev("idProduct")).and_then(|v| u16::try_from(v).ok()),
        ) else {
            continue;
        };
        let byte = |attr: &str| tree.attr_hex(&at(attr)).and_then(|v| u8::try_from(v).ok());
        let Some(c) = byte("bInterfaceClass") else {
            continue;
        };
        let (sc, p) = (
            byte("bInterfaceSubClass").unwrap_or(0),
            byte("bInterfaceProtocol").unwrap_or(0),
        );
        let known = usb_ids::Device::from_vid_pid(vendor, product);
        // "Mass Storage / SCSI / Bulk-Only", "Video / Video Control", "Human Interface Device": the
        // class with the subclass and protocol usb.ids names, leaving out its "None" and "No Subclass".
        let named = |n: &'static str| !matches!(n, "None" | "No Subclass" | "Unused" | "Unspecified");
        let class_name = <usb_ids::Class as usb_ids::FromId<u8>>::from_id(c).map(|class| {
            [
                Some(class.name()),
                usb_ids::SubClass::from_cid_scid(c, sc)
                    .map(|x| x.name())
                    .filter(|n| named(n)),
                usb_ids::Protocol::from_cid_scid_pid(c, sc, p)
                    .map(|x| x.name())
                    .filter(|n| named(n)),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" / ")
        });
        out.push(UndrivenDevice {
            bus: Bus::Usb,
            address: interface.clone(),
            vendor_id: format!("{vendor:04x}"),
            device_id: format!("{product:04x}"),
            subsystem_vendor_id: None,
            subsystem_device_id: None,
            class: format!("{c:02x}:{sc:02x}:{p:02x}"),
            vendor: known
                .map(|d| d.vendor().name().to_string())
                .or_else(|| <usb_ids::Vendor as usb_ids::FromId<u16>>::from_id(vendor).map(|v| v.name().to_string()))
                .or_else(|| tree.attr(&dev("manufacturer"))),
            name: known
                .map(|d| d.name().to_string())
                .or_else(|| tree.attr(&dev("product"))),
            class_name,
        });
    }
    out
}

/// What a volunteer asks about, derived from the PCI and USB lists.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// Graphics adapters by name (PCI class 03).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
    /// A camera: USB video class (0e) interface.
    pub webcam: bool,
    /// Audio: PCI multimedia audio / HD audio (04:01, 04:03) or a USB audio (01) interface.
    pub audio: bool,
    /// Bluetooth: USB wireless controller interface e0:01:01, or a `bluetooth` class device.
    pub bluetooth: bool,
}

/// Derives the features.
pub fn features(tree: &Tree, pci: &[PciDevice], usb: &[UsbDevice]) -> Features {
    let class = |d: &PciDevice| {
        (
            d.class.get(0..2).map(str::to_string),
            d.class.get(2..4).map(str::to_string),
        )
    };
    let gpus = pci
        .iter()
        .filter(|d| d.class.starts_with("03"))
        .map(|d| match (&d.vendor, &d.name) {
            (Some(v), Some(n)) => format!("{v} {n}"),
            (Some(v), None) => format!("{v} {}", d.device_id),
            _ => format!("{}:{}", d.vendor_id, d.device_id),
        })
        .collect();
    let usb_if = |prefix: &str| usb.iter().any(|d| d.interfaces.iter().any(|i| i.starts_with(prefix)));
    let bluetooth_class = tree.list("sys/class/bluetooth").map(|l| !l.is_empty()).unwrap_or(false);
    Features {
        gpus,
        webcam: usb_if("0e:"),
        audio: pci.iter().any(|d| {
            let (c, s) = class(d);
            c.as_deref() == Some("04") && matches!(s.as_deref(), Some("01" | "03"))
        }) || usb_if("01:"),
        bluetooth: usb_if("e0:01:01") || bluetooth_class,
    }
}
