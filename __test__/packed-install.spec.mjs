// Installing the packed tarballs as an app developer would, on a machine without Rust: the
// tarballs from scripts/pack.sh go into a fresh directory with `npm install` (offline, no
// cargo on PATH); from there `npx zrooms-server` runs the server, and the package's own
// example (both seed scenarios: multi-room logins, media with its frame counters checked,
// messages) runs against it with the installed addon.
import test from 'ava'
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const packs = join(root, 'artifacts', 'pack')

function run(cmd, args, options) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 16 << 20, ...options }, (err, stdout, stderr) =>
      err ? reject(Object.assign(err, { stdout, stderr })) : resolve({ stdout, stderr }),
    )
  })
}

// PATH without any directory that holds cargo or rustc: what the install sees.
const noRust = process.env.PATH.split(delimiter)
  .filter((d) => d && !['cargo', 'rustc'].some((tool) => existsSync(join(d, tool))))
  .join(delimiter)
const env = { ...process.env, PATH: noRust, CARGO_HOME: '/nonexistent', RUSTUP_HOME: '/nonexistent' }
for (const k of Object.keys(env)) if (k.startsWith('ZROOMS_') || k.startsWith('npm_')) delete env[k]

const ctx = { dir: null, server: null }

test.before(async () => {
  await run(join(root, 'scripts', 'pack.sh'), [], { cwd: root, timeout: 20 * 60 * 1000 })
  ctx.dir = mkdtempSync(join(tmpdir(), 'zrooms-install-'))
  writeFileSync(join(ctx.dir, 'package.json'), JSON.stringify({ name: 'an-app', version: '1.0.0', private: true }))
})

test.after.always(async () => {
  if (ctx.server && ctx.server.exitCode === null && ctx.server.signalCode === null) {
    try {
      process.kill(-ctx.server.pid, 'SIGTERM')
    } catch {}
    await ctx.closed
  }
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true })
})

test.serial('the tarballs install with no Rust on PATH, and the addon comes from the platform package', async (t) => {
  await t.throwsAsync(run('sh', ['-c', 'command -v cargo || command -v rustc || exit 1'], { env }))
  const tarballs = readdirSync(packs).filter((f) => f.endsWith('.tgz'))
  t.deepEqual(tarballs.map((f) => f.replace(/-\d+\.\d+\.\d+\.tgz$/, '')).sort(), ['zrooms', 'zrooms-linux-x64-gnu'])
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', ...tarballs.map((f) => join(packs, f))], {
    cwd: ctx.dir,
    env,
    timeout: 5 * 60 * 1000,
  })
  const main = join(ctx.dir, 'node_modules', 'zrooms')
  t.false(readdirSync(main).some((f) => f.endsWith('.node')), 'the main package carries no binary')
  const { stdout } = await run(
    process.execPath,
    ['-e', "const z = require('zrooms'); console.log(typeof z.ZegoExpressEngine.createEngineWithProfile, require.resolve('zrooms-linux-x64-gnu'))"],
    { cwd: ctx.dir, env },
  )
  t.regex(stdout, /^function .*node_modules\/zrooms-linux-x64-gnu\/zrooms\.linux-x64-gnu\.node\n$/)
})

test.serial('npx zrooms-server runs, and the packaged example passes against it', async (t) => {
  const { stdout: help } = await run('npx', ['--offline', 'zrooms-server', '--help'], { cwd: ctx.dir, env })
  t.regex(help, /--tls-cert/)
  // In a process group of its own, as a terminal or a service manager runs it: a signal goes to
  // the group (npx, the shim, the server).
  ctx.server = spawn('npx', ['--offline', 'zrooms-server', '--port', '0'], {
    cwd: ctx.dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  // The pipes close only once every process holding them (npx, the shim, the server) is gone.
  ctx.closed = new Promise((resolve) => ctx.server.stdout.once('close', resolve))
  const url = await new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    ctx.server.stderr.on('data', (d) => (err += d))
    ctx.server.once('exit', (code) => reject(new Error(`zrooms-server exited with ${code}: ${err}`)))
    ctx.server.stdout.on('data', (d) => {
      out += d
      const m = out.match(/listening on (ws:\/\/\S+)/)
      if (m) resolve(m[1])
    })
  })
  const example = join(ctx.dir, 'node_modules', 'zrooms', 'example-app', 'run.mjs')
  const { stdout } = await run(process.execPath, [example, '--server', url, '--duration', '3'], {
    cwd: ctx.dir,
    env,
    timeout: 3 * 60 * 1000,
  })
  t.regex(stdout, /example: every expectation held/)
  // SIGTERM to the group: npx, the shim and the server all end.
  const exited = new Promise((resolve) => ctx.server.once('exit', (code, signal) => resolve({ code, signal })))
  process.kill(-ctx.server.pid, 'SIGTERM')
  const { code, signal } = await exited
  t.true(code === 0 || signal === 'SIGTERM', `exit ${code} ${signal}`)
  await ctx.closed
})
