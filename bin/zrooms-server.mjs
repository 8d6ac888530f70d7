#!/usr/bin/env node
// `npx zrooms-server [options]`: runs the room server binary shipped in this platform's package
// (zrooms-linux-x64-gnu), or a source checkout's release build. Arguments, standard streams and
// the exit status are the binary's; SIGINT, SIGTERM and SIGHUP are passed on to it.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** The platform packages that carry a server binary, by `${platform}-${arch}`. */
const PACKAGES = { 'linux-x64': 'zrooms-linux-x64-gnu' }

function binary() {
  if (process.env.ZROOMS_SERVER_BIN) return process.env.ZROOMS_SERVER_BIN
  const key = `${process.platform}-${process.arch}`
  const pkg = PACKAGES[key]
  if (pkg) {
    try {
      return require.resolve(`${pkg}/zrooms-server`)
    } catch {}
  }
  const local = join(root, 'target', 'release', 'zrooms-server')
  if (existsSync(local)) return local
  const why = pkg
    ? `the package ${pkg} is not installed (npm skips optional dependencies with --omit=optional)`
    : `no prebuilt server for ${key} yet; build it with \`cargo build --release -p zrooms-server\``
  console.error(`zrooms-server: ${why}`)
  process.exit(1)
}

const child = spawn(binary(), process.argv.slice(2), { stdio: 'inherit' })
const forward = (signal) => child.kill(signal)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, forward)
child.on('error', (e) => {
  console.error(`zrooms-server: ${e.message}`)
  process.exit(1)
})
child.on('exit', (code, signal) => {
  if (signal) {
    // Die of the same signal, so whoever started us sees what happened.
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.off(s, forward)
    process.kill(process.pid, signal)
    return
  }
  process.exit(code ?? 1)
})
