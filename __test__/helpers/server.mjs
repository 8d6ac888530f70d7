// Starts the real room server binary on 127.0.0.1, port 0, and stops it after the test file.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { Peer } from './peer.mjs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

export function serverBinary() {
  if (process.env.ZROOMS_SERVER_BIN) return process.env.ZROOMS_SERVER_BIN
  for (const profile of ['release', 'debug']) {
    const p = join(root, 'target', profile, 'zrooms-server')
    if (existsSync(p)) return p
  }
  throw new Error('zrooms-server is not built: run `cargo build --release -p zrooms-server`')
}

/**
 * Spawns `zrooms-server --port 0` (or `port`, to restart on the same address) with an
 * optional TOML config text and extra arguments; resolves
 * `{url, proc, stop()}` once it prints its address.
 */
export function startServerProcess(configToml, { port = 0, args: extra = [] } = {}) {
  const args = ['--host', '127.0.0.1', '--port', String(port), ...extra]
  if (configToml) {
    const dir = mkdtempSync(join(tmpdir(), 'zrooms-'))
    const file = join(dir, 'apps.toml')
    writeFileSync(file, configToml)
    args.push('--config', file)
  }
  const proc = spawn(serverBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  proc.stderr.on('data', (d) => (stderr += d))
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 10000)
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)))
    proc.stdout.on('data', (d) => {
      out += d
      const m = out.match(/listening on (wss?:\/\/\S+)(?: \(media udp (\S+)\))?/)
      if (m) {
        clearTimeout(timer)
        resolve({
          url: m[1],
          media: m[2],
          proc,
          stderr: () => stderr,
          stop: () =>
            new Promise((res) => {
              if (proc.exitCode !== null) return res()
              proc.once('exit', () => res())
              proc.kill('SIGTERM')
            }),
        })
      }
    })
  })
}

/**
 * One real server process for a spec file (started before its tests, stopped after) and a
 * factory of peers on it that are all closed at the end. `track(peer)` adds a peer made
 * elsewhere to the ones closed.
 */
export function useServer(test, configToml) {
  const ctx = { server: null, peers: [] }
  test.before(async () => {
    ctx.server = await startServerProcess(configToml)
  })
  test.after.always(async () => {
    await Promise.all(ctx.peers.map((p) => p.close()))
    await ctx.server?.stop()
  })
  ctx.track = (p) => {
    ctx.peers.push(p)
    return p
  }
  ctx.peer = async (name, opts) => ctx.track(await Peer.create(name, ctx.server.url, opts))
  return ctx
}
