// One engine in its own worker thread, driven by the test through messages: {id, kind, name,
// args} runs a static or instance method and answers {id, result} or {id, error}; every event
// of the engine is forwarded as {event, args}.
import { parentPort } from 'node:worker_threads'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const Z = require('../../index.js')

const EVENTS = [
  'debugError',
  'apiCalledResult',
  'roomStateUpdate',
  'roomStateChanged',
  'roomUserUpdate',
  'roomOnlineUserCountUpdate',
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
]

let engine = null

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
