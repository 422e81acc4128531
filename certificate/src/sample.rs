//! Sample certificates: the golden fixtures of `certificate/tests/fixtures/` are made from these, and
//! other crates' tests start from them. Every value is fixed so that the signed bytes never change
//! unless the format does. Not for production use.

use crate::model::*;

fn hash(label: &str) -> String {
    blake3::hash(label.as_bytes()).to_hex().to_string()
}

fn time(minutes: u32) -> String {
    format!("2026-11-26T{:02}:{:02}:00Z", 9 + minutes / 60, minutes % 60)
}

fn common(id: &str, key_id: String) -> Certificate {
    Certificate {
        schema: SCHEMA_V1.to_owned(),
        id: id.to_owned(),
        issued_at: time(90),
        agent: AgentInfo {
            version: "0.1.0".to_owned(),
            binary_blake3: hash("lapterop-agent 0.1.0"),
            live_image_build: Some("2026-11-20.1".to_owned()),
        },
        station: StationInfo {
            key_id,
            organisation: "Iedereendigitaal@Leuven".to_owned(),
            site: "Repair café Kessel-Lo".to_owned(),
            name: Some("stick-07".to_owned()),
        },
        operator: Person {
            name: "An Peeters".to_owned(),
            role: Some("volunteer".to_owned()),
        },
        verifier: Some(Person {
            name: "Jef Janssens".to_owned(),
            role: Some("workshop lead".to_owned()),
        }),
        donor: Some(DonorInfo {
            reference: Some("KBC-2026-114".to_owned()),
            lot: Some("lot-2026-47".to_owned()),
            asset_tag: Some("IDL-00412".to_owned()),
        }),
        host: Some(host()),
        disks: Vec::new(),
        not_touched: vec![UntouchedDisk {
            device: "sdb".to_owned(),
            model: Some("SanDisk Cruzer Blade".to_owned()),
            serial: Some("4C530001230915107252".to_owned()),
            transport: Transport::Usb,
            capacity_bytes: 16_008_609_792,
            reason: UntouchedReason::BootStick,
        }],
        install: None,
        signature: None,
    }
}

fn host() -> Host {
    Host {
        system: SmbiosSystem {
            vendor: Some("LENOVO".to_owned()),
            product: Some("20L5CTO1WW".to_owned()),
            version: Some("ThinkPad T480".to_owned()),
            serial: Some("PF1ABCDE".to_owned()),
            uuid: Some("4c4c4544-0042-3510-8052-b4c04f4e3232".to_owned()),
            sku: Some("LENOVO_MT_20L5_BU_Think_FM_ThinkPad T480".to_owned()),
            family: Some("ThinkPad T480".to_owned()),
        },
        board: Some(SmbiosBoard {
            vendor: Some("LENOVO".to_owned()),
            product: Some("20L5CTO1WW".to_owned()),
            version: Some("SDK0J40697 WIN".to_owned()),
            serial: Some("L1HF81E00AB".to_owned()),
        }),
        chassis: Some(SmbiosChassis {
            kind: Some("notebook".to_owned()),
            vendor: Some("LENOVO".to_owned()),
            serial: Some("PF1ABCDE".to_owned()),
            asset_tag: None,
        }),
        placeholder_fields: Vec::new(),
        device_id: hash("device PF1ABCDE"),
        audit: AuditSummary {
            cpu_model: Some("Intel(R) Core(TM) i5-8350U CPU @ 1.70GHz".to_owned()),
            cpu_cores: Some(4),
            cpu_threads: Some(8),
            cpu_64bit: Some(true),
            memory_bytes: Some(8 << 30),
            memory_slots: Some(2),
            memory_slots_used: Some(1),
            battery_health_percent: Some(81),
            battery_cycles: Some(412),
            screen: Some("35.6 cm (14.0\") 1920x1080".to_owned()),
            gpus: vec!["Intel UHD Graphics 620".to_owned()],
            network: vec!["wired e1000e".to_owned(), "wireless iwlwifi".to_owned()],
            gaps: Vec::new(),
        },
        verdict: Verdict {
            status: VerdictStatus::Ready,
            needs: Vec::new(),
            reasons: Vec::new(),
        },
        audit_blake3: hash("full audit PF1ABCDE"),
    }
}

fn random_pattern(label: &str) -> Pattern {
    Pattern {
        kind: PatternKind::Random,
        generator: Some("aes128-ctr/v1".to_owned()),
        seed_commitment: Some(hash(label)),
    }
}

fn overwrite(capacity: u64, start: u32, end: u32, label: &str) -> Step {
    Step {
        kind: StepKind::Overwrite,
        capability: Capability::Supported,
        outcome: StepOutcome::Completed,
        reason: None,
        started_at: Some(time(start)),
        finished_at: Some(time(end)),
        pass: Some(PassInfo { number: 1, of: 1 }),
        pattern: Some(random_pattern(label)),
        bytes: capacity,
        error_ranges: Vec::new(),
        firmware: None,
    }
}

fn full_verify(capacity: u64, start: u32, end: u32, label: &str) -> Verification {
    Verification {
        mode: VerifyMode::Full,
        expected: random_pattern(label),
        sample: None,
        bytes_read: capacity,
        mismatched_blocks: 0,
        error_ranges: Vec::new(),
        readback_blake3: hash(&format!("readback {label}")),
        pre_wipe_sample_blake3: Some(hash(&format!("pre-wipe {label}"))),
        firmware_before_blake3: None,
        firmware_after_blake3: None,
        started_at: time(start),
        finished_at: time(end),
    }
}

const NVME_CAPACITY: u64 = 256_060_514_304;
const SATA_CAPACITY: u64 = 500_107_862_016;

fn nvme_disk() -> DiskRecord {
    let mut verification = full_verify(NVME_CAPACITY, 20, 30, "nvme");
    verification.firmware_before_blake3 = Some(hash("nvme before crypto erase"));
    verification.firmware_after_blake3 = Some(hash("nvme after crypto erase"));
    DiskRecord {
        device: "nvme0n1".to_owned(),
        model: Some("SAMSUNG MZVLB256HAHQ-000L7".to_owned()),
        serial: Some("S41GNX0M123456".to_owned()),
        firmware: Some("4L2QEXA7".to_owned()),
        wwn: Some("eui.0025388b71b2c3d4".to_owned()),
        transport: Transport::Nvme,
        rotational: false,
        capacity_bytes: NVME_CAPACITY,
        logical_sector_size: 512,
        physical_sector_size: 512,
        hidden_areas: HiddenAreas {
            check: HiddenAreaCheck::NotApplicable,
            hpa: None,
            dco: None,
        },
        nist_category: NistCategory::Purge,
        steps: vec![
            Step {
                kind: StepKind::NvmeSanitizeCrypto,
                capability: Capability::Supported,
                outcome: StepOutcome::Completed,
                reason: None,
                started_at: Some(time(5)),
                finished_at: Some(time(6)),
                pass: None,
                pattern: None,
                bytes: NVME_CAPACITY,
                error_ranges: Vec::new(),
                firmware: Some(FirmwareEvidence {
                    command: "nvme admin opc=0x84 nsid=0 cdw10=0x0000000c cdw11=0x00000000".to_owned(),
                    status: "success (sct 0, sc 0)".to_owned(),
                    polls: 12,
                    final_state: Some("sanitize log: most recent sanitize completed successfully".to_owned()),
                }),
            },
            overwrite(NVME_CAPACITY, 6, 20, "nvme"),
        ],
        verification: Some(verification),
        outcome: DiskOutcome {
            status: OutcomeStatus::Erased,
            exceptions: Vec::new(),
            reason: None,
        },
        boot_areas: Vec::new(),
        rpmb_bytes: None,
    }
}

fn sata_disk_erased() -> DiskRecord {
    DiskRecord {
        device: "sda".to_owned(),
        model: Some("ST500LM021-1KJ152".to_owned()),
        serial: Some("W62ABCDE".to_owned()),
        firmware: Some("0003LIM1".to_owned()),
        wwn: Some("naa.5000c500a1b2c3d4".to_owned()),
        transport: Transport::Sata,
        rotational: true,
        capacity_bytes: SATA_CAPACITY,
        logical_sector_size: 512,
        physical_sector_size: 4096,
        hidden_areas: HiddenAreas {
            check: HiddenAreaCheck::Checked,
            hpa: None,
            dco: None,
        },
        nist_category: NistCategory::Clear,
        steps: vec![
            Step {
                kind: StepKind::AtaSanitizeOverwrite,
                capability: Capability::NotSupported,
                outcome: StepOutcome::Skipped,
                reason: Some("the drive does not support the SANITIZE feature set".to_owned()),
                started_at: None,
                finished_at: None,
                pass: None,
                pattern: None,
                bytes: 0,
                error_ranges: Vec::new(),
                firmware: None,
            },
            overwrite(SATA_CAPACITY, 30, 70, "sata"),
        ],
        verification: Some(full_verify(SATA_CAPACITY, 70, 85, "sata")),
        outcome: DiskOutcome {
            status: OutcomeStatus::Erased,
            exceptions: Vec::new(),
            reason: None,
        },
        boot_areas: Vec::new(),
        rpmb_bytes: None,
    }
}

/// A ThinkPad with an NVMe disk purged by Sanitize and a SATA disk cleared by overwrite, both erased,
/// and the standard OS image installed on the NVMe disk. `key_id` is the signing key's id.
pub fn erased_laptop(key_id: String) -> Certificate {
    let mut c = common("019abc12-3456-7def-8123-456789abcdef", key_id);
    c.disks = vec![nvme_disk(), sata_disk_erased()];
    c.install = Some(InstallRecord {
        status: InstallStatus::Installed,
        image_name: Some("leuven-pupil-desktop".to_owned()),
        image_version: Some("2026.11".to_owned()),
        root_hash: Some(hash("image root")),
        signer_key_id: Some(hex::encode(&blake3::hash(b"image key").as_bytes()[..16])),
        target_device: "nvme0n1".to_owned(),
        target_serial: Some("S41GNX0M123456".to_owned()),
        bytes_written: 9_663_676_416,
        chunks_verified: 2304,
        chunk_mismatches: 0,
        discarded_bytes: Some(118_111_600_640),
        grow: None,
        hostname: None,
        reason: None,
        started_at: time(86),
        finished_at: time(89),
    });
    c
}

/// The same laptop where the SATA disk had unwritable sectors and a hidden area that could not be
/// exposed (`erased-with-exceptions`) and the NVMe disk failed (`not-erased`); no install.
pub fn exceptions_laptop(key_id: String) -> Certificate {
    let mut c = common("019abc12-3456-7def-8123-456789abcd00", key_id);
    let bad = ErrorRange {
        op: RangeOp::Write,
        lba: 123_456_789,
        count: 8,
        errno: 5,
    };
    let mut sata = sata_disk_erased();
    sata.hidden_areas.hpa = Some(HiddenArea {
        visible_sectors: 976_773_168,
        native_sectors: 976_775_168,
        action: HiddenAreaAction::LeftInPlace,
    });
    sata.steps[1].outcome = StepOutcome::Failed;
    sata.steps[1].reason = Some("8 sectors could not be written (EIO)".to_owned());
    sata.steps[1].error_ranges = vec![bad.clone()];
    if let Some(v) = &mut sata.verification {
        v.error_ranges = vec![ErrorRange {
            op: RangeOp::Mismatch,
            ..bad.clone()
        }];
        v.mismatched_blocks = 8;
    }
    sata.outcome = DiskOutcome {
        status: OutcomeStatus::ErasedWithExceptions,
        exceptions: vec![
            Exception {
                kind: ExceptionKind::UnwritableRange,
                detail: "8 sectors at LBA 123456789 could not be written and still hold old data".to_owned(),
                range: Some(bad),
            },
            Exception {
                kind: ExceptionKind::HiddenAreaLeft,
                detail: "a Host Protected Area of 2000 sectors could not be exposed (SET MAX refused)".to_owned(),
                range: None,
            },
        ],
        reason: None,
    };
    let mut nvme = nvme_disk();
    nvme.nist_category = NistCategory::None;
    nvme.steps[0].outcome = StepOutcome::Failed;
    nvme.steps[0].reason = Some("the controller aborted Sanitize (status 0x1d: sanitize failed)".to_owned());
    nvme.steps[0].firmware = Some(FirmwareEvidence {
        command: "nvme admin opc=0x84 nsid=0 cdw10=0x0000000c cdw11=0x00000000".to_owned(),
        status: "sct 0, sc 0x1d (sanitize failed)".to_owned(),
        polls: 3,
        final_state: Some("sanitize log: most recent sanitize failed".to_owned()),
    });
    nvme.steps[1].outcome = StepOutcome::Interrupted;
    nvme.steps[1].reason = Some("the drive stopped answering at 41 % (I/O timeout)".to_owned());
    nvme.steps[1].bytes = 104_984_199_168;
    nvme.verification = None;
    nvme.outcome = DiskOutcome {
        status: OutcomeStatus::NotErased,
        exceptions: Vec::new(),
        reason: Some("the overwrite stopped at 41 %; the drive must be destroyed or wiped again".to_owned()),
    };
    c.disks = vec![sata, nvme];
    c.verifier = None;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_every_invariant() {
        let key = crate::keys::fixture_key("station");
        let id = crate::keys::key_id(&key.verifying_key());
        for c in [erased_laptop(id.clone()), exceptions_laptop(id)] {
            assert_eq!(crate::validate::invariants(&c), Vec::new());
        }
    }
}
