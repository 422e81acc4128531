//! Hardware the live stick had no driver for: the `undriven` list of the full audit
//! (`lapterop.audit/v1`, stored beside the certificate and uploaded with it), which the collection
//! server gathers over all laptops so a workshop lead sees which drivers the stick lacks.
//!
//! The agent writes this list and the server reads it, so its type lives here, in the one crate both
//! share; the rest of the full audit belongs to the agent, and the server reads only [`AuditDigest`]
//! from it. Names come from the pci.ids and usb.ids databases compiled into the agent
//! (`docs/audit.md`, "Hardware without a driver"): the server has no database of its own and groups by
//! the ids, which do not change between stick builds.

use serde::{Deserialize, Serialize};

/// Schema tag of the full audit document.
pub const AUDIT_SCHEMA: &str = "lapterop.audit/v1";

/// The bus a function sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// A PCI function (`/sys/bus/pci/devices/*`).
    Pci,
    /// A USB interface (`/sys/bus/usb/devices/*:*`).
    Usb,
}

impl Bus {
    /// `pci` or `usb`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bus::Pci => "pci",
            Bus::Usb => "usb",
        }
    }
}

/// One PCI function or USB interface that no driver was bound to when the audit ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndrivenDevice {
    /// The bus.
    pub bus: Bus,
    /// Where it sits: the PCI address (`0000:00:1f.4`) or the USB interface (`1-7:1.0`).
    pub address: String,
    /// Vendor id, four lower-case hex digits (for USB the device's `idVendor`).
    pub vendor_id: String,
    /// Device id (PCI `device`) or product id (USB `idProduct`), four lower-case hex digits.
    pub device_id: String,
    /// PCI subsystem vendor id (the laptop maker's board), four hex digits; not for USB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_vendor_id: Option<String>,
    /// PCI subsystem device id, four hex digits; not for USB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_device_id: Option<String>,
    /// PCI class code, six hex digits (class, subclass, programming interface: `0c0500`); for USB
    /// the interface's class, subclass and protocol as `cc:ss:pp` (`e0:01:01`).
    pub class: String,
    /// Vendor name from the database compiled into the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Device or product name from that database (for USB, else the device's own product string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Class name (`SMBus`, `Wireless controller`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
}

impl UndrivenDevice {
    /// Whether every id is the hex form the audit writes (four digits, a six-digit PCI class or a
    /// `cc:ss:pp` USB class): a reader that groups by these strings refuses anything else.
    pub fn well_formed(&self) -> bool {
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let class = match self.bus {
            Bus::Pci => hex(&self.class, 6),
            Bus::Usb => {
                let parts: Vec<&str> = self.class.split(':').collect();
                parts.len() == 3 && parts.iter().all(|p| hex(p, 2))
            }
        };
        let sub = |s: &Option<String>| s.as_deref().is_none_or(|s| hex(s, 4));
        hex(&self.vendor_id, 4)
            && hex(&self.device_id, 4)
            && class
            && sub(&self.subsystem_vendor_id)
            && sub(&self.subsystem_device_id)
    }
}

/// What the collection server reads from a full audit: its schema tag and the hardware without a
/// driver. Every other member of the document is ignored here (the agent's audit type owns them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuditDigest {
    /// Must be [`AUDIT_SCHEMA`].
    pub schema: String,
    /// The functions no driver took (absent in audits made before the list existed).
    #[serde(default)]
    pub undriven: Vec<UndrivenDevice>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smbus() -> UndrivenDevice {
        UndrivenDevice {
            bus: Bus::Pci,
            address: "0000:00:1f.4".into(),
            vendor_id: "8086".into(),
            device_id: "9d23".into(),
            subsystem_vendor_id: Some("17aa".into()),
            subsystem_device_id: Some("225d".into()),
            class: "0c0500".into(),
            vendor: Some("Intel Corporation".into()),
            name: Some("Sunrise Point-LP SMBus".into()),
            class_name: Some("SMBus".into()),
        }
    }

    #[test]
    fn ids_must_be_the_hex_the_audit_writes() {
        assert!(smbus().well_formed());
        for bad in [
            UndrivenDevice {
                vendor_id: "8086 ".into(),
                ..smbus()
            },
            UndrivenDevice {
                device_id: "9D23".into(),
                ..smbus()
            },
            UndrivenDevice {
                class: "0c05".into(),
                ..smbus()
            },
            UndrivenDevice {
                subsystem_vendor_id: Some("<b>".into()),
                ..smbus()
            },
            UndrivenDevice {
                bus: Bus::Usb,
                ..smbus()
            },
        ] {
            assert!(!bad.well_formed(), "{bad:?}");
        }
        let bt = UndrivenDevice {
            bus: Bus::Usb,
            address: "1-7:1.0".into(),
            class: "e0:01:01".into(),
            subsystem_vendor_id: None,
            subsystem_device_id: None,
            ..smbus()
        };
        assert!(bt.well_formed());
    }

    #[test]
    fn the_digest_reads_the_list_and_ignores_the_rest_of_the_audit() {
        let text = r#"{"schema":"lapterop.audit/v1","memory":{},"undriven":[{"bus":"usb","address":"1-7:1.0",
            "vendor_id":"8087","device_id":"0a2b","class":"e0:01:01"}],"verdict":{"status":"ready"}}"#;
        let d: AuditDigest = serde_json::from_str(text).unwrap();
        assert_eq!(d.schema, AUDIT_SCHEMA);
        assert_eq!(d.undriven.len(), 1);
        assert_eq!(d.undriven[0].bus, Bus::Usb);
        let old: AuditDigest = serde_json::from_str(r#"{"schema":"lapterop.audit/v1"}"#).unwrap();
        assert!(old.undriven.is_empty());
    }
}
