// A small browser client of the zrooms wire protocol (docs/protocol.md), using the browser's
// own WebSocket and RTCPeerConnection. One connection carries every room of one user, as the
// SDK's engine does; one peer connection carries every published and played stream.
//
//   const client = new ZroomsClient({ url: 'ws://host:port', appID: 1, user: { userID, userName } })
//   await client.connect()
//   await client.loginRoom('room1')
//   client.addEventListener('streams', (e) => console.log(e.detail.roomID, e.detail.streams))
//   await client.startPlaying('room1', 'stream1', videoElement)
//
// Events (CustomEvent, fields in `detail`): roomstate {roomID, state, code}, users {roomID,
// update, users}, streams {roomID, update, streams}, broadcast / barrage {roomID, messages},
// command {roomID, from, command}, roomextrainfo {roomID, infos}, onlinecount {roomID, count},
// streamstate {roomID, streamID, available}, closed {code, reason}.
//
// Not here (the SDK has them): resuming a dropped connection, quality reports, custom sources.

const PROTOCOL_VERSION = 1
const HEARTBEAT_MS = 5000

/** The codecs the server forwards, as a browser names them. */
export const VIDEO_CODECS = { H264: 'video/H264', VP8: 'video/VP8' }

export class ZroomsError extends Error {
  constructor(code, what) {
    super(`${what} failed with ${code}`)
    this.code = code
  }
}

export class ZroomsClient extends EventTarget {
  /**
   * @param {{url: string, appID: number, appSign?: string, user: {userID: string, userName?: string}}} options
   */
  constructor({ url, appID, appSign = '', user }) {
    super()
    this.url = url
    this.appID = appID
    this.appSign = appSign
    this.user = { user_id: user.userID, user_name: user.userName || user.userID }
    this.rooms = new Map() // roomID → {users: Map, streams: Map}
    this.nextId = 1
    this.pending = new Map() // request id → {resolve, reject, what}
    this.received = 0 // frames of the session received (the hello's reply is the first)
    this.ws = null
    this.pc = null
    // m-lines of the peer connection: {transceiver, kind, direction, streamID, roomID}.
    // A stopped stream leaves its m-line inactive for the next stream of its kind and
    // direction to reuse, so the offer does not grow as streams come and go.
    this.slots = []
    this.negotiation = Promise.resolve()
  }

  /** Opens the connection and says hello. */
  async connect() {
    const ws = new WebSocket(this.url)
    this.ws = ws
    await new Promise((resolve, reject) => {
      ws.onopen = resolve
      ws.onerror = () => reject(new Error(`cannot connect to ${this.url}`))
    })
    ws.onmessage = (m) => this.onFrame(m.data)
    ws.onclose = (e) => this.onClose(e)
    ws.onerror = null
    await this.request('hello', {
      version: PROTOCOL_VERSION,
      app_id: this.appID,
      app_sign: this.appSign,
      sdk_version: 'zrooms-web/0.1.0',
    })
    this.heartbeat = setInterval(() => this.send({ id: this.nextId++, type: 'ping', received: this.received }), HEARTBEAT_MS)
  }

  /** Logs into a room; resolves with its users and streams (also sent as 'users'/'streams' events). */
  async loginRoom(roomID, { token = '', maxMemberCount = 0 } = {}) {
    this.emit('roomstate', { roomID, state: 'connecting', code: 0 })
    let body
    try {
      body = await this.request('login', {
        room_id: roomID,
        user: this.user,
        config: { max_member_count: maxMemberCount, user_status_notify: true, token, multi_room: true },
      })
    } catch (e) {
      this.emit('roomstate', { roomID, state: 'disconnected', code: e.code ?? 1002001 })
      throw e
    }
    const room = { users: new Map(), streams: new Map() }
    this.rooms.set(roomID, room)
    this.emit('roomstate', { roomID, state: 'connected', code: 0 })
    this.applyUsers(roomID, 'add', body.users)
    this.applyStreams(roomID, 'add', body.streams)
    if (body.extra_info.length) this.emit('roomextrainfo', { roomID, infos: body.extra_info })
    this.emit('onlinecount', { roomID, count: body.online_count })
    return body
  }

  /** Leaves a room; its streams stop. */
  async logoutRoom(roomID) {
    const mine = this.slots.filter((s) => s.roomID === roomID && s.streamID)
    for (const s of mine) this.releaseSlot(s)
    this.rooms.delete(roomID)
    await this.request('logout', { room_id: roomID })
    if (mine.length) await this.renegotiate()
    this.emit('roomstate', { roomID, state: 'disconnected', code: 0 })
  }

  /** Publishes a MediaStream (camera and microphone) as `streamID` in `roomID`. */
  async startPublishing(roomID, streamID, mediaStream, { codec = 'H264' } = {}) {
    await this.request('publish', { room_id: roomID, stream_id: streamID, extra_info: '' })
    for (const track of mediaStream.getTracks()) {
      const slot = this.slot(track.kind, 'send')
      Object.assign(slot, { roomID, streamID })
      await slot.transceiver.sender.replaceTrack(track)
      slot.transceiver.direction = 'sendonly'
      if (track.kind === 'video') preferCodec(slot.transceiver, VIDEO_CODECS[codec] || VIDEO_CODECS.H264)
    }
    await this.renegotiate()
  }

  async stopPublishing(streamID) {
    const slots = this.slots.filter((s) => s.direction === 'send' && s.streamID === streamID)
    const roomID = slots[0]?.roomID
    for (const s of slots) {
      s.transceiver.sender.track?.stop()
      await s.transceiver.sender.replaceTrack(null)
      this.releaseSlot(s)
    }
    if (roomID) await this.request('unpublish', { room_id: roomID, stream_id: streamID })
    await this.renegotiate()
  }

  /** Plays `streamID` of `roomID` into a <video> element (audio and video). */
  async startPlaying(roomID, streamID, video) {
    const body = await this.request('play', { room_id: roomID, stream_id: streamID })
    const tracks = []
    for (const kind of ['audio', 'video']) {
      const slot = this.slot(kind, 'recv')
      Object.assign(slot, { roomID, streamID })
      slot.transceiver.direction = 'recvonly'
      tracks.push(slot.transceiver.receiver.track)
    }
    await this.renegotiate()
    video.srcObject = new MediaStream(tracks)
    video.muted = true // autoplay without a user gesture; the page can unmute
    video.play().catch(() => {})
    return body
  }

  async stopPlaying(streamID) {
    const slots = this.slots.filter((s) => s.direction === 'recv' && s.streamID === streamID)
    const roomID = slots[0]?.roomID
    for (const s of slots) this.releaseSlot(s)
    if (roomID) await this.request('unplay', { room_id: roomID, stream_id: streamID })
    await this.renegotiate()
  }

  /** Decoded video figures of a played stream: {framesDecoded, frameWidth, frameHeight, codec}. */
  async playStats(streamID) {
    const slot = this.slots.find((s) => s.direction === 'recv' && s.kind === 'video' && s.streamID === streamID)
    if (!slot) return null
    const report = await this.pc.getStats(slot.transceiver.receiver.track)
    let video = null
    let codecs = new Map()
    report.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') video = r
      if (r.type === 'codec') codecs.set(r.id, r.mimeType)
    })
    if (!video) return { framesDecoded: 0, frameWidth: 0, frameHeight: 0, codec: null }
    return {
      framesDecoded: video.framesDecoded ?? 0,
      frameWidth: video.frameWidth ?? 0,
      frameHeight: video.frameHeight ?? 0,
      codec: codecs.get(video.codecId) ?? null,
    }
  }

  sendBroadcastMessage(roomID, message) {
    return this.request('broadcast', { room_id: roomID, message })
  }

  sendBarrageMessage(roomID, message) {
    return this.request('barrage', { room_id: roomID, message })
  }

  /** `toUserIDs` empty: everyone else in the room. */
  sendCustomCommand(roomID, command, toUserIDs = []) {
    return this.request('custom_command', { room_id: roomID, command, to: toUserIDs })
  }

  /** Closes everything; the server removes the user from its rooms. */
  close() {
    clearInterval(this.heartbeat)
    this.pc?.close()
    this.pc = null
    this.ws?.close()
  }

  // ---- internals ----

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }))
  }

  send(frame) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame))
  }

  request(type, fields) {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, what: type })
      this.send({ id, type, ...fields })
    })
  }

  onFrame(text) {
    this.received++
    let msg
    try {
      msg = JSON.parse(text)
    } catch {
      return
    }
    const roomID = msg.room_id
    switch (msg.type) {
      case 'reply': {
        const p = this.pending.get(msg.id)
        if (!p) return
        this.pending.delete(msg.id)
        if (msg.code === 0) p.resolve(msg.body ?? null)
        else p.reject(new ZroomsError(msg.code, p.what))
        return
      }
      case 'user_update':
        return this.applyUsers(roomID, msg.update, msg.users)
      case 'stream_update':
        return this.applyStreams(roomID, msg.update, msg.streams)
      case 'broadcast':
      case 'barrage':
        return this.emit(msg.type, { roomID, messages: msg.messages })
      case 'custom_command':
        return this.emit('command', { roomID, from: msg.from, command: msg.command })
      case 'room_extra_info':
        return this.emit('roomextrainfo', { roomID, infos: msg.infos })
      case 'online_count':
        return this.emit('onlinecount', { roomID, count: msg.count })
      case 'kicked':
        this.rooms.delete(roomID)
        return this.emit('roomstate', { roomID, state: 'kicked', code: msg.code })
      case 'stream_available':
      case 'stream_unavailable':
        return this.emit('streamstate', { roomID, streamID: msg.stream_id, available: msg.type === 'stream_available' })
      case 'play_failed':
        // Our offer lacks the codec the publisher sends (1004080): nothing of it will come.
        return this.emit('playfailed', { streamID: msg.stream_id, kind: msg.kind, code: msg.code })
      default:
    }
  }

  onClose(e) {
    clearInterval(this.heartbeat)
    for (const p of this.pending.values()) p.reject(new ZroomsError(1000002, p.what))
    this.pending.clear()
    for (const roomID of this.rooms.keys()) this.emit('roomstate', { roomID, state: 'disconnected', code: 1002030 })
    this.rooms.clear()
    this.emit('closed', { code: e.code, reason: e.reason })
  }

  applyUsers(roomID, update, users) {
    this.applyList(roomID, 'users', update, users, (u) => u.user_id)
  }

  applyStreams(roomID, update, streams) {
    this.applyList(roomID, 'streams', update, streams, (s) => s.stream_id)
  }

  /** An add or delete of a room's users or streams: the room's map, then the event. */
  applyList(roomID, kind, update, items, idOf) {
    const room = this.rooms.get(roomID)
    if (!room || !items.length) return
    for (const item of items) {
      if (update === 'add') room[kind].set(idOf(item), item)
      else room[kind].delete(idOf(item))
    }
    this.emit(kind, { roomID, update, [kind]: items })
  }

  peer() {
    if (!this.pc) this.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' })
    return this.pc
  }

  /** A free m-line of this kind and direction, or a new one. */
  slot(kind, direction) {
    let slot = this.slots.find((s) => s.kind === kind && s.direction === direction && !s.streamID)
    if (!slot) {
      const transceiver = this.peer().addTransceiver(kind, { direction: direction === 'send' ? 'sendonly' : 'recvonly' })
      slot = { transceiver, kind, direction, streamID: null, roomID: null }
      this.slots.push(slot)
    }
    return slot
  }

  releaseSlot(slot) {
    slot.streamID = null
    slot.roomID = null
    slot.transceiver.direction = 'inactive'
  }

  /** One offer/answer round for the current m-lines; rounds never overlap. */
  renegotiate() {
    const round = this.negotiation.then(async () => {
      const pc = this.peer()
      await pc.setLocalDescription(await pc.createOffer())
      const tracks = this.slots
        .filter((s) => s.streamID && s.transceiver.mid !== null)
        .map((s) => ({ mid: s.transceiver.mid, stream_id: s.streamID, kind: s.kind, direction: s.direction }))
      const body = await this.request('media_offer', { sdp: pc.localDescription.sdp, tracks })
      await pc.setRemoteDescription({ type: 'answer', sdp: body.sdp })
    })
    this.negotiation = round.catch(() => {})
    return round
  }
}

/** Puts one video codec (and its retransmission format) first in what a transceiver offers. */
function preferCodec(transceiver, mimeType) {
  const caps = RTCRtpReceiver.getCapabilities('video')
  if (!caps || !transceiver.setCodecPreferences) return
  const wanted = caps.codecs.filter(
    (c) =>
      c.mimeType === mimeType &&
      (mimeType !== VIDEO_CODECS.H264 || (/packetization-mode=1/.test(c.sdpFmtpLine) && /profile-level-id=42e0/.test(c.sdpFmtpLine))),
  )
  const rest = caps.codecs.filter((c) => c.mimeType === 'video/rtx')
  if (wanted.length) transceiver.setCodecPreferences([...wanted, ...rest])
}
