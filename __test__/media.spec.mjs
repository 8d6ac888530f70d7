// Real media through the SFU: a publisher's synthetic pattern and tone arrive decoded at the
// player, with the frame counter increasing at the configured size and the tone at its
// frequency; streams stay bound to their rooms.
import test from 'ava'
import { useServer } from './helpers/server.mjs'
import { readTestPattern, streamTag, toneFrequency } from './helpers/pattern.mjs'
import { frames } from './helpers/frames.mjs'

const ctx = useServer(test)
const peer = ctx.peer

const user = (id) => ({ userID: id, userName: id })

function increasing(counters) {
  return counters.every((c, i) => i === 0 || c > counters[i - 1])
}

test.serial('H.264 pattern and Opus tone arrive decoded: counters increase at 640x360, tone at 440 Hz', async (t) => {
  const pub = await peer('pub')
  const play = await peer('play')
  await pub.call('loginRoom', 'm1', user('pub'))
  await play.call('loginRoom', 'm1', user('play'))
  const since = pub.mark()
  await pub.call('startPublishingStream', 'cam', 0, { roomID: 'm1' })
  await pub.waitFor('publisherCapturedVideoFirstFrame', (ch) => ch === 0, { since })
  await pub.waitFor('publisherCapturedAudioFirstFrame', () => true, { since })
  const [w, h, ch] = await pub.waitFor('publisherVideoSizeChanged', () => true, { since })
  t.deepEqual([w, h, ch], [640, 360, 0])

  await play.playWithView('cam', { roomID: 'm1' })
  await play.waitFor('playerRecvVideoFirstFrame', (s) => s === 'cam')
  await play.waitFor('playerRecvAudioFirstFrame', (s) => s === 'cam')
  await play.waitFor('playerRenderVideoFirstFrame', (s) => s === 'cam')
  t.deepEqual(await play.waitFor('playerVideoSizeChanged', (s) => s === 'cam'), ['cam', 640, 360])
  const [, state] = await play.waitFor('playerStateUpdate', (s, st) => s === 'cam' && st === 2)
  t.is(state, 2)

  const stats = await frames(play, 'cam', 30)
  t.deepEqual(stats.sizes, ['640x360'])
  t.deepEqual(stats.tags, [streamTag('cam')], 'every frame is the pattern of stream "cam"')
  t.true(stats.counters.every((c) => c !== null))
  t.true(increasing(stats.counters), `counters ${stats.counters.join(',')}`)
  // At 15 fps, 30 frames span about 2 s of counters; losses would show as large gaps.
  const span = stats.counters[stats.counters.length - 1] - stats.counters[0]
  t.true(span >= stats.frames - 1 && span < stats.frames * 2, `span ${span} over ${stats.frames} frames`)
  t.true(increasing(stats.timestamps))

  // takePlayStreamSnapshot: the latest picture, with the pattern's tag; refused for streams
  // not played.
  const snap = await play.call('takePlayStreamSnapshot', 'cam')
  t.is(snap.errorCode, 0)
  t.like(snap.image, { format: 'I420', width: 640, height: 360 })
  t.is(readTestPattern({ width: 640, height: 360, data: snap.image.data }).tag, streamTag('cam'))
  t.is((await play.call('takePlayStreamSnapshot', 'nobody')).errorCode, 1004011)

  // One more second of audio, then the tone of the last second.
  const heard = await play.mediaStats('cam')
  const audio = await play.waitMedia('cam', { audioFrames: heard.audioFrames + 50 })
  t.is(audio.sampleRate, 48000)
  t.true(audio.audioSamples.length >= 48000, `${audio.audioSamples.length} samples`)
  const f = toneFrequency(audio.audioSamples.slice(-48000), 48000)
  t.true(Math.abs(f - 440) / 440 < 0.02, `tone measured at ${f} Hz`)

  // Quality every 3 s on both sides, with figures that match what flows.
  const [, pq] = await pub.waitFor('publisherQualityUpdate', (s, q) => s === 'cam' && q.videoSendFPS > 0, { since, timeout: 8000 })
  const [, rq] = await play.waitFor('playerQualityUpdate', (s, q) => s === 'cam' && q.videoRecvFPS > 0, { timeout: 8000 })
  t.true(pq.videoSendFPS > 10 && pq.videoSendFPS < 20, `publisher fps ${pq.videoSendFPS}`)
  t.true(pq.videoKBPS > 50 && pq.audioKBPS > 8, `publisher kbps ${pq.videoKBPS}/${pq.audioKBPS}`)
  t.true(rq.videoRecvFPS > 10 && rq.videoRecvFPS < 20, `player fps ${rq.videoRecvFPS}`)
  t.true(rq.audioRecvFPS > 40 && rq.audioRecvFPS < 60, `player audio packets/s ${rq.audioRecvFPS}`)
  t.true(rq.packetLostRate < 0.05)
  t.is(typeof rq.level, 'number')

  await pub.call('logoutRoom')
  await play.waitFor('playerStateUpdate', (s, st) => s === 'cam' && st === 1)
  await play.call('logoutRoom')
})

test.serial('one user plays a stream in each of two rooms; leaving room1 stops only its stream', async (t) => {
  const a = await peer('pubA')
  const b = await peer('pubB')
  const viewer = await peer('viewer')
  await a.call('loginRoom', 'ra', user('pubA'))
  await b.call('loginRoom', 'rb', user('pubB'))
  await viewer.call('loginRoom', 'ra', user('viewer'))
  await viewer.call('loginRoom', 'rb', user('viewer'))
  await a.call('startPublishingStream', 'sa', 0, { roomID: 'ra' })
  await b.call('startPublishingStream', 'sb', 0, { roomID: 'rb' })
  await viewer.playWithView('sa', { roomID: 'ra' })
  await viewer.playWithView('sb', { roomID: 'rb' })
  t.deepEqual((await frames(viewer, 'sa', 10)).tags, [streamTag('sa')])
  const before = await frames(viewer, 'sb', 10)
  t.deepEqual(before.tags, [streamTag('sb')])

  const since = viewer.mark()
  await viewer.call('logoutRoom', 'ra')
  t.deepEqual(viewer.of('playerStateUpdate', () => true, since).map(([s, st]) => [s, st]), [['sa', 0]])
  const stoppedAt = (await viewer.mediaStats('sa')).frames
  // Barrier: 20 more frames of room2's stream; room1's would have brought as many.
  const sb = await viewer.waitMedia('sb', { frames: before.frames + 20 })
  const sa = await viewer.mediaStats('sa')
  t.true(sa.frames - stoppedAt <= 2, `room1's stream stopped (${sa.frames - stoppedAt} frames after logout)`)
  t.true(sb.frames >= before.frames + 20, `room2's stream goes on (${sb.frames - before.frames} new frames)`)
  // No gap in room2's counters across the logout of room1.
  const after = sb.counters.slice(before.frames - 1)
  t.true(increasing(after))
  const gaps = after.slice(1).map((c, i) => c - after[i])
  t.true(Math.max(...gaps) <= 3, `largest counter gap in room2: ${Math.max(...gaps)}`)
  t.is(viewer.of('playerStateUpdate', (s) => s === 'sb', since).length, 0)

  for (const p of [a, b, viewer]) await p.call('logoutRoom')
})

test.serial('setVideoConfig: presets and explicit sizes reach the player, also while publishing', async (t) => {
  const pub = await peer('cfgpub')
  const play = await peer('cfgplay')
  await pub.call('loginRoom', 'cfg', user('cfgpub'))
  await play.call('loginRoom', 'cfg', user('cfgplay'))
  await pub.call('setVideoConfig', 0) // Preset180P
  const c = await pub.call('getVideoConfig', 0)
  t.like(c, { encodeWidth: 320, encodeHeight: 180, fps: 15, bitrate: 300 })
  await pub.call('startPublishingStream', 'small', 0, { roomID: 'cfg' })
  await play.playWithView('small', { roomID: 'cfg' })
  const first = await frames(play, 'small', 10)
  t.deepEqual(first.sizes, ['320x180'])
  t.deepEqual(first.tags, [streamTag('small')])

  const since = pub.mark()
  await pub.call('setVideoConfig', { encodeWidth: 480, encodeHeight: 270, fps: 10, bitrate: 400 })
  t.deepEqual(await pub.waitFor('publisherVideoSizeChanged', () => true, { since }), [480, 270, 0])
  await play.waitFor('playerVideoSizeChanged', (s, w, h) => s === 'small' && w === 480 && h === 270)
  const later = await frames(play, 'small', first.frames + 15)
  t.deepEqual(later.sizes, ['320x180', '480x270'])
  t.true(increasing(later.counters), 'the counter keeps going across the change')

  // Invalid configs are refused with ZEGO codes and change nothing.
  const bad = pub.mark()
  await pub.call('setVideoConfig', { encodeWidth: 321, encodeHeight: 180 })
  await pub.call('setVideoConfig', { bitrate: 0 })
  await pub.call('setVideoConfig', { codecID: 3 })
  t.deepEqual(pub.of('debugError', () => true, bad).map(([code]) => code), [1000017, 1003002, 1003080])
  t.like(await pub.call('getVideoConfig', 0), { encodeWidth: 480, encodeHeight: 270, fps: 10 })
  for (const p of [pub, play]) await p.call('logoutRoom')
})

for (const [format, name] of [
  [1, 'I420'],
  [5, 'RGBA'],
]) {
  test.serial(`custom video capture (${name}): pushed frames arrive with their content`, async (t) => {
    const pub = await peer(`custom${name}`)
    const play = await peer(`customPlay${name}`)
    await pub.call('loginRoom', 'cc', user(`custom${name}`))
    await play.call('loginRoom', 'cc', user(`customPlay${name}`))
    await pub.call('enableCustomVideoCapture', true, { bufferType: 1 }, 0)
    const stream = `custom-${name}`
    await pub.call('startPublishingStream', stream, 0, { roomID: 'cc' })
    await play.playWithView(stream, { roomID: 'cc' })
    await play.waitFor('playerStateUpdate', (s, st) => s === stream && st === 2)
    const tag = 0x1234 + format
    await pub.pushPattern({ channel: 0, format, width: 352, height: 288, count: 45, fps: 15, first: 5000, tag })
    const stats = await frames(play, stream, 20)
    t.deepEqual(stats.sizes, ['352x288'])
    t.deepEqual(stats.tags, [tag], 'the pushed tag, not the synthetic pattern')
    t.true(stats.counters.every((c) => c >= 5000 && c < 5045), `counters ${stats.counters.join(',')}`)
    t.true(increasing(stats.counters))
    // A frame whose data does not fit its size is refused, not crashed on.
    const since = pub.mark()
    await pub.call('sendCustomVideoCaptureRawData', new Uint8Array(10), 10, { format, width: 352, height: 288 }, 0, 0)
    await pub.waitFor('apiCalledResult', (code, fn) => fn === 'sendCustomVideoCaptureRawData' && code === 1000017, { since })
    for (const p of [pub, play]) await p.call('logoutRoom')
  })
}

test.serial('mutes reach the players as events and as silence and black', async (t) => {
  const pub = await peer('mutePub')
  const play = await peer('mutePlay')
  await pub.call('loginRoom', 'mute', user('mutePub'))
  await play.call('loginRoom', 'mute', user('mutePlay'))
  await pub.call('startPublishingStream', 'muted', 0, { roomID: 'mute' })
  await play.playWithView('muted', { roomID: 'mute' })
  await frames(play, 'muted', 10)
  // Media after a given point: `more` video and audio frames beyond what the view has now.
  const after = async (video, audio) => {
    const s = await play.mediaStats('muted')
    return play.waitMedia('muted', { frames: s.frames + video, audioFrames: s.audioFrames + audio })
  }
  const level = (s) => Math.max(...s.audioSamples.slice(-4800).map(Math.abs))
  t.true(level(await after(0, 25)) > 5000, 'the tone is audible before muting')

  await pub.call('mutePublishStreamAudio', true, 0)
  await pub.call('mutePublishStreamVideo', true, 0)
  t.deepEqual(await play.waitFor('remoteMicStateUpdate'), ['muted', 10])
  t.deepEqual(await play.waitFor('remoteCameraStateUpdate'), ['muted', 10])
  // What was in flight when the state arrived has gone through after 10 frames and 0.6 s.
  const muted = await after(10, 30)
  t.true(level(muted) < 50, `silence after muting (peak ${level(muted)})`)
  t.true(muted.lumaMeans.slice(-5).every((m) => m < 30), `black after muting (${muted.lumaMeans.slice(-5)})`)

  const since = play.mark()
  await pub.call('mutePublishStreamAudio', false, 0)
  await pub.call('mutePublishStreamVideo', false, 0)
  t.deepEqual(await play.waitFor('remoteMicStateUpdate', () => true, { since }), ['muted', 0])
  t.deepEqual(await play.waitFor('remoteCameraStateUpdate', () => true, { since }), ['muted', 0])
  const back = await after(10, 30)
  t.true(level(back) > 5000, 'the tone is back')
  t.true(back.lumaMeans.slice(-3).every((m) => m > 60), 'the picture is back')

  const since2 = play.mark()
  await pub.call('enableCamera', false, 0)
  t.deepEqual(await play.waitFor('remoteCameraStateUpdate', () => true, { since: since2 }), ['muted', 9])

  // A player that starts later learns the state at once.
  const late = await peer('muteLate')
  await late.call('loginRoom', 'mute', user('muteLate'))
  await late.playWithView('muted', { roomID: 'mute' })
  t.deepEqual(await late.waitFor('remoteCameraStateUpdate'), ['muted', 9])

  // The sound-level monitor: the player hears the tone (about 77 of 100 at 30 % of full
  // scale) until the publisher mutes its microphone.
  await pub.call('enableCamera', true, 0)
  await play.call('startSoundLevelMonitor', { millisecond: 200 })
  await pub.call('startSoundLevelMonitor')
  const loud = await play.waitFor('remoteSoundLevelUpdate', (levels) => levels.muted > 60)
  t.true(loud[0].muted < 90, `remote level ${loud[0].muted}`)
  const [captured] = await pub.waitFor('capturedSoundLevelUpdate', (l) => l > 60)
  t.true(captured < 90, `captured level ${captured}`)
  const [beforeMutePlay, beforeMutePub] = [play.mark(), pub.mark()]
  await pub.call('muteMicrophone', true)
  t.true(await pub.call('isMicrophoneMuted'))
  t.deepEqual(await play.waitFor('remoteMicStateUpdate', (s, st) => st === 10, { since: beforeMutePlay }), ['muted', 10])
  await play.waitFor('remoteSoundLevelUpdate', (levels) => levels.muted === 0, { since: beforeMutePlay })
  await pub.waitFor('capturedSoundLevelUpdate', (l) => l === 0, { since: beforeMutePub })
  await play.call('stopSoundLevelMonitor')
  await pub.call('stopSoundLevelMonitor')

  // Player-side mute and volumes act on what the view hears (the engine applies them). The
  // microphone is unmuted first, so the silence below is the player's doing.
  await pub.call('muteMicrophone', false)
  const full = level(await after(0, 30))
  t.true(full > 5000, `the tone is back after unmuting the microphone (peak ${full})`)
  await play.call('mutePlayStreamAudio', 'muted', true)
  t.true(level(await after(0, 30)) === 0, 'mutePlayStreamAudio silences the view')
  await play.call('mutePlayStreamAudio', 'muted', false)
  await play.call('setPlayVolume', 'muted', 50)
  const half = level(await after(0, 30))
  t.true(Math.abs(half / full - 0.5) < 0.08, `setPlayVolume 50: peak ${half} of ${full}`)
  await play.call('setAllPlayStreamVolume', 50)
  const quarter = level(await after(0, 30))
  t.true(Math.abs(quarter / full - 0.25) < 0.05, `and setAllPlayStreamVolume 50: peak ${quarter} of ${full}`)
  await play.call('setAllPlayStreamVolume', 100)
  await play.call('setPlayVolume', 'muted', 100)

  // Player-side video mute: no frame reaches the view and nothing is decoded (the snapshot
  // stands still) while audio goes on; after unmuting, pictures come back from a keyframe.
  const snapshotCounter = async () => readTestPattern({ width: 640, height: 360, data: (await play.call('takePlayStreamSnapshot', 'muted')).image.data }).counter
  await play.call('mutePlayStreamVideo', 'muted', true)
  const mutedAt = await play.mediaStats('muted')
  const frozenAt = await snapshotCounter()
  const whileMuted = await play.waitMedia('muted', { audioFrames: mutedAt.audioFrames + 40 })
  t.true(whileMuted.frames - mutedAt.frames <= 1, `${whileMuted.frames - mutedAt.frames} frames reached a muted view`)
  // (One picture may have been in the decoder when the mute came; 0.8 s holds about 12.)
  const decodedWhileMuted = (await snapshotCounter()) - frozenAt
  t.true(decodedWhileMuted <= 1, `muted video is not decoded (${decodedWhileMuted} pictures)`)
  await play.call('mutePlayStreamVideo', 'muted', false)
  const resumed = await play.waitMedia('muted', { frames: whileMuted.frames + 5 })
  const fresh = resumed.counters.slice(whileMuted.frames)
  t.true(fresh.every((c) => c !== null && c > frozenAt), `counters after unmuting: ${fresh}`)
  for (const p of [pub, play, late]) await p.call('logoutRoom')
})

test.serial('VP8 (codec ID 2): the pattern arrives decoded with increasing counters at the configured size', async (t) => {
  const pub = await peer('vp8pub')
  const play = await peer('vp8play')
  await pub.call('loginRoom', 'vp8', user('vp8pub'))
  await play.call('loginRoom', 'vp8', user('vp8play'))
  await pub.call('setVideoConfig', { encodeWidth: 640, encodeHeight: 360, fps: 15, bitrate: 600, codecID: 2 })
  await pub.call('startPublishingStream', 'vp8cam', 0, { roomID: 'vp8' })
  await play.playWithView('vp8cam', { roomID: 'vp8' })
  const stats = await frames(play, 'vp8cam', 30)
  t.deepEqual(stats.sizes, ['640x360'])
  t.deepEqual(stats.tags, [streamTag('vp8cam')])
  t.true(stats.counters.every((c) => c !== null) && increasing(stats.counters), `counters ${stats.counters.join(',')}`)
  const span = stats.counters[stats.counters.length - 1] - stats.counters[0]
  t.true(span >= stats.frames - 1 && span < stats.frames * 2, `span ${span} over ${stats.frames} frames`)
  for (const p of [pub, play]) await p.call('logoutRoom')
})

test.serial('startPreview shows local pictures before and while publishing; stopPreview ends them', async (t) => {
  const p = await peer('preview')
  await p.previewWithView(0)
  t.deepEqual(await p.waitFor('publisherRenderVideoFirstFrame'), [0])
  const before = await frames(p, 'preview:0', 10)
  t.deepEqual(before.sizes, ['640x360'])
  await p.call('loginRoom', 'pv', user('preview'))
  await p.call('startPublishingStream', 'pv-stream', 0, { roomID: 'pv' })
  await p.waitFor('publisherStateUpdate', (s, st) => s === 'pv-stream' && st === 2)
  const current = (await p.mediaStats('preview:0')).frames
  const during = await p.waitMedia('preview:0', { frames: current + 10 })
  t.true(during.tags.includes(streamTag('pv-stream')), 'the preview shows the published pattern')
  // A player of the published stream is the barrier: 15 frames it receives after stopPreview
  // were captured after it, and the preview would have shown them too.
  const watcher = await peer('previewWatcher')
  await watcher.call('loginRoom', 'pv', user('previewWatcher'))
  await watcher.playWithView('pv-stream', { roomID: 'pv' })
  await frames(watcher, 'pv-stream', 5)
  await p.call('stopPreview', 0)
  const stopped = (await p.mediaStats('preview:0')).frames
  const seen = (await watcher.mediaStats('pv-stream')).frames
  await frames(watcher, 'pv-stream', seen + 15)
  t.true((await p.mediaStats('preview:0')).frames - stopped <= 1, 'no preview after stopPreview')
  for (const q of [p, watcher]) await q.call('logoutRoom')
})

test.serial('custom audio: pushed PCM arrives decoded at its frequency', async (t) => {
  const pub = await peer('pcmPub')
  const play = await peer('pcmPlay')
  await pub.call('loginRoom', 'pcm', user('pcmPub'))
  await play.call('loginRoom', 'pcm', user('pcmPlay'))
  await pub.call('enableCustomAudioIO', true, undefined, 0)
  await pub.call('startPublishingStream', 'pcm', 0, { roomID: 'pcm' })
  await play.playWithView('pcm', { roomID: 'pcm' })
  await play.waitFor('playerStateUpdate', (s, st) => s === 'pcm' && st === 2)
  await pub.pushTone({ channel: 0, frequency: 1000, seconds: 2.5 })
  const stats = await play.mediaStats('pcm')
  // The last second that carried the pushed tone (the stream is silent after the push ends).
  const samples = stats.audioSamples.filter((v) => v !== 0).slice(-48000)
  t.true(samples.length >= 24000, `${samples.length} non-silent samples`)
  const f = toneFrequency(samples, 48000)
  t.true(Math.abs(f - 1000) / 1000 < 0.02, `pushed tone measured at ${f} Hz`)
  // A rate other than 48 kHz is refused with 1000017.
  const since = pub.mark()
  await pub.call('sendCustomAudioCapturePCMData', new Int16Array(160), 320, { sampleRate: 16000, channel: 1 }, 0)
  await pub.waitFor('apiCalledResult', (code, fn) => fn === 'sendCustomAudioCapturePCMData' && code === 1000017, { since })
  for (const p of [pub, play]) await p.call('logoutRoom')
})

test.serial('setAudioConfig: the Opus bitrate follows the preset, while publishing', async (t) => {
  const pub = await peer('audioCfg')
  await pub.call('setAudioConfig', 0) // BasicQuality, 16 kbps
  t.like(await pub.call('getAudioConfig', 0), { bitrate: 16, channel: 1 })
  await pub.call('loginRoom', 'acfg', user('audioCfg'))
  await pub.call('startPublishingStream', 'acfg', 0, { roomID: 'acfg' })
  const [, low] = await pub.waitFor('publisherQualityUpdate', (s, q) => s === 'acfg' && q.audioKBPS > 0, { timeout: 10000 })
  const since = pub.mark()
  await pub.call('setAudioConfig', { bitrate: 128, channel: 2 })
  // The report after next covers a whole interval at the new rate.
  await pub.waitFor('publisherQualityUpdate', (s) => s === 'acfg', { since, timeout: 10000 })
  const since2 = pub.mark()
  const [, high] = await pub.waitFor('publisherQualityUpdate', (s) => s === 'acfg', { since: since2, timeout: 10000 })
  t.true(low.audioKBPS > 10 && low.audioKBPS < 30, `16 kbps preset sent ${low.audioKBPS} kbps`)
  t.true(high.audioKBPS > 100 && high.audioKBPS < 170, `128 kbps config sent ${high.audioKBPS} kbps`)
  const bad = pub.mark()
  await pub.call('setAudioConfig', { bitrate: 1000 })
  await pub.waitFor('debugError', (code, fn) => code === 1000017 && fn === 'setAudioConfig', { since: bad })
  await pub.call('logoutRoom')
})
