//! Network interfaces from `/sys/class/net`.
//!
//! Only interfaces backed by a device (a `device` link) are listed: loopback, bridges and tunnels
//! are not hardware. Wireless = a `wireless` or `phy80211` entry; the bus is the subsystem of the
//! device (`pci`, `usb`, ...), so a USB dongle is never taken for the onboard adapter.

use serde::{Deserialize, Serialize};

use super::tree::Tree;

const CLASS: &str = "sys/class/net";

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetInterface {
    /// Kernel name (`enp0s31f6`, `wlp2s0`).
    pub name: String,
    /// `wired` or `wireless`.
    pub kind: String,
    /// Hardware address, lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Driver (`e1000e`, `iwlwifi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Bus of the device (`pci`, `usb`, `virtio`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    /// `up`, `down`, `dormant`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operstate: Option<String>,
    /// Link detected (`carrier` is 1); `None` while the interface is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<bool>,
    /// Link speed in Mbit/s, when the link is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<u32>,
}

impl NetInterface {
    /// Built into the machine: on the PCI bus (or a virtio device in a VM), not USB.
    pub fn onboard(&self) -> bool {
        matches!(self.bus.as_deref(), Some("pci" | "virtio" | "platform"))
    }
}

/// Reads the interfaces that are hardware.
pub fn read(tree: &Tree) -> Vec<NetInterface> {
    let Ok(names) = tree.list(CLASS) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names {
        let at = |attr: &str| format!("{CLASS}/{name}/{attr}");
        if !tree.exists(&at("device")) {
            continue;
        }
        let wireless = tree.exists(&at("wireless")) || tree.exists(&at("phy80211"));
        let mac = tree
            .attr(&at("address"))
            .map(|m| m.to_ascii_lowercase())
            .filter(|m| m != "00:00:00:00:00:00");
        out.push(NetInterface {
            kind: if wireless { "wireless" } else { "wired" }.to_string(),
            mac,
            driver: tree.link_name(&at("device/driver")),
            bus: tree.link_name(&at("device/subsystem")),
            operstate: tree.attr(&at("operstate")),
            link: tree.attr_u64(&at("carrier")).map(|c| c != 0),
            speed_mbps: tree
                .attr(&at("speed"))
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| *s > 0),
            name,
        });
    }
    out
}
