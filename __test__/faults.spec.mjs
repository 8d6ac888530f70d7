// Faults: a proxy that cuts or stalls the signaling connection, and a server that is killed and
// restarted. Each room reports Reconnecting then Reconnected by itself, streams come back,
// messages sent during a drop arrive exactly once and in order, and the others see no churn.
import test from 'ava'
import { Peer } from './helpers/peer.mjs'
import { startProxy } from './helpers/proxy.mjs'
import { startServerProcess, useServer } from './helpers/server.mjs'
import { streamTag } from './helpers/pattern.mjs'

const ctx = useServer(test, 'dev_default = true\nreconnect_grace_ms = 15000\nheartbeat_timeout_ms = 5000\n')
// Engines that notice a dead connection within about a second.
const FAST = { heartbeat_interval_ms: 250, heartbeat_timeout_ms: 1200, reconnect_delay_ms: 100 }
const user = (id) => ({ userID: id, userName: id })
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const Reconnecting = 3
const Reconnected = 4
const notify = { isUserStatusNotify: true }

function framesAbove(p, streamID, n, timeout = 15000) {
  return p.waitMedia(streamID, { frames: n + 1 }, timeout)
}

/** The reasons `p` reported for `room` since `since`. */
const reasons = (p, room, since) => p.of('roomStateChanged', (r) => r === room, since).map(([, reason]) => reason)

/** alice (through `url`) and bob (direct) in room1 and room2; alice publishes in room1 and bob
 * plays it, frames flowing. */
async function scene(name, url) {
  const alice = ctx.track(await Peer.create(`${name}-alice`, url, { advanced: FAST }))
  const bob = await ctx.peer(`${name}-bob`)
  const a = user(`${name}-alice`)
  const b = user(`${name}-bob`)
  for (const room of ['room1', 'room2']) {
    t_is(await alice.call('loginRoom', `${name}-${room}`, a, notify))
    t_is(await bob.call('loginRoom', `${name}-${room}`, b, notify))
  }
  await alice.call('startPublishingStream', `${name}-cam`, 0, { roomID: `${name}-room1` })
  await bob.playWithView(`${name}-cam`, { roomID: `${name}-room1` })
  await framesAbove(bob, `${name}-cam`, 10)
  return { alice, bob, a, b, r1: `${name}-room1`, r2: `${name}-room2`, cam: `${name}-cam` }
}

function t_is(result) {
  if (result.errorCode !== 0) throw new Error(`login failed: ${result.errorCode}`)
}

async function assertNoChurn(t, bob, since, who) {
  t.deepEqual(bob.of('roomUserUpdate', (r, type, list) => type === 1 && list.some((u) => u.userID === who), since), [], 'no leave seen')
  t.deepEqual(bob.of('roomUserUpdate', (r, type, list) => type === 0 && list.some((u) => u.userID === who), since), [], 'no join seen')
  t.deepEqual(bob.of('roomStreamUpdate', (r, type) => type === 1, since), [], 'no stream delete seen')
}

test.serial('a cut connection resumes: Reconnecting then Reconnected per room, messages once and in order, media goes on, no churn', async (t) => {
  const proxy = await startProxy(ctx.server.url)
  const { alice, bob, a, b, r1, r2, cam } = await scene('cut', proxy.url)
  const before = (await bob.mediaStats(cam)).frames
  const sinceA = alice.mark()
  const sinceB = bob.mark()
  t.true(proxy.cut() >= 1)
  // Sent while the connection is down: delivered after the resume.
  const sent = [
    alice.call('sendBroadcastMessage', r2, 'during-1'),
    alice.call('sendBroadcastMessage', r2, 'during-2'),
    alice.call('sendCustomCommand', r1, 'cmd-during', [b]),
  ]
  for (const room of [r1, r2]) {
    await alice.waitFor('roomStateChanged', (r, reason) => r === room && reason === Reconnected, { since: sinceA })
    t.deepEqual(reasons(alice, room, sinceA), [Reconnecting, Reconnected], room)
  }
  const [, , code] = alice.of('roomStateChanged', (r, reason) => r === r1 && reason === Reconnecting, sinceA)[0]
  t.is(code, 1002051)
  for (const r of await Promise.all(sent)) t.is(r.errorCode, 0)
  await bob.waitFor('IMRecvBroadcastMessage', (r, list) => r === r2 && list.some((m) => m.message === 'during-2'), { since: sinceB })
  await bob.waitFor('IMRecvCustomCommand', (r, from, cmd) => r === r1 && cmd === 'cmd-during', { since: sinceB })
  await bob.settle(500)
  const got = bob.of('IMRecvBroadcastMessage', (r) => r === r2, sinceB).flatMap(([, list]) => list.map((m) => m.message))
  t.deepEqual(got, ['during-1', 'during-2'], 'exactly once, in order')
  t.is(bob.of('IMRecvCustomCommand', () => true, sinceB).length, 1)
  // Publisher state went back to requesting and returned.
  const pub = alice.of('publisherStateUpdate', (s) => s === cam, sinceA).map(([, state]) => state)
  t.deepEqual(pub, [1, 2])
  await assertNoChurn(t, bob, sinceB, a.userID)
  const after = await framesAbove(bob, cam, before + 15)
  t.deepEqual(after.tags, [streamTag(cam)])
  await proxy.close()
})

test.serial('a stalled connection is found dead by the heartbeat and the session resumes', async (t) => {
  const proxy = await startProxy(ctx.server.url)
  const { alice, bob, a, r1, r2 } = await scene('stall', proxy.url)
  const sinceA = alice.mark()
  const sinceB = bob.mark()
  t.true(proxy.stall() >= 1)
  const stalledAt = Date.now()
  for (const room of [r1, r2]) {
    await alice.waitFor('roomStateChanged', (r, reason) => r === room && reason === Reconnected, { since: sinceA })
    t.deepEqual(reasons(alice, room, sinceA), [Reconnecting, Reconnected], room)
  }
  t.true(Date.now() - stalledAt >= 1000, 'noticed by the heartbeat timeout, not at once')
  t.is((await alice.call('sendBarrageMessage', r2, 'after the stall')).errorCode, 0)
  await bob.waitFor('IMRecvBarrageMessage', (r, list) => r === r2 && list[0].message === 'after the stall', { since: sinceB })
  await assertNoChurn(t, bob, sinceB, a.userID)
  await proxy.close()
})

test.serial('a server restart: every room logs in again and streams are published and played again', async (t) => {
  const first = await startServerProcess('dev_default = true\n')
  const port = new URL(first.url).port
  // Closed at the end of this test, before its server stops.
  const alice = await Peer.create('restart-alice', first.url, { advanced: FAST })
  const bob = await Peer.create('restart-bob', first.url, { advanced: FAST })
  for (const room of ['rs1', 'rs2']) {
    t.is((await alice.call('loginRoom', room, user('restart-alice'), notify)).errorCode, 0)
    t.is((await bob.call('loginRoom', room, user('restart-bob'), notify)).errorCode, 0)
  }
  await alice.call('startPublishingStream', 'rs-cam', 0, { roomID: 'rs1' })
  await bob.playWithView('rs-cam', { roomID: 'rs1' })
  const before = await framesAbove(bob, 'rs-cam', 10)
  const sinceA = alice.mark()
  const sinceB = bob.mark()
  first.proc.kill('SIGKILL')
  await first.stop()
  await alice.waitFor('roomStateChanged', (r, reason) => r === 'rs1' && reason === Reconnecting, { since: sinceA })
  // The outage itself: the server stays down half a second (the engine retries meanwhile).
  await sleep(500)
  const second = await startServerProcess('dev_default = true\n', { port })
  try {
    for (const p of [alice, bob]) {
      const since = p === alice ? sinceA : sinceB
      for (const room of ['rs1', 'rs2']) {
        await p.waitFor('roomStateChanged', (r, reason) => r === room && reason === Reconnected, { since, timeout: 15000 })
        t.deepEqual(reasons(p, room, since), [Reconnecting, Reconnected], `${p.name} ${room}`)
      }
    }
    await alice.waitFor('publisherStateUpdate', (s, state) => s === 'rs-cam' && state === 2, { since: sinceA })
    await bob.waitFor('playerStateUpdate', (s, state) => s === 'rs-cam' && state === 2, { since: sinceB, timeout: 15000 })
    const after = await framesAbove(bob, 'rs-cam', before.frames + 15)
    t.deepEqual(after.tags, [streamTag('rs-cam')])
    // Messages work again in both rooms.
    t.is((await alice.call('sendBroadcastMessage', 'rs2', 'back')).errorCode, 0)
    await bob.waitFor('IMRecvBroadcastMessage', (r, list) => r === 'rs2' && list[0].message === 'back', { since: sinceB })
  } finally {
    await alice.close().catch(() => {})
    await bob.close().catch(() => {})
    await second.stop()
  }
})

test.serial("a fault in one room (a kick) leaves the other room's state, streams and messages alone", async (t) => {
  const { alice, bob, a, b, r1, r2 } = await scene('iso', ctx.server.url)
  await alice.call('startPublishingStream', 'iso-cam2', 1, { roomID: r2 })
  await bob.playWithView('iso-cam2', { roomID: r2 })
  const before = await framesAbove(bob, 'iso-cam2', 5)
  const sinceA = alice.mark()
  // The same userID logs into room1 elsewhere: alice is kicked out of room1 only.
  const dup = await ctx.peer('iso-dup')
  t.is((await dup.call('loginRoom', r1, a, notify)).errorCode, 0)
  const [, , code] = await alice.waitFor('roomStateChanged', (r, reason) => r === r1 && reason === 6, { since: sinceA })
  t.is(code, 1002050)
  t.deepEqual(reasons(alice, r2, sinceA), [], 'room2 saw nothing')
  const sinceB = bob.mark()
  t.is((await alice.call('sendBroadcastMessage', r2, 'room2 goes on')).errorCode, 0)
  await bob.waitFor('IMRecvBroadcastMessage', (r, list) => r === r2 && list[0].message === 'room2 goes on', { since: sinceB })
  const after = await framesAbove(bob, 'iso-cam2', before.frames + 10)
  t.deepEqual(after.tags, [streamTag('iso-cam2')])
  t.deepEqual(bob.of('roomStreamUpdate', (r) => r === r2, sinceB), [])
  t.is(b.userID, 'iso-bob')
})
