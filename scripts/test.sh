#!/usr/bin/env bash
# Runs every test on a fresh machine: set-up and build, formatting and lints, the Rust tests,
# the JavaScript specs against real server processes, and a short run of the example.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

logs=$(mktemp -d)
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --all-targets -- -D warnings
echo "== cargo test"
cargo test --release --workspace 2>&1 | tee "$logs/cargo.txt"
echo "== ava"
npx ava 2>&1 | tee "$logs/ava.txt"
echo "== example (short run)"
node example-app/run.mjs --duration 2 2>&1 | tee "$logs/example.txt"

cargo_passed=$(grep -oE 'test result: ok\. [0-9]+ passed' "$logs/cargo.txt" | awk '{s+=$4} END {print s+0}')
ava_passed=$(grep -oE '[0-9]+ tests? passed' "$logs/ava.txt" | tail -1 | awk '{print $1+0}')
echo "cargo: ${cargo_passed} passed; ava: ${ava_passed} passed; example: ok"
echo "all: $((cargo_passed + ava_passed)) passed, 0 failed"
