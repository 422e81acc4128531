//! Lapterop developer tasks. The one place for the VM harness: [`vm`] boots the live kernel with a
//! test initramfs in QEMU and runs commands in the guest, for `cargo xtask vm-run` and for other
//! crates' integration tests; [`stick`] builds the real stick image and boots it through SeaBIOS or
//! OVMF (with and without Secure Boot) from an emulated USB stick.

pub mod console;
pub mod e2e;
pub mod qmp;
pub mod stick;
pub mod vm;
pub mod wifi;

/// Whether tests that need QEMU, root or network to Debian must run (CI sets
/// `LAPTEROP_REQUIRE_ROOT_TESTS=1`): then a missing prerequisite fails the test instead of skipping.
pub fn require_vm_tests() -> bool {
    lapterop_testkit::required()
}

/// Says that a test did not run, past libtest's capture, counted, and failing in CI
/// ([`lapterop_testkit::skip`]).
pub use lapterop_testkit::skip;

/// For VM tests: true when QEMU and the other tools are there. Otherwise panics under
/// `LAPTEROP_REQUIRE_ROOT_TESTS=1` (CI) or says loudly that the test is skipped, and returns false.
pub fn vm_tools_or_skip() -> bool {
    let missing = missing_vm_tools();
    if missing.is_empty() {
        return true;
    }
    skip("a VM test", &format!("needs Debian packages {}", missing.join(", ")));
    false
}

/// The host tools the VM harness needs that are missing (empty when it can run).
pub fn missing_vm_tools() -> Vec<&'static str> {
    let on_path = |tool: &str| {
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
    };
    let mut missing = Vec::new();
    for (tool, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
    ] {
        if !on_path(tool) {
            missing.push(package);
        }
    }
    if !["/usr/sbin/depmod", "/sbin/depmod"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
        && !on_path("depmod")
    {
        missing.push("kmod");
    }
    missing
}
