//! The end-to-end run as a test (issue 8's acceptance): the live stick booted in QEMU under SeaBIOS
//! (wipe, install, upload), under OVMF with Secure Boot and Microsoft's keys without network (the
//! certificate waits on the stick), again with network (it is sent, once), and under keys that do not
//! trust shim (refused). Everything is checked from the host; see `xtask::e2e`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn the_live_stick_wipes_installs_and_certifies_a_donated_laptop() {
    if !xtask::vm_tools_or_skip() {
        return;
    }
    let missing: Vec<&str> = [
        ("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "ovmf"),
        ("/usr/bin/mtype", "mtools"),
        ("/usr/sbin/mkfs.ext4", "e2fsprogs"),
        ("/usr/sbin/sgdisk", "gdisk"),
    ]
    .iter()
    .filter(|(path, _)| !std::path::Path::new(path).exists())
    .map(|(_, package)| *package)
    .collect();
    if !missing.is_empty() {
        xtask::skip(
            "the end-to-end test",
            &format!("needs Debian packages {}", missing.join(", ")),
        );
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("lapterop-e2e-test-")
        .tempdir_in(xtask::vm::target_dir())
        .unwrap();
    if let Err(e) = xtask::e2e::run(work.path(), None) {
        let kept = work.keep();
        panic!(
            "end-to-end run failed: {e:#}\n(disks, stick, consoles and server data kept in {})",
            kept.display()
        );
    }
}
