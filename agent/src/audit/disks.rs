//! The disk facts the audit takes as input. The disk layer (`crate::disk`) finds the disks and reads
//! their health (NVMe SMART / Health log, ATA SMART attributes); the audit does not scan disks itself.

use lapterop_certificate::model::Transport;
use serde::{Deserialize, Serialize};

/// One disk as the disk layer reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSummary {
    /// Kernel name (`nvme0n1`, `sda`).
    pub name: String,
    /// Model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Capacity in bytes.
    pub size_bytes: u64,
    /// Spinning media.
    pub rotational: bool,
    /// How it is attached.
    pub transport: Transport,
    /// NVMe SMART / Health Information log (log page 0x02), when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvme: Option<NvmeHealth>,
    /// ATA SMART attributes, when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ata: Option<AtaHealth>,
}

impl DiskSummary {
    /// Inside the laptop: not attached by USB (the boot stick and external drives are USB).
    pub fn internal(&self) -> bool {
        self.transport != Transport::Usb
    }

    /// Whether this transport normally reports health (so an absent report is a gap worth checking).
    pub fn health_expected(&self) -> bool {
        matches!(self.transport, Transport::Nvme | Transport::Sata)
    }
}

/// NVMe SMART / Health Information (NVMe Base Specification 2.0, log page 02h).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmeHealth {
    /// Critical Warning bits (byte 0): spare, temperature, reliability, read-only, volatile backup.
    pub critical_warning: u8,
    /// Percentage Used (byte 5), may exceed 100.
    pub percentage_used: u32,
    /// Media and Data Integrity Errors (bytes 160-175), saturated at 2^53 - 1.
    pub media_errors: u64,
    /// Power On Hours (bytes 128-143).
    pub power_on_hours: u64,
}

/// The ATA SMART attributes that matter for a refurbishment decision (raw values).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtaHealth {
    /// 5: Reallocated Sectors Count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reallocated_sectors: Option<u64>,
    /// 9: Power-On Hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_on_hours: Option<u64>,
    /// 187: Reported Uncorrectable Errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_uncorrectable: Option<u64>,
    /// 188: Command Timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout: Option<u64>,
    /// 197: Current Pending Sector Count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_sectors: Option<u64>,
    /// 198: Offline Uncorrectable Sector Count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_uncorrectable: Option<u64>,
    /// 199: UDMA CRC Error Count (cable or connector, not the media).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc_errors: Option<u64>,
    /// SSD rated life used, percent (from the vendor's wear attribute: 177, 231, 233 or 202).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wear_percent_used: Option<u32>,
}
