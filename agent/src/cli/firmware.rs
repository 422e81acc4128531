//! `lapterop-agent probe` and `firmware-erase`: one drive's firmware, by hand.

use crate::drive::{capacity_bytes, in_use, open_any, probe_json, AnyDrive};

/// `lapterop-agent probe DEVICE`: what the drive's firmware says, as JSON.
pub fn probe_command(device: &str) -> std::process::ExitCode {
    let name = device.trim_start_matches("/dev/");
    let rotational =
        std::fs::read_to_string(format!("/sys/class/block/{name}/queue/rotational")).is_ok_and(|s| s.trim() == "1");
    let v = probe_json(name, rotational, &crate::firmware::Policy::default());
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    if v.get("error").is_some() {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// `lapterop-agent firmware-erase DEVICE --method M --yes`: runs only the firmware purge step and prints
/// it as JSON. A diagnostic for leads and tests: it issues no certificate and claims no erasure (use
/// `wipe`, which follows the purge with an overwrite and read-back).
pub fn firmware_erase_command(device: &str, method: crate::firmware::Method, yes: bool) -> std::process::ExitCode {
    use crate::firmware::{
        plan, probe_ata, probe_nvme, run_ata_sanitize, run_ata_security_erase, run_nvme, Caps, Policy, Sleep,
    };
    use lapterop_certificate::StepKind;
    use std::process::ExitCode;
    let name = device.trim_start_matches("/dev/");
    if !yes {
        eprintln!("lapterop-agent firmware-erase: this destroys all data on /dev/{name}; add --yes to go on");
        return ExitCode::from(2);
    }
    if in_use(name) {
        eprintln!(
            "lapterop-agent firmware-erase: /dev/{name} or one of its partitions is mounted or in use as swap; refused"
        );
        return ExitCode::from(2);
    }
    let capacity = match capacity_bytes(name) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lapterop-agent firmware-erase: reading the size of {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let policy = Policy {
        allow_security_erase: method == crate::firmware::Method::AtaSecurityErase,
        ..Policy::default()
    };
    let rotational =
        std::fs::read_to_string(format!("/sys/class/block/{name}/queue/rotational")).is_ok_and(|s| s.trim() == "1");
    let mut progress = |p: Option<f64>| {
        if let Some(p) = p {
            eprintln!("progress {:.0} %", p * 100.0);
        }
    };
    let step = match open_any(name) {
        Ok(Some(AnyDrive::Nvme(mut c, ns))) => {
            let caps = probe_nvme(&mut c, ns);
            match plan(method, &caps, rotational, &policy) {
                Ok(p) => match p.chosen {
                    Some(kind) => run_nvme(&mut c, kind, &caps, capacity, &policy, &mut Sleep, &mut progress),
                    None => {
                        eprintln!("no firmware purge available on {name}: {:?}", p.skipped_steps());
                        return ExitCode::from(1);
                    }
                },
                Err(e) => {
                    eprintln!("lapterop-agent firmware-erase: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        Ok(Some(AnyDrive::Ata(mut d))) => {
            let caps = probe_ata(&mut d);
            let chosen = match plan(method, &caps, rotational, &policy) {
                Ok(p) => p.chosen,
                Err(e) => {
                    eprintln!("lapterop-agent firmware-erase: {e}");
                    return ExitCode::from(1);
                }
            };
            match (chosen, &caps) {
                (Some(k @ (StepKind::AtaSecurityErase | StepKind::AtaSecurityEraseEnhanced)), Caps::Ata(id)) => {
                    run_ata_security_erase(&mut d, k, id, capacity)
                }
                (Some(k), _) => run_ata_sanitize(&mut d, k, capacity, &policy, &mut Sleep, &mut progress),
                (None, _) => {
                    eprintln!("no firmware purge available on {name}");
                    return ExitCode::from(1);
                }
            }
        }
        Ok(Some(AnyDrive::Mmc(mut m))) => {
            let caps = crate::emmc::probe(&mut m);
            match plan(method, &caps, rotational, &policy).map(|p| p.chosen) {
                Ok(Some(kind)) => crate::emmc::run_purge(&mut m, kind, capacity, &policy),
                Ok(None) => {
                    eprintln!("no firmware purge available on {name}");
                    return ExitCode::from(1);
                }
                Err(e) => {
                    eprintln!("lapterop-agent firmware-erase: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        Ok(None) => {
            eprintln!("lapterop-agent firmware-erase: {name} takes no firmware commands (virtio, loop, SD card)");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("lapterop-agent firmware-erase: opening {name}: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{}", serde_json::to_string_pretty(&step).unwrap_or_default());
    if step.outcome == lapterop_certificate::StepOutcome::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
