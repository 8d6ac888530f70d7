// GET /metrics on a real zrooms-server while engines use it: the OpenMetrics text parses, and
// its values follow the load (rooms, members, streams, media peers and legs, media packets
// and bytes, the login latency histogram, refusals by ZEGO code), and the rooms' fall back
// once the users leave. GET /healthz answers.
import test from 'ava'
import { useServer } from './helpers/server.mjs'
import { frames } from './helpers/frames.mjs'

const ctx = useServer(test)
const user = (id) => ({ userID: id, userName: id })

/** The server's metrics as a map from series (name with labels) to value. */
async function scrape() {
  const { port } = new URL(ctx.server.url)
  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`)
  if (!/openmetrics-text/.test(res.headers.get('content-type'))) throw new Error('not OpenMetrics')
  const text = await res.text()
  if (!text.trimEnd().endsWith('# EOF')) throw new Error('no # EOF')
  const series = new Map()
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    series.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return series
}

const v = (m, series) => m.get(series) ?? 0

test.serial('/healthz answers ok', async (t) => {
  const { port } = new URL(ctx.server.url)
  const res = await fetch(`http://127.0.0.1:${port}/healthz`)
  t.is(res.status, 200)
  t.is(await res.text(), 'ok\n')
})

test.serial('values follow the load: rooms, members, streams, legs, packets, logins, refusals', async (t) => {
  const before = await scrape()
  t.is(v(before, 'zrooms_rooms'), 0)
  t.is(v(before, 'zrooms_room_members'), 0)
  const logins = v(before, 'zrooms_request_seconds_count{request="login"}')

  const pub = await ctx.peer('m-pub')
  const play = await ctx.peer('m-play')
  const rival = await ctx.peer('m-rival')
  t.is((await pub.call('loginRoom', 'metrics', user('pub'))).errorCode, 0)
  t.is((await play.call('loginRoom', 'metrics', user('play'))).errorCode, 0)
  t.is((await rival.call('loginRoom', 'metrics-2', user('rival'))).errorCode, 0)
  await pub.call('startPublishingStream', 'm-cam', 0, { roomID: 'metrics' })
  await pub.waitFor('publisherStateUpdate', (s, st) => s === 'm-cam' && st === 2)
  await play.playWithView('m-cam', { roomID: 'metrics' })
  await frames(play, 'm-cam', 10)
  // Someone else's stream ID: the server refuses it with 1003028, and counts the refusal.
  await rival.call('startPublishingStream', 'm-cam', 0, { roomID: 'metrics-2' })
  await rival.waitFor('publisherStateUpdate', (s, st, code) => s === 'm-cam' && code === 1003028)

  // Frames decoded at the player: the SFU has handled both offers, and its worker recounted
  // its peers and legs when it did.
  const during = await scrape()
  t.true(v(during, 'zrooms_media_peers') >= 2, `peers ${v(during, 'zrooms_media_peers')}`)
  t.true(v(during, 'zrooms_media_legs') >= 2, `legs ${v(during, 'zrooms_media_legs')}`)
  t.is(v(during, 'zrooms_rooms'), 2)
  t.is(v(during, 'zrooms_room_members'), 3)
  t.is(v(during, 'zrooms_streams'), 1)
  t.is(v(during, 'zrooms_stream_players'), 1)
  t.true(v(during, 'zrooms_sessions') >= 3)
  t.true(v(during, 'zrooms_connections_open') >= 3)
  t.is(v(during, 'zrooms_request_seconds_count{request="login"}'), logins + 3)
  t.true(v(during, 'zrooms_requests_refused_total{code="1003028"}') >= 1)
  const packetsIn = v(during, 'zrooms_media_packets_total{direction="in"}')
  const bytesOut = v(during, 'zrooms_media_bytes_total{direction="out"}')
  t.true(packetsIn > 50, `packets in ${packetsIn}`)
  t.true(bytesOut > 10000, `bytes out ${bytesOut}`)
  // Media keeps flowing: the counters grow between two scrapes.
  const stats = await play.mediaStats('m-cam')
  await frames(play, 'm-cam', stats.frames + 10)
  const later = await scrape()
  t.true(v(later, 'zrooms_media_packets_total{direction="in"}') > packetsIn)
  t.true(v(later, 'zrooms_media_bytes_total{direction="out"}') > bytesOut)

  // Logouts are answered once the rooms have changed: the room gauges are exact right after.
  // (The SFU drops the legs when its worker handles the stops, after the answers.)
  await Promise.all([pub, play, rival].map((p) => p.call('logoutRoom')))
  const after = await scrape()
  t.is(v(after, 'zrooms_rooms'), 0)
  t.is(v(after, 'zrooms_room_members'), 0)
  t.is(v(after, 'zrooms_streams'), 0)
  t.is(v(after, 'zrooms_stream_players'), 0)
})
