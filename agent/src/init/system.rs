//! The system calls of PID 1, through `nix`'s safe wrappers: mounts, module loading, the uevent
//! socket, the clock, power off; plus the sysfs walks and busybox helpers they need.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lapterop_certificate::lead_password;
use nix::mount::{mount, MsFlags};
use nix::sys::socket::{bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};

use super::coldplug::Uevent;

/// Mounts proc, sysfs, devtmpfs, tmpfs on /run and /tmp, and efivarfs on UEFI machines. Returns one
/// line per mount that failed (already mounted counts as fine).
pub fn mount_pseudo_filesystems() -> Vec<String> {
    let table: [(&str, &str, &str); 6] = [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", "/run", "tmpfs"),
        ("tmpfs", "/tmp", "tmpfs"),
        ("securityfs", "/sys/kernel/security", "securityfs"),
    ];
    let mut problems = Vec::new();
    for (source, target, fstype) in table {
        let _ = fs::create_dir_all(target);
        // /dev holds the device nodes themselves: `nodev` there would make every disk unopenable.
        let flags = if fstype == "devtmpfs" {
            MsFlags::MS_NOSUID
        } else {
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        };
        if let Err(e) = mount(Some(source), target, Some(fstype), flags, None::<&str>) {
            if e != nix::errno::Errno::EBUSY {
                problems.push(format!("mounting {fstype} on {target}: {e}"));
            }
        }
    }
    if Path::new("/sys/firmware/efi").exists() {
        let _ = mount(
            Some("efivarfs"),
            "/sys/firmware/efi/efivars",
            Some("efivarfs"),
            MsFlags::MS_NOSUID,
            None::<&str>,
        );
    }
    problems
}

/// `uname -r`.
pub fn kernel_release() -> Option<String> {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| u.release().to_str().map(str::to_owned))
}

/// Loads one module file with `finit_module`; "already loaded" and "no such device" are fine.
pub fn load_module(path: &Path) -> Result<(), String> {
    let file = fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let name = path.to_string_lossy();
    // MODULE_INIT_COMPRESSED_FILE (include/uapi/linux/module.h): the kernel decompresses .ko.xz/.zst.
    let flags = if name.ends_with(".xz") || name.ends_with(".zst") || name.ends_with(".gz") {
        nix::kmod::ModuleInitFlags::from_bits_retain(4)
    } else {
        nix::kmod::ModuleInitFlags::empty()
    };
    match nix::kmod::finit_module(file.as_fd(), c"", flags) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST | nix::errno::Errno::ENODEV | nix::errno::Errno::EBUSY) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Every `modalias` under `root` (not following symlinks).
pub fn sysfs_modaliases(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, &mut |p| {
        if p.file_name().is_some_and(|n| n == "modalias") {
            if let Ok(s) = fs::read_to_string(p) {
                let s = s.trim();
                if !s.is_empty() {
                    out.push(s.to_owned());
                }
            }
        }
    });
    out.sort();
    out.dedup();
    out
}

/// Writes `add` to every `uevent` file under `root`, as `udevadm trigger` does.
pub fn trigger_add(root: &Path) {
    walk(root, &mut |p| {
        if p.file_name().is_some_and(|n| n == "uevent") {
            let _ = fs::write(p, "add");
        }
    });
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, f),
            Ok(t) if t.is_file() => f(&p),
            _ => {}
        }
    }
}

/// A `NETLINK_KOBJECT_UEVENT` socket subscribed to the kernel's broadcast group.
#[derive(Debug)]
pub struct UeventSocket(std::os::fd::OwnedFd);

impl UeventSocket {
    /// Opens and binds it.
    pub fn open() -> nix::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 1))?;
        Ok(Self(fd))
    }

    /// The next kernel uevent, or `None` after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Uevent> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => {
                let mut buf = vec![0u8; 8192];
                let n = recv(std::os::fd::AsRawFd::as_raw_fd(&self.0), &mut buf, MsgFlags::empty()).ok()?;
                Uevent::parse(&buf[..n])
            }
            _ => None,
        }
    }
}

/// The build-time clock floor: the agent was built after this moment, so no real clock is before it.
pub fn build_floor() -> i64 {
    option_env!("SOURCE_DATE_EPOCH")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_764_000_000)
}

/// Sets the clock to `floor` (seconds since the epoch) if it is earlier (a dead CMOS battery).
pub fn raise_clock_to(floor: i64) {
    use nix::time::{clock_gettime, clock_settime, ClockId};
    if let Ok(now) = clock_gettime(ClockId::CLOCK_REALTIME) {
        if now.tv_sec() < floor {
            let _ = clock_settime(ClockId::CLOCK_REALTIME, nix::sys::time::TimeSpec::new(floor, 0));
        }
    }
}

/// Modules the stick's FAT needs with Debian's vfat defaults (codepage 437, iocharset ascii, UTF-8
/// names); loaded before probing, since nothing announces a filesystem with a uevent.
const FAT_MODULES: &[&str] = &["vfat", "nls_cp437", "nls_ascii", "nls_utf8"];

/// `loop`: the installer grows the installed filesystem and writes `machine.json` through loop
/// devices over single partitions (the disk stays claimed `O_EXCL`); no device announces it either.
const LOOP_MODULES: &[&str] = &["loop"];

/// Loads the modules for every device whose driver module is not loaded yet (`/sys/module/NAME`
/// missing), plus [`FAT_MODULES`] and [`LOOP_MODULES`]. Cheap to repeat: loaded modules are skipped
/// without reading them.
pub fn load_missing_modules(index: &super::coldplug::ModuleIndex, modules_dir: &Path) -> Vec<String> {
    let mut wanted: Vec<String> = FAT_MODULES
        .iter()
        .chain(LOOP_MODULES)
        .map(|m| (*m).to_owned())
        .collect();
    for alias in sysfs_modaliases(Path::new("/sys/devices")) {
        wanted.extend(index.matches(&alias));
    }
    let mut loaded = Vec::new();
    for module in wanted {
        if Path::new("/sys/module").join(&module).exists() {
            continue;
        }
        for path in index.load_order(&module).unwrap_or_default() {
            let name = super::coldplug::module_name(&path);
            if !Path::new("/sys/module").join(&name).exists() && load_module(&modules_dir.join(&path)).is_ok() {
                loaded.push(name);
            }
        }
    }
    loaded
}

/// Where the kernel's firmware loader looks first (`drivers/base/firmware_loader/main.c`,
/// `fw_path_para`); the other places it looks are under `/lib/firmware`, which the initramfs lacks.
const FIRMWARE_PATH_PARAMETER: &str = "/sys/module/firmware_class/parameters/path";

/// Makes the stick's module tree the system's, once the stick is mounted on `stick`: bind-mounts
/// `stick/lapterop/modules/RELEASE` over `/lib/modules/RELEASE` (it holds every initramfs module
/// too, so the kernel's own module requests through modprobe and the rescue shell see all of them)
/// and points the firmware loader at `stick/lapterop/firmware`. Returns the module directory.
pub fn use_stick_modules(stick: &Path, release: &str) -> Result<PathBuf, String> {
    let tree = stick.join(lapterop_certificate::STICK_MODULES).join(release);
    if !tree.join("modules.dep").is_file() {
        return Err(format!(
            "{} has no modules for kernel {release}; rebuild the stick with lapterop-image-builder live",
            tree.display()
        ));
    }
    let target = PathBuf::from("/lib/modules").join(release);
    let _ = fs::create_dir_all(&target);
    mount(
        Some(tree.as_path()),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("bind-mounting {} on {}: {e}", tree.display(), target.display()))?;
    let firmware = stick.join(lapterop_certificate::STICK_FIRMWARE);
    fs::write(FIRMWARE_PATH_PARAMETER, firmware.as_os_str().as_encoded_bytes())
        .map_err(|e| format!("setting the firmware path ({FIRMWARE_PATH_PARAMETER}): {e}"))?;
    Ok(target)
}

/// Undoes [`use_stick_modules`]'s bind mount, so the stick itself can be unmounted.
pub fn release_stick_modules(release: &str) {
    let _ = nix::mount::umount(&PathBuf::from("/lib/modules").join(release));
}

/// Finds and mounts the stick like [`find_and_mount_stick`], waiting up to `timeout` for it: a USB
/// stick shows up a second or more after its controller's driver loads (usb-storage waits before it
/// scans, then the disk needs `sd_mod`), so between tries the drivers of new devices are loaded.
pub fn wait_for_stick(
    expected_id: Option<&str>,
    target: &Path,
    index: &super::coldplug::ModuleIndex,
    modules_dir: &Path,
    timeout: Duration,
) -> Result<String, String> {
    let started = std::time::Instant::now();
    loop {
        load_missing_modules(index, modules_dir);
        match find_and_mount_stick(expected_id, target) {
            Ok(dev) => return Ok(dev),
            Err(e) if started.elapsed() >= timeout => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Finds the stick: a FAT partition holding the marker file (with the expected id when given),
/// mounts it read-write on `target`. Returns the device name.
pub fn find_and_mount_stick(expected_id: Option<&str>, target: &Path) -> Result<String, String> {
    let probe = PathBuf::from("/run/lapterop-probe");
    let _ = fs::create_dir_all(&probe);
    let _ = fs::create_dir_all(target);
    let mut names: Vec<String> = fs::read_dir("/sys/class/block")
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // A USB device first: the stick is one, and a donated laptop's own disk that copies the marker
    // (and the id, from the stick's kernel command line) must not be taken for it.
    names.sort_by_key(|n| !on_usb(n));
    for name in names {
        let dev = format!("/dev/{name}");
        if mount(
            Some(dev.as_str()),
            &probe,
            Some("vfat"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .is_err()
        {
            continue;
        }
        let id = fs::read_to_string(probe.join(super::STICK_MARKER))
            .ok()
            .map(|s| s.trim().to_owned());
        let _ = nix::mount::umount(&probe);
        match (id, expected_id) {
            (Some(found), Some(want)) if found != want => continue,
            (Some(_), _) => {
                mount(
                    Some(dev.as_str()),
                    target,
                    Some("vfat"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    None::<&str>,
                )
                .map_err(|e| format!("mounting {dev} read-write: {e}"))?;
                return Ok(name);
            }
            (None, _) => continue,
        }
    }
    Err("no FAT partition with the Lapterop marker file; is the stick plugged in?".into())
}

/// Whether block device `name` sits on a USB bus (its sysfs path goes through a USB device).
fn on_usb(name: &str) -> bool {
    fs::canonicalize(Path::new("/sys/class/block").join(name)).is_ok_and(|p| p.to_string_lossy().contains("/usb"))
}

/// Shows the reason and either powers off (unattended) or gives a rescue shell. When the live image
/// carries a lead password ([`lead_password::INITRAMFS_PATH`]), the shell opens only after it is
/// typed; three wrong tries, or a hash that cannot be read, switch the laptop off instead.
pub fn rescue_or_poweroff(reason: &str, power_off: bool) -> anyhow::Result<std::convert::Infallible> {
    println!("lapterop: {reason}");
    if !power_off && lead_allows_shell(Path::new("/").join(lead_password::INITRAMFS_PATH).as_path()) {
        println!("lapterop: rescue shell (type 'poweroff -f' to switch off)");
        let err = Command::new("/bin/sh").exec();
        println!("lapterop: no rescue shell: {err}");
    }
    nix::unistd::sync();
    nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF)?;
    anyhow::bail!("power off failed")
}

/// Whether the rescue shell may open: yes without a lead password in the live image, else only when
/// the person at the console types it.
fn lead_allows_shell(hash_file: &Path) -> bool {
    let text = match fs::read_to_string(hash_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
        Err(e) => {
            println!(
                "lapterop: the lead password {}: {e}; no rescue shell",
                hash_file.display()
            );
            return false;
        }
    };
    let hash = match lead_password::LeadHash::parse(&text) {
        Ok(h) => h,
        Err(e) => {
            println!(
                "lapterop: the lead password {}: {e}; no rescue shell",
                hash_file.display()
            );
            return false;
        }
    };
    let _quiet = crate::ui::input::NoEcho::on();
    let ok = lead_gate(&hash, &mut std::io::stdin().lock(), &mut std::io::stdout(), 3);
    if !ok {
        println!("lapterop: no rescue shell without the lead password; switching off");
    }
    ok
}

/// Asks for the lead password up to `tries` times on `input`; true when one was right.
pub fn lead_gate(
    hash: &lead_password::LeadHash,
    input: &mut impl std::io::BufRead,
    out: &mut impl std::io::Write,
    tries: u32,
) -> bool {
    for left in (0..tries).rev() {
        let _ = write!(
            out,
            "lapterop: the rescue shell is for the workshop lead. Lead password: "
        );
        let _ = out.flush();
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let _ = writeln!(out);
                return false;
            }
            Ok(_) => {}
        }
        let _ = writeln!(out);
        if hash.verify(line.trim_end_matches(['\r', '\n'])) {
            return true;
        }
        if left > 0 {
            let _ = writeln!(out, "lapterop: wrong password ({left} more tries)");
        }
    }
    false
}

#[cfg(test)]
mod lead_tests {
    use super::*;

    fn ask(typed: &str) -> (bool, String) {
        let hash = lead_password::LeadHash::with_salt("werkplaats-lead", vec![1; 16], 1_000);
        let mut out = Vec::new();
        let ok = lead_gate(&hash, &mut std::io::Cursor::new(typed.as_bytes().to_vec()), &mut out, 3);
        (ok, String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_rescue_shell_opens_only_for_the_lead_password() {
        let (ok, out) = ask("guess\nwerkplaats-lead\n");
        assert!(ok, "{out}");
        assert!(out.contains("wrong password (2 more tries)"), "{out}");
        let (ok, out) = ask("a\nb\nc\nwerkplaats-lead\n");
        assert!(!ok, "a fourth try is not given: {out}");
        assert_eq!(out.matches("Lead password:").count(), 3);
        assert!(!ask("").0, "end of input is no password");
        assert!(ask("werkplaats-lead\r\n").0, "a serial console's CR LF");
    }

    #[test]
    fn without_a_hash_file_the_shell_opens_and_a_broken_one_locks_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(lead_allows_shell(&dir.path().join("none")));
        std::fs::write(dir.path().join("bad"), "not a hash\n").unwrap();
        assert!(!lead_allows_shell(&dir.path().join("bad")));
    }
}
