//! The agent runs as a static glibc binary on the stick. Some crates find libc functions with `dlsym`,
//! which finds nothing in a static binary; `getrandom` 0.3 and later then fall back to polling
//! `/dev/random`, which on a laptop without RDRAND waits for interrupts for minutes (issue 14: the
//! result screen never came after the wipe). getrandom 0.2 calls the system call directly. This test
//! keeps every later version out of the agent's own (non-test) dependencies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn no_dlsym_getrandom_in_the_agent_binary() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "lapterop-agent",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(
        tree.contains("getrandom v0.2"),
        "the agent draws its random numbers through getrandom 0.2:\n{tree}"
    );
    let later: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("getrandom v") && !l.starts_with("getrandom v0.2"))
        .collect();
    assert!(
        later.is_empty(),
        "a dependency brings a getrandom that uses dlsym: {later:?}; see certificate::new_id"
    );
}
