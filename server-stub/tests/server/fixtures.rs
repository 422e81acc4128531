//! Signed certificates for tests and the load generator, built from the certificate crate's types.

use lapterop_certificate::*;

/// A realistic, valid certificate: the certificate crate's sample laptop (an NVMe disk purged by
/// sanitize and a SATA disk overwritten, both read back) made unique by `n`; `operator` names the
/// operator.
pub fn laptop(n: u64, operator: &str) -> Certificate {
    let mut c = sample::erased_laptop(String::new());
    c.id = new_id().unwrap();
    c.station.organisation = "Iedereen Digitaal Leuven".into();
    c.station.site = "Repair Café Kessel-Lo".into();
    c.station.name = Some("bench-1".into());
    c.operator = Person {
        name: operator.into(),
        role: Some("vrijwilliger".into()),
    };
    c.verifier = None;
    c.install = None;
    c.donor = Some(DonorInfo {
        reference: Some("KBC-2026-117".into()),
        lot: Some("lot-48".into()),
        asset_tag: Some(format!("LT-{n:05}")),
    });
    if let Some(h) = &mut c.host {
        h.system.serial = Some(format!("PF1{n:05}"));
        h.device_id = hash(&format!("device {n}"));
        h.audit_blake3 = hash(&format!("audit {n}"));
    }
    // The evidence as the browser test looks for it on the detail page.
    if let Some(fw) = &mut c.disks[0].steps[0].firmware {
        fw.command = "nvme admin opc=0x84 nsid=0 cdw10=0x0000000c cdw11=0x00000000".into();
    }
    for (d, serial) in c
        .disks
        .iter_mut()
        .zip([format!("S4ELNX0N{n:08}"), format!("W62{n:07}")])
    {
        d.serial = Some(serial);
        d.wwn = Some(format!("eui.0025388{n:09}"));
        if let Some(v) = &mut d.verification {
            v.readback_blake3 = hash(&format!("readback {} {n}", d.device));
        }
    }
    c
}

/// A disk that could not be erased (for outcome filters).
pub fn not_erased(mut c: Certificate) -> Certificate {
    let d = &mut c.disks[1];
    d.nist_category = NistCategory::None;
    // steps[1] is the overwrite (steps[0] is the skipped ATA sanitize).
    d.steps[1].outcome = StepOutcome::Failed;
    d.steps[1].reason = Some("write error at LBA 1000".into());
    d.steps[1].error_ranges = vec![ErrorRange {
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
