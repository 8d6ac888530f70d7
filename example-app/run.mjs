// The seed's two multi-room scenarios, played by real engines (one worker thread each) on an
// embedded room server, or on --server URL.
//
//   node example-app/run.mjs [--scenario cohost|class|all] [--audience N] [--students N]
//                            [--groups N] [--duration SECONDS] [--server ws://host:port]
//
// Exit code 0 only when every participant's expectations held.
import { Worker } from 'node:worker_threads'
import { startServer } from 'zrooms'

function parseArgs(argv) {
  const opts = { scenario: 'all', audience: 2, students: 4, groups: 2, duration: 5, server: null }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      const v = argv[++i]
      if (v === undefined) usage(`${a} needs a value`)
      return v
    }
    if (a === '--scenario') opts.scenario = next()
    else if (a === '--audience') opts.audience = Number(next())
    else if (a === '--students') opts.students = Number(next())
    else if (a === '--groups') opts.groups = Number(next())
    else if (a === '--duration') opts.duration = Number(next())
    else if (a === '--server') opts.server = next()
    else if (a === '--help' || a === '-h') usage()
    else usage(`unknown option ${a}`)
  }
  if (!['cohost', 'class', 'all'].includes(opts.scenario)) usage('--scenario is cohost, class or all')
  for (const k of ['audience', 'students', 'groups', 'duration']) {
    if (!Number.isFinite(opts[k]) || opts[k] < 0) usage(`--${k} must be a number`)
  }
  if (opts.groups < 1 || opts.students < opts.groups) usage('need at least one student per group')
  return opts
}

function usage(err) {
  if (err) console.error(err)
  console.error(
    'usage: node example-app/run.mjs [--scenario cohost|class|all] [--audience N] [--students N] [--groups N] [--duration S] [--server URL]',
  )
  process.exit(err ? 2 : 0)
}

function cohost(opts) {
  const people = []
  const hosts = [
    { userID: 'hostA', home: 'roomA', other: 'roomB', peer: 'hostB', leads: true },
    { userID: 'hostB', home: 'roomB', other: 'roomA', peer: 'hostA', leads: false },
  ]
  for (const h of hosts) people.push({ role: 'host', ...h })
  for (const [host, other, home, otherRoom] of [
    ['hostA', 'hostB', 'roomA', 'roomB'],
    ['hostB', 'hostA', 'roomB', 'roomA'],
  ]) {
    for (let i = 1; i <= opts.audience; i++) {
      people.push({ role: 'audience', userID: `fan${i}-${host}`, home, other: otherRoom, host, otherHost: other })
    }
  }
  return people
}

function smallClass(opts) {
  const groups = Array.from({ length: opts.groups }, (_, g) => `group${g + 1}`)
  const people = [{ role: 'teacher', userID: 'teacher', classRoom: 'class' }]
  people.push({ role: 'assistant', userID: 'assistant', groups })
  const members = groups.map(() => [])
  for (let i = 0; i < opts.students; i++) members[i % groups.length].push(`student${i + 1}`)
  members.forEach((list, g) => {
    for (const s of list) {
      people.push({
        role: 'student',
        userID: s,
        classRoom: 'class',
        group: groups[g],
        mates: list.filter((m) => m !== s),
        assistant: 'assistant',
      })
    }
  })
  return people
}

async function runScenario(name, people, server, appID, duration) {
  console.log(`\n=== ${name}: ${people.length} participants, ${duration}s ===`)
  const results = []
  const workers = people.map((p) => {
    const w = new Worker(new URL('./participant.mjs', import.meta.url), { workerData: { server, appID, ...p } })
    const done = new Promise((resolve) => {
      w.on('message', (m) => {
        if (m.log) console.log(`  ${m.log}`)
        if (m.result) results.push(m.result)
      })
      w.on('error', (err) => {
        results.push({ userID: p.userID, role: p.role, checks: [], failures: [String(err)], rooms: {} })
      })
      w.on('exit', resolve)
    })
    return { w, done }
  })
  await new Promise((r) => setTimeout(r, duration * 1000))
  console.log(`  --- ${name}: time is up, everyone leaves`)
  for (const { w } of workers) w.postMessage('end')
  const timeout = setTimeout(() => {
    for (const { w } of workers) w.terminate()
  }, 30000)
  await Promise.all(workers.map((x) => x.done))
  clearTimeout(timeout)
  for (const p of people) {
    if (!results.find((r) => r.userID === p.userID)) {
      results.push({ userID: p.userID, role: p.role, checks: [], failures: ['did not finish'], rooms: {} })
    }
  }
  return summarize(name, results)
}

function summarize(name, results) {
  const perRoom = {}
  for (const r of results) {
    for (const [roomID, s] of Object.entries(r.rooms)) {
      const t = (perRoom[roomID] ??= { users: 0, broadcasts: 0, barrages: 0, commands: 0, plays: 0, frames: 0, leftCleanly: 0 })
      t.users++
      t.broadcasts += s.broadcasts
      t.barrages += s.barrages
      t.commands += s.commands
      t.plays += s.played.length
      t.frames += s.frames
      if (s.left) t.leftCleanly++
    }
  }
  console.log(`\n  ${name} summary per room`)
  console.log('  room       users  left  plays  frames  broadcasts  barrages  commands')
  for (const [roomID, t] of Object.entries(perRoom).sort()) {
    console.log(
      `  ${roomID.padEnd(10)} ${String(t.users).padStart(5)} ${String(t.leftCleanly).padStart(5)} ${String(t.plays).padStart(6)} ${String(t.frames).padStart(7)} ${String(t.broadcasts).padStart(11)} ${String(t.barrages).padStart(9)} ${String(t.commands).padStart(9)}`,
    )
  }
  const failed = results.filter((r) => r.failures.length > 0)
  const checks = results.reduce((n, r) => n + r.checks.length, 0)
  for (const r of failed) for (const f of r.failures) console.log(`  FAIL ${r.userID}: ${f}`)
  const cleanly = Object.values(perRoom).every((t) => t.leftCleanly === t.users)
  if (!cleanly) console.log('  FAIL: not every room was left cleanly')
  console.log(`  ${name}: ${checks} checks held, ${failed.length} participants failed`)
  return failed.length === 0 && cleanly
}

const opts = parseArgs(process.argv.slice(2))
let server = null
let url = opts.server
if (!url) {
  server = await startServer({ port: 0 })
  url = server.url
  console.log(`embedded room server at ${url}`)
}
let ok = true
try {
  if (opts.scenario === 'cohost' || opts.scenario === 'all') {
    ok = (await runScenario('cross-room co-hosting', cohost(opts), url, 1001, opts.duration)) && ok
  }
  if (opts.scenario === 'class' || opts.scenario === 'all') {
    ok = (await runScenario('super small class', smallClass(opts), url, 1002, opts.duration)) && ok
  }
} finally {
  await server?.close()
}
console.log(ok ? '\nexample: every expectation held' : '\nexample: FAILED')
process.exitCode = ok ? 0 : 1
