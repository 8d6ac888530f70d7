#!/usr/bin/env bash
# Runs the example app on an embedded room server, after setting the machine up.
# Options go to example-app/run.mjs (see `node example-app/run.mjs --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
exec node example-app/run.mjs "$@"
