//! Batteries and chargers from `/sys/class/power_supply` (kernel ABI `sysfs-class-power`).
//!
//! A battery reports either energy (`energy_full_design`, `energy_full`, in µWh) or charge
//! (`charge_full_design`, `charge_full`, in µAh); health is full-charge capacity as a whole percentage of
//! the design capacity, rounded down. Batteries with `scope` `Device` (a mouse, a headset) are not the
//! laptop's battery and are left out.

use serde::{Deserialize, Serialize};

use super::tree::Tree;
use super::Gap;

const CLASS: &str = "sys/class/power_supply";

/// One system battery.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Battery {
    /// Kernel name (`BAT0`).
    pub name: String,
    /// `Li-ion`, `Li-poly`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technology: Option<String>,
    /// Manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// `Charging`, `Discharging`, `Full`, `Not charging`, `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Present (`present` is 1); a laptop with an empty battery bay reports 0.
    pub present: bool,
    /// Design capacity in µWh (energy) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_full_design_uwh: Option<u64>,
    /// ... and full-charge capacity now, in µWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_full_uwh: Option<u64>,
    /// Design capacity in µAh (charge) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_full_design_uah: Option<u64>,
    /// ... and full-charge capacity now, in µAh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_full_uah: Option<u64>,
    /// Full-charge capacity as a percentage of design capacity, rounded down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_percent: Option<u32>,
    /// Charge cycles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_count: Option<u32>,
    /// State of charge now, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_percent: Option<u32>,
}

/// One external power source (AC adapter, USB-C PD).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Charger {
    /// Kernel name (`AC`, `ADP1`, `ucsi-source-psy-...`).
    pub name: String,
    /// `Mains` or `USB`.
    pub kind: String,
    /// Whether power is coming in now; `None` when the attribute is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
}

/// Reads every power supply.
pub fn read(tree: &Tree, gaps: &mut Vec<Gap>) -> (Vec<Battery>, Vec<Charger>) {
    let (mut batteries, mut chargers) = (Vec::new(), Vec::new());
    let Ok(names) = tree.list(CLASS) else {
        // No power_supply class at all: a desktop or a VM without ACPI batteries. Not a gap by itself;
        // the policy decides whether a battery was required.
        return (batteries, chargers);
    };
    for name in names {
        let at = |attr: &str| format!("{CLASS}/{name}/{attr}");
        let Some(kind) = tree.attr(&at("type")) else {
            gaps.push(Gap::new(format!("power_supply {name}"), "no readable type"));
            continue;
        };
        match kind.as_str() {
            "Battery" => {
                if tree.attr(&at("scope")).as_deref() == Some("Device") {
                    continue;
                }
                let num = |attr: &str| tree.attr_u64(&at(attr));
                let mut b = Battery {
                    name: name.clone(),
                    technology: tree.attr(&at("technology")),
                    manufacturer: tree.attr(&at("manufacturer")),
                    model: tree.attr(&at("model_name")),
                    serial: tree.attr(&at("serial_number")),
                    status: tree.attr(&at("status")),
                    present: num("present") != Some(0),
                    energy_full_design_uwh: num("energy_full_design"),
                    energy_full_uwh: num("energy_full"),
                    charge_full_design_uah: num("charge_full_design"),
                    charge_full_uah: num("charge_full"),
                    cycle_count: num("cycle_count").and_then(|c| u32::try_from(c).ok()),
                    charge_percent: num("capacity").and_then(|c| u32::try_from(c).ok()),
                    ..Battery::default()
                };
                b.health_percent = health(b.energy_full_uwh, b.energy_full_design_uwh)
                    .or_else(|| health(b.charge_full_uah, b.charge_full_design_uah));
                if b.present && b.health_percent.is_none() {
                    gaps.push(Gap::new(
                        format!("battery {name}"),
                        "no usable design and full-charge capacity (energy_* or charge_*): health unknown",
                    ));
                }
                batteries.push(b);
            }
            "Mains" | "USB" => chargers.push(Charger {
                name: name.clone(),
                kind,
                online: tree.attr_u64(&at("online")).map(|v| v != 0),
            }),
            _ => {}
        }
    }
    (batteries, chargers)
}

/// `full` as a whole percentage of `design`, rounded down; `None` when either is missing or design is 0.
fn health(full: Option<u64>, design: Option<u64>) -> Option<u32> {
    let (full, design) = (full?, design?);
    if design == 0 {
        return None;
    }
    u32::try_from(u128::from(full) * 100 / u128::from(design)).ok()
}

#[cfg(test)]
mod tests {
    use super::health;

    #[test]
    fn health_rounds_down_and_refuses_zero_design() {
        assert_eq!(health(Some(41_300_000), Some(57_000_000)), Some(72));
        assert_eq!(health(Some(1), Some(0)), None);
        assert_eq!(health(None, Some(10)), None);
        // Some batteries report more than design when new.
        assert_eq!(health(Some(105), Some(100)), Some(105));
    }
}
