//! Placeholder detection and the stable device identity (docs/audit.md, "Device identity").

use serde::{Deserialize, Serialize};

/// Values firmware vendors leave in identity fields when nobody filled them in (compared after
/// trimming, ignoring case).
const PLACEHOLDERS: &[&str] = &[
    "to be filled by o.e.m.",
    "to be filled by oem",
    "default string",
    "system serial number",
    "system product name",
    "system manufacturer",
    "system version",
    "base board serial number",
    "chassis serial number",
    "type2 - board serial number",
    "serial number",
    "serialnumber",
    "0123456789",
    "123456789",
    "1234567890",
    "not specified",
    "not applicable",
    "not available",
    "none",
    "n/a",
    "na",
    "oem",
    "o.e.m.",
    "invalid",
    "unknown",
    "default",
    "empty",
    // The UUID AMI's reference firmware ships with.
    "03000200-0400-0500-0006-000700080009",
];

/// Whether `value` is absent or a placeholder: empty, a known filler string, or one character repeated
/// (`00000000`, `FFFFFFFF`, `XXXXXXXX`), which also covers an all-zero or all-FF UUID once the dashes
/// are removed.
pub fn is_placeholder(value: Option<&str>) -> bool {
    let Some(v) = value.map(str::trim) else {
        return true;
    };
    if v.is_empty() {
        return true;
    }
    let lower = v.to_ascii_lowercase();
    if PLACEHOLDERS.contains(&lower.as_str()) {
        return true;
    }
    let mut chars = lower
        .chars()
        .filter(|c| *c != '-' && *c != ' ' && *c != ':' && *c != '.');
    match chars.next() {
        None => true,
        Some(first) => chars.all(|c| c == first) && lower.len() > 1,
    }
}

/// The identity result in the full audit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// blake3 (lower-case hex) over the keys named in `keys`.
    pub device_id: String,
    /// Which keys went in, in order (`system.serial`, `system.uuid`, `board.serial`, `net.onboard_mac`,
    /// `disk.serial`); empty when none was usable.
    pub keys: Vec<String>,
}

/// Domain-separation prefix of the identity hash; bump the version if the rule ever changes.
pub const DEVICE_ID_CONTEXT: &str = "lapterop.device-id/v1";

/// Candidate keys, each `(name, value)`; the value `None` or a placeholder is skipped.
#[derive(Debug, Default)]
pub struct Keys<'a> {
    /// SMBIOS system serial.
    pub system_serial: Option<&'a str>,
    /// SMBIOS system UUID.
    pub system_uuid: Option<&'a str>,
    /// SMBIOS baseboard serial.
    pub board_serial: Option<&'a str>,
    /// MAC of the first onboard wired interface.
    pub onboard_mac: Option<&'a str>,
    /// Serials of the internal disks.
    pub disk_serials: Vec<&'a str>,
}

/// The device identity: blake3 over `DEVICE_ID_CONTEXT` and the usable firmware keys (system serial,
/// system UUID, board serial) and onboard wired MAC, in that order, one `name=value` line each. Disk
/// serials are used only when none of those is usable, because disks are the part refurbishers swap.
pub fn device_id(keys: &Keys<'_>) -> Identity {
    let mut used: Vec<(&str, String)> = Vec::new();
    let firmware = [
        ("system.serial", keys.system_serial),
        ("system.uuid", keys.system_uuid),
        ("board.serial", keys.board_serial),
        ("net.onboard_mac", keys.onboard_mac),
    ];
    for (name, value) in firmware {
        if let Some(v) = value.filter(|v| !is_placeholder(Some(v))) {
            used.push((name, v.trim().to_ascii_lowercase()));
        }
    }
    if used.is_empty() {
        let mut serials: Vec<String> = keys
            .disk_serials
            .iter()
            .filter(|s| !is_placeholder(Some(s)))
            .map(|s| s.trim().to_string())
            .collect();
        serials.sort();
        serials.dedup();
        used.extend(serials.into_iter().map(|s| ("disk.serial", s)));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(DEVICE_ID_CONTEXT.as_bytes());
    hasher.update(b"\n");
    for (name, value) in &used {
        hasher.update(format!("{name}={value}\n").as_bytes());
    }
    let mut keys_used: Vec<String> = used.iter().map(|(n, _)| n.to_string()).collect();
    keys_used.dedup();
    Identity {
        device_id: hasher.finalize().to_hex().to_string(),
        keys: keys_used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        for p in [
            None,
            Some(""),
            Some("  "),
            Some("To Be Filled By O.E.M."),
            Some("Default string"),
            Some("System Serial Number"),
            Some("0123456789"),
            Some("00000000"),
            Some("00000000-0000-0000-0000-000000000000"),
            Some("ffffffff-ffff-ffff-ffff-ffffffffffff"),
            Some("Not Specified"),
            Some("None"),
            Some("03000200-0400-0500-0006-000700080009"),
        ] {
            assert!(is_placeholder(p), "{p:?}");
        }
        for real in ["PF1ABCDE", "5CD1234XYZ", "4c4c4544-0042-3910-8052-b4c04f4d3232", "A"] {
            assert!(!is_placeholder(Some(real)), "{real}");
        }
    }

    #[test]
    fn identity_survives_a_placeholder_and_ignores_disks_when_firmware_keys_exist() {
        let full = Keys {
            system_serial: Some("PF1ABCDE"),
            system_uuid: Some("4c4c4544-0042-3910-8052-b4c04f4d3232"),
            board_serial: Some("L1HF81A00AB"),
            onboard_mac: Some("8C:16:45:01:02:03"),
            disk_serials: vec!["S4EWNX0R123456"],
        };
        let a = device_id(&full);
        assert_eq!(
            a.keys,
            ["system.serial", "system.uuid", "board.serial", "net.onboard_mac"]
        );
        // Same machine, new disk: same id.
        let b = device_id(&Keys {
            disk_serials: vec!["OTHER"],
            ..full
        });
        assert_eq!(a.device_id, b.device_id);
        // Same machine where the serial reads as a placeholder: a stable id from the other keys.
        let c1 = device_id(&Keys {
            system_serial: Some("To Be Filled By O.E.M."),
            disk_serials: vec![],
            ..full
        });
        let c2 = device_id(&Keys {
            system_serial: Some("Default string"),
            disk_serials: vec![],
            ..full
        });
        assert_eq!(c1.device_id, c2.device_id);
        assert_ne!(c1.device_id, a.device_id);
        assert_eq!(c1.keys, ["system.uuid", "board.serial", "net.onboard_mac"]);
        // Nothing from firmware: disk serials, order-independent.
        let d1 = device_id(&Keys {
            disk_serials: vec!["B", "A"],
            ..Keys::default()
        });
        let d2 = device_id(&Keys {
            disk_serials: vec!["A", "B"],
            ..Keys::default()
        });
        assert_eq!(d1, d2);
        assert_eq!(d1.keys, ["disk.serial"]);
    }
}
