// One participant of the example scenarios: its own engine in its own worker thread, written
// against the public API only, the way an app would be. It reacts to SDK events (custom
// commands, broadcast messages, stream updates) like a real app and reports what it saw.
//
// workerData: {server, role, userID, ...role options}. Messages to the parent:
//   {log: text}                      progress lines
//   {result: {userID, role, checks, failures, rooms}}   at the end
// The parent posts 'end' when the scenario's time is up.
import { parentPort, workerData } from 'node:worker_threads'
import ZegoExpressEngine, {
  ZegoRoomMode,
  ZegoPlayerState,
  ZegoPublisherState,
  ZegoUpdateType,
  readTestPattern,
  streamTag,
} from 'zrooms'

const cfg = workerData
const me = { userID: cfg.userID, userName: cfg.userID }
const checks = []
const failures = []
/** Per room: messages received, streams played there, how the room ended. */
const rooms = {}
const log = (text) => parentPort.postMessage({ log: `${cfg.userID.padEnd(12)} ${text}` })
const room = (id) => (rooms[id] ??= { broadcasts: 0, commands: 0, barrages: 0, played: [], frames: 0, left: false })
/** Per played stream: decoded frames, and frames that showed another stream's pattern. */
const decoded = {}
const check = (ok, what) => (ok ? checks : failures).push(what)

const ended = new Promise((resolve) => parentPort.on('message', (m) => m === 'end' && resolve()))
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

await ZegoExpressEngine.setEngineConfig({ advancedConfig: { server: cfg.server } })
await ZegoExpressEngine.setRoomMode(ZegoRoomMode.MultiRoom)
const engine = await ZegoExpressEngine.createEngineWithProfile({ appID: cfg.appID, appSign: '', scenario: 3 })

// Streams seen per room, to check that none leaks into a room it was not published in.
const streamsByRoom = {}
const playing = new Map()
const waiters = []
function waitUntil(pred, what, timeout = 10000) {
  if (pred()) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const w = { pred, resolve }
    waiters.push(w)
    setTimeout(() => {
      const i = waiters.indexOf(w)
      if (i >= 0) {
        waiters.splice(i, 1)
        reject(new Error(`${cfg.userID}: timed out waiting for ${what}`))
      }
    }, timeout)
  })
}
function poke() {
  for (const w of [...waiters]) {
    if (w.pred()) {
      waiters.splice(waiters.indexOf(w), 1)
      w.resolve()
    }
  }
}

const handlers = { command: () => {}, broadcast: () => {} }
// Users present per room (roomUserUpdate; the first login delivers those already there).
const usersByRoom = {}
engine.on('roomUserUpdate', (roomID, type, users) => {
  const set = (usersByRoom[roomID] ??= new Set())
  for (const u of users) {
    if (type === ZegoUpdateType.Add) set.add(u.userID)
    else set.delete(u.userID)
  }
  poke()
})

engine.on('roomStateChanged', (roomID, reason, errorCode) => {
  if (errorCode !== 0) log(`room ${roomID}: reason ${reason}, error ${errorCode}`)
  if (reason === 7) room(roomID).left = true
  poke()
})
engine.on('roomStreamUpdate', (roomID, type, streams) => {
  const set = (streamsByRoom[roomID] ??= new Set())
  for (const s of streams) {
    if (type === ZegoUpdateType.Add) set.add(s.streamID)
    else set.delete(s.streamID)
  }
  poke()
})
engine.on('playerStateUpdate', (streamID, state) => {
  playing.set(streamID, state)
  poke()
})
engine.on('IMRecvBroadcastMessage', (roomID, list) => {
  for (const m of list) {
    room(roomID).broadcasts++
    // Every message names the room it was sent to: one arriving elsewhere is a leak.
    check(m.message.startsWith(`[${roomID}]`), `broadcast "${m.message}" arrived in ${roomID}`)
    handlers.broadcast(roomID, m)
  }
})
engine.on('IMRecvBarrageMessage', (roomID, list) => {
  room(roomID).barrages += list.length
})
engine.on('IMRecvCustomCommand', (roomID, fromUser, command) => {
  room(roomID).commands++
  check(command.startsWith(`[${roomID}]`), `command "${command}" arrived in ${roomID}`)
  handlers.command(roomID, fromUser, command)
})

async function login(roomID) {
  const r = await engine.loginRoom(roomID, me, { isUserStatusNotify: true })
  check(r.errorCode === 0, `login ${roomID} (${r.errorCode})`)
  room(roomID)
  log(`joined ${roomID}`)
}

async function logout(roomID) {
  const r = await engine.logoutRoom(roomID)
  check(r.errorCode === 0 && room(roomID).left, `left ${roomID} cleanly`)
  log(`left ${roomID}`)
}

async function publish(streamID, roomID, channel = 0) {
  await engine.startPublishingStream(streamID, channel, { roomID })
  await new Promise((resolve) => {
    const on = (id, state) => {
      if (id === streamID && state === ZegoPublisherState.Publishing) {
        engine.off('publisherStateUpdate', on)
        resolve()
      }
    }
    engine.on('publisherStateUpdate', on)
  })
  log(`publishing ${streamID} in ${roomID}`)
}

/** Plays `streamID` through `roomID` once that room lists it. */
async function play(streamID, roomID) {
  await waitUntil(() => streamsByRoom[roomID]?.has(streamID), `${streamID} listed in ${roomID}`)
  const d = (decoded[streamID] = { frames: 0, wrong: 0, last: -1, backwards: 0 })
  const view = {
    onFrame(frame) {
      const { counter, tag } = readTestPattern(frame)
      d.frames++
      room(roomID).frames++
      if (tag !== streamTag(streamID)) d.wrong++
      if (counter !== null && counter <= d.last) d.backwards++
      d.last = counter ?? d.last
      if (d.frames === 1) poke()
    },
  }
  await engine.startPlayingStream(streamID, view, { roomID })
  await waitUntil(() => playing.get(streamID) === ZegoPlayerState.Playing, `playing ${streamID}`)
  // A play counts once its first picture is decoded, so a play begun just before the
  // scenario's time is up still shows frames before everyone leaves.
  await waitUntil(() => d.frames > 0, `a first frame of ${streamID}`)
  room(roomID).played.push(streamID)
  check(true, `played ${streamID} via ${roomID}`)
  log(`playing ${streamID} via ${roomID}`)
}

async function stopPlaying(streamID) {
  await engine.stopPlayingStream(streamID)
}

/** Every stream played showed frames of its own pattern, in order. */
function checkDecoded() {
  for (const [streamID, d] of Object.entries(decoded)) {
    check(d.frames > 0, `decoded frames of ${streamID} (${d.frames})`)
    check(d.wrong === 0, `every frame of ${streamID} is ${streamID}'s pattern (${d.wrong} were not)`)
    check(d.backwards === 0, `frame counters of ${streamID} only go forward`)
  }
}

const say = (roomID, text) => engine.sendBroadcastMessage(roomID, `[${roomID}] ${text}`)
const command = (roomID, text, to) => engine.sendCustomCommand(roomID, `[${roomID}] ${text}`, to)

// ---- roles ------------------------------------------------------------------------------

const roles = {
  /** Cross-room co-hosting: a host publishes in its room; on the other host's invitation both
   * play each other through the other room, and their audiences follow. */
  async host() {
    const { home, other, peer, leads } = cfg
    await login(home)
    await publish(`${cfg.userID}-live`, home)
    const joint = new Promise((resolve) => {
      handlers.command = (roomID, from, cmd) => {
        if (cmd.endsWith('cohost-start')) resolve(from)
      }
    })
    if (leads) {
      // The leading host crosses over first and invites the other host in its room.
      await sleep(300)
      await login(other)
      await waitUntil(() => streamsByRoom[other]?.has(`${peer}-live`), `${peer}'s stream`)
      await command(other, 'cohost-start', [{ userID: peer, userName: peer }])
      log(`invited ${peer} to co-host`)
    } else {
      await joint
      await login(other)
      await command(other, 'cohost-start', [{ userID: peer, userName: peer }])
    }
    if (leads) await joint
    await play(`${peer}-live`, other)
    await say(home, `co-hosting with ${peer}`)
    await ended
    await command(other, 'cohost-end', [{ userID: peer, userName: peer }])
    await say(home, 'co-hosting ended')
    await stopPlaying(`${peer}-live`)
    await sleep(300)
    await logout(other)
    await sleep(200)
    await logout(home)
  },

  /** An audience member plays its host, and during the joint session the other host too. */
  async audience() {
    const { home, other, host, otherHost } = cfg
    let started
    const start = new Promise((r) => (started = r))
    let finished
    const finish = new Promise((r) => (finished = r))
    handlers.broadcast = (roomID, m) => {
      if (roomID === home && m.message.includes('co-hosting with')) started()
      if (roomID === home && m.message.includes('co-hosting ended')) finished()
    }
    await login(home)
    await play(`${host}-live`, home)
    await start
    await login(other)
    await play(`${otherHost}-live`, other)
    await engine.sendBarrageMessage(other, `[${other}] hello from ${cfg.userID}`)
    await finish
    await stopPlaying(`${otherHost}-live`)
    await logout(other)
    await ended
    await logout(home)
  },

  /** Super small class: the teacher publishes in the big room and answers nothing else. */
  async teacher() {
    await login(cfg.classRoom)
    await publish('teacher-live', cfg.classRoom)
    await say(cfg.classRoom, 'class begins')
    await ended
    await say(cfg.classRoom, 'class is over')
    await sleep(200)
    await logout(cfg.classRoom)
  },

  /** A student plays the teacher in the big room, publishes in its group and plays the other
   * students there, and asks the assistant questions by broadcast. */
  async student() {
    const { classRoom, group, mates } = cfg
    let answers = 0
    handlers.command = (roomID, from, cmd) => {
      if (roomID === group && from.userID === cfg.assistant && cmd.includes('answer')) answers++
    }
    await login(classRoom)
    await login(group)
    await play('teacher-live', classRoom)
    await publish(`${cfg.userID}-cam`, group)
    for (const mate of mates) await play(`${mate}-cam`, group)
    // Ask once the assistant is in the group room.
    await waitUntil(() => usersByRoom[group]?.has(cfg.assistant), `the assistant in ${group}`)
    await say(group, `question from ${cfg.userID}`)
    await waitUntil(() => answers > 0, 'an answer from the assistant')
    check(answers > 0, `got an answer in ${group}`)
    await ended
    // Everyone leaves in no particular order.
    const order = Math.random() < 0.5 ? [group, classRoom] : [classRoom, group]
    await sleep(Math.floor(Math.random() * 300))
    for (const r of order) await logout(r)
  },

  /** The assistant sits in every group room and answers questions with custom commands. */
  async assistant() {
    for (const g of cfg.groups) await login(g)
    handlers.broadcast = (roomID, m) => {
      if (m.message.includes('question')) {
        command(roomID, `answer for ${m.fromUser.userID}`, [m.fromUser])
      }
    }
    await ended
    for (const g of [...cfg.groups].sort(() => Math.random() - 0.5)) await logout(g)
  },
}

try {
  await roles[cfg.role]()
  checkDecoded()
} catch (err) {
  failures.push(String(err.message ?? err))
  log(`FAILED: ${err.message ?? err}`)
  await engine.logoutRoom()
}
parentPort.postMessage({ result: { userID: cfg.userID, role: cfg.role, checks, failures, rooms } })
await ZegoExpressEngine.destroyEngine()
