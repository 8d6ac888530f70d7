// Real devices through cpal (microphone, speaker) and nokhwa (camera). This machine has no sound
// card and no camera: the lists must stay clean, missing devices must be reported with
// localDeviceExceptionOccurred while the stream carries the synthetic source, and ALSA's null
// device drives a real cpal output and input stream.
import test from 'ava'
import { startServerProcess } from './helpers/server.mjs'
import { Peer } from './helpers/peer.mjs'
import { frames } from './helpers/frames.mjs'
import { streamTag, toneFrequency } from './helpers/pattern.mjs'

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * Reads `read()` again, answer after answer, until `done(value)` (at most `timeout` ms): a
 * device's state has no event, so the test asks until the device has done what it waits for.
 */
async function until(read, done, timeout = 5000) {
  const end = Date.now() + timeout
  for (;;) {
    const value = await read()
    if (done(value) || Date.now() > end) return value
  }
}
const user = (id) => ({ userID: id, userName: id })
const devices = { advanced: { capture: 'device' } }
const CAMERA = 1
const MICROPHONE = 2
const SPEAKER = 3
const INVALID_ID = 2

let server
test.before(async () => {
  server = await startServerProcess('dev_default = true\n')
})
test.after.always(async () => {
  await server?.stop()
})

test.serial('device lists leave out pseudo devices; bad device types get 1000017', async (t) => {
  const p = await Peer.create('dev-lists', server.url, devices)
  try {
    const inputs = await p.call('getAudioDeviceList', 0)
    const outputs = await p.call('getAudioDeviceList', 1)
    const cameras = await p.call('getVideoDeviceList')
    t.log(`inputs ${JSON.stringify(inputs)}, outputs ${JSON.stringify(outputs)}, cameras ${JSON.stringify(cameras)}`)
    for (const d of [...inputs, ...outputs]) {
      t.true(typeof d.deviceID === 'string' && d.deviceID.length > 0 && typeof d.deviceName === 'string')
      t.false(/(^|:)null$/.test(d.deviceID) || /discard all samples/i.test(d.deviceName), `pseudo device listed: ${d.deviceID}`)
    }
    // The default is a listed device or none.
    for (const [type, list] of [
      [0, inputs],
      [1, outputs],
    ]) {
      const id = await p.call('getDefaultAudioDeviceID', type)
      t.true(id === '' || list.some((d) => d.deviceID === id), `default ${type}: ${id}`)
    }
    t.is(await p.call('getDefaultVideoDeviceID'), cameras.length ? cameras[0].deviceID : '')
    t.deepEqual(await p.call('getCurrentAudioDevice', 1), { deviceID: '', deviceName: '' })
    await p.call('useAudioDevice', 'alsa:null', 1)
    t.is((await p.call('getCurrentAudioDevice', 1)).deviceID, 'alsa:null')
    const since = p.mark()
    t.deepEqual(await p.call('getAudioDeviceList', 7), [])
    await p.call('useAudioDevice', 'alsa:null', 3)
    await p.settle()
    t.deepEqual(
      p.of('debugError', () => true, since).map(([code, func]) => `${func} ${code}`),
      ['getAudioDeviceList 1000017', 'useAudioDevice 1000017'],
    )
    t.is((await p.call('getCurrentAudioDevice', 1)).deviceID, 'alsa:null', 'a refused call changes nothing')
  } finally {
    await p.close()
  }
})

test.serial('a missing camera and microphone: localDeviceExceptionOccurred, and the stream carries the pattern and the tone', async (t) => {
  const pub = await Peer.create('dev-missing', server.url, devices)
  const play = await Peer.create('dev-missing-play', server.url)
  try {
    await pub.call('useVideoDevice', 'no-such-camera', 0)
    await pub.call('useAudioDevice', 'no-such-microphone', 0)
    await pub.call('loginRoom', 'devices', user('dev-missing'))
    await pub.call('startPublishingStream', 'fallback', 0, { roomID: 'devices' })
    await pub.waitFor('localDeviceExceptionOccurred', (type, device, id) => type === INVALID_ID && device === CAMERA && id === 'no-such-camera')
    await pub.waitFor('localDeviceExceptionOccurred', (type, device, id) => type === INVALID_ID && device === MICROPHONE && id === 'no-such-microphone')
    await play.call('loginRoom', 'devices', user('dev-missing-play'))
    await play.playWithView('fallback', { roomID: 'devices' })
    const s = await frames(play, 'fallback', 20)
    t.true(s.tags.includes(streamTag('fallback')), 'the synthetic pattern of the stream')
    // One more second of audio, then the tone of the last second.
    const heard = await play.mediaStats('fallback')
    const audio = await play.waitMedia('fallback', { audioFrames: heard.audioFrames + 50 })
    const f = toneFrequency(audio.audioSamples.slice(-48000), 48000)
    t.true(Math.abs(f - 440) < 4, `the tone: ${f} Hz`)
    const state = await pub.call('getDeviceState')
    t.deepEqual([state.microphones, state.cameras], [{}, {}], 'no device runs')
  } finally {
    await play.close()
    await pub.close()
  }
})

test.serial('remote audio plays through cpal into ALSA null: a real output stream at real-time pace, released when playing stops', async (t) => {
  const pub = await Peer.create('dev-spk-pub', server.url)
  const play = await Peer.create('dev-spk', server.url, devices)
  try {
    await pub.call('loginRoom', 'speaker', user('dev-spk-pub'))
    await pub.call('startPublishingStream', 'to-speaker', 0, { roomID: 'speaker' })
    await play.call('loginRoom', 'speaker', user('dev-spk'))
    // The system default first: here there is no sound card, so the speaker is reported missing.
    const defaultOut = await play.call('getDefaultAudioDeviceID', 1)
    const since = play.mark()
    await play.playWithView('to-speaker', { roomID: 'speaker' })
    await frames(play, 'to-speaker', 5)
    if (defaultOut === '') {
      await play.waitFor('localDeviceExceptionOccurred', (type, device) => device === SPEAKER, { since })
      t.is((await play.call('getDeviceState')).speaker, null)
    } else {
      t.is((await play.call('getDeviceState')).speaker.deviceID, defaultOut)
    }
    // Now the null device: the running output moves to it at once.
    // The call resolves once the output has moved.
    await play.call('useAudioDevice', 'alsa:null', 1)
    const a = (await play.call('getDeviceState')).speaker
    t.truthy(a, 'the speaker runs')
    t.is(a.deviceID, 'alsa:null')
    const t0 = Date.now()
    // A measurement window (the device's pace), not a wait for something to happen.
    await sleep(1500)
    const b = (await play.call('getDeviceState')).speaker
    const perSecond = ((b.frames - a.frames) * 1000) / (Date.now() - t0)
    t.log(`null speaker: ${Math.round(perSecond)} frames/s`)
    // Paced to real time (48,000 frames/s at 48 kHz; unpaced the null device takes tens of
    // millions a second). Wide bounds: this is a liveness check, not a timing test.
    t.true(perSecond > 10000 && perSecond < 200000, `${perSecond} frames/s`)
    t.is(play.of('localDeviceExceptionOccurred', (type, device, id) => id === 'alsa:null').length, 0)
    // What the speaker plays is the stream: the publisher's tone is at 30 % of full scale.
    t.true(b.peak > 3000, `speaker peak ${b.peak}`)
    await play.call('muteSpeaker', true)
    t.true(await play.call('isSpeakerMuted'))
    // The device's next buffers are silent: its peak reads 0 once it has played one.
    const peak = await until(async () => (await play.call('getDeviceState')).speaker.peak, (p) => p === 0)
    t.is(peak, 0, 'muted: silence goes to the device')
    await play.call('muteSpeaker', false)
    await play.call('setAllPlayStreamVolume', 50)
    // stopPlayingStream resolves after the player and the speaker have stopped.
    await play.call('stopPlayingStream', 'to-speaker')
    t.is((await play.call('getDeviceState')).speaker, null, 'released when nothing plays')
  } finally {
    await play.close()
    await pub.close()
  }
})

test.serial('the capture path from ALSA null: the microphone runs and sends its silence; enableAudioCaptureDevice(false) releases it', async (t) => {
  const pub = await Peer.create('dev-mic', server.url, devices)
  const play = await Peer.create('dev-mic-play', server.url)
  try {
    await pub.call('useAudioDevice', 'alsa:null', 0)
    await pub.call('useVideoDevice', 'no-camera', 0)
    await pub.call('setCaptureVolume', 150)
    await pub.call('loginRoom', 'mic', user('dev-mic'))
    await pub.call('startPublishingStream', 'from-null', 0, { roomID: 'mic' })
    await play.call('loginRoom', 'mic', user('dev-mic-play'))
    await play.playWithView('from-null', { roomID: 'mic' })
    await frames(play, 'from-null', 10)
    t.deepEqual((await pub.call('getDeviceState')).microphones, { 0: 'alsa:null' })
    const s = await play.waitMedia('from-null', { audioFrames: 50 })
    const last = s.audioSamples.slice(-24000)
    t.true(s.audioFrames >= 50, `audio frames ${s.audioFrames}`)
    t.true(Math.max(...last.map(Math.abs)) < 100, 'the null device captures silence, and silence arrives')
    t.is(pub.of('localDeviceExceptionOccurred', (type, device) => device === MICROPHONE).length, 0)
    // Each call resolves once the microphone is released or open again.
    await pub.call('enableAudioCaptureDevice', false)
    t.deepEqual((await pub.call('getDeviceState')).microphones, {}, 'released')
    await pub.call('enableAudioCaptureDevice', true)
    t.deepEqual((await pub.call('getDeviceState')).microphones, { 0: 'alsa:null' }, 'open again')
    const before = (await play.mediaStats('from-null')).audioFrames
    const later = await play.waitMedia('from-null', { audioFrames: before + 10 })
    t.true(later.audioFrames > before, 'audio keeps flowing')
  } finally {
    await play.close()
    await pub.close()
  }
})
