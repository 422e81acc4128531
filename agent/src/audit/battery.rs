//! Batteries and chargers from `/sys/class/power_supply` (kernel ABI `sysfs-class-power`).
//!
//! A battery reports either energy (`energy_full_design`, `energy_full`, `energy_now`, in µWh) or
//! charge (`charge_full_design`, `charge_full`, `charge_now`, in µAh, with `voltage_min_design` in µV
//! to turn it into energy); health is full-charge capacity as a whole percentage of the design
//! capacity, rounded down. `cycle_count` 0 means the battery does not report it (the ABI says so; Dell
//! and HP batteries report 0 all their life), so it is left out. Batteries with `scope` `Device` (a
//! mouse, a headset) are not the laptop's battery and are left out, and so are power sources with
//! `scope` `Device`: the USB-C port of a graphics card (UCSI, type `USB`) powers nothing in the
//! laptop.
//!
//! A laptop may hold two batteries (ThinkPad Power Bridge: `BAT0` inside, `BAT1` removable; the
//! firmware empties one, then the other): each gets its own health and cycles, and the charge left
//! ([`level`]) counts both together.

use std::path::Path;

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
    /// ... full-charge capacity now, in µWh ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_full_uwh: Option<u64>,
    /// ... and the energy left, in µWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_now_uwh: Option<u64>,
    /// Design capacity in µAh (charge) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_full_design_uah: Option<u64>,
    /// ... full-charge capacity now, in µAh ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_full_uah: Option<u64>,
    /// ... and the charge left, in µAh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_now_uah: Option<u64>,
    /// Minimum design voltage, µV: charge times this voltage is the energy a charge-reporting battery
    /// holds (how `upower` shows it in Wh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voltage_min_design_uv: Option<u64>,
    /// Full-charge capacity as a percentage of design capacity, rounded down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_percent: Option<u32>,
    /// Charge cycles; absent when the battery does not count them (`cycle_count` 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_count: Option<u32>,
    /// State of charge now, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_percent: Option<u32>,
}

impl Battery {
    /// Whether the battery takes or holds a charge now (`Charging` or `Full`): power comes in.
    pub fn charging(&self) -> bool {
        matches!(self.status.as_deref(), Some("Charging" | "Full"))
    }

    /// Design capacity in µWh: the energy figure, or charge times the minimum design voltage.
    pub fn design_uwh(&self) -> Option<u64> {
        self.energy_full_design_uwh.or_else(|| {
            let (charge, volts) = (self.charge_full_design_uah?, self.voltage_min_design_uv?);
            u64::try_from(u128::from(charge) * u128::from(volts) / 1_000_000).ok()
        })
    }
}

/// One external power source (AC adapter, USB-C PD).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Charger {
    /// Kernel name (`AC`, `ADP1`, `ucsi-source-psy-USBC000:001`).
    pub name: String,
    /// `Mains` or `USB`.
    pub kind: String,
    /// Whether power is coming in now; `None` when the attribute is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
}

/// Reads every power supply of the tree under `root` (`/` on the laptop); for the pre-flight check,
/// which needs the same batteries and chargers as the audit but not its gaps.
pub fn read_root(root: &Path) -> (Vec<Battery>, Vec<Charger>) {
    read(&Tree::new(root), &mut Vec::new())
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
        if tree.attr(&at("scope")).as_deref() == Some("Device") {
            continue;
        }
        match kind.as_str() {
            "Battery" => {
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
                    energy_now_uwh: num("energy_now"),
                    charge_full_design_uah: num("charge_full_design"),
                    charge_full_uah: num("charge_full"),
                    charge_now_uah: num("charge_now"),
                    voltage_min_design_uv: num("voltage_min_design"),
                    cycle_count: num("cycle_count")
                        .filter(|c| *c > 0)
                        .and_then(|c| u32::try_from(c).ok()),
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

/// Whether power comes in from outside: a charger (AC adapter or USB-C source) says it is online, or
/// a present battery is charging or full.
pub fn power_in(batteries: &[Battery], chargers: &[Charger]) -> bool {
    chargers.iter().any(|c| c.online == Some(true)) || batteries.iter().any(|b| b.present && b.charging())
}

/// The charge left in all present batteries together, as a whole percentage of their full-charge
/// capacity (rounded down): the laptop runs until every battery is empty, so a ThinkPad whose inner
/// battery is at 21% and outer one at 95% has about half its charge left, not 21%. Summed in µWh
/// when every battery reports `energy_now` and `energy_full`, in µAh when every one reports
/// `charge_now` and `charge_full`; otherwise the mean of their `capacity` figures. `None` when no
/// present battery reports a level.
pub fn level(batteries: &[Battery]) -> Option<u32> {
    let present: Vec<&Battery> = batteries.iter().filter(|b| b.present).collect();
    if present.is_empty() {
        return None;
    }
    let sum = |pick: fn(&Battery) -> Option<(u64, u64)>| -> Option<u32> {
        let pairs: Option<Vec<(u64, u64)>> = present.iter().map(|b| pick(b)).collect();
        let (now, full) = pairs?.iter().fold((0u128, 0u128), |(n, f), (bn, bf)| {
            (n + u128::from(*bn), f + u128::from(*bf))
        });
        (full > 0).then(|| u32::try_from((now * 100 / full).min(100)).unwrap_or(100))
    };
    sum(|b| Some((b.energy_now_uwh?, b.energy_full_uwh?)))
        .or_else(|| sum(|b| Some((b.charge_now_uah?, b.charge_full_uah?))))
        .or_else(|| {
            let levels: Vec<u32> = present.iter().filter_map(|b| b.charge_percent).collect();
            let n = u32::try_from(levels.len()).ok().filter(|n| *n > 0)?;
            Some(levels.iter().sum::<u32>() / n)
        })
}

/// The charge left ([`level`]) when it is below `min` percent and no power comes in ([`power_in`]):
/// the laptop could die in the middle of a wipe.
pub fn low(batteries: &[Battery], chargers: &[Charger], min: u32) -> Option<u32> {
    if power_in(batteries, chargers) {
        return None;
    }
    level(batteries).filter(|l| *l < min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_rounds_down_and_refuses_zero_design() {
        assert_eq!(health(Some(41_300_000), Some(57_000_000)), Some(72));
        assert_eq!(health(Some(1), Some(0)), None);
        assert_eq!(health(None, Some(10)), None);
        // Some batteries report more than design when new.
        assert_eq!(health(Some(105), Some(100)), Some(105));
    }

    fn pack(now: u64, full: u64, percent: u32) -> Battery {
        Battery {
            present: true,
            energy_now_uwh: Some(now),
            energy_full_uwh: Some(full),
            charge_percent: Some(percent),
            status: Some("Discharging".into()),
            ..Battery::default()
        }
    }

    #[test]
    fn the_level_counts_every_battery_by_what_it_holds() {
        // A 24 Wh pack at 10% and a 72 Wh pack at 90%: 67.2 of 96 Wh.
        let two = [pack(2_400_000, 24_000_000, 10), pack(64_800_000, 72_000_000, 90)];
        assert_eq!(level(&two), Some(70));
        assert_eq!(low(&two, &[], 30), None);
        // Without energy figures: the mean of the percentages.
        let rough: Vec<Battery> = two
            .iter()
            .cloned()
            .map(|b| Battery {
                energy_now_uwh: None,
                ..b
            })
            .collect();
        assert_eq!(level(&rough), Some(50));
        // An empty bay counts for nothing; no battery, no level.
        let bay = Battery {
            present: false,
            ..pack(0, 1, 0)
        };
        assert_eq!(level(&[pack(2_400_000, 24_000_000, 10), bay.clone()]), Some(10));
        assert_eq!(level(&[bay]), None);
    }

    #[test]
    fn low_means_below_the_minimum_with_no_power_coming_in() {
        let one = [pack(2_400_000, 24_000_000, 10)];
        assert_eq!(low(&one, &[], 30), Some(10));
        let ac = |online| Charger {
            name: "AC".into(),
            kind: "Mains".into(),
            online,
        };
        assert_eq!(low(&one, &[ac(Some(false))], 30), Some(10));
        assert_eq!(low(&one, &[ac(Some(true))], 30), None);
        let usb_c = Charger {
            name: "ucsi-source-psy-USBC000:001".into(),
            kind: "USB".into(),
            online: Some(true),
        };
        assert_eq!(low(&one, &[ac(Some(false)), usb_c], 30), None);
        let charging = [Battery {
            status: Some("Charging".into()),
            ..pack(2_400_000, 24_000_000, 10)
        }];
        assert_eq!(low(&charging, &[], 30), None);
    }

    #[test]
    fn a_charge_battery_has_an_energy_design_from_its_voltage() {
        let b = Battery {
            charge_full_design_uah: Some(8_509_000),
            voltage_min_design_uv: Some(11_400_000),
            ..Battery::default()
        };
        assert_eq!(b.design_uwh(), Some(97_002_600));
        assert_eq!(Battery::default().design_uwh(), None);
    }
}
