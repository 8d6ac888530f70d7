#!/usr/bin/env bash
# Brings a fresh Debian machine to a built checkout: system packages (apt, only the missing
# ones), npm packages, the native addon and the server binary. Safe to run again: each step
# is skipped when already done. Used by scripts/test.sh and scripts/example.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the build needs: a C toolchain and cmake for the bundled libopus, nasm for
# openh264's assembly (it must be there before the first build), libvpx for VP8, pkg-config.
# ALSA headers for cpal (microphone, speaker), libclang for nokhwa's V4L2 bindings (camera).
# Chromium (Debian's package) is the browser the web client's tests drive.
# python3 runs scripts/sizes.py (the size check of the test command).
# python3-venv holds the conformance client's packages (conformance/requirements.txt).
# openssl makes the TLS spec's certificates (__test__/tls.spec.mjs).
APT_PACKAGES=(build-essential pkg-config cmake nasm libvpx-dev libasound2-dev libclang-dev chromium python3 python3-venv openssl)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "setup: cargo (Rust) is required" >&2; exit 1; }
command -v node >/dev/null || { echo "setup: node (>= 20) is required" >&2; exit 1; }

if [ ! -d node_modules/@napi-rs/cli ] || [ ! -d node_modules/ava ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# The conformance suite's client (aiortc and friends from PyPI) in .venv, reinstalled when its
# pinned list changes.
if [ ! -x .venv/bin/python ] || [ conformance/requirements.txt -nt .venv/.installed ]; then
  echo "setup: python packages for the conformance suite"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r conformance/requirements.txt
  touch .venv/.installed
fi

# One target directory for everything (scripts/cargo-env.sh): the server and the load
# generator reuse the addon's dependencies instead of building them again.
. scripts/cargo-env.sh
echo "setup: building the native addon and the server (release, $CARGO_BUILD_TARGET)"
npx napi build --platform --release --js binding.js --dts binding.d.ts
cargo build --release -p zrooms-server -p zrooms-loadgen
mkdir -p target/release
for bin in zrooms-server zrooms-loadgen; do
  ln -sfn "../$CARGO_BUILD_TARGET/release/$bin" "target/release/$bin"
done
