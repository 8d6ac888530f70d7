// One engine in its own worker thread, driven by the test through messages: {id, kind, name,
// args} runs a static or instance method and answers {id, result} or {id, error}; every event
// of the engine is forwarded as {event, args}.
import { parentPort } from 'node:worker_threads'
import { createRequire } from 'node:module'
import { readTestPattern, drawTestPattern, drawTestPatternRGBA } from './pattern.mjs'

const require = createRequire(import.meta.url)
const Z = require('../../index.js')

const EVENTS = [
  'debugError',
  'apiCalledResult',
  'roomStateUpdate',
  'roomStateChanged',
  'roomUserUpdate',
  'roomOnlineUserCountUpdate',
  'roomTokenWillExpire',
  'roomStreamUpdate',
  'roomStreamExtraInfoUpdate',
  'roomExtraInfoUpdate',
  'publisherStateUpdate',
  'playerStateUpdate',
  'IMRecvBroadcastMessage',
  'IMRecvBarrageMessage',
  'IMRecvCustomCommand',
  'publisherCapturedVideoFirstFrame',
  'publisherCapturedAudioFirstFrame',
  'publisherVideoSizeChanged',
  'playerRecvVideoFirstFrame',
  'playerRecvAudioFirstFrame',
  'playerRenderVideoFirstFrame',
  'playerVideoSizeChanged',
  'remoteCameraStateUpdate',
  'remoteMicStateUpdate',
  'localDeviceExceptionOccurred',
  'publisherQualityUpdate',
  'playerQualityUpdate',
  'capturedSoundLevelUpdate',
  'publisherRenderVideoFirstFrame',
  'remoteSoundLevelUpdate',
]

let engine = null

// Per played stream: what its view received, and who waits for it to reach a count.
const media = new Map()
const mediaWaiters = new Map()

function snapshot(stats) {
  return stats ? { ...stats, tags: [...stats.tags], counters: [...stats.counters], lumaMeans: [...stats.lumaMeans], audioSamples: [...stats.audioSamples] } : null
}

/** Resolves the waiters of `streamID` whose counts its view has reached. */
function checkWaiters(streamID) {
  const stats = media.get(streamID)
  const list = mediaWaiters.get(streamID)
  if (!stats || !list) return
  mediaWaiters.set(
    streamID,
    list.filter((w) => {
      const reached = stats.frames >= (w.frames ?? 0) && stats.audioFrames >= (w.audioFrames ?? 0)
      if (reached) w.resolve(snapshot(stats))
      return !reached
    }),
  )
}

function viewFor(streamID) {
  const stats = { frames: 0, counters: [], tags: new Set(), sizes: [], timestamps: [], audioSamples: [], sampleRate: 0, audioFrames: 0, lumaMeans: [] }
  media.set(streamID, stats)
  return {
    onFrame(f) {
      stats.frames++
      const { counter, tag } = readTestPattern(f)
      let sum = 0
      for (let i = 0; i < f.width * f.height; i += 97) sum += f.data[i]
      stats.lumaMeans.push(Math.round(sum / Math.ceil((f.width * f.height) / 97)))
      stats.counters.push(counter)
      stats.tags.add(tag)
      stats.timestamps.push(f.timestamp)
      const size = `${f.width}x${f.height}`
      if (stats.sizes[stats.sizes.length - 1] !== size) stats.sizes.push(size)
      checkWaiters(streamID)
    },
    onAudioFrame(f) {
      stats.audioFrames++
      stats.sampleRate = f.sampleRate
      // Keep the latest 2 s of samples.
      for (const v of f.data) stats.audioSamples.push(v)
      if (stats.audioSamples.length > 2 * f.sampleRate) stats.audioSamples.splice(0, stats.audioSamples.length - 2 * f.sampleRate)
      checkWaiters(streamID)
    },
  }
}

function subscribe(e) {
  for (const name of EVENTS) e.on(name, (...args) => parentPort.postMessage({ event: name, args }))
}

parentPort.on('message', async ({ id, kind, name, args }) => {
  try {
    let result
    if (kind === 'static') {
      result = await Z[name](...args)
      if (name === 'createEngineWithProfile') {
        if (result !== engine) subscribe(result)
        engine = result
        result = { created: true, same: result === Z.instance() }
      }
      if (name === 'destroyEngine') engine = null
    } else if (kind === 'play-with-view') {
      const [streamID, config] = args
      result = await engine.startPlayingStream(streamID, viewFor(streamID), config)
    } else if (kind === 'preview-with-view') {
      const [channel] = args
      result = await engine.startPreview(viewFor(`preview:${channel}`), channel)
    } else if (kind === 'push-pattern') {
      // Custom capture: push `count` frames of the test pattern at `fps`.
      const [{ channel, format, width, height, count, fps, first, tag }] = args
      for (let i = 0; i < count; i++) {
        const data = format === 1 ? drawTestPattern(width, height, first + i, tag) : drawTestPatternRGBA(width, height, first + i, tag)
        await engine.sendCustomVideoCaptureRawData(data, data.byteLength, { format, width, height }, Date.now(), channel)
        await new Promise((r) => setTimeout(r, 1000 / fps))
      }
      result = count
    } else if (kind === 'push-tone') {
      // Custom audio: push `seconds` of a tone at `frequency`, 20 ms at a time, in real time.
      const [{ channel, frequency, seconds }] = args
      const rate = 48000
      let phase = 0
      const start = Date.now()
      for (let i = 0; i < seconds * 50; i++) {
        const pcm = new Int16Array(960)
        for (let k = 0; k < pcm.length; k++) {
          pcm[k] = Math.round(Math.sin(phase) * 0.3 * 32767)
          phase = (phase + (2 * Math.PI * frequency) / rate) % (2 * Math.PI)
        }
        await engine.sendCustomAudioCapturePCMData(pcm, pcm.byteLength, { sampleRate: rate, channel: 1 }, channel)
        const due = start + (i + 1) * 20 - Date.now()
        if (due > 0) await new Promise((r) => setTimeout(r, due))
      }
      result = seconds
    } else if (kind === 'drop-view') {
      // Forget what the view of a stream recorded (long runs play many streams).
      result = media.delete(args[0])
    } else if (kind === 'media-stats') {
      result = snapshot(media.get(args[0]))
    } else if (kind === 'wait-media') {
      // Resolves once the view of the stream has at least these many video and audio frames
      // (counted since the view was made); the test side bounds the wait.
      const [streamID, counts] = args
      result = await new Promise((resolve) => {
        mediaWaiters.set(streamID, [...(mediaWaiters.get(streamID) ?? []), { ...counts, resolve }])
        checkWaiters(streamID)
      })
    } else if (kind === 'instance-throws') {
      try {
        Z.instance()
        result = false
      } catch {
        result = true
      }
    } else {
      result = await engine[name](...args)
    }
    parentPort.postMessage({ id, result })
  } catch (err) {
    parentPort.postMessage({ id, error: String(err?.message ?? err), errorCode: err?.errorCode })
  }
})
