// Media benchmark: capture-to-decoded latency, the CPU of one 640x360@15 publisher, and the
// SFU's CPU per forwarded stream. Figures, not assertions.
//
//   node bench/media.mjs [--seconds 10] [--players 1,4,8] [--out bench/results/media.md]
//
// The server is the real zrooms-server binary (target/release), a separate process whose CPU
// is read from /proc. Engines run in worker threads of this process (one per user).
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { createRequire } from 'node:module'
import { cpus } from 'node:os'

const require = createRequire(import.meta.url)

if (!isMainThread) {
  // ---- one engine per worker -----------------------------------------------------------
  const Z = require('../index.js')
  const { drawTestPattern } = require('../lib/pattern.js')
  const { role, server, room, stream, userID, seconds } = workerData
  await Z.setEngineConfig({ advancedConfig: { server } })
  await Z.setRoomMode(Z.ZegoRoomMode.MultiRoom)
  const engine = await Z.createEngineWithProfile({ appID: 1, appSign: '', scenario: 3 })
  await engine.loginRoom(room, { userID })
  if (role === 'stamp') {
    // Custom capture whose counter is the capture time (ms, mod 65536): the player's clock is
    // the same, so now - counter is the capture-to-decoded latency.
    await engine.enableCustomVideoCapture(true, { bufferType: 1 }, 0)
    await engine.startPublishingStream(stream, 0, { roomID: room })
    parentPort.postMessage({ ready: true })
    const end = Date.now() + seconds * 1000
    while (Date.now() < end) {
      const frame = drawTestPattern(640, 360, Date.now() & 0xffff, 1)
      await engine.sendCustomVideoCaptureRawData(frame, frame.byteLength, { format: 1, width: 640, height: 360 }, Date.now(), 0)
      await new Promise((r) => setTimeout(r, 1000 / 15))
    }
  } else if (role === 'publish') {
    await engine.startPublishingStream(stream, 0, { roomID: room })
    parentPort.postMessage({ ready: true })
    await new Promise((r) => setTimeout(r, seconds * 1000))
  } else {
    const latencies = []
    let frames = 0
    const view = {
      onFrame(f) {
        frames++
        if (role === 'latency') {
          const { counter } = Z.readTestPattern(f)
          if (counter !== null) latencies.push((Date.now() - counter) & 0xffff)
        }
      },
    }
    await engine.startPlayingStream(stream, view, { roomID: room })
    parentPort.postMessage({ ready: true })
    await new Promise((r) => setTimeout(r, seconds * 1000))
    parentPort.postMessage({ frames, latencies })
  }
  await engine.logoutRoom()
  await Z.destroyEngine()
  process.exit(0)
}

// ---- orchestration ----------------------------------------------------------------------
const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : dflt
}
const seconds = Number(opt('seconds', '10'))
const playerCounts = opt('players', '0,1,4,8').split(',').map(Number)
const out = opt('out', null)

function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

function startServer() {
  const proc = spawn('target/release/zrooms-server', ['--port', '0'], { stdio: ['ignore', 'pipe', 'ignore'] })
  return new Promise((resolve, reject) => {
    proc.stdout.on('data', (d) => {
      const m = String(d).match(/listening on (ws:\/\/\S+)/)
      if (m) resolve({ url: m[1], proc })
    })
    proc.once('exit', (c) => reject(new Error(`server exited ${c}`)))
  })
}

function worker(data) {
  const w = new Worker(new URL(import.meta.url), { workerData: { seconds, ...data } })
  const ready = new Promise((r) => w.on('message', (m) => m.ready && r()))
  const result = new Promise((r) => w.on('message', (m) => m.frames !== undefined && r(m)))
  const exited = new Promise((r) => w.once('exit', r))
  return { ready, result, exited }
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? s[Math.min(s.length - 1, Math.round((p / 100) * (s.length - 1)))] : NaN
}

const rows = []
let baselineSfu = null
const server = await startServer()
try {
  // 1. Capture-to-decoded latency.
  {
    const pub = worker({ role: 'stamp', server: server.url, room: 'lat', stream: 'lat', userID: 'latpub' })
    await pub.ready
    const play = worker({ role: 'latency', server: server.url, room: 'lat', stream: 'lat', userID: 'latplay' })
    const r = await play.result
    await Promise.all([pub.exited, play.exited])
    const lat = r.latencies.slice(15) // skip the first second (keyframe wait)
    rows.push(['capture → decoded frame latency, 640x360@15 H.264, loopback', `${lat.length} frames`, `p50 ${pct(lat, 50)} ms, p95 ${pct(lat, 95)} ms, p99 ${pct(lat, 99)} ms`])
  }
  // 2. CPU of one publisher, and 3. SFU CPU per forwarded stream.
  for (const n of playerCounts) {
    const usBefore = process.cpuUsage()
    const sBefore = cpuSeconds(server.proc.pid)
    const pub = worker({ role: 'publish', server: server.url, room: `cpu${n}`, stream: `cpu${n}`, userID: `pub${n}` })
    await pub.ready
    const players = Array.from({ length: n }, (_, i) => worker({ role: 'play', server: server.url, room: `cpu${n}`, stream: `cpu${n}`, userID: `p${n}-${i}` }))
    const results = await Promise.all(players.map((p) => p.result))
    await Promise.all([pub.exited, ...players.map((p) => p.exited)])
    const sCpu = cpuSeconds(server.proc.pid) - sBefore
    const us = process.cpuUsage(usBefore)
    const frames = results.reduce((a, r) => a + r.frames, 0)
    const sfuPct = (100 * sCpu) / seconds
    if (n === 0) baselineSfu = sfuPct
    const perStream = n === 0 ? '' : ` (${((sfuPct - (baselineSfu ?? 0)) / n).toFixed(2)} % per forwarded stream above the publisher-only figure)`
    rows.push([
      n === 0 ? `1 publisher alone (${seconds} s)` : `1 publisher → ${n} players (${seconds} s)`,
      `${frames} frames decoded`,
      `SFU ${sfuPct.toFixed(1)} % of a core${perStream}; engines ${(((us.user + us.system) / 1e6 / seconds) * 100).toFixed(0)} % of a core`,
    ])
  }
} finally {
  server.proc.kill('SIGTERM')
}

const report = `# Media benchmark

Command: \`node bench/media.mjs --seconds ${seconds} --players ${playerCounts.join(',')}\`
Machine: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), loopback, release build. Engines run in worker
threads of one Node process beside the server process, so they compete with it for the 2 cores.
"Engines" CPU is the whole Node process: the publisher's synthetic capture and H.264/Opus
encoding plus every player's decoding.

| measurement | sample | result |
|---|---|---|
${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}
`
console.log(report)
if (out) writeFileSync(out, report)
process.exit(0)
