//! GRUB for the stick: the BIOS boot code (`boot.img` + `core.img`) and the configuration files
//! shared by the BIOS and UEFI paths.
//!
//! - **BIOS:** `boot.img` (446 bytes of code, from Debian's `grub-pc-bin`) goes into the MBR; it loads
//!   `core.img` from sector 1, which `grub-mkimage -O i386-pc` builds from the same package's modules
//!   with the prefix [`CORE_PREFIX`] and an embedded early config ([`EARLY_CFG_BIOS`]). No
//!   `grub-install`, no loop device: the builder writes both into the image file itself.
//! - **UEFI:** Debian's signed `grubx64.efi` (and `grubia32.efi` for 32-bit UEFI, built the same
//!   way) has its own built-in modules and reads `/EFI/debian/grub.cfg` ([`EARLY_CFG_EFI`]) on the
//!   partition it was loaded from.
//!
//! GRUB is rooted on the device it was loaded from, never found by a file search: a donated laptop's
//! own disk could carry `lapterop/stick.id` and a `grub.cfg` of its choosing, and a search that found
//! it first would boot that disk's kernel command line and initrd through our signed chain, with the
//! stick (and its station key) attached (issue 15, point 2). Both early configs also check that the
//! partition they were given holds the marker, and stop with a message if it does not.
//! - Both then read `/boot/grub/grub.cfg` ([`menu`]): the menu with the kernel command line.
//!
//! `grub-mkimage` comes from the build host's `grub-common`, but always runs with `-d` pointing at the
//! pinned `grub-pc-bin` module directory, so the modules are the pinned ones.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::io::{io_err, IoError};

/// `core.img`'s prefix: the first MBR partition of the drive the BIOS booted from. GRUB puts the boot
/// drive in front of the comma itself (`(hd0,msdos1)`), and `$root` starts as that partition.
pub const CORE_PREFIX: &str = "(,msdos1)/boot/grub";

/// Embedded in `core.img` (BIOS): the menu from the boot drive's own partition.
pub const EARLY_CFG_BIOS: &str = "\
if [ -e /lapterop/stick.id ]; then
  configfile $prefix/grub.cfg
else
  echo \"Lapterop: the drive this laptop booted from is not a Lapterop stick; stopping.\"
fi
";

/// `/EFI/debian/grub.cfg` (UEFI, x64 and ia32): Debian's signed GRUB starts with `$root` on the
/// partition it was loaded from (the stick's), and reads this file from there.
pub const EARLY_CFG_EFI: &str = "\
if [ -e ($root)/lapterop/stick.id ]; then
  set prefix=($root)/boot/grub
  configfile $prefix/grub.cfg
else
  echo \"Lapterop: the partition GRUB was loaded from is not a Lapterop stick; stopping.\"
fi
";

/// The modules embedded in `core.img` (their dependencies are added by `grub-mkimage`).
pub const CORE_MODULES: &[&str] = &[
    "biosdisk",
    "part_msdos",
    "part_gpt",
    "fat",
    "configfile",
    "normal",
    "linux",
    "boot",
    "echo",
    "serial",
    "terminal",
    "test",
    "password_pbkdf2",
];

/// The largest `core.img` that fits between the MBR and the partition at 1 MiB.
pub const CORE_MAX: u64 = (2048 - 1) * 512;

/// Errors of the GRUB step.
#[derive(Debug, thiserror::Error)]
pub enum GrubError {
    /// grub-mkimage is not installed.
    #[error("running grub-mkimage: {0}; install Debian's grub-common package")]
    Missing(io::Error),
    /// grub-mkimage failed.
    #[error("grub-mkimage failed: {0}")]
    Failed(String),
    /// The core image is too large for the gap before the partition.
    #[error("core.img is {0} bytes, more than the {CORE_MAX} that fit before the partition at 1 MiB")]
    TooLarge(u64),
    /// boot.img is not a 512-byte boot sector.
    #[error("{0} is not GRUB's 512-byte boot.img")]
    BadBootImg(PathBuf),
    /// File I/O failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// The kernel command line of one menu entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuOptions {
    /// The stick id (`lapterop.stick=`).
    pub stick_id: String,
    /// Text appended to every entry's command line.
    pub extra_cmdline: String,
    /// Seconds the menu waits.
    pub timeout: u32,
    /// The lead password hash (`grub.pbkdf2.sha512....`): when set, GRUB's editor and command line ask
    /// for user `lead` and this password; the menu entries boot without it.
    pub lead_password: Option<String>,
}

/// The GRUB user name behind [`MenuOptions::lead_password`].
pub const LEAD_USER: &str = "lead";

/// Checks that text can go on a kernel command line inside a GRUB `linux` line unchanged.
pub fn check_cmdline_text(text: &str) -> Result<(), String> {
    match text
        .chars()
        .find(|c| c.is_control() || matches!(c, '"' | '\'' | '\\' | '$' | ';' | '{' | '}' | '#' | '`'))
    {
        Some(c) => Err(format!(
            "{c:?} cannot go on the kernel command line in grub.cfg (use plain words like lapterop.net=0)"
        )),
        None => Ok(()),
    }
}

/// `/boot/grub/grub.cfg`: serial and screen, a short timeout, and four entries (normal, safe
/// graphics, send the outbox, rescue shell).
pub fn menu(o: &MenuOptions) -> String {
    // The last console= becomes /dev/console, where the agent talks and listens: the laptop's own screen
    // and keyboard. Kernel messages go to the serial port too. Test sticks append console=ttyS0,115200
    // (--extra-cmdline) so the agent's lines reach the serial console the harness reads.
    let base = format!("console=ttyS0,115200 console=tty0 lapterop.stick={}", o.stick_id);
    let extra = if o.extra_cmdline.trim().is_empty() {
        String::new()
    } else {
        format!(" {}", o.extra_cmdline.trim())
    };
    let mut cfg = format!(
        "# Lapterop live stick: the menu shared by BIOS and UEFI GRUB.\n\
         serial --unit=0 --speed=115200\n\
         terminal_input console serial\n\
         terminal_output console serial\n\
         set timeout={}\n\
         set default=0\n",
        o.timeout
    );
    // With a superuser, GRUB asks for the user and password before the editor ('e') or the command
    // line ('c'); --unrestricted entries still boot without it. The rescue shell is guarded by the
    // agent with the same password (it also opens when a boot goes wrong).
    let unrestricted = match &o.lead_password {
        Some(hash) => {
            let _ = write!(
                cfg,
                "set superusers=\"{LEAD_USER}\"\npassword_pbkdf2 {LEAD_USER} {hash}\n"
            );
            " --unrestricted"
        }
        None => "",
    };
    for (title, more) in [
        ("Lapterop", " quiet"),
        ("Lapterop (safe graphics: nomodeset)", " quiet nomodeset"),
        ("Send saved certificates", " quiet lapterop.mode=upload"),
        ("Rescue shell", " lapterop.mode=rescue"),
    ] {
        // Writing to a String cannot fail.
        let _ = write!(
            cfg,
            "\nmenuentry \"{title}\"{unrestricted} {{\n    echo \"Loading Lapterop...\"\n    linux /boot/vmlinuz {base}{more}{extra}\n    initrd /boot/initrd.img\n}}\n"
        );
    }
    cfg
}

/// Builds `core.img` with `grub-mkimage -O i386-pc` from the modules in `module_dir` (the pinned
/// `grub-pc-bin`'s `usr/lib/grub/i386-pc`), with [`CORE_PREFIX`] and [`EARLY_CFG_BIOS`] embedded.
pub fn core_img(module_dir: &Path, work: &Path) -> Result<Vec<u8>, GrubError> {
    let early = work.join("early.cfg");
    std::fs::write(&early, EARLY_CFG_BIOS).map_err(io_err("writing", &early))?;
    let out = work.join("core.img");
    let output = Command::new("grub-mkimage")
        .args(["-O", "i386-pc", "-p", CORE_PREFIX])
        .arg("-d")
        .arg(module_dir)
        .arg("-c")
        .arg(&early)
        .arg("-o")
        .arg(&out)
        .args(CORE_MODULES)
        .output()
        .map_err(GrubError::Missing)?;
    if !output.status.success() {
        return Err(GrubError::Failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    let core = std::fs::read(&out).map_err(io_err("reading", &out))?;
    if core.len() as u64 > CORE_MAX {
        return Err(GrubError::TooLarge(core.len() as u64));
    }
    Ok(core)
}

/// Reads GRUB's `boot.img` (512 bytes ending in 0x55AA) from `module_dir`.
pub fn boot_img(module_dir: &Path) -> Result<[u8; 512], GrubError> {
    let path = module_dir.join("boot.img");
    let data = std::fs::read(&path).map_err(io_err("reading", &path))?;
    let sector: [u8; 512] = data.try_into().map_err(|_| GrubError::BadBootImg(path.clone()))?;
    if sector[510..] != [0x55, 0xAA] {
        return Err(GrubError::BadBootImg(path));
    }
    Ok(sector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_has_four_entries_with_the_stick_id_serial_and_extra() {
        let cfg = menu(&MenuOptions {
            stick_id: "abc123".into(),
            extra_cmdline: "lapterop.net=0".into(),
            timeout: 3,
            lead_password: None,
        });
        assert_eq!(cfg.matches("menuentry ").count(), 4);
        assert!(!cfg.contains("superusers") && !cfg.contains("--unrestricted"), "{cfg}");
        assert!(cfg.contains("menuentry \"Send saved certificates\""));
        assert!(cfg.contains("lapterop.mode=upload"));
        assert!(cfg.contains(
            "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\n"
        ));
        assert!(cfg.contains("set timeout=3\n"));
        for line in cfg.lines().filter(|l| l.trim_start().starts_with("linux ")) {
            assert!(
                line.contains("/boot/vmlinuz console=ttyS0,115200 console=tty0 lapterop.stick=abc123"),
                "{line}"
            );
            assert!(line.ends_with(" lapterop.net=0"), "{line}");
        }
        assert!(cfg.contains("menuentry \"Lapterop (safe graphics: nomodeset)\""));
        assert!(cfg.contains("quiet nomodeset lapterop.net=0"));
        assert!(cfg.contains("menuentry \"Rescue shell\" {\n    echo \"Loading Lapterop...\"\n    linux /boot/vmlinuz console=ttyS0,115200 console=tty0 lapterop.stick=abc123 lapterop.mode=rescue lapterop.net=0\n"));
        assert_eq!(cfg.matches("initrd /boot/initrd.img").count(), 4);
    }

    #[test]
    fn a_lead_password_locks_the_editor_but_not_the_entries() {
        let hash = format!("grub.pbkdf2.sha512.1000.{}.{}", "AB".repeat(64), "CD".repeat(64));
        let cfg = menu(&MenuOptions {
            stick_id: "abc123".into(),
            extra_cmdline: String::new(),
            timeout: 3,
            lead_password: Some(hash.clone()),
        });
        assert!(
            cfg.contains(&format!("set superusers=\"lead\"\npassword_pbkdf2 lead {hash}\n")),
            "{cfg}"
        );
        // Set before the first entry, and every entry boots without the password.
        assert!(cfg.find("superusers").unwrap() < cfg.find("menuentry").unwrap());
        assert_eq!(
            cfg.matches("menuentry ").count(),
            cfg.matches("\" --unrestricted {").count()
        );
        assert!(
            CORE_MODULES.contains(&"password_pbkdf2"),
            "BIOS GRUB needs the command built in"
        );
    }

    #[test]
    fn cmdline_text_refuses_grub_syntax() {
        assert!(check_cmdline_text("lapterop.mode=rescue loglevel=7").is_ok());
        for bad in ["a\nb", "a;reboot", "x=\"y\"", "$root", "a}b"] {
            assert!(check_cmdline_text(bad).is_err(), "{bad:?}");
        }
    }
}
