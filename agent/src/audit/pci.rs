//! PCI and USB devices from `/sys/bus/{pci,usb}/devices`, named from the pci.ids and usb.ids databases
//! compiled into the binary (`pci-ids`, `usb-ids` crates), and the features a volunteer asks about:
//! graphics, webcam, audio, Bluetooth, wireless.

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
        out.push(PciDevice {
            vendor_id: format!("{vendor:04x}"),
            device_id: format!("{device:04x}"),
            class: format!("{class:06x}"),
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
