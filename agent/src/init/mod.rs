//! `lapterop-agent init`: the agent as PID 1 of the live image's initramfs.
//!
//! Boot sequence (`shared/research/imaging.md` §4.6): mount the pseudo-filesystems; coldplug (uevent
//! netlink, modalias matching, `finit_module`, repeated until no new device appears for a while);
//! bring up wired links with DHCP (busybox `udhcpc`, shipped in the initramfs); set the clock to at
//! least the build-time floor; find the stick by its marker file and mount its data partition; then
//! run the flow from the site config. Anything fatal is shown with its reason and the machine drops to
//! a rescue shell (or powers off in unattended mode).

pub mod coldplug;
pub mod system;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options from the kernel command line (`lapterop.KEY=VALUE`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootOptions {
    /// `lapterop.mode`: `unattended`, `interactive` (default) or `rescue`.
    pub mode: String,
    /// `lapterop.stick`: the stick's id, as written in its marker file (excludes it from targets).
    pub stick_id: Option<String>,
    /// `lapterop.net=0` disables networking.
    pub network: bool,
}

/// Parses `/proc/cmdline`.
pub fn parse_cmdline(text: &str) -> BootOptions {
    let mut o = BootOptions {
        mode: "interactive".into(),
        stick_id: None,
        network: true,
    };
    for word in text.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        match key {
            "lapterop.mode" => o.mode = value.to_owned(),
            "lapterop.stick" => o.stick_id = Some(value.to_owned()),
            "lapterop.net" => o.network = value != "0",
            _ => {}
        }
    }
    o
}

/// Where the stick's marker file sits on its data partition.
pub const STICK_MARKER: &str = "lapterop/stick.id";

/// Coldplug until quiet: returns the modules loaded and the ones that failed (with errno text).
pub fn coldplug(index: &coldplug::ModuleIndex, modules_dir: &Path, quiet: Duration, limit: Duration) -> Coldplug {
    let mut report = Coldplug::default();
    let mut loaded: BTreeSet<String> = BTreeSet::new();
    let socket = system::UeventSocket::open();
    if let Err(e) = &socket {
        report.notes.push(format!("uevent socket: {e}; scanning sysfs only"));
    }
    let started = Instant::now();
    let mut load_for = |modalias: &str, report: &mut Coldplug| {
        for module in index.matches(modalias) {
            if !loaded.insert(module.clone()) {
                continue;
            }
            let Some(order) = index.load_order(&module) else {
                continue;
            };
            for path in order {
                match system::load_module(&modules_dir.join(&path)) {
                    Ok(()) => report.loaded.push(coldplug::module_name(&path)),
                    Err(e) => report.failed.push(format!("{}: {e}", coldplug::module_name(&path))),
                }
            }
        }
    };
    // Devices that exist already: their modalias files, then ask the kernel to replay their events.
    for alias in system::sysfs_modaliases(Path::new("/sys/devices")) {
        load_for(&alias, &mut report);
    }
    system::trigger_add(Path::new("/sys/devices"));
    if let Ok(sock) = &socket {
        let mut last_event = Instant::now();
        while last_event.elapsed() < quiet && started.elapsed() < limit {
            match sock.recv(Duration::from_millis(100)) {
                Some(ev) => {
                    last_event = Instant::now();
                    if let Some(alias) = ev.modalias() {
                        load_for(alias, &mut report);
                    }
                }
                None => {
                    // New devices without events yet (a controller that just bound): rescan cheaply.
                    for alias in system::sysfs_modaliases(Path::new("/sys/devices")) {
                        load_for(&alias, &mut report);
                    }
                }
            }
        }
    }
    report.loaded.sort();
    report.loaded.dedup();
    report
}

/// What coldplug did.
#[derive(Debug, Default)]
pub struct Coldplug {
    /// Modules loaded (or already present).
    pub loaded: Vec<String>,
    /// Modules that failed, with the reason.
    pub failed: Vec<String>,
    /// Anything else worth showing.
    pub notes: Vec<String>,
}

/// Runs the boot sequence. Only as PID 1 (or with `force`, for tests in a VM's shell).
pub fn run(force: bool) -> anyhow::Result<std::convert::Infallible> {
    if std::process::id() != 1 && !force {
        anyhow::bail!("lapterop-agent init runs as PID 1 of the live image; use --force to run it anyway");
    }
    let t0 = Instant::now();
    let mounts = system::mount_pseudo_filesystems();
    for m in &mounts {
        println!("lapterop: {m}");
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let opts = parse_cmdline(&cmdline);
    let release = system::kernel_release().unwrap_or_default();
    let modules_dir = PathBuf::from("/lib/modules").join(&release);
    let alias = std::fs::read_to_string(modules_dir.join("modules.alias")).unwrap_or_default();
    let dep = std::fs::read_to_string(modules_dir.join("modules.dep")).unwrap_or_default();
    let index = coldplug::ModuleIndex::parse(&alias, &dep);
    let cp = coldplug(
        &index,
        &modules_dir,
        Duration::from_millis(500),
        Duration::from_secs(20),
    );
    println!(
        "lapterop: coldplug loaded {} modules ({}), {} failed",
        cp.loaded.len(),
        cp.loaded.join(" "),
        cp.failed.len()
    );
    for f in cp.failed.iter().chain(&cp.notes) {
        println!("lapterop:   {f}");
    }
    system::raise_clock_to(system::build_floor());
    if opts.network {
        for line in system::dhcp_all_wired() {
            println!("lapterop: {line}");
        }
    }
    // Booted from the stick (GRUB passes lapterop.stick=): wait for it to appear; otherwise one try.
    let wait = Duration::from_secs(if opts.stick_id.is_some() { 30 } else { 0 });
    let stick = system::wait_for_stick(
        opts.stick_id.as_deref(),
        Path::new("/stick"),
        &index,
        &modules_dir,
        wait,
    );
    match &stick {
        Ok(dev) => println!("lapterop: stick {dev} mounted on /stick"),
        Err(e) => println!("lapterop: stick not found: {e}"),
    }
    println!("LAPTEROP-AGENT-READY {:.2}s", t0.elapsed().as_secs_f64());
    let reason = match opts.mode.as_str() {
        "rescue" => "rescue shell requested on the kernel command line".to_owned(),
        mode => format!("the {mode} flow is not part of this build yet; the rescue shell lets a lead look around"),
    };
    system::rescue_or_poweroff(&reason, opts.mode == "unattended")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_options() {
        let o =
            parse_cmdline("BOOT_IMAGE=/vmlinuz console=ttyS0 lapterop.mode=unattended lapterop.stick=abc123 quiet\n");
        assert_eq!(
            o,
            BootOptions {
                mode: "unattended".into(),
                stick_id: Some("abc123".into()),
                network: true
            }
        );
        let o = parse_cmdline("lapterop.net=0");
        assert_eq!((o.mode.as_str(), o.network), ("interactive", false));
    }
}
