//! CPU and memory size from `/proc/cpuinfo` and `/proc/meminfo`.
//!
//! These are the files `sysinfo` reads on Linux; parsing them here keeps one code path for the live
//! system and for a recorded tree (`--root`), so `sysinfo` is not used.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use super::tree::Tree;
use super::Gap;

/// The CPU as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    /// Model name (`Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Vendor id (`GenuineIntel`, `AuthenticAMD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Physical packages.
    pub sockets: u32,
    /// Physical cores over all packages.
    pub cores: u32,
    /// Logical processors (hardware threads).
    pub threads: u32,
    /// Runs 64-bit code (x86 `lm` flag); `None` when the flags are not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_64bit: Option<bool>,
    /// Hardware virtualisation: `vt-x`, `amd-v`, or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualization: Option<String>,
    /// The kernel runs under a hypervisor (`hypervisor` flag).
    pub hypervisor: bool,
}

/// Reads `proc/cpuinfo`.
pub fn read_cpu(tree: &Tree, gaps: &mut Vec<Gap>) -> Option<Cpu> {
    match tree.read("proc/cpuinfo") {
        Ok(bytes) => {
            let cpu = parse_cpuinfo(&String::from_utf8_lossy(&bytes));
            if cpu.is_none() {
                gaps.push(Gap::new("cpu", "proc/cpuinfo lists no processor"));
            }
            cpu
        }
        Err(err) => {
            gaps.push(Gap::new("cpu", format!("cannot read proc/cpuinfo: {err}")));
            None
        }
    }
}

/// Parses the text of `/proc/cpuinfo` (x86 layout; other architectures give model and threads).
pub fn parse_cpuinfo(text: &str) -> Option<Cpu> {
    let mut cpu = Cpu::default();
    let mut flags: Option<BTreeSet<&str>> = None;
    // Per logical processor: (physical id, core id, "cpu cores").
    let mut packages = BTreeSet::new();
    let mut cores = BTreeSet::new();
    let mut cores_per_package: Option<u32> = None;
    let (mut phys, mut core) = (None, None);
    for line in text.lines().chain(std::iter::once("")) {
        let Some((key, value)) = line.split_once(':') else {
            // Blank line: end of one processor block.
            if let Some(p) = phys.take() {
                packages.insert(p);
                if let Some(c) = core.take() {
                    cores.insert((p, c));
                }
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => cpu.threads += 1,
            "model name" if cpu.model.is_none() => cpu.model = Some(value.to_string()),
            "vendor_id" if cpu.vendor.is_none() => cpu.vendor = Some(value.to_string()),
            "physical id" => phys = value.parse::<u32>().ok(),
            "core id" => core = value.parse::<u32>().ok(),
            "cpu cores" => cores_per_package = value.parse().ok(),
            "flags" if flags.is_none() => flags = Some(value.split_whitespace().collect()),
            _ => {}
        }
    }
    if cpu.threads == 0 {
        return None;
    }
    cpu.sockets = u32::try_from(packages.len()).unwrap_or(u32::MAX).max(1);
    cpu.cores = if !cores.is_empty() {
        u32::try_from(cores.len()).unwrap_or(u32::MAX)
    } else if let Some(n) = cores_per_package {
        n * cpu.sockets
    } else {
        cpu.threads
    };
    if let Some(flags) = flags {
        cpu.is_64bit = Some(flags.contains("lm"));
        cpu.virtualization = if flags.contains("vmx") {
            Some("vt-x".to_string())
        } else if flags.contains("svm") {
            Some("amd-v".to_string())
        } else {
            None
        };
        cpu.hypervisor = flags.contains("hypervisor");
    }
    Some(cpu)
}

/// `MemTotal` of `proc/meminfo` in bytes: the memory the kernel can use (less than what is installed).
pub fn read_mem_total(tree: &Tree, gaps: &mut Vec<Gap>) -> Option<u64> {
    let text = match tree.read("proc/meminfo") {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => {
            gaps.push(Gap::new("memory", format!("cannot read proc/meminfo: {err}")));
            return None;
        }
    };
    let total = text.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        kib.checked_mul(1024)
    });
    if total.is_none() {
        gaps.push(Gap::new("memory", "proc/meminfo has no readable MemTotal line"));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cores_and_threads_from_core_ids() {
        let block = |n: u32, core: u32| {
            format!(
                "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU\nphysical id\t: 0\n\
                 core id\t\t: {core}\ncpu cores\t: 2\nflags\t\t: fpu lm vmx\n\n"
            )
        };
        let text = [block(0, 0), block(1, 1), block(2, 0), block(3, 1)].concat();
        let cpu = parse_cpuinfo(&text).unwrap();
        assert_eq!((cpu.sockets, cpu.cores, cpu.threads), (1, 2, 4));
        assert_eq!(cpu.is_64bit, Some(true));
        assert_eq!(cpu.virtualization.as_deref(), Some("vt-x"));
        assert!(!cpu.hypervisor);
    }

    #[test]
    fn no_flags_means_unknown_word_size() {
        let cpu = parse_cpuinfo("processor : 0\nmodel name : X\n").unwrap();
        assert_eq!(cpu.is_64bit, None);
        assert_eq!(cpu.cores, 1);
        assert!(parse_cpuinfo("garbage\n\n").is_none());
    }
}
