// Process health: a script exits by itself after destroyEngine or once every room is logged
// out; a killed process's user and streams leave its rooms with reason "disconnected"; a
// listener that throws does not break the engine.
import test from 'ava'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Peer } from './helpers/peer.mjs'
import { startServerProcess } from './helpers/server.mjs'

const script = fileURLToPath(new URL('./fixtures/engine-script.mjs', import.meta.url))

let server
let watcher

test.before(async () => {
  // A dropped session is kept 1 s for the engine to resume it (docs/reconnection.md).
  server = await startServerProcess('dev_default = true\nreconnect_grace_ms = 1000\n')
  watcher = await Peer.create('watcher', server.url)
  await watcher.call('loginRoom', 'script-room1', { userID: 'watcher' }, { isUserStatusNotify: true })
})

test.after.always(async () => {
  await watcher?.close()
  await server?.stop()
})

function run(mode, userID) {
  const child = spawn(process.execPath, [script, mode, userID], {
    env: { ...process.env, ZROOMS_SERVER: server.url },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines = []
  let stderr = ''
  const waiters = []
  child.stdout.on('data', (d) => {
    for (const line of String(d).split('\n').filter(Boolean)) {
      lines.push({ line, at: Date.now() })
      for (const w of waiters) w()
    }
  })
  child.stderr.on('data', (d) => (stderr += d))
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })))
  const line = (prefix) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const hit = lines.find((l) => l.line.startsWith(prefix))
        if (hit) resolve(hit)
      }
      waiters.push(check)
      check()
      exited.then(() => setTimeout(() => reject(new Error(`exited before "${prefix}": ${stderr}`)), 50))
    })
  return { child, line, exited, stderr: () => stderr }
}

test.serial('a script exits by itself within 3 s of destroyEngine', async (t) => {
  const p = run('destroy', 'destroyer')
  await p.line('ready')
  const destroyed = await p.line('destroyed')
  const exit = await p.exited
  t.is(exit.code, 0, p.stderr())
  t.true(exit.at - destroyed.at < 3000, `exited ${exit.at - destroyed.at} ms after destroyEngine`)
  // The listener that threw on every room event was reported, not fatal.
  t.regex(p.stderr(), /listener of 'roomStateChanged' threw/)
})

test.serial('a script exits by itself once every room is logged out', async (t) => {
  const p = run('logout', 'leaver')
  await p.line('ready')
  const out = await p.line('loggedout')
  const exit = await p.exited
  t.is(exit.code, 0, p.stderr())
  t.true(exit.at - out.at < 3000, `exited ${exit.at - out.at} ms after logoutRoom()`)
})

test.serial('a failed native driver settles every call and lets the script exit by itself', async (t) => {
  const p = run('crash', 'crasher')
  await p.line('ready')
  // The login in flight when the driver died, and one made after, settle with 1000001.
  t.is((await p.line('settled')).line, 'settled 1000001')
  t.is((await p.line('after')).line, 'after 1000001')
  // Every room ends, the one logging in too: ReconnectFailed with RoomInnerError.
  t.is((await p.line('rooms')).line, 'rooms script-room1:1002099 script-room2:1002099 script-room3:1002099')
  const exit = await p.exited
  t.is(exit.code, 0, p.stderr())
  t.regex(p.stderr(), /engine stopped unexpectedly/)
})

test.serial('a killed process leaves its rooms after the grace period: user and stream deleted with reason 5', async (t) => {
  const since = watcher.mark()
  const p = run('hold', 'victim')
  await p.line('ready')
  await watcher.waitFor('roomStreamUpdate', (r, ty, list) => ty === 0 && list[0].streamID === 'victim-stream', { since })
  const since2 = watcher.mark()
  p.child.kill('SIGKILL')
  const killedAt = Date.now()
  // Only the victim's: an earlier test's script may be leaving the room too.
  const victims = (list) => list.some((x) => x.streamID === 'victim-stream' || x.userID === 'victim')
  const [, , streams, extended] = await watcher.waitFor('roomStreamUpdate', (r, ty, list) => ty === 1 && victims(list), { since: since2 })
  t.true(Date.now() - killedAt >= 900, 'kept for the grace period first')
  t.deepEqual(streams.map((s) => s.streamID), ['victim-stream'])
  t.deepEqual(JSON.parse(extended), { stream_delete_reason: [{ stream_id: 'victim-stream', code: 5 }] })
  const [, , users] = await watcher.waitFor('roomUserUpdate', (r, ty, list) => ty === 1 && victims(list), { since: since2 })
  t.deepEqual(users, [{ userID: 'victim', userName: 'victim' }])
  const exit = await p.exited
  t.is(exit.signal, 'SIGKILL')
})
