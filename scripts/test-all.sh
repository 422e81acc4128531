#!/usr/bin/env bash
# Runs every Lapterop test. On a fresh Debian machine, as root, it first installs what it needs.
# Tests that need root (loop devices) or QEMU run here; when one cannot run it fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "setup"
ensure_apt_packages
ensure_python_venv

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
export LAPTEROP_REQUIRE_ROOT_TESTS=1
cargo test --workspace --locked 2>&1 | tee target/test-output.txt
