//! One disk as the plan screen, the pre-flight checks and the job see it: its identity, health, the
//! method it gets or why it is left out. Plain data, filled by `job::plan` from the disk layer and the
//! audit; read by `preflight` and `ui`.

use lapterop_certificate::model::Transport;
use serde::{Deserialize, Serialize};

/// One disk as the plan screen and pre-flight see it; the disk layer fills it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDisk {
    /// Kernel name (`nvme0n1`, `sda`).
    pub name: String,
    /// Model.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Capacity in bytes.
    pub size_bytes: u64,
    /// How it is attached.
    pub transport: Transport,
    /// Spinning media.
    pub rotational: bool,
    /// The kernel's `removable` flag.
    pub removable: bool,
    /// An SD card in the card reader (not the laptop's own storage).
    #[serde(default)]
    pub card: bool,
    /// Health in brief.
    pub health: Health,
    /// The method planned; `None` when excluded.
    pub method: Option<Method>,
    /// Why the disk is left alone; `None` when it is to be erased.
    pub excluded: Option<Exclusion>,
    /// An ATA drive whose security feature set is frozen (firmware erase refused until woken).
    pub frozen: bool,
}

impl PlanDisk {
    /// Whether the plan erases it.
    pub fn target(&self) -> bool {
        self.excluded.is_none()
    }
}

/// Disk health in brief, from SMART / the NVMe health log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// No warning.
    Good,
    /// Usable but worn; the detail in words (`82% of rated life used`).
    Worn(String),
    /// Failing; the detail in words (`12 pending sectors`).
    Failing(String),
    /// Not reported (USB bridges, eMMC).
    Unknown,
}

/// The erase method planned for a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Host overwrite and full read-back.
    Overwrite,
    /// A firmware purge (named: `NVMe Sanitize crypto`, `ATA SANITIZE block`), then overwrite and read-back.
    FirmwareThenOverwrite(String),
}

/// Why a disk is left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exclusion {
    /// The stick the agent booted from.
    BootStick,
    /// Mounted, swap or held by another device.
    InUse,
    /// Read-only.
    ReadOnly,
    /// Attached by USB, removable or virtual: not part of the laptop.
    External,
    /// An internal disk left out because the run names its disks (`--only`).
    NotChosen,
}
