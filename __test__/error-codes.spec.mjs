// Every rule of the multi-room API answered with ZEGO's code, and nothing else changed: the
// refused call emits only debugError/apiCalledResult, and the rooms, streams and players that
// existed before keep working.
import test from 'ava'
import { Peer } from './helpers/peer.mjs'
import { startServerProcess, useServer } from './helpers/server.mjs'

const CONFIG = `
dev_default = true

[[app]]
app_id = 2
multi_room = false

[[app]]
app_id = 4
multi_room = true
max_members = 2

[[app]]
app_id = 5
multi_room = true
app_sign = "${'ab'.repeat(32)}"
`

const ctx = useServer(test, CONFIG)
const peer = ctx.peer

const user = (id) => ({ userID: id, userName: id })

/** Calls `method`, expects `code` in its result (when it has one) and in apiCalledResult, and
 * no other event than the two error reports. */
async function refused(t, p, code, method, ...args) {
  const since = p.mark()
  const result = await p.call(method, ...args)
  if (result && typeof result === 'object') t.is(result.errorCode, code, `${method} result`)
  await p.waitFor('apiCalledResult', (c, fn) => c === code && fn === method, { since })
  await p.settle(100)
  // Media telemetry of streams started earlier (first frames, sizes) may arrive meanwhile; it
  // is not caused by the refused call.
  const telemetry = /^(publisherCaptured|publisherVideoSize|playerRecv|playerRender|playerVideoSize)/
  const others = p.events
    .slice(since)
    .filter((e) => e.event !== 'debugError' && e.event !== 'apiCalledResult' && !telemetry.test(e.event))
  t.deepEqual(others, [], `${method} refused with ${code} must change nothing`)
  t.is(p.of('debugError', (c) => c === code, since).length, 1)
}

test.serial('setRoomMode after createEngine: 1001020, and the mode stays', async (t) => {
  const p = await peer('mode')
  const since = p.mark()
  await p.static('setRoomMode', 0)
  const [code, func] = await p.waitFor('debugError', () => true, { since })
  t.is(code, 1001020)
  t.is(func, 'setRoomMode')
  // Still multi-room: two rooms at once work.
  t.is((await p.call('loginRoom', 'm1', user('mode'))).errorCode, 0)
  t.is((await p.call('loginRoom', 'm2', user('mode'))).errorCode, 0)
  await p.call('logoutRoom')
})

test.serial('single-room mode: a second login is 1002001; stream calls use the one room', async (t) => {
  const p = await peer('single', { mode: 0 })
  t.is((await p.call('loginRoom', 's1', user('single'))).errorCode, 0)
  await refused(t, p, 1002001, 'loginRoom', 's2', user('single'))
  await refused(t, p, 1002001, 'loginRoom', 's1', user('single'))
  await refused(t, p, 1002002, 'switchRoom', 'nope', 's3')
  // No room in the publisher config is fine in single-room mode.
  const since = p.mark()
  await p.call('startPublishingStream', 'single-stream')
  await p.waitFor('publisherStateUpdate', (s, st) => s === 'single-stream' && st === 2, { since })
  // switchRoom leaves s1 (stopping the stream) and logs into s3.
  const since2 = p.mark()
  await p.call('switchRoom', 's1', 's3')
  await p.waitFor('roomStateChanged', (r, reason) => r === 's3' && reason === 1, { since: since2 })
  t.deepEqual(p.of('roomStateChanged', () => true, since2).map(([r, reason]) => [r, reason]), [
    ['s1', 7],
    ['s3', 0],
    ['s3', 1],
  ])
  t.deepEqual(p.of('publisherStateUpdate', () => true, since2).map(([s, st]) => [s, st]), [['single-stream', 0]])
  await p.call('logoutRoom')
})

test.serial('multi-room not enabled for the app: 1002036 with LoginFailed', async (t) => {
  const p = await peer('nomulti', { appID: 2 })
  const since = p.mark()
  const r = await p.call('loginRoom', 'x1', user('nomulti'))
  t.is(r.errorCode, 1002036)
  t.deepEqual(p.of('roomStateChanged', () => true, since).map(([room, reason, code]) => [room, reason, code]), [
    ['x1', 0, 0],
    ['x1', 2, 1002036],
  ])
  t.deepEqual(p.of('roomStateUpdate', () => true, since).map(([room, state, code]) => [room, state, code]), [
    ['x1', 1, 0],
    ['x1', 0, 1002036],
  ])
})

test.serial('single-room mode works for an app without multi-room', async (t) => {
  const p = await peer('single2', { appID: 2, mode: 0 })
  t.is((await p.call('loginRoom', 'x1', user('single2'))).errorCode, 0)
  await p.call('logoutRoom')
})

test.serial('more rooms than allowed: 1002037; the five rooms stay', async (t) => {
  const p = await peer('many')
  for (let i = 1; i <= 5; i++) t.is((await p.call('loginRoom', `r${i}`, user('many'))).errorCode, 0)
  const since = p.mark()
  const r = await p.call('loginRoom', 'r6', user('many'))
  t.is(r.errorCode, 1002037)
  t.deepEqual(p.of('roomStateChanged', () => true, since).map(([room, reason, code]) => [room, reason, code]), [
    ['r6', 0, 0],
    ['r6', 2, 1002037],
  ])
  for (let i = 1; i <= 5; i++) t.is((await p.call('sendBarrageMessage', `r${i}`, 'still in')).errorCode, 0)
  await p.call('logoutRoom', 'r5')
  t.is((await p.call('loginRoom', 'r6', user('many'))).errorCode, 0, 'a freed slot can be used')
  await p.call('logoutRoom')
})

test.serial('another user in a second room: 1002018', async (t) => {
  const p = await peer('same')
  t.is((await p.call('loginRoom', 'u1', user('same'))).errorCode, 0)
  await refused(t, p, 1002018, 'loginRoom', 'u2', user('other'))
  await refused(t, p, 1002018, 'loginRoom', 'u2', { userID: 'same', userName: 'different' })
  t.is((await p.call('loginRoom', 'u2', user('same'))).errorCode, 0)
  await refused(t, p, 1002019, 'switchRoom', 'u1', 'u3')
  await p.call('logoutRoom')
})

test.serial('publish and play must name a logged-in room in multi-room mode', async (t) => {
  const p = await peer('cfg')
  t.is((await p.call('loginRoom', 'c1', user('cfg'))).errorCode, 0)
  await refused(t, p, 1003070, 'startPublishingStream', 'cs1')
  await refused(t, p, 1003070, 'startPublishingStream', 'cs1', 0, {})
  await refused(t, p, 1003071, 'startPublishingStream', 'cs1', 0, { roomID: '' })
  await refused(t, p, 1000002, 'startPublishingStream', 'cs1', 0, { roomID: 'not-mine' })
  await refused(t, p, 1004070, 'startPlayingStream', 'cs1')
  await refused(t, p, 1004070, 'startPlayingStream', 'cs1', undefined, {})
  await refused(t, p, 1004071, 'startPlayingStream', 'cs1', undefined, { roomID: '' })
  // The uni-app App form (streamID, config) is understood.
  const since = p.mark()
  await p.call('startPlayingStream', 'cs9', { roomID: 'c1' })
  await p.waitFor('playerStateUpdate', (s, st) => s === 'cs9' && st === 1, { since })
  await p.call('stopPlayingStream', 'cs9')
  await p.call('logoutRoom')
})

test.serial('id validation codes', async (t) => {
  const p = await peer('ids')
  await refused(t, p, 1002011, 'loginRoom', '', user('ids'))
  await refused(t, p, 1002012, 'loginRoom', 'bad room', user('ids'))
  await refused(t, p, 1002013, 'loginRoom', 'r'.repeat(128), user('ids'))
  await refused(t, p, 1002005, 'loginRoom', 'ok', { userID: '' })
  await refused(t, p, 1002006, 'loginRoom', 'ok', { userID: 'a b' })
  await refused(t, p, 1002007, 'loginRoom', 'ok', { userID: 'u'.repeat(64) })
  await refused(t, p, 1002008, 'loginRoom', 'ok', { userID: 'ids', userName: '' })
  await refused(t, p, 1002009, 'loginRoom', 'ok', { userID: 'ids', userName: 'a b' })
  await refused(t, p, 1002010, 'loginRoom', 'ok', { userID: 'ids', userName: 'n'.repeat(256) })
  t.is((await p.call('loginRoom', 'ok', { userID: 'ids' })).errorCode, 0, 'userName defaults to the userID')
  await refused(t, p, 1000015, 'startPublishingStream', '', 0, { roomID: 'ok' })
  await refused(t, p, 1000016, 'startPublishingStream', 'a.b', 0, { roomID: 'ok' })
  await refused(t, p, 1000014, 'startPublishingStream', 's'.repeat(256), 0, { roomID: 'ok' })
  await refused(t, p, 1000015, 'startPlayingStream', '', undefined, { roomID: 'ok' })
  await refused(t, p, 1000016, 'startPlayingStream', 'a b', undefined, { roomID: 'ok' })
  await refused(t, p, 1000014, 'startPlayingStream', 'p'.repeat(300), undefined, { roomID: 'ok' })
  await p.call('logoutRoom')
})

test.serial('rooms not logged in: 1002002 and 1009005', async (t) => {
  const p = await peer('notin')
  t.is((await p.call('loginRoom', 'here', user('notin'))).errorCode, 0)
  await refused(t, p, 1002002, 'logoutRoom', 'elsewhere')
  await refused(t, p, 1002002, 'setRoomExtraInfo', 'elsewhere', 'k', 'v')
  await refused(t, p, 1002002, 'renewToken', 'elsewhere', 'token')
  await refused(t, p, 1009005, 'sendBroadcastMessage', 'elsewhere', 'hi')
  await refused(t, p, 1009005, 'sendBarrageMessage', 'elsewhere', 'hi')
  await refused(t, p, 1009005, 'sendCustomCommand', 'elsewhere', 'hi', [])
  t.is((await p.call('sendBroadcastMessage', 'here', 'hi')).errorCode, 0)
  await p.call('logoutRoom')
})

test.serial('message content and custom-command targets', async (t) => {
  const p = await peer('msg')
  t.is((await p.call('loginRoom', 'm', user('msg'))).errorCode, 0)
  await refused(t, p, 1009001, 'sendBroadcastMessage', 'm', '')
  await refused(t, p, 1009002, 'sendBroadcastMessage', 'm', 'x'.repeat(1025))
  await refused(t, p, 1009001, 'sendBarrageMessage', 'm', '')
  await refused(t, p, 1009002, 'sendBarrageMessage', 'm', 'é'.repeat(513))
  await refused(t, p, 1009001, 'sendCustomCommand', 'm', '', [])
  await refused(t, p, 1009002, 'sendCustomCommand', 'm', 'x'.repeat(2000), [])
  await refused(t, p, 1009011, 'sendCustomCommand', 'm', 'cmd', [{ userID: '' }])
  await refused(t, p, 1009012, 'sendCustomCommand', 'm', 'cmd', [{ userID: 'u'.repeat(64) }])
  t.is((await p.call('sendBroadcastMessage', 'm', 'x'.repeat(1024))).errorCode, 0, '1024 bytes is allowed')
  await p.call('logoutRoom')
})

test.serial('room and stream extra info limits', async (t) => {
  const p = await peer('extra')
  t.is((await p.call('loginRoom', 'e', user('extra'))).errorCode, 0)
  await refused(t, p, 1002014, 'setRoomExtraInfo', 'e', '', 'v')
  await refused(t, p, 1002015, 'setRoomExtraInfo', 'e', 'k'.repeat(128), 'v')
  await refused(t, p, 1002016, 'setRoomExtraInfo', 'e', 'k', 'v'.repeat(128))
  t.deepEqual(await p.call('setRoomExtraInfo', 'e', 'k', 'v'), { errorCode: 0 })
  t.deepEqual(await p.call('setRoomExtraInfo', 'e', 'k', 'v2'), { errorCode: 0 })
  t.deepEqual(await p.call('setRoomExtraInfo', 'e', 'other', 'v'), { errorCode: 1002017 })
  await refused(t, p, 1003050, 'setStreamExtraInfo', null, 0)
  await refused(t, p, 1003051, 'setStreamExtraInfo', 'x'.repeat(1024), 0)
  await p.call('logoutRoom')
})

test.serial('duplicate stream ID in the app: 1003028; busy channel: 1003023', async (t) => {
  const a = await peer('dupA')
  const b = await peer('dupB')
  t.is((await a.call('loginRoom', 'd1', user('dupA'))).errorCode, 0)
  t.is((await b.call('loginRoom', 'd2', user('dupB'))).errorCode, 0)
  let since = a.mark()
  await a.call('startPublishingStream', 'dup', 0, { roomID: 'd1' })
  await a.waitFor('publisherStateUpdate', (s, st) => s === 'dup' && st === 2, { since })
  since = b.mark()
  await b.call('startPublishingStream', 'dup', 0, { roomID: 'd2' })
  const [, state, code] = await b.waitFor('publisherStateUpdate', (s, st) => s === 'dup' && st === 0, { since })
  t.is(state, 0)
  t.is(code, 1003028)
  await refused(t, a, 1003023, 'startPublishingStream', 'other', 0, { roomID: 'd1' })
  await refused(t, a, 1003028, 'startPublishingStream', 'dup', 1, { roomID: 'd1' })
  // The first publisher is unaffected and B can publish once A stops.
  await a.call('stopPublishingStream', 0)
  since = b.mark()
  await b.call('startPublishingStream', 'dup', 0, { roomID: 'd2' })
  await b.waitFor('publisherStateUpdate', (s, st) => s === 'dup' && st === 2, { since })
  await a.call('logoutRoom')
  await b.call('logoutRoom')
})

test.serial('a room full of members: 1002034', async (t) => {
  const a = await peer('fullA', { appID: 4 })
  const b = await peer('fullB', { appID: 4 })
  const c = await peer('fullC', { appID: 4 })
  t.is((await a.call('loginRoom', 'full', user('fullA'))).errorCode, 0)
  t.is((await b.call('loginRoom', 'full', user('fullB'))).errorCode, 0)
  t.is((await c.call('loginRoom', 'full', user('fullC'))).errorCode, 1002034)
  await b.call('logoutRoom')
  t.is((await c.call('loginRoom', 'full', user('fullC'))).errorCode, 0)
  await a.call('logoutRoom')
  await c.call('logoutRoom')
})

test.serial('maxMemberCount of the first user limits the room', async (t) => {
  const a = await peer('capA')
  const b = await peer('capB')
  t.is((await a.call('loginRoom', 'cap', user('capA'), { maxMemberCount: 1 })).errorCode, 0)
  t.is((await b.call('loginRoom', 'cap', user('capB'))).errorCode, 1002034)
  await a.call('logoutRoom')
})

test.serial('wrong appSign is refused (1001005); an app unknown to the server (1001004)', async (t) => {
  const bad = await peer('sign', { appID: 5, appSign: 'cd'.repeat(32) })
  t.is((await bad.call('loginRoom', 'z', user('sign'))).errorCode, 1001005)
  const good = await peer('sign2', { appID: 5, appSign: 'ab'.repeat(32) })
  t.is((await good.call('loginRoom', 'z', user('sign2'))).errorCode, 0)
  await good.call('logoutRoom')

  const closed = await startServerProcess('[[app]]\napp_id = 9\nmulti_room = true\n')
  try {
    const stranger = await Peer.create('stranger', closed.url, { appID: 1 })
    ctx.track(stranger)
    const since = stranger.mark()
    t.is((await stranger.call('loginRoom', 'z', user('stranger'))).errorCode, 1001004)
    t.deepEqual(stranger.of('roomStateChanged', () => true, since).map(([r, reason, code]) => [r, reason, code]), [
      ['z', 0, 0],
      ['z', 2, 1001004],
    ])
    const known = await Peer.create('known', closed.url, { appID: 9 })
    ctx.track(known)
    t.is((await known.call('loginRoom', 'z', user('known'))).errorCode, 0)
    await known.call('logoutRoom')
  } finally {
    await closed.stop()
  }
})

test.serial('createEngineWithProfile rejects a bad profile with ZEGO codes', async (t) => {
  const p = new Peer('profile')
  ctx.track(p)
  const zero = await t.throwsAsync(p.static('createEngineWithProfile', { appID: 0, appSign: '' }))
  t.is(zero.errorCode, 1001000)
  const short = await t.throwsAsync(p.static('createEngineWithProfile', { appID: 1, appSign: 'abc' }))
  t.is(short.errorCode, 1001001)
  const nothex = await t.throwsAsync(p.static('createEngineWithProfile', { appID: 1, appSign: 'z'.repeat(64) }))
  t.is(nothex.errorCode, 1001002)
  t.true(await p.instanceThrows(), 'instance() throws before an engine exists')
})

test.serial('the same userID from a second connection kicks the first: 1002050 KickOut', async (t) => {
  const first = await peer('kick1')
  const second = await peer('kick2')
  const watcher = await peer('kickw')
  const u = user('twin')
  t.is((await first.call('loginRoom', 'k', u, { isUserStatusNotify: true })).errorCode, 0)
  t.is((await first.call('loginRoom', 'k2', u)).errorCode, 0)
  t.is((await watcher.call('loginRoom', 'k', user('watcher'), { isUserStatusNotify: true })).errorCode, 0)
  let since = first.mark()
  await first.call('startPublishingStream', 'twin-stream', 0, { roomID: 'k' })
  await first.waitFor('publisherStateUpdate', (s, st) => s === 'twin-stream' && st === 2, { since })
  since = first.mark()
  const sinceW = watcher.mark()
  t.is((await second.call('loginRoom', 'k', u)).errorCode, 0)
  const [room, reason, code] = await first.waitFor('roomStateChanged', (r, re) => r === 'k' && re === 6, { since })
  t.is(room, 'k')
  t.is(reason, 6)
  t.is(code, 1002050)
  t.deepEqual(first.of('publisherStateUpdate', () => true, since).map(([s, st]) => [s, st]), [['twin-stream', 0]])
  const [, , streams, extended] = await watcher.waitFor('roomStreamUpdate', (r, ty) => r === 'k' && ty === 1, { since: sinceW })
  t.deepEqual(streams.map((s) => s.streamID), ['twin-stream'])
  t.is(JSON.parse(extended).stream_delete_reason[0].code, 3)
  // The first engine's other room is untouched.
  t.is(first.of('roomStateChanged', (r) => r === 'k2', since).length, 0)
  t.is((await first.call('sendBroadcastMessage', 'k2', 'still')).errorCode, 0)
  await first.call('logoutRoom')
  await second.call('logoutRoom')
  await watcher.call('logoutRoom')
})
