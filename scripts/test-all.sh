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

step "module graph"
python3 scripts/module-cycles.py

step "tests"
export LAPTEROP_REQUIRE_ROOT_TESTS=1
# Every skipped test adds a line here (lapterop-testkit); under LAPTEROP_REQUIRE_ROOT_TESTS=1 a skip also
# fails its test, so the count must be 0.
export LAPTEROP_SKIP_LOG="$PWD/target/skipped-tests.txt"
rm -f "$LAPTEROP_SKIP_LOG"
status=0
cargo test --workspace --locked 2>&1 | tee target/test-output.txt || status=$?
skipped=0
if [ -f "$LAPTEROP_SKIP_LOG" ]; then skipped=$(wc -l < "$LAPTEROP_SKIP_LOG"); fi
# One line for the whole run, from libtest's own "test result:" lines.
passed=$(grep -o '[0-9]\+ passed' target/test-output.txt | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]\+ failed' target/test-output.txt | awk '{s += $1} END {print s + 0}')
step "$passed passed, $failed failed, $skipped skipped"
if [ "$skipped" -ne 0 ]; then cat "$LAPTEROP_SKIP_LOG"; fi
if [ "$status" -ne 0 ]; then exit "$status"; fi
if [ "$skipped" -ne 0 ]; then
  echo "test-all: $skipped test(s) were skipped; every test must run here" >&2
  exit 1
fi
