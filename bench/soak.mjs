// Soak: many login/publish/logout cycles, then one long stream, with the resident memory of this
// process (the engines) and of the server sampled along the way. Figures, not assertions; the
// script also shows the process exits by itself at the end (run it under `timeout`).
//
//   node bench/soak.mjs [--cycles 1000] [--minutes 10] [--out bench/results/soak.md]
//
// The server is the real zrooms-server binary (target/release), a separate process. Phase 1 runs
// the cycles on one engine on the main thread: loginRoom in two rooms, startPublishingStream
// (synthetic pattern and tone, real encoders and a real peer connection), a player engine (a
// worker thread) plays the stream until it decodes a picture, logoutRoom(). Phase 2 publishes one stream and plays it on a second engine for `minutes`,
// checking that the decoded frame counter keeps increasing.
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus } from 'node:os'

const require = createRequire(import.meta.url)
const Z = require('../index.js')

const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : dflt
}
const cycles = Number(opt('cycles', 1000))
const minutes = Number(opt('minutes', 10))
const out = opt('out', new URL('./results/soak.md', import.meta.url).pathname)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const rssOf = (pid) => {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/)
  return m ? Number(m[1]) / 1024 : NaN
}

const bin = new URL('../target/release/zrooms-server', import.meta.url).pathname
const server = spawn(bin, ['--host', '127.0.0.1', '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
const url = await new Promise((resolve, reject) => {
  let buf = ''
  server.stdout.on('data', (d) => {
    buf += d
    const m = buf.match(/listening on (ws:\/\/\S+)/)
    if (m) resolve(m[1])
  })
  server.once('exit', (c) => reject(new Error(`server exited ${c}`)))
})

// The synthetic pattern and tone, as in the earlier runs (device capture is measured apart).
await Z.setEngineConfig({ advancedConfig: { server: url, capture: 'synthetic' } })
await Z.setRoomMode(Z.ZegoRoomMode.MultiRoom)
const engine = await Z.createEngineWithProfile({ appID: 1, appSign: '', scenario: 3 })
const user = { userID: 'soak', userName: 'soak' }

const samples = []
const sample = (phase, step) => {
  const m = process.memoryUsage()
  const s = {
    phase,
    step,
    t: Math.round(performance.now() / 1000),
    engineMB: rssOf(process.pid),
    heapMB: m.heapUsed / 1048576,
    externalMB: m.external / 1048576,
    serverMB: rssOf(server.pid),
  }
  samples.push(s)
  console.log(
    `${phase} ${step}: engine process ${s.engineMB.toFixed(1)} MB (main JS heap ${s.heapMB.toFixed(1)}, external ${s.externalMB.toFixed(1)}), server ${s.serverMB.toFixed(1)} MB`,
  )
}

// ---- phase 1: cycles ------------------------------------------------------------------------
// A player (an engine in a worker thread of this process) stays in room soak-a and plays each
// cycle's stream until it has decoded a picture, so every cycle carries real media end to end.
const { Peer } = await import('../__test__/helpers/peer.mjs')
const player = await Peer.create('soak-player', url)
await player.call('loginRoom', 'soak-a', { userID: 'soak-player', userName: 'soak-player' })

let failures = 0
const decoded = async (streamID, timeoutMs = 5000) => {
  const until = Date.now() + timeoutMs
  for (;;) {
    const s = await player.mediaStats(streamID)
    if (s && s.frames >= 1) return true
    if (Date.now() > until) return false
    await sleep(20)
  }
}
sample('cycles', 0)
const started = performance.now()
for (let i = 1; i <= cycles; i++) {
  const ok = (await engine.loginRoom('soak-a', user)).errorCode === 0 && (await engine.loginRoom('soak-b', user)).errorCode === 0
  await engine.startPublishingStream(`soak-${i}`, 0, { roomID: 'soak-a' })
  await player.playWithView(`soak-${i}`, { roomID: 'soak-a' })
  const seen = await decoded(`soak-${i}`)
  if (!ok || !seen) {
    failures++
    console.error(`cycle ${i}: ${ok ? 'no picture decoded in 5 s' : 'login failed'}`)
  }
  await player.call('stopPlayingStream', `soak-${i}`)
  await player.dropView(`soak-${i}`)
  await engine.logoutRoom()
  if (i % Math.max(1, Math.floor(cycles / 20)) === 0) sample('cycles', i)
}
const cycleSeconds = (performance.now() - started) / 1000

// ---- phase 2: one long stream ---------------------------------------------------------------
await engine.loginRoom('soak-long', user)
await player.call('loginRoom', 'soak-long', { userID: 'soak-player', userName: 'soak-player' })
await engine.startPublishingStream('soak-long', 0, { roomID: 'soak-long' })
await player.playWithView('soak-long', { roomID: 'soak-long' })
let lastFrames = 0
let stalls = 0
const longStart = performance.now()
sample('stream', 0)
for (let m = 1; m <= minutes * 2; m++) {
  await sleep(30_000)
  const s = await player.mediaStats('soak-long')
  if (!s || s.frames <= lastFrames) stalls++
  lastFrames = s?.frames ?? lastFrames
  sample('stream', `${m / 2} min`)
}
const streamSeconds = (performance.now() - longStart) / 1000
await player.close()
await Z.destroyEngine()
server.kill('SIGTERM')

// ---- report ---------------------------------------------------------------------------------
const row = (s) => `| ${s.phase} | ${s.step} | ${s.t} | ${s.engineMB.toFixed(1)} | ${s.heapMB.toFixed(1)} | ${s.externalMB.toFixed(1)} | ${s.serverMB.toFixed(1)} |`
const report = `# Soak

Command: \`${process.env.MALLOC_ARENA_MAX ? `MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX} ` : ''}node bench/soak.mjs --cycles ${cycles} --minutes ${minutes}\`

Machine: ${cpus().length} cores, loopback, release build; the server is a separate \`zrooms-server\` process;
the engines are in this process (the cycling one on the main thread, the player in a worker).
Date: ${new Date().toISOString().slice(0, 10)}.

- ${cycles} cycles (login into two rooms, publish the synthetic pattern and tone, a player in
  room soak-a plays the stream until it decodes a picture and stops, logoutRoom()) in
  ${cycleSeconds.toFixed(0)} s; ${failures} failed.
- One stream published and played for ${(streamSeconds / 60).toFixed(1)} minutes: ${lastFrames} frames decoded,
  ${stalls} half-minute windows without new frames.
- The script ended with destroyEngine() and exited by itself (it runs under \`timeout\`).

Resident memory (MB):

| phase | step | t (s) | engine process | main JS heap | JS external | server |
|---|---|---|---|---|---|---|
${samples.map(row).join('\n')}
`
writeFileSync(out, report)
console.log(`wrote ${out}`)
