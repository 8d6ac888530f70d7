// Media under loss: 5 % packet loss and 100 ms delay each way between the engines and the SFU
// (a loss/delay relay in the test: this machine's kernel has no netem), and the played stream
// stays decodable (NACK/RTX, keyframe requests) and its audio continuous.
import test from 'ava'
import { startServerProcess } from './helpers/server.mjs'
import { Peer } from './helpers/peer.mjs'
import { streamTag, toneFrequency } from './helpers/pattern.mjs'
import { startUdpImpairment } from './helpers/udp-impair.mjs'

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const user = (id) => ({ userID: id, userName: id })

test.serial('5 % loss and 100 ms delay: video stays decodable with no long freeze, audio continuous at its tone', async (t) => {
  const relay = await startUdpImpairment({ loss: 0.05, delayMs: 100, seed: 7 })
  const server = await startServerProcess(`dev_default = true\nmedia_advertise = "${relay.address}"\n`)
  relay.setTarget(server.media)
  const pub = await Peer.create('lossy-pub', server.url)
  const play = await Peer.create('lossy-play', server.url)
  try {
    await pub.call('loginRoom', 'lossy', user('lossy-pub'))
    await play.call('loginRoom', 'lossy', user('lossy-play'))
    await pub.call('startPublishingStream', 'lossy-cam', 0, { roomID: 'lossy' })
    await play.playWithView('lossy-cam', { roomID: 'lossy' })
    await play.waitFor('playerStateUpdate', (s, st) => s === 'lossy-cam' && st === 2, { timeout: 15000 })
    const start = await play.mediaStats('lossy-cam')
    await sleep(8000)
    const end = await play.mediaStats('lossy-cam')
    const counters = end.counters.slice(start.counters.length).filter((c) => c !== null)
    const sent = counters[counters.length - 1] - counters[0] + 1
    let longest = 0
    for (let i = 1; i < counters.length; i++) longest = Math.max(longest, counters[i] - counters[i - 1])
    t.log(`relay: ${relay.stats.forwarded} packets forwarded, ${relay.stats.dropped} dropped`)
    t.log(`decoded ${counters.length} of ${sent} frames in 8 s, longest gap ${longest} frames; audio frames ${end.audioFrames - start.audioFrames}`)
    t.deepEqual(end.tags, [streamTag('lossy-cam')], 'every decoded picture is intact')
    t.true(counters.every((c, i) => i === 0 || c > counters[i - 1]), 'in order')
    t.true(counters.length >= sent * 0.8, `decoded ${counters.length} of ${sent}`)
    t.true(longest <= 15, `no freeze longer than a second: longest gap ${longest} frames`)
    const audioFrames = end.audioFrames - start.audioFrames
    // 400 slots in 8 s. Without concealment this measured 255 (64 %); with it 348 to 373 here,
    // the rest being the window's ends (read through worker messages) and a playout thread
    // starved by the other specs on 2 cores.
    t.true(audioFrames >= 8 * 50 * 0.8, `audio frames in 8 s: ${audioFrames}`)
    // The tone over the last second: the median period between zero crossings. Missing and
    // concealed frames put phase jumps into the recording; a spectrum's peak over the whole
    // second moved with them (446 Hz once in CI), the median period does not.
    const f = toneFrequency(end.audioSamples.slice(-48000), 48000)
    t.log(`tone ${f.toFixed(2)} Hz`)
    t.true(Math.abs(f - 440) <= 2, `tone peak at ${f} Hz`)
  } finally {
    relay.close()
    await pub.close().catch(() => {})
    await play.close().catch(() => {})
    await server.stop()
  }
})
