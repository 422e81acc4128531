//! Signed certificates for tests and the load generator, built from the certificate crate's types.

use lapterop_certificate::*;

/// A realistic, valid certificate: a laptop with one NVMe disk purged by sanitize and one SATA disk
/// overwritten, both read back. `n` varies the serials; `operator` names the operator.
pub fn laptop(n: u64, operator: &str) -> Certificate {
    let t0 = "2026-11-26T09:00:00Z".to_owned();
    let t1 = "2026-11-26T09:40:00Z".to_owned();
    let t2 = "2026-11-26T10:10:00Z".to_owned();
    let nvme_cap: u64 = 256_060_514_304;
    let sata_cap: u64 = 500_107_862_016;
    let nvme = DiskRecord {
        device: "nvme0n1".into(),
        model: Some("SAMSUNG MZVLB256HAHQ-000L7".into()),
        serial: Some(format!("S4ELNX0N{n:08}")),
        firmware: Some("4L2QEXA7".into()),
        wwn: Some(format!("eui.0025388{n:09}")),
        transport: Transport::Nvme,
        rotational: false,
        capacity_bytes: nvme_cap,
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
                started_at: Some(t0.clone()),
                finished_at: Some("2026-11-26T09:00:09Z".into()),
                pass: None,
                pattern: None,
                bytes: nvme_cap,
                error_ranges: vec![],
                firmware: Some(FirmwareEvidence {
                    command: "nvme admin 0x84 cdw10=0x00000004".into(),
                    status: "success (SCT 0, SC 0)".into(),
                    polls: 9,
                    final_state: Some("SSTAT=0x0101 most recent sanitize completed".into()),
                }),
            },
            Step {
                kind: StepKind::Overwrite,
                capability: Capability::Supported,
                outcome: StepOutcome::Completed,
                reason: None,
                started_at: Some("2026-11-26T09:00:10Z".into()),
                finished_at: Some("2026-11-26T09:20:00Z".into()),
                pass: Some(PassInfo { number: 1, of: 1 }),
                pattern: Some(Pattern {
                    kind: PatternKind::Zero,
                    generator: None,
                    seed_commitment: None,
                }),
                bytes: nvme_cap,
                error_ranges: vec![],
                firmware: None,
            },
        ],
        verification: Some(Verification {
            mode: VerifyMode::Full,
            expected: Pattern {
                kind: PatternKind::Zero,
                generator: None,
                seed_commitment: None,
            },
            sample: None,
            bytes_read: nvme_cap,
            mismatched_blocks: 0,
            error_ranges: vec![],
            readback_blake3: hash(&format!("readback nvme {n}")),
            pre_wipe_sample_blake3: Some(hash(&format!("pre {n}"))),
            firmware_before_blake3: Some(hash(&format!("fw before {n}"))),
            firmware_after_blake3: Some(hash(&format!("fw after {n}"))),
            started_at: "2026-11-26T09:20:01Z".into(),
            finished_at: "2026-11-26T09:39:00Z".into(),
        }),
        outcome: DiskOutcome {
            status: OutcomeStatus::Erased,
            exceptions: vec![],
            reason: None,
        },
    };
    let sata = DiskRecord {
        device: "sda".into(),
        model: Some("ST500LM021-1KJ152".into()),
        serial: Some(format!("W62{n:07}")),
        firmware: Some("0002LIM1".into()),
        wwn: Some(format!("naa.5000c500{n:08x}")),
        transport: Transport::Sata,
        rotational: true,
        capacity_bytes: sata_cap,
        logical_sector_size: 512,
        physical_sector_size: 4096,
        hidden_areas: HiddenAreas {
            check: HiddenAreaCheck::Checked,
            hpa: None,
            dco: None,
        },
        nist_category: NistCategory::Clear,
        steps: vec![Step {
            kind: StepKind::Overwrite,
            capability: Capability::Supported,
            outcome: StepOutcome::Completed,
            reason: None,
            started_at: Some(t0.clone()),
            finished_at: Some(t1.clone()),
            pass: Some(PassInfo { number: 1, of: 1 }),
            pattern: Some(Pattern {
                kind: PatternKind::Random,
                generator: Some("blake3-xof-v1".into()),
                seed_commitment: Some(hash(&format!("seed {n}"))),
            }),
            bytes: sata_cap,
            error_ranges: vec![],
            firmware: None,
        }],
        verification: Some(Verification {
            mode: VerifyMode::Sample,
            expected: Pattern {
                kind: PatternKind::Random,
                generator: Some("blake3-xof-v1".into()),
                seed_commitment: Some(hash(&format!("seed {n}"))),
            },
            sample: Some(SamplePlan {
                sections: 1000,
                samples_per_section: 2,
                sample_bytes: 25_006_080,
                seed: hash(&format!("sample seed {n}")),
                planned_bytes: 50_012_160_000,
            }),
            bytes_read: 50_012_160_000,
            mismatched_blocks: 0,
            error_ranges: vec![],
            readback_blake3: hash(&format!("readback sata {n}")),
            pre_wipe_sample_blake3: None,
            firmware_before_blake3: None,
            firmware_after_blake3: None,
            started_at: t1.clone(),
            finished_at: "2026-11-26T10:05:00Z".into(),
        }),
        outcome: DiskOutcome {
            status: OutcomeStatus::Erased,
            exceptions: vec![],
            reason: None,
        },
    };
    Certificate {
        schema: SCHEMA_V1.into(),
        id: new_id(),
        issued_at: t2,
        agent: AgentInfo {
            version: "0.1.0".into(),
            binary_blake3: hash("agent"),
            live_image_build: Some("2026-11-20.1".into()),
        },
        station: StationInfo {
            key_id: String::new(),
            organisation: "Iedereen Digitaal Leuven".into(),
            site: "Repair Café Kessel-Lo".into(),
            name: Some("bench-1".into()),
        },
        operator: Person {
            name: operator.into(),
            role: Some("vrijwilliger".into()),
        },
        verifier: None,
        donor: Some(DonorInfo {
            reference: Some("KBC-2026-117".into()),
            lot: Some("lot-48".into()),
            asset_tag: Some(format!("LT-{n:05}")),
        }),
        host: Some(Host {
            system: SmbiosSystem {
                vendor: Some("LENOVO".into()),
                product: Some("ThinkPad T480".into()),
                version: None,
                serial: Some(format!("PF1{n:05}")),
                uuid: None,
                sku: None,
                family: Some("ThinkPad T480".into()),
            },
            board: None,
            chassis: None,
            placeholder_fields: vec![],
            device_id: hash(&format!("device {n}")),
            audit: AuditSummary {
                cpu_model: Some("Intel(R) Core(TM) i5-8350U CPU @ 1.70GHz".into()),
                cpu_cores: Some(4),
                cpu_threads: Some(8),
                cpu_64bit: Some(true),
                memory_bytes: Some(8 << 30),
                memory_slots: Some(2),
                memory_slots_used: Some(1),
                battery_health_percent: Some(71),
                battery_cycles: Some(412),
                screen: Some("14\" 1920x1080".into()),
                gpus: vec!["Intel UHD Graphics 620".into()],
                network: vec!["wired e1000e".into(), "wireless iwlwifi".into()],
                gaps: vec![],
            },
            verdict: Verdict {
                status: VerdictStatus::Ready,
                needs: vec![],
                reasons: vec![],
            },
            audit_blake3: hash(&format!("audit {n}")),
        }),
        disks: vec![nvme, sata],
        install: None,
        signature: None,
    }
}

/// A disk that could not be erased (for outcome filters).
pub fn not_erased(mut c: Certificate) -> Certificate {
    let d = &mut c.disks[1];
    d.nist_category = NistCategory::None;
    d.steps[0].outcome = StepOutcome::Failed;
    d.steps[0].reason = Some("write error at LBA 1000".into());
    d.steps[0].error_ranges = vec![ErrorRange {
        op: RangeOp::Write,
        lba: 1000,
        count: 8,
        errno: 5,
    }];
    d.outcome = DiskOutcome {
        status: OutcomeStatus::NotErased,
        exceptions: vec![],
        reason: Some("the drive reported write errors; destroy it physically".into()),
    };
    c
}

fn hash(s: &str) -> String {
    blake3::hash(s.as_bytes()).to_hex().to_string()
}

/// Signs a certificate and returns its JSON bytes.
pub fn signed(mut c: Certificate, key: &SigningKey) -> Vec<u8> {
    c.sign(key).expect("fixture certificate is valid");
    c.to_pretty_json().expect("serialises").into_bytes()
}
