// Media never crosses apps: two apps on one server each publish a stream with the same ID, and
// each app's player decodes only its own app's pictures (the SFU once routed by stream ID
// alone, so a player of app B received app A's stream and a publisher of app B injected frames
// into app A's players). Content is checked: each publisher pushes the test pattern with its
// own tag and counter range.
import test from 'ava'
import { useServer } from './helpers/server.mjs'
import { frames } from './helpers/frames.mjs'

const ctx = useServer(test, 'dev_default = true\n')
const user = (id) => ({ userID: id, userName: id })

test('two apps publish the same streamID: each player decodes only its own app, both directions', async (t) => {
  const apps = [
    { appID: 11, tag: 0x0a11, first: 1000 },
    { appID: 22, tag: 0x0b22, first: 9000 },
  ]
  const sides = []
  for (const app of apps) {
    const pub = await ctx.peer(`pub${app.appID}`, { appID: app.appID })
    const play = await ctx.peer(`play${app.appID}`, { appID: app.appID })
    await pub.call('loginRoom', 'r', user('pub'))
    await play.call('loginRoom', 'r', user('play'))
    await pub.call('enableCustomVideoCapture', true, { bufferType: 1 }, 0)
    await pub.call('startPublishingStream', 'same', 0, { roomID: 'r' })
    await play.playWithView('same', { roomID: 'r' })
    await play.waitFor('playerStateUpdate', (s, st) => s === 'same' && st === 2)
    sides.push({ ...app, pub, play })
  }
  // Both publishers push at once, so a route across apps would deliver the other's frames.
  const pushing = sides.map((s) =>
    s.pub.pushPattern({ channel: 0, format: 1, width: 320, height: 180, count: 60, fps: 15, first: s.first, tag: s.tag }),
  )
  for (const s of sides) {
    const stats = await frames(s.play, 'same', 25)
    t.deepEqual(stats.tags, [s.tag], `app ${s.appID}'s player decodes only app ${s.appID}'s tag`)
    t.true(
      stats.counters.every((c) => c >= s.first && c < s.first + 60),
      `app ${s.appID} counters ${stats.counters.join(',')}`,
    )
  }
  await Promise.all(pushing)
  for (const s of sides) for (const p of [s.pub, s.play]) await p.call('logoutRoom')
})
