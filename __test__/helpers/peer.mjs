// Test-side handle of an engine running in a worker thread (see peer-worker.mjs).
import { Worker } from 'node:worker_threads'

export class Peer {
  constructor(name) {
    this.name = name
    this.events = []
    this.waiters = []
    this.calls = new Map()
    this.nextId = 1
    this.worker = new Worker(new URL('./peer-worker.mjs', import.meta.url))
    this.worker.on('message', (msg) => this.onMessage(msg))
    this.worker.on('error', (err) => {
      for (const { reject } of this.calls.values()) reject(err)
    })
  }

  /** Creates a peer whose engine is configured for `server` and created in `mode`. */
  static async create(name, server, { mode = 1, appID = 1, appSign = '', advanced = {} } = {}) {
    const p = new Peer(name)
    // The synthetic pattern and tone unless a spec asks for devices: a developer's camera must
    // not stand in for the content the media specs check.
    await p.static('setEngineConfig', { advancedConfig: { capture: 'synthetic', ...advanced, server } })
    await p.static('setRoomMode', mode)
    await p.static('createEngineWithProfile', { appID, appSign, scenario: 3 })
    return p
  }

  onMessage(msg) {
    if (msg.event) {
      const entry = { event: msg.event, args: msg.args }
      this.events.push(entry)
      this.waiters = this.waiters.filter((w) => !w.check(entry))
      return
    }
    const call = this.calls.get(msg.id)
    if (!call) return
    this.calls.delete(msg.id)
    if ('error' in msg) {
      const err = new Error(msg.error)
      err.errorCode = msg.errorCode
      call.reject(err)
    } else {
      call.resolve(msg.result)
    }
  }

  send(kind, name, args) {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject })
      this.worker.postMessage({ id, kind, name, args })
    })
  }

  static(name, ...args) {
    return this.send('static', name, args)
  }

  call(name, ...args) {
    return this.send('call', name, args)
  }

  /** startPlayingStream with a view that records frames (counters, sizes) and audio. */
  playWithView(streamID, config) {
    return this.send('play-with-view', '', [streamID, config])
  }

  /** startPreview(channel) with a recording view; its stats are under `preview:<channel>`. */
  previewWithView(channel) {
    return this.send('preview-with-view', '', [channel])
  }

  /** Pushes custom-capture frames of the test pattern (see peer-worker.mjs). */
  pushPattern(opts) {
    return this.send('push-pattern', '', [opts])
  }

  /** Pushes custom-audio PCM of a tone (see peer-worker.mjs). */
  pushTone(opts) {
    return this.send('push-tone', '', [opts])
  }

  /** What the view of `streamID` has received so far. */
  mediaStats(streamID) {
    return this.send('media-stats', '', [streamID])
  }

  /**
   * Resolves the stats of the view of `streamID` once it holds at least `counts.frames` video
   * and `counts.audioFrames` audio frames; rejects after `timeout` ms.
   */
  waitMedia(streamID, counts, timeout = 15000) {
    let timer
    const expired = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name}: ${streamID} did not reach ${JSON.stringify(counts)}`)), timeout)
    })
    return Promise.race([this.send('wait-media', '', [streamID, counts]), expired]).finally(() => clearTimeout(timer))
  }

  /** Forgets what the view of `streamID` recorded. */
  dropView(streamID) {
    return this.send('drop-view', '', [streamID])
  }

  instanceThrows() {
    return this.send('instance-throws', '', [])
  }

  /** The position in the event log, to wait for events after it. */
  mark() {
    return this.events.length
  }

  /** Args lists of `event` since `since`, optionally filtered. */
  of(event, pred = () => true, since = 0) {
    return this.events.slice(since).filter((e) => e.event === event && pred(...e.args)).map((e) => e.args)
  }

  /** Waits for an `event` whose args satisfy `pred`, logged at or after `since`. */
  waitFor(event, pred = () => true, { since = 0, timeout = 10000 } = {}) {
    const found = this.events.slice(since).find((e) => e.event === event && pred(...e.args))
    if (found) return Promise.resolve(found.args)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter)
        reject(new Error(`${this.name}: timed out waiting for ${event}`))
      }, timeout)
      const waiter = {
        check: (entry) => {
          if (entry.event !== event || !pred(...entry.args)) return false
          clearTimeout(timer)
          resolve(entry.args)
          return true
        },
      }
      this.waiters.push(waiter)
    })
  }

  /** Lets in-flight events arrive: a round trip through the engine's own event queue. */
  async settle(ms = 200) {
    await new Promise((r) => setTimeout(r, ms))
  }

  async close() {
    try {
      await this.static('destroyEngine')
    } finally {
      await this.worker.terminate()
    }
  }
}
