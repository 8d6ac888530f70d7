#!/usr/bin/env bash
# Runs every test on a fresh machine: set-up and build, formatting and lints, the Rust tests,
# the JavaScript specs against real server processes, and a short run of the example.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
# The same target directory as the set-up's build, so the tests reuse it.
. scripts/cargo-env.sh

logs=$(mktemp -d)
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --workspace --all-targets -- -D warnings
# The binding builds without the embedded server too (the client alone).
cargo clippy --release -p zrooms-node --no-default-features -- -D warnings
echo "== sizes (no source file over 600 lines, no function over 80, without a written reason)"
python3 scripts/sizes.py
echo "== cargo test"
cargo test --release --workspace 2>&1 | tee "$logs/cargo.txt"
echo "== ava"
# The packet-loss spec measures media timing: it runs alone, after the others, so two specs
# competing for 2 cores do not starve its playout thread.
mapfile -t specs < <(ls __test__/*.spec.mjs | grep -v impairment)
npx ava "${specs[@]}" 2>&1 | tee "$logs/ava.txt"
npx ava __test__/impairment.spec.mjs 2>&1 | tee "$logs/ava-alone.txt"
echo "== conformance (a third-party client written from docs/protocol.md: conformance/)"
.venv/bin/python -m pytest -c conformance/pytest.ini conformance 2>&1 | tee "$logs/conformance.txt"
echo "== example (short run)"
node example-app/run.mjs --duration 2 2>&1 | tee "$logs/example.txt"

cargo_passed=$(grep -oE 'test result: ok\. [0-9]+ passed' "$logs/cargo.txt" | awk '{s+=$4} END {print s+0}')
ava_passed=$(cat "$logs/ava.txt" "$logs/ava-alone.txt" | grep -oE '^ *[0-9]+ tests? passed' | awk '{s+=$1} END {print s+0}')
py_passed=$(grep -oE '^[0-9]+ passed' "$logs/conformance.txt" | awk '{s+=$1} END {print s+0}')
echo "cargo: ${cargo_passed} passed; ava: ${ava_passed} passed; conformance: ${py_passed} passed; example: ok"
echo "all: $((cargo_passed + ava_passed + py_passed)) passed, 0 failed"
