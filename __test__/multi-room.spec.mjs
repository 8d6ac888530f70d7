// The seed guide's multi-room flow with two real engines (worker threads) on a real server
// process: one user in room1 and room2, streams bound to their rooms, messages per room, and
// logout of one room stopping only that room's streams.
import test from 'ava'
import { Peer } from './helpers/peer.mjs'
import { startServerProcess } from './helpers/server.mjs'

const Reason = { Logining: 0, Logined: 1, Logout: 7 }
const Pub = { NoPublish: 0, Requesting: 1, Publishing: 2 }
const Play = { NoPlay: 0, Requesting: 1, Playing: 2 }
const Add = 0
const Delete = 1

let server
let alice
let bob

test.before(async () => {
  server = await startServerProcess()
  alice = await Peer.create('alice', server.url)
  bob = await Peer.create('bob', server.url)
})

test.after.always(async () => {
  await alice?.close()
  await bob?.close()
  await server?.stop()
})

const userA = { userID: 'alice', userName: 'Alice' }
const userB = { userID: 'bob', userName: 'Bob' }
const notify = { isUserStatusNotify: true }

test.serial('instance() returns the engine that createEngineWithProfile resolved', async (t) => {
  t.false(await alice.instanceThrows())
  const again = await alice.static('createEngineWithProfile', { appID: 1, appSign: '', scenario: 3 })
  t.true(again.same)
})

test.serial('one user logs into two rooms; each room reports its own state', async (t) => {
  const r1 = await alice.call('loginRoom', 'room1', userA, notify)
  const r2 = await alice.call('loginRoom', 'room2', userA, notify)
  t.is(r1.errorCode, 0)
  t.is(r2.errorCode, 0)
  t.regex(r1.extendedData, /room_session_id/)
  const changed = alice.of('roomStateChanged')
  t.deepEqual(
    changed.map(([room, reason, code]) => [room, reason, code]),
    [
      ['room1', Reason.Logining, 0],
      ['room1', Reason.Logined, 0],
      ['room2', Reason.Logining, 0],
      ['room2', Reason.Logined, 0],
    ],
  )
  t.deepEqual(
    alice.of('roomStateUpdate').map(([room, state]) => [room, state]),
    [
      ['room1', 1],
      ['room1', 2],
      ['room2', 1],
      ['room2', 2],
    ],
  )
})

test.serial('a stream published into room1 reaches room1 only; the first login delivers it as Add', async (t) => {
  const since = alice.mark()
  await alice.call('startPublishingStream', 'stream1', 0, { roomID: 'room1' })
  const [, state, code] = await alice.waitFor('publisherStateUpdate', (s, st) => s === 'stream1' && st === Pub.Publishing, { since })
  t.is(state, Pub.Publishing)
  t.is(code, 0)

  // Bob logs into room1 after the stream exists: it arrives with his login, and Alice as a user.
  const login = await bob.call('loginRoom', 'room1', userB, notify)
  t.is(login.errorCode, 0)
  const [room, type, streams] = await bob.waitFor('roomStreamUpdate', (r) => r === 'room1')
  t.is(room, 'room1')
  t.is(type, Add)
  t.deepEqual(streams, [{ user: userA, streamID: 'stream1', extraInfo: '' }])
  const [, userType, users] = await bob.waitFor('roomUserUpdate', (r) => r === 'room1')
  t.is(userType, Add)
  t.deepEqual(users, [userA])
  // Alice sees Bob join room1, and nothing about him in room2.
  await alice.waitFor('roomUserUpdate', (r, ty, list) => r === 'room1' && ty === Add && list[0].userID === 'bob')
  await bob.settle()
  t.is(alice.of('roomUserUpdate', (r) => r === 'room2').length, 0)
})

test.serial('the second user plays stream1 with {roomID: "room1"}', async (t) => {
  const since = bob.mark()
  await bob.call('startPlayingStream', 'stream1', undefined, { roomID: 'room1' })
  await bob.waitFor('playerStateUpdate', (s, st) => s === 'stream1' && st === Play.Requesting, { since })
  const [, state, code] = await bob.waitFor('playerStateUpdate', (s, st) => s === 'stream1' && st === Play.Playing, { since })
  t.is(state, Play.Playing)
  t.is(code, 0)
})

test.serial('messages of every kind stay in their room, in send order, not echoed to the sender', async (t) => {
  await bob.call('loginRoom', 'room2', userB, notify)
  const sinceA = alice.mark()
  const sinceB = bob.mark()
  const ids = []
  for (let i = 0; i < 5; i++) {
    // ZEGO allows each user 2 broadcasts per second (1009015 beyond): pace like an app must.
    if (i > 0 && i % 2 === 0) await new Promise((r) => setTimeout(r, 1000))
    const r = await alice.call('sendBroadcastMessage', 'room1', `r1-${i}`)
    t.is(r.errorCode, 0)
    ids.push(r.messageID)
  }
  const r2 = await alice.call('sendBroadcastMessage', 'room2', 'r2-only')
  t.is(r2.errorCode, 0)
  t.deepEqual(ids, [...ids].sort((a, b) => a - b), 'message IDs increase per room')
  t.true(ids.every((id, i) => i === 0 || id > ids[i - 1]))

  const barrage = await bob.call('sendBarrageMessage', 'room2', 'bullet')
  t.is(barrage.errorCode, 0)
  t.is(typeof barrage.messageID, 'string')
  const cmd = await bob.call('sendCustomCommand', 'room1', 'cmd-room1', [userA])
  t.deepEqual(cmd, { errorCode: 0 })

  await bob.waitFor('IMRecvBroadcastMessage', (r, list) => r === 'room2' && list[0].message === 'r2-only', { since: sinceB })
  await alice.waitFor('IMRecvBarrageMessage', (r) => r === 'room2', { since: sinceA })
  await alice.waitFor('IMRecvCustomCommand', (r) => r === 'room1', { since: sinceA })
  await bob.settle()

  const room1 = bob.of('IMRecvBroadcastMessage', (r) => r === 'room1', sinceB).flatMap(([, list]) => list)
  t.deepEqual(room1.map((m) => m.message), ['r1-0', 'r1-1', 'r1-2', 'r1-3', 'r1-4'])
  t.deepEqual(room1.map((m) => m.messageID), ids)
  t.deepEqual(room1[0].fromUser, userA)
  t.true(room1[0].sendTime > 1.6e12)
  const room2 = bob.of('IMRecvBroadcastMessage', (r) => r === 'room2', sinceB).flatMap(([, list]) => list)
  t.deepEqual(room2.map((m) => m.message), ['r2-only'])
  t.is(room2[0].messageID, 1, 'room2 counts its own message IDs')

  const barrages = alice.of('IMRecvBarrageMessage', () => true, sinceA)
  t.deepEqual(barrages.map(([r, list]) => [r, list[0].message, list[0].fromUser.userID]), [['room2', 'bullet', 'bob']])
  const cmds = alice.of('IMRecvCustomCommand', () => true, sinceA)
  t.deepEqual(cmds, [['room1', userB, 'cmd-room1']])

  // Nobody hears their own messages.
  t.is(alice.of('IMRecvBroadcastMessage', () => true, sinceA).length, 0)
  t.is(bob.of('IMRecvBarrageMessage', () => true, sinceB).length, 0)
  t.is(bob.of('IMRecvCustomCommand', () => true, sinceB).length, 0)
})

test.serial('stream and user lists stay per room', async (t) => {
  const sinceB = bob.mark()
  await alice.call('startPublishingStream', 'stream2', 1, { roomID: 'room2' })
  const [room, type, streams] = await bob.waitFor('roomStreamUpdate', (r) => r === 'room2', { since: sinceB })
  t.is(room, 'room2')
  t.is(type, Add)
  t.deepEqual(streams.map((s) => s.streamID), ['stream2'])
  await bob.settle()
  t.is(bob.of('roomStreamUpdate', (r) => r === 'room1', sinceB).length, 0)
  await bob.call('startPlayingStream', 'stream2', undefined, { roomID: 'room2' })
  await bob.waitFor('playerStateUpdate', (s, st) => s === 'stream2' && st === Play.Playing, { since: sinceB })
})

test.serial('logoutRoom("room1") stops only room1 streams; logoutRoom() leaves the rest', async (t) => {
  const sinceA = alice.mark()
  const sinceB = bob.mark()
  const out = await alice.call('logoutRoom', 'room1')
  t.is(out.errorCode, 0)
  const pubs = alice.of('publisherStateUpdate', () => true, sinceA)
  t.deepEqual(pubs.map(([s, st]) => [s, st]), [['stream1', Pub.NoPublish]])
  t.deepEqual(
    alice.of('roomStateChanged', () => true, sinceA).map(([r, reason]) => [r, reason]),
    [['room1', Reason.Logout]],
  )
  // Bob sees stream1 deleted from room1 with reason "stopped" and his player falls back.
  const [, type, streams, extended] = await bob.waitFor('roomStreamUpdate', (r, ty) => r === 'room1' && ty === Delete, { since: sinceB })
  t.is(type, Delete)
  t.deepEqual(streams.map((s) => s.streamID), ['stream1'])
  t.deepEqual(JSON.parse(extended), { stream_delete_reason: [{ stream_id: 'stream1', code: 1 }] })
  await bob.waitFor('roomUserUpdate', (r, ty, list) => r === 'room1' && ty === Delete && list[0].userID === 'alice', { since: sinceB })
  await bob.waitFor('playerStateUpdate', (s, st) => s === 'stream1' && st === Play.Requesting, { since: sinceB })
  await bob.settle()
  // Room2 is untouched: stream2 keeps publishing and playing.
  t.is(bob.of('roomStreamUpdate', (r) => r === 'room2', sinceB).length, 0)
  t.is(bob.of('playerStateUpdate', (s) => s === 'stream2', sinceB).length, 0)
  t.is(alice.of('publisherStateUpdate', (s) => s === 'stream2', sinceA).length, 0)
  const still = await alice.call('sendBroadcastMessage', 'room2', 'still here')
  t.is(still.errorCode, 0)
  const gone = await alice.call('sendBroadcastMessage', 'room1', 'gone')
  t.is(gone.errorCode, 1009005)

  // Bob leaves room1: his room1 player stops, his room2 player does not.
  const sinceB2 = bob.mark()
  await bob.call('logoutRoom', 'room1')
  t.deepEqual(bob.of('playerStateUpdate', () => true, sinceB2).map(([s, st]) => [s, st]), [['stream1', Play.NoPlay]])

  // logoutRoom() with no argument leaves every remaining room.
  const sinceA2 = alice.mark()
  const all = await alice.call('logoutRoom')
  t.is(all.errorCode, 0)
  t.deepEqual(alice.of('publisherStateUpdate', () => true, sinceA2).map(([s, st]) => [s, st]), [['stream2', Pub.NoPublish]])
  t.deepEqual(alice.of('roomStateChanged', () => true, sinceA2).map(([r, reason]) => [r, reason]), [['room2', Reason.Logout]])
  await bob.waitFor('playerStateUpdate', (s, st) => s === 'stream2' && st === Play.Requesting, { since: sinceB2 })
  await bob.call('logoutRoom')
})
