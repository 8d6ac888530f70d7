// Streams that come and go on long-lived engines. Each stopped stream leaves an m-line in the
// engine's peer connection; the engine sheds them (it drops an idle peer and rebuilds a busy
// one with only its live tracks). The server here takes messages of at most 32 KiB, which the
// player's media offer would pass after about 13 stopped streams if the m-lines piled up; the
// long stream must keep arriving through every rebuild, and no connection may drop.
import test from 'ava'
import { useServer } from './helpers/server.mjs'
import { streamTag } from './helpers/pattern.mjs'
import { frames } from './helpers/frames.mjs'

const ctx = useServer(test, 'dev_default = true\nmax_frame_bytes = 32768\n')
const peer = ctx.peer

const user = (id) => ({ userID: id, userName: id })
const CYCLES = 20

test.serial(`${CYCLES} streams started and stopped while one stream plays throughout`, async (t) => {
  const host = await peer('host')
  const guest = await peer('guest')
  const viewer = await peer('viewer')
  for (const [p, id] of [[host, 'host'], [guest, 'guest'], [viewer, 'viewer']]) {
    t.is((await p.call('loginRoom', 'churn', user(id))).errorCode, 0)
  }
  await host.call('startPublishingStream', 'long', 0, { roomID: 'churn' })
  await viewer.playWithView('long', { roomID: 'churn' })
  await frames(viewer, 'long', 5)

  for (let i = 1; i <= CYCLES; i++) {
    const id = `short-${i}`
    await guest.call('startPublishingStream', id, 0, { roomID: 'churn' })
    await viewer.playWithView(id, { roomID: 'churn' })
    const s = await frames(viewer, id, 2)
    t.deepEqual(s.tags, [streamTag(id)], `${id}: only its own pictures`)
    await viewer.call('stopPlayingStream', id)
    await guest.call('stopPublishingStream', 0)
  }

  // The long stream went on through every rebuild of the viewer's peer.
  const before = (await viewer.mediaStats('long')).frames
  const after = await frames(viewer, 'long', before + 15)
  t.deepEqual(after.tags, [streamTag('long')])
  const tail = after.counters.slice(-15)
  t.true(tail.every((c, i) => i === 0 || c > tail[i - 1]), `counters ${tail.join(',')}`)

  // Nobody's connection dropped: each room saw Logining (0) and Logined (1), nothing else.
  for (const p of [host, guest, viewer]) {
    const reasons = p.of('roomStateChanged').map((args) => args[1])
    t.deepEqual(reasons, [0, 1], `${p.name}: room state reasons`)
  }
  // And the guest's engine, idle between its streams, is publishing nothing now.
  t.is(guest.of('publisherStateUpdate', (s, st) => st === 2).length, CYCLES)
})
