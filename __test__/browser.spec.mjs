// Interop with a WebRTC stack we did not write: headless Chromium runs the page the server
// serves (web/), and media and messages go both ways between it and Node SDK users, in two
// rooms at once. The browser's ICE, DTLS, SRTP, RTCP and codecs meet our SFU and engine.
import test from 'ava'
import { mkdirSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startServerProcess } from './helpers/server.mjs'
import { Peer } from './helpers/peer.mjs'
import { frames } from './helpers/frames.mjs'
import { streamTag, toneFrequency } from './helpers/pattern.mjs'
import { launchChromium, patternY4m, toneWav } from './helpers/browser.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const user = (id) => ({ userID: id, userName: id })

// The browser's fake camera shows the test pattern (counter and tag of 'web-cam') at 640x360,
// its fake microphone a 440 Hz tone: the Node player checks what arrives, not only that it does.
const CAM = { width: 640, height: 360, fps: 15, frames: 75, tag: streamTag('web-cam') }

let server
let browser
let page
let pageUrl

test.before(async () => {
  server = await startServerProcess('dev_default = true\n')
  browser = await launchChromium({ video: patternY4m(CAM), audio: toneWav(440) })
  pageUrl = `${server.url.replace('ws://', 'http://')}/`
})

test.after.always(async () => {
  await browser?.close()
  await server?.stop()
})

/** Opens the page as `userID` logged into `rooms`; resolves once every room is connected. */
async function openPage(userID, rooms, codec = 'H264') {
  const p = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  p.on('pageerror', (e) => console.log(`page error: ${e.message}`))
  await p.goto(`${pageUrl}?appID=1&userID=${userID}&rooms=${rooms.join(',')}&codec=${codec}`)
  for (const r of rooms) await p.waitForSelector(`section[data-room="${r}"][data-state="connected"]`, { timeout: 10000 })
  return p
}

/**
 * Waits until the page's player of `streamID` has decoded `n` frames; resolves its stats. The
 * browser's decoder statistics have no event: they are read again every 100 ms until they do.
 */
async function pageFrames(p, streamID, n, timeout = 15000) {
  const until = Date.now() + timeout
  for (;;) {
    const s = await p.evaluate((id) => window.zroomsPage.client.playStats(id), streamID)
    if (s && s.framesDecoded >= n) return s
    if (Date.now() > until) throw new Error(`page: ${JSON.stringify(s)} for ${streamID}, wanted ${n} frames`)
    await sleep(100)
  }
}

test.serial('the server serves the page and its scripts', async (t) => {
  const html = await (await fetch(pageUrl)).text()
  t.regex(html, /<script type="module" src="\/app.js">/)
  const js = await fetch(`${pageUrl}zrooms.js`)
  t.is(js.status, 200)
  t.regex(js.headers.get('content-type'), /javascript/)
  t.is((await fetch(`${pageUrl}nothing-here`)).status, 404)
})

for (const [codecID, name, width, height] of [
  [0, 'H.264', 640, 360],
  [2, 'VP8', 320, 240],
]) {
  test.serial(`Node publishes the pattern in ${name} → the page plays it at the configured size`, async (t) => {
    const streamID = `node-${name.replace('.', '')}`
    const pub = await Peer.create(`pub-${codecID}`, server.url)
    const p = await openPage(`viewer-${codecID}`, ['media'])
    try {
      await pub.call('loginRoom', 'media', user(`pub-${codecID}`))
      await pub.call('setVideoConfig', { encodeWidth: width, encodeHeight: height, fps: 15, bitrate: 800, codecID }, 0)
      await pub.call('startPublishingStream', streamID, 0, { roomID: 'media' })
      await p.click(`section[data-room="media"] li[data-stream="${streamID}"] button.play`)
      const first = await pageFrames(p, streamID, 5)
      const later = await pageFrames(p, streamID, first.framesDecoded + 10)
      t.log(`page: ${JSON.stringify(later)}`)
      t.is(later.codec, codecID === 0 ? 'video/H264' : 'video/VP8')
      t.deepEqual([later.frameWidth, later.frameHeight], [width, height])
      t.true(later.framesDecoded > first.framesDecoded, 'frames keep decoding')
      // What the SFU's answer agreed with Chromium: only codecs every client decodes, with
      // retransmission, NACK/PLI feedback and transport-wide congestion control.
      const answer = await p.evaluate(() => window.zroomsPage.client.pc.remoteDescription.sdp)
      const rtpmaps = [...new Set([...answer.matchAll(/a=rtpmap:\d+ ([\w-]+)\//g)].map((m) => m[1]))].sort()
      t.deepEqual(rtpmaps, ['H264', 'VP8', 'opus', 'rtx'])
      t.regex(answer, /profile-level-id=42e01f/)
      t.regex(answer, /packetization-mode=1/)
      t.regex(answer, /a=rtcp-fb:\d+ nack pli/)
      t.regex(answer, /a=rtcp-fb:\d+ transport-cc/)
      t.regex(answer, /a=extmap:\d+ http:\/\/www.ietf.org\/id\/draft-holmer-rmcat-transport-wide-cc-extensions-01/)
    } finally {
      await p.close()
      await pub.close()
    }
  })
}

for (const codec of ['H264', 'VP8']) {
  test.serial(`the page publishes its camera and microphone in ${codec} → a Node player decodes the pattern and the tone`, async (t) => {
    const streamID = `web-cam-${codec}`
    const room = `studio-${codec}`
    const p = await openPage(`cam-${codec}`, [room], codec)
    const play = await Peer.create(`watch-${codec}`, server.url)
    try {
      await p.fill(`section[data-room="${room}"] .publish input`, streamID)
      await p.click(`section[data-room="${room}"] .publish button`)
      await play.call('loginRoom', room, user(`watch-${codec}`))
      await play.playWithView(streamID, { roomID: room })
      const s = await frames(play, streamID, 30, 20000)
      const counters = s.counters.filter((c) => c !== null)
      t.log(`node: ${s.frames} frames, sizes ${s.sizes.join(' → ')}, tags ${[...s.tags].join(',')}`)
      t.true(s.tags.includes(CAM.tag), 'pictures carry the fake camera’s pattern')
      t.true(s.sizes.includes(`${CAM.width}x${CAM.height}`), 'at the camera’s size')
      // The file loops every 75 frames: counters rise, apart from the wrap.
      let rises = 0
      for (let i = 1; i < counters.length; i++) if (counters[i] > counters[i - 1] || counters[i - 1] - counters[i] > CAM.frames / 2) rises++
      t.true(counters.length >= 20 && rises >= (counters.length - 1) * 0.9, `counters ${counters.slice(0, 40).join(',')}`)
      const [, q] = await play.waitFor('playerQualityUpdate', (id, q) => id === streamID && q.videoKBPS > 0, { timeout: 8000 })
      t.is(q.videoCodecID, codec === 'VP8' ? 2 : 0, 'the page sends the codec it was asked for')
      const audio = await play.mediaStats(streamID)
      const f = toneFrequency(audio.audioSamples.slice(-48000), 48000)
      const peak = Math.max(...audio.audioSamples.slice(-48000).map(Math.abs))
      t.log(`node: audio frames ${audio.audioFrames}, tone ${f?.toFixed(1)} Hz, peak ${peak}`)
      // Chromium's audio processing (gain control, noise suppression) lowers the 8000 peak to
      // about 900; silence would be near 0.
      t.true(peak > 300, `audible: peak ${peak}`)
      t.true(Math.abs(f - 440) <= 4, `tone at ${f} Hz`)
      await p.click(`section[data-room="${room}"] .publish button`)
      await play.waitFor('roomStreamUpdate', (r, update, list) => r === room && update === 1 && list.some((x) => x.streamID === streamID))
    } finally {
      await play.close()
      await p.close()
    }
  })
}

test.serial('messages both ways in two rooms at once, each room only its own; a screenshot of the live page', async (t) => {
  const node = await Peer.create('node-msg', server.url)
  await node.call('loginRoom', 'east', user('node-msg'))
  await node.call('loginRoom', 'west', user('node-msg'))
  await node.call('startPublishingStream', 'east-cam', 0, { roomID: 'east' })
  const p = await openPage('web-msg', ['east', 'west'])
  try {
    // Browser → Node, one message per room through the page's forms.
    for (const room of ['east', 'west']) {
      await p.fill(`section[data-room="${room}"] .send input`, `hello ${room} from the browser`)
      await p.click(`section[data-room="${room}"] .send button`)
    }
    for (const room of ['east', 'west']) {
      await node.waitFor('IMRecvBroadcastMessage', (r, msgs) => r === room && msgs.some((m) => m.message === `hello ${room} from the browser`))
    }
    const got = node.of('IMRecvBroadcastMessage')
    t.deepEqual(
      got.map(([r, msgs]) => msgs.map((m) => `${r}: ${m.message} (${m.fromUser.userID})`)).flat(),
      ['east: hello east from the browser (web-msg)', 'west: hello west from the browser (web-msg)'],
    )
    // Node → browser: each room's log shows its own message only.
    await node.call('sendBroadcastMessage', 'east', 'to east from node')
    await node.call('sendBroadcastMessage', 'west', 'to west from node')
    await node.call('sendCustomCommand', 'west', 'west command', [])
    await p.waitForFunction(() => document.querySelectorAll('section[data-room="west"] .log .msg').length >= 3)
    const logs = await p.evaluate(() =>
      Object.fromEntries(['east', 'west'].map((r) => [r, [...document.querySelectorAll(`section[data-room="${r}"] .log .msg`)].map((m) => m.textContent)])),
    )
    t.deepEqual(logs, {
      east: ['web-msg: hello east from the browser', 'node-msg: to east from node'],
      west: ['web-msg: hello west from the browser', 'node-msg: to west from node', 'node-msg: west command'],
    })
    // Users and streams per room.
    const lists = await p.evaluate(() =>
      Object.fromEntries(
        ['east', 'west'].map((r) => [
          r,
          {
            users: [...document.querySelectorAll(`section[data-room="${r}"] .users li`)].map((li) => li.textContent),
            streams: [...document.querySelectorAll(`section[data-room="${r}"] .streams li`)].map((li) => li.dataset.stream),
          },
        ]),
      ),
    )
    t.deepEqual(lists, {
      east: { users: ['web-msg (me)', 'node-msg'], streams: ['east-cam'] },
      west: { users: ['web-msg (me)', 'node-msg'], streams: [] },
    })
    // A live look for people: east's stream playing, both rooms' logs.
    await p.click('section[data-room="east"] li[data-stream="east-cam"] button.play')
    await pageFrames(p, 'east-cam', 10)
    // Not a wait for the test: a moment of video for the screenshot people look at.
    await sleep(700)
    const dir = join(root, 'artifacts')
    mkdirSync(dir, { recursive: true })
    const shot = join(dir, 'browser-multi-room.png')
    await p.screenshot({ path: shot, fullPage: true })
    t.log(`screenshot: ${shot}`)
  } finally {
    await p.close()
    await node.close()
  }
})
