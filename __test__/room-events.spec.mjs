// Per-room events beyond the seed flow: user updates follow isUserStatusNotify, room and stream
// extra info, online counts, custom commands to everyone or to some; and the facade's own
// behaviour (listeners that throw, off(), the in-process server).
import test from 'ava'
import { createRequire } from 'node:module'
import { useServer } from './helpers/server.mjs'

const require = createRequire(import.meta.url)
const Z = require('../index.js')

const ctx = useServer(test, 'dev_default = true\nonline_count_interval_ms = 300\n')
const peer = ctx.peer

const user = (id) => ({ userID: id, userName: id })

test.serial('roomUserUpdate reaches only users who asked for it', async (t) => {
  const a = await peer('notifyA')
  const b = await peer('notifyB')
  await a.call('loginRoom', 'n', user('notifyA'), { isUserStatusNotify: true })
  await b.call('loginRoom', 'n', user('notifyB'))
  await a.waitFor('roomUserUpdate', (r, ty, list) => ty === 0 && list[0].userID === 'notifyB')
  await b.settle()
  t.is(b.of('roomUserUpdate').length, 0)
  await b.call('logoutRoom')
  await a.waitFor('roomUserUpdate', (r, ty, list) => ty === 1 && list[0].userID === 'notifyB')
  await a.call('logoutRoom')
})

test.serial('room extra info reaches the room and later joiners', async (t) => {
  const a = await peer('extraA')
  const b = await peer('extraB')
  await a.call('loginRoom', 'x', user('extraA'))
  await a.call('loginRoom', 'y', user('extraA'))
  await b.call('loginRoom', 'x', user('extraB'))
  await b.call('loginRoom', 'y', user('extraB'))
  t.deepEqual(await a.call('setRoomExtraInfo', 'x', 'topic', 'rust'), { errorCode: 0 })
  const [room, list] = await b.waitFor('roomExtraInfoUpdate')
  t.is(room, 'x')
  t.is(list.length, 1)
  t.is(list[0].key, 'topic')
  t.is(list[0].value, 'rust')
  t.deepEqual(list[0].updateUser, user('extraA'))
  t.true(list[0].updateTime > 1.6e12)
  await b.settle()
  t.is(b.of('roomExtraInfoUpdate', (r) => r === 'y').length, 0)
  t.is(a.of('roomExtraInfoUpdate').length, 0, 'the setter is not told')
  const c = await peer('extraC')
  await c.call('loginRoom', 'x', user('extraC'))
  const [, late] = await c.waitFor('roomExtraInfoUpdate', (r) => r === 'x')
  t.is(late[0].value, 'rust')
  for (const p of [a, b, c]) await p.call('logoutRoom')
})

test.serial('stream extra info: set before publishing travels with the stream, later changes are pushed', async (t) => {
  const a = await peer('sxA')
  const b = await peer('sxB')
  await a.call('loginRoom', 'sx', user('sxA'))
  await a.call('loginRoom', 'sy', user('sxA'))
  await b.call('loginRoom', 'sx', user('sxB'))
  await b.call('loginRoom', 'sy', user('sxB'))
  t.deepEqual(await a.call('setStreamExtraInfo', 'first', 0), { errorCode: 0 })
  await a.call('startPublishingStream', 'sx-stream', 0, { roomID: 'sx' })
  const [, , added] = await b.waitFor('roomStreamUpdate', (r, ty) => r === 'sx' && ty === 0)
  t.is(added[0].extraInfo, 'first')
  await a.waitFor('publisherStateUpdate', (s, st) => st === 2)
  t.deepEqual(await a.call('setStreamExtraInfo', 'second', 0), { errorCode: 0 })
  const [room, streams] = await b.waitFor('roomStreamExtraInfoUpdate')
  t.is(room, 'sx')
  t.deepEqual(streams, [{ user: user('sxA'), streamID: 'sx-stream', extraInfo: 'second' }])
  await b.settle()
  t.is(b.of('roomStreamExtraInfoUpdate', (r) => r === 'sy').length, 0)
  for (const p of [a, b]) await p.call('logoutRoom')
})

test.serial('online user count is pushed per room', async (t) => {
  const a = await peer('countA')
  const b = await peer('countB')
  await a.call('loginRoom', 'c1', user('countA'))
  await a.call('loginRoom', 'c2', user('countA'))
  await b.call('loginRoom', 'c1', user('countB'))
  const since = a.mark()
  await a.waitFor('roomOnlineUserCountUpdate', (r, n) => r === 'c1' && n === 2, { since })
  await a.waitFor('roomOnlineUserCountUpdate', (r, n) => r === 'c2' && n === 1, { since })
  for (const p of [a, b]) await p.call('logoutRoom')
  t.pass()
})

test.serial('custom commands: an empty list reaches the whole room, a list only those users', async (t) => {
  const [a, b, c] = [await peer('ccA'), await peer('ccB'), await peer('ccC')]
  for (const p of [a, b, c]) await p.call('loginRoom', 'cc', user(p.name))
  await b.call('loginRoom', 'cc-other', user('ccB'))
  await a.call('loginRoom', 'cc-other', user('ccA'))
  t.deepEqual(await a.call('sendCustomCommand', 'cc', 'all', []), { errorCode: 0 })
  t.deepEqual(await a.call('sendCustomCommand', 'cc', 'only-c', [user('ccC')]), { errorCode: 0 })
  t.deepEqual(await a.call('sendCustomCommand', 'cc-other', 'other-room', null), { errorCode: 0 })
  await b.waitFor('IMRecvCustomCommand', (r, from, cmd) => cmd === 'all')
  await c.waitFor('IMRecvCustomCommand', (r, from, cmd) => cmd === 'only-c')
  await b.waitFor('IMRecvCustomCommand', (r, from, cmd) => cmd === 'other-room')
  await c.settle()
  t.deepEqual(b.of('IMRecvCustomCommand').map(([r, , cmd]) => [r, cmd]), [
    ['cc', 'all'],
    ['cc-other', 'other-room'],
  ])
  t.deepEqual(c.of('IMRecvCustomCommand').map(([r, , cmd]) => [r, cmd]), [
    ['cc', 'all'],
    ['cc', 'only-c'],
  ])
  for (const p of [a, b, c]) await p.call('logoutRoom')
})

test.serial('main thread engine on the in-process server: a throwing listener does not stop the others; off() removes', async (t) => {
  const embedded = await Z.startServer({ port: 0 })
  t.regex(embedded.url, /^ws:\/\/127\.0\.0\.1:\d+$/)
  try {
    await Z.setEngineConfig({ advancedConfig: { server: embedded.url } })
    await Z.setRoomMode(Z.ZegoRoomMode.MultiRoom)
    t.throws(() => Z.instance())
    const engine = await Z.createEngineWithProfile({ appID: 77, appSign: '', scenario: Z.ZegoScenario.Default })
    t.is(Z.instance(), engine)
    const seen = []
    const removed = []
    engine.on('roomStateChanged', () => {
      throw new Error('boom')
    })
    engine.on('roomStateChanged', (roomID, reason) => seen.push([roomID, reason]))
    const gone = () => removed.push(1)
    engine.on('roomStateUpdate', gone)
    engine.off('roomStateUpdate', gone)
    const origError = console.error
    console.error = () => {}
    try {
      t.is((await engine.loginRoom('main', { userID: 'main' })).errorCode, 0)
      t.is((await engine.loginRoom('main2', { userID: 'main' })).errorCode, 0)
      await engine.logoutRoom()
    } finally {
      console.error = origError
    }
    t.deepEqual(seen, [
      ['main', 0],
      ['main', 1],
      ['main2', 0],
      ['main2', 1],
      ['main', 7],
      ['main2', 7],
    ])
    t.deepEqual(removed, [])
    t.truthy(await Z.getVersion())
    await Z.destroyEngine()
    t.throws(() => Z.instance())
    t.deepEqual(await engine.sendBroadcastMessage('main', 'after destroy'), { errorCode: 1000001, messageID: 0 })
  } finally {
    await embedded.close()
  }
})
