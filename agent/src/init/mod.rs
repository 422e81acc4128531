//! `lapterop-agent init`: the agent as PID 1 of the live image's initramfs.
//!
//! Boot sequence (`shared/research/imaging.md` §4.6): mount the pseudo-filesystems; coldplug (uevent
//! netlink, modalias matching, `finit_module`, repeated until no new device appears for a while)
//! with the initramfs's modules (disks, USB, the stick's FAT); set the clock to at least the
//! build-time floor; find the stick by its marker file and mount its data partition; make the
//! stick's module tree the system's and load what the rest of the hardware asks for (network,
//! graphics, power, with their firmware from the stick); bring up wired links with DHCP (busybox
//! `udhcpc`, shipped in the initramfs); then run the flow from the site config. Anything fatal is
//! shown with its reason and the machine drops to a rescue shell (or powers off in unattended mode).

pub mod coldplug;
pub mod netlink;
pub mod network;
pub mod system;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options from the kernel command line (`lapterop.KEY=VALUE`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootOptions {
    /// `lapterop.mode`: `unattended`, `interactive`, `upload` (send the outbox, then power off) or `rescue`;
    /// `None` takes the site config's `flow.mode`.
    pub mode: Option<String>,
    /// `lapterop.stick`: the stick's id, as written in its marker file (excludes it from targets).
    pub stick_id: Option<String>,
    /// `lapterop.net=0` disables networking.
    pub network: bool,
}

/// Parses `/proc/cmdline`.
pub fn parse_cmdline(text: &str) -> BootOptions {
    let mut o = BootOptions {
        mode: None,
        stick_id: None,
        network: true,
    };
    for word in text.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        match key {
            "lapterop.mode" => o.mode = Some(value.to_owned()),
            "lapterop.stick" => o.stick_id = Some(value.to_owned()),
            "lapterop.net" => o.network = value != "0",
            _ => {}
        }
    }
    o
}

/// Where the stick's marker file sits on its data partition.
pub const STICK_MARKER: &str = lapterop_certificate::STICK_MARKER;

/// Loads the modules a device's modalias asks for, each module once: the one loader behind coldplug
/// at boot and hotplug for the rest of the session.
#[derive(Debug)]
pub struct Loader<'a> {
    index: &'a coldplug::ModuleIndex,
    modules_dir: &'a Path,
    tried: BTreeSet<String>,
    skip_loaded: bool,
}

impl<'a> Loader<'a> {
    /// A loader for the modules of `index` in `modules_dir`.
    pub fn new(index: &'a coldplug::ModuleIndex, modules_dir: &'a Path) -> Self {
        Self {
            index,
            modules_dir,
            tried: BTreeSet::new(),
            skip_loaded: false,
        }
    }

    /// Skips modules the kernel already has (`/sys/module/NAME`), so a report names only what this
    /// loader added (hotplug, after coldplug loaded the rest).
    pub fn skipping_loaded(mut self) -> Self {
        self.skip_loaded = true;
        self
    }

    /// Loads every module `modalias` matches that was not tried yet, with its dependencies first;
    /// adds what was loaded and what failed to `report`.
    pub fn load_for(&mut self, modalias: &str, report: &mut Coldplug) {
        for module in self.index.matches(modalias) {
            if !self.tried.insert(module.clone()) {
                continue;
            }
            let Some(order) = self.index.load_order(&module) else {
                continue;
            };
            for path in order {
                let name = coldplug::module_name(&path);
                if self.skip_loaded && Path::new("/sys/module").join(&name).exists() {
                    continue;
                }
                match system::load_module(&self.modules_dir.join(&path)) {
                    Ok(()) => report.loaded.push(name),
                    Err(e) => report.failed.push(format!("{name}: {e}")),
                }
            }
        }
    }
}

/// Coldplug until quiet: returns the modules loaded and the ones that failed (with errno text).
pub fn coldplug(index: &coldplug::ModuleIndex, modules_dir: &Path, quiet: Duration, limit: Duration) -> Coldplug {
    let mut report = Coldplug::default();
    let mut loader = Loader::new(index, modules_dir);
    let socket = system::UeventSocket::open();
    if let Err(e) = &socket {
        report.notes.push(format!("uevent socket: {e}; scanning sysfs only"));
    }
    let started = Instant::now();
    // Devices that exist already: their modalias files, then ask the kernel to replay their events.
    for alias in system::sysfs_modaliases(Path::new("/sys/devices")) {
        loader.load_for(&alias, &mut report);
    }
    system::trigger_add(Path::new("/sys/devices"));
    if let Ok(sock) = &socket {
        let mut last_event = Instant::now();
        while last_event.elapsed() < quiet && started.elapsed() < limit {
            match sock.recv(Duration::from_millis(100)) {
                Some(ev) => {
                    last_event = Instant::now();
                    if let Some(alias) = ev.modalias() {
                        loader.load_for(alias, &mut report);
                    }
                }
                None => {
                    // New devices without events yet (a controller that just bound): rescan cheaply.
                    for alias in system::sysfs_modaliases(Path::new("/sys/devices")) {
                        loader.load_for(&alias, &mut report);
                    }
                }
            }
        }
    }
    report.loaded.sort();
    report.loaded.dedup();
    report
}

/// Hotplug for the rest of the session: a thread that reads the kernel's uevents and loads what each
/// added device's modalias asks for with [`Loader`], exactly as coldplug does (a USB network adapter
/// or a dock plugged in after boot gets its driver; the driver's firmware comes through the kernel's
/// own loader from the stick's firmware path, set at boot). Devices that appeared between coldplug and
/// this thread's start are found by one sysfs scan first.
pub fn start_hotplug(index: coldplug::ModuleIndex, modules_dir: PathBuf) -> std::io::Result<()> {
    let sock = system::UeventSocket::open().map_err(std::io::Error::from)?;
    std::thread::Builder::new().name("hotplug".into()).spawn(move || {
        let mut loader = Loader::new(&index, &modules_dir).skipping_loaded();
        let mut report = Coldplug::default();
        for alias in system::sysfs_modaliases(Path::new("/sys/devices")) {
            loader.load_for(&alias, &mut report);
        }
        announce_loaded("devices found after coldplug", &report);
        loop {
            let Some(ev) = sock.recv(Duration::from_secs(5)) else {
                continue;
            };
            if ev.action != "add" {
                continue;
            }
            if let Some(alias) = ev.modalias() {
                let mut report = Coldplug::default();
                loader.load_for(alias, &mut report);
                announce_loaded(&ev.devpath, &report);
            }
        }
    })?;
    Ok(())
}

fn announce_loaded(what: &str, report: &Coldplug) {
    if report.loaded.is_empty() && report.failed.is_empty() {
        return;
    }
    let mut line = format!("lapterop: hotplug: {what}: loaded {}", report.loaded.join(" "));
    if !report.failed.is_empty() {
        line.push_str(&format!("; failed {}", report.failed.join(", ")));
    }
    network::announce(&line);
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
    let softdep = std::fs::read_to_string(modules_dir.join("modules.softdep")).unwrap_or_default();
    let index = coldplug::ModuleIndex::parse(&alias, &dep).with_softdeps(&softdep);
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
    // Certificate ids, sample seeds and random patterns need the kernel's random numbers. A blocking
    // getrandom(2) makes the kernel gather jitter entropy now (a second or so) instead of leaving a
    // later caller waiting for interrupts on a machine without RDRAND.
    let seeded = Instant::now();
    let mut seed = [0u8; 16];
    match getrandom::getrandom(&mut seed) {
        Ok(()) => println!(
            "lapterop: kernel random numbers ready after {:.1}s",
            seeded.elapsed().as_secs_f64()
        ),
        Err(e) => println!("lapterop: the kernel's random numbers: {e}"),
    }
    system::raise_clock_to(system::build_floor());
    // Booted from the stick (GRUB passes lapterop.stick=): wait for it to appear; otherwise one try.
    let wait = Duration::from_secs(if opts.stick_id.is_some() { 30 } else { 0 });
    let stick = system::wait_for_stick(
        opts.stick_id.as_deref(),
        Path::new(STICK_MOUNT),
        &index,
        &modules_dir,
        wait,
    );
    let stick_disk = match &stick {
        Ok(dev) => {
            println!("lapterop: stick {dev} mounted on /stick");
            Some(whole_disk_of(dev))
        }
        Err(e) => {
            println!("lapterop: stick not found: {e}");
            None
        }
    };
    // Network, graphics and power drivers and their firmware live on the stick (docs/live-image.md).
    let mut stick_modules = false;
    let mut session_index = None;
    if stick_disk.is_some() {
        match system::use_stick_modules(Path::new(STICK_MOUNT), &release) {
            Ok(dir) => {
                stick_modules = true;
                let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
                let full = coldplug::ModuleIndex::parse(&read("modules.alias"), &read("modules.dep"))
                    .with_softdeps(&read("modules.softdep"));
                let loaded = system::load_missing_modules(&full, &dir);
                println!(
                    "lapterop: stick modules: {} in the tree, loaded {} ({})",
                    full.len(),
                    loaded.len(),
                    loaded.join(" ")
                );
                session_index = Some((full, dir));
            }
            Err(e) => println!("lapterop: stick modules: {e}"),
        }
    }
    // Devices plugged in from now on get their drivers too.
    let (hot_index, hot_dir) = session_index.unwrap_or((index, modules_dir));
    if let Err(e) = start_hotplug(hot_index, hot_dir) {
        println!("lapterop: hotplug: the uevent socket: {e}; devices plugged in later get no driver");
    }
    if opts.network {
        // The Wi-Fi networks of the site config (a broken config is reported by `after_boot`, which
        // reads it again: then no Wi-Fi).
        let wifi = crate::site::Site::load(&Path::new(STICK_MOUNT).join("lapterop"))
            .map(|s| s.network.wifi)
            .unwrap_or_default();
        match network::start(wifi) {
            Ok(()) => network::settle(Duration::from_secs(12)),
            Err(e) => println!("lapterop: network: the routing socket: {e}; no DHCP"),
        }
    }
    // Whether this boot was verified: the kernel's lockdown mode is [integrity] under Secure Boot.
    if let Ok(mode) = std::fs::read_to_string("/sys/kernel/security/lockdown") {
        println!("lapterop: kernel lockdown: {}", mode.trim());
    }
    println!("LAPTEROP-AGENT-READY {:.2}s", t0.elapsed().as_secs_f64());
    let outcome = after_boot(&opts, stick_disk.as_deref());
    if stick_disk.is_some() {
        // The outbox and logs are on the stick: make sure they are on it before the power goes.
        nix::unistd::sync();
        if outcome.power_off {
            if stick_modules {
                system::release_stick_modules(&release);
            }
            let _ = nix::mount::umount(STICK_MOUNT);
        }
    }
    system::rescue_or_poweroff(&outcome.reason, outcome.power_off)
}

/// Where the stick's data partition is mounted.
pub const STICK_MOUNT: &str = "/stick";

/// How the boot ends.
struct Ending {
    reason: String,
    power_off: bool,
}

/// Runs what the mode asks for once the stick is mounted.
fn after_boot(opts: &BootOptions, stick_disk: Option<&str>) -> Ending {
    let rescue = |reason: String| Ending {
        reason,
        power_off: false,
    };
    if opts.mode.as_deref() == Some("rescue") {
        return rescue("rescue shell requested on the kernel command line".into());
    }
    let Some(stick_disk) = stick_disk else {
        return rescue("the Lapterop stick was not found, so there is no site config; nothing was written".into());
    };
    let dir = Path::new(STICK_MOUNT).join("lapterop");
    let site = match crate::site::Site::load(&dir) {
        Ok(s) => s,
        Err(e) => return rescue(format!("{e}; fix site.toml on the stick (it is a plain text file)")),
    };
    let mode = opts.mode.clone().unwrap_or_else(|| match site.flow.mode {
        crate::site::Mode::Interactive => "interactive".into(),
        crate::site::Mode::Unattended => "unattended".into(),
    });
    // The network's lines go to the kernel log while the volunteer's screens show it.
    network::quiet_console(mode == "interactive");
    // Certificates from earlier laptops go first, before a long wipe: the lead sees them tonight.
    let outbox = crate::outbox::Outbox::open(&dir.join("outbox"));
    let pending = outbox
        .as_ref()
        .map(|o| o.pending().map(|p| p.len()).unwrap_or(0))
        .unwrap_or(0);
    // With certificates waiting, a cable whose lease is on its way is worth a short wait.
    let network_now = if pending > 0 && opts.network {
        crate::network::wait_for_lease_if_cable(crate::job::steps::UPLOAD_LEASE_WAIT)
    } else {
        crate::network::summary()
    };
    let online = network_now.online();
    if let (Some(server), Ok(outbox), true) = (&site.server, &outbox, pending > 0 && opts.network) {
        if online {
            println!("lapterop: {pending} certificate(s) from earlier runs wait in the outbox; sending them");
            let mut say = |e: crate::job::Event<'_>| {
                if let Some(line) = crate::job::console::line(&site, &e) {
                    println!("{line}");
                }
            };
            if let Err(e) = crate::job::send_outbox(outbox, server, "", &mut std::thread::sleep, &mut say) {
                println!("lapterop: sending the outbox: {e:#}");
            }
            println!("LAPTEROP-UPLOAD-DONE");
        } else {
            println!(
                "lapterop: {pending} certificate(s) from earlier runs wait in the outbox; they are sent as soon as \
                 a network link gets an address"
            );
        }
    }
    // From now on, whenever a link gets a lease, whatever waits in the outbox is sent.
    if let (Some(server), true) = (&site.server, opts.network) {
        if let Err(e) = start_courier(server.clone(), dir.join("outbox")) {
            println!("lapterop: the outbox courier: {e}; certificates wait for the next boot");
        }
    }
    match mode.as_str() {
        "upload" => {
            let reason = match (&site.server, &outbox) {
                (None, _) => "no [server] in site.toml: certificates stay in the outbox".to_owned(),
                (Some(_), Err(e)) => format!("the outbox on the stick cannot be opened: {e}"),
                (Some(_), Ok(_)) => "outbox sent (see the lines above)".to_owned(),
            };
            Ending {
                reason,
                power_off: site.flow.power_off,
            }
        }
        "unattended" => {
            let stop = std::sync::atomic::AtomicBool::new(false);
            let job = crate::job::Job {
                site: &site,
                dir: &dir,
                stick_disk: Some(stick_disk),
                only: &[],
                stop: &stop,
                image_key: Path::new(crate::site::BAKED_IMAGE_KEY),
            };
            let operator = lapterop_certificate::Person {
                name: site.ui.operator.clone().unwrap_or_else(|| "unattended".into()),
                role: None,
            };
            let ui = &mut crate::job::console::Unattended::new(&site, operator);
            // Unattended benches have nobody at the screen: the reason is on the console and in the log.
            let reason = match crate::job::run(&job, &crate::job::System, ui) {
                Ok(crate::job::Ended::Done(r)) => {
                    let _ = crate::cli::run::exit_code(&r);
                    "job finished".to_owned()
                }
                Ok(ended) => format!("the job stopped: {}", crate::job::stopped_line(&ended)),
                Err(e) => format!("the job could not run: {e}"),
            };
            Ending {
                reason,
                power_off: site.flow.power_off,
            }
        }
        "interactive" => Ending {
            reason: crate::flow::console(&site, &dir, Some(stick_disk), Path::new(crate::site::BAKED_IMAGE_KEY)),
            power_off: true,
        },
        other => rescue(format!(
            "lapterop.mode={other} is not a mode (use interactive, unattended, upload or rescue); the rescue shell \
             lets a lead look around"
        )),
    }
}

/// Starts the outbox courier: a thread that, every time a link gets a lease, sends what waits in the
/// outbox (older certificates and this laptop's, if its own upload found no network), then tells the
/// screens ([`crate::network::delivered`]) so the result screen shows the receipt and the donor page.
fn start_courier(server: crate::site::Server, outbox_dir: PathBuf) -> std::io::Result<()> {
    std::thread::Builder::new().name("courier".into()).spawn(move || {
        let mut seen = crate::network::leases();
        loop {
            let generation = crate::network::generation();
            if crate::network::leases() == seen {
                crate::network::wait_change(generation, Duration::from_secs(60));
                continue;
            }
            seen = crate::network::leases();
            let Ok(outbox) = crate::outbox::Outbox::open(&outbox_dir) else {
                continue;
            };
            let pending = outbox.pending().map(|p| p.len()).unwrap_or(0);
            if pending == 0 {
                continue;
            }
            network::announce(&format!(
                "lapterop: network came: sending {pending} certificate(s) from the outbox"
            ));
            let mut say = |e: crate::job::Event<'_>| {
                if let crate::job::Event::Sent { file, sent } = e {
                    network::announce(&match sent {
                        crate::outbox::Sent::Uploaded => format!("lapterop: sent {file}"),
                        crate::outbox::Sent::AlreadyDone => return,
                        crate::outbox::Sent::Failed(e) if e.retryable() => format!("lapterop: LAP-N01 {e}"),
                        crate::outbox::Sent::Failed(e) => format!("lapterop: LAP-N02 {e}"),
                    });
                }
            };
            if let Err(e) = crate::job::send_outbox(&outbox, &server, "", &mut std::thread::sleep, &mut say) {
                network::announce(&format!("lapterop: sending the outbox: {e:#}"));
            }
            crate::network::delivered();
            network::announce("LAPTEROP-COURIER-DONE");
        }
    })?;
    Ok(())
}

/// The whole disk a partition belongs to (`sda1` -> `sda`, `nvme0n1p2` -> `nvme0n1`), from sysfs.
fn whole_disk_of(partition: &str) -> String {
    let dir = Path::new("/sys/class/block").join(partition);
    if dir.join("partition").exists() {
        if let Some(parent) = std::fs::canonicalize(&dir).ok().and_then(|p| {
            p.parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        }) {
            return parent;
        }
    }
    partition.to_owned()
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
                mode: Some("unattended".into()),
                stick_id: Some("abc123".into()),
                network: true
            }
        );
        let o = parse_cmdline("lapterop.net=0");
        assert_eq!((o.mode, o.network), (None, false));
    }
}
