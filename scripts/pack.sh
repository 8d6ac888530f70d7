#!/usr/bin/env bash
# The npm tarballs, napi-rs style, into artifacts/pack/:
#   zrooms-VERSION.tgz                 the JavaScript facade, typings, loader, tools, example
#   zrooms-linux-x64-gnu-VERSION.tgz   the compiled addon and the zrooms-server binary
# The first lists the second as an optional dependency (npm installs it on Linux x64 glibc
# only), so installing zrooms needs no Rust. Builds first (scripts/setup.sh) when the addon
# or the server is missing. Usage: scripts/pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f zrooms.linux-x64-gnu.node ] || [ ! -x target/release/zrooms-server ] || [ ! -f binding.js ]; then
  ./scripts/setup.sh
fi
out=artifacts/pack
rm -rf "$out"
mkdir -p "$out/stage/zrooms" "$out/stage/linux-x64-gnu"

platform="$out/stage/linux-x64-gnu"
cp npm/linux-x64-gnu/package.json npm/linux-x64-gnu/README.md "$platform/"
# Debug sections are not needed at run time and are most of the files' size.
strip --strip-debug -o "$platform/zrooms.linux-x64-gnu.node" zrooms.linux-x64-gnu.node
strip --strip-debug -o "$platform/zrooms-server" target/release/zrooms-server

main="$out/stage/zrooms"
cp -r index.js index.d.ts binding.js binding.d.ts lib bin example-app README.md "$main/"
# The published manifest: the repository's, less what only a checkout uses, plus the
# platform package as an optional dependency of the same version.
node - "$main/package.json" <<'JS'
const fs = require('fs')
const pkg = require('./package.json')
const platform = require('./npm/linux-x64-gnu/package.json')
if (platform.version !== pkg.version) throw new Error(`version mismatch: ${platform.name} ${platform.version} vs ${pkg.version}`)
delete pkg.devDependencies
delete pkg.ava
pkg.scripts = {}
pkg.files = pkg.files.filter((f) => f !== '*.node')
pkg.optionalDependencies = { [platform.name]: platform.version }
fs.writeFileSync(process.argv[2], JSON.stringify(pkg, null, 2) + '\n')
JS
(cd "$out" && npm pack --silent ./stage/zrooms ./stage/linux-x64-gnu >/dev/null)
rm -rf "$out/stage"
ls -l "$out"
