'use strict'
// The ZEGO Express facade (uni-app / React Native flavour) over the native engine.
//
// Every call goes to the native engine, which answers with an operation id at once; the
// outcome arrives later through the engine's single event callback as a `$done` event carrying
// that id, in the same ordered stream as every other event. So a promise resolves after the
// events its call caused, and events of one engine keep one total order.
//
// State here is per JS environment: the main thread and each worker_thread load their own copy
// of this module, so each has its own engine singleton.

const native = require('./binding.js')
const defines = require('./lib/defines.js')
const { ZegoErrorCode } = require('./lib/error-codes.js')
const pattern = require('./lib/pattern.js')
const token = require('./lib/token.js')

const { ZegoRoomMode, ZegoRoomStateChangedReason: Reason, ZegoPublishChannel } = defines

const DEFAULT_SERVER = 'ws://127.0.0.1:9000'

// ZegoVideoConfigPreset → [width, height, fps, kbps] (desktop, landscape).
const VIDEO_PRESETS = [
  [320, 180, 15, 300],
  [480, 270, 15, 400],
  [640, 360, 15, 600],
  [960, 540, 15, 1200],
  [1280, 720, 15, 1500],
  [1920, 1080, 15, 3000],
]
const SUPPORTED_VIDEO_CODECS = new Set([defines.ZegoVideoCodecID.Default, defines.ZegoVideoCodecID.Vp8])

// ZegoAudioConfigPreset → [kbps, channels].
const AUDIO_PRESETS = [
  [16, 1],
  [48, 1],
  [56, 2],
  [128, 1],
  [192, 2],
]

function audioConfigOf(preset) {
  const [bitrate, channel] = AUDIO_PRESETS[preset]
  return { bitrate, channel, codecID: 0 }
}

function videoConfigOf(preset) {
  const [w, h, fps, kbps] = VIDEO_PRESETS[preset]
  return { captureWidth: w, captureHeight: h, encodeWidth: w, encodeHeight: h, fps, bitrate: kbps, codecID: 0, keyFrameInterval: 2 }
}
const SERVER_ENV = 'ZROOMS_SERVER'

let roomMode = ZegoRoomMode.SingleRoom
let engineConfig = { advancedConfig: {} }
let current = null

// Reasons after which a room is logged in (or on its way); the others leave it.
const LIVE_REASONS = new Set([Reason.Logining, Reason.Logined, Reason.Reconnecting, Reason.Reconnected])

const isHex64 = (s) => typeof s === 'string' && /^[0-9a-fA-F]{64}$/.test(s)

/** A string argument: undefined/null become '' (ZEGO's "empty" codes), other types are refused. */
function str(value) {
  if (value === undefined || value === null) return ''
  return typeof value === 'string' ? value : null
}

function optStr(value) {
  if (value === undefined || value === null) return undefined
  return typeof value === 'string' ? value : null
}

function channelOf(channel) {
  if (channel === undefined || channel === null) return ZegoPublishChannel.Main
  return Number.isInteger(channel) && channel >= 0 && channel <= 3 ? channel : null
}

class ZegoExpressEngine {
  /** @internal Use createEngineWithProfile. */
  constructor(token, profile, server) {
    if (token !== constructToken) {
      throw new Error('Use ZegoExpressEngine.createEngineWithProfile() to create the engine')
    }
    this._listeners = new Map()
    this._pending = new Map()
    this._rooms = new Set()
    // streamID → the view given to startPlayingStream, when it takes frames.
    this._views = new Map()
    this._previews = {}
    this._micMuted = false
    this._videoConfigs = [0, 1, 2, 3].map(() => videoConfigOf(defines.ZegoVideoConfigPreset.Preset360P))
    this._audioConfigs = [0, 1, 2, 3].map(() => audioConfigOf(defines.ZegoAudioConfigPreset.StandardQuality))
    this._keepalive = null
    this._destroyed = false
    this._profile = profile
    this._native = new native.NativeEngine(
      {
        appID: profile.appID,
        appSign: profile.appSign || undefined,
        server,
        multiRoom: roomMode === ZegoRoomMode.MultiRoom,
        loginTimeoutMs: Number(engineConfig.advancedConfig.login_timeout_ms) || undefined,
        heartbeatIntervalMs: Number(engineConfig.advancedConfig.heartbeat_interval_ms) || undefined,
        heartbeatTimeoutMs: Number(engineConfig.advancedConfig.heartbeat_timeout_ms) || undefined,
        roomRetryTimeS: Number(engineConfig.advancedConfig.room_retry_time) || undefined,
        reconnectDelayMs: Number(engineConfig.advancedConfig.reconnect_delay_ms) || undefined,
        capture: engineConfig.advancedConfig.capture || process.env.ZROOMS_CAPTURE || undefined,
        tlsCa: engineConfig.advancedConfig.tls_ca || process.env.ZROOMS_TLS_CA || undefined,
      },
      (ev) => this._onEvent(ev),
      (frame) => this._onFrame(frame),
    )
  }

  // ---- static lifecycle ---------------------------------------------------------------

  /** Creates the engine of this JS environment (or returns the existing one). */
  static async createEngineWithProfile(profile) {
    if (current) return current
    if (!profile || typeof profile !== 'object') {
      throw engineError(ZegoErrorCode.EngineAppidZero, 'profile is required')
    }
    const appID = profile.appID
    if (!Number.isInteger(appID) || appID <= 0 || appID > 0xffffffff) {
      throw engineError(ZegoErrorCode.EngineAppidZero, 'appID must be an integer in 1..4294967295')
    }
    const appSign = profile.appSign
    if (appSign !== undefined && appSign !== null && appSign !== '') {
      if (typeof appSign !== 'string' || appSign.length !== 64) {
        throw engineError(ZegoErrorCode.EngineAppsignInvalidLength, 'appSign must be 64 characters')
      }
      if (!isHex64(appSign)) {
        throw engineError(ZegoErrorCode.EngineAppsignInvalidCharacter, 'appSign must be hexadecimal')
      }
    }
    const server = engineConfig.advancedConfig.server || process.env[SERVER_ENV] || DEFAULT_SERVER
    current = new ZegoExpressEngine(constructToken, { appID, appSign: appSign || '', scenario: profile.scenario }, server)
    return current
  }

  /** The engine created by createEngineWithProfile; throws before that. */
  static instance() {
    if (!current) throw new Error('Get instance failed, Please create engine first')
    return current
  }

  /** Leaves every room and destroys the engine; no event is delivered afterwards. */
  static async destroyEngine() {
    const engine = current
    if (!engine) return
    current = null
    await engine._destroy()
  }

  /**
   * Engine settings, before createEngineWithProfile. `advancedConfig.server` is the room
   * server's URL (`ws://host:port`); ZROOMS_SERVER in the environment is the fallback.
   */
  static async setEngineConfig(config) {
    if (!config || typeof config !== 'object') return
    const advanced = config.advancedConfig && typeof config.advancedConfig === 'object' ? config.advancedConfig : {}
    engineConfig = {
      ...engineConfig,
      ...config,
      advancedConfig: { ...engineConfig.advancedConfig, ...advanced },
    }
  }

  /** ZegoRoomMode; only before the engine exists (after it: error 1001020, nothing changes). */
  static async setRoomMode(mode) {
    if (current) {
      current._report('setRoomMode', ZegoErrorCode.EngineSetRoomModeErrorTime, 'setRoomMode must be called before createEngineWithProfile')
      return
    }
    if (mode !== ZegoRoomMode.SingleRoom && mode !== ZegoRoomMode.MultiRoom) return
    roomMode = mode
  }

  static async getVersion() {
    return native.nativeVersion()
  }

  // ---- events -------------------------------------------------------------------------

  on(event, callback) {
    if (typeof event !== 'string' || typeof callback !== 'function') return
    let set = this._listeners.get(event)
    if (!set) this._listeners.set(event, (set = new Set()))
    set.add(callback)
  }

  /** Removes `callback`, or every listener of `event` when it is omitted. */
  off(event, callback) {
    if (callback === undefined) {
      this._listeners.delete(event)
    } else {
      this._listeners.get(event)?.delete(callback)
    }
  }

  async getVersion() {
    return native.nativeVersion()
  }

  // ---- rooms --------------------------------------------------------------------------

  loginRoom(roomID, user, config) {
    const r = str(roomID)
    if (r === null) return this._fail('loginRoom', ZegoErrorCode.RoomRoomidInvalidCharacter, { extendedData: '' })
    if (!user || typeof user !== 'object') return this._fail('loginRoom', ZegoErrorCode.RoomUserIdNull, { extendedData: '' })
    const userID = str(user.userID)
    const userName = optStr(user.userName)
    if (userID === null) return this._fail('loginRoom', ZegoErrorCode.RoomUserIdInvalidCharacter, { extendedData: '' })
    if (userName === null) return this._fail('loginRoom', ZegoErrorCode.RoomUserNameInvalidCharacter, { extendedData: '' })
    const c = config && typeof config === 'object' ? config : {}
    const token = optStr(c.token)
    const nativeConfig = {
      maxMemberCount: Number.isInteger(c.maxMemberCount) && c.maxMemberCount > 0 ? c.maxMemberCount : 0,
      isUserStatusNotify: c.isUserStatusNotify === true,
      token: token || '',
    }
    return this._call((n) => n.loginRoom(r, userID, userName, nativeConfig), roomResult)
  }

  /** Leaves `roomID`, or every room when it is omitted. */
  logoutRoom(roomID) {
    const r = optStr(roomID)
    if (r === null) return this._fail('logoutRoom', ZegoErrorCode.RoomRoomidIncorrect, { extendedData: '' })
    return this._call((n) => n.logoutRoom(r), roomResult)
  }

  switchRoom(fromRoomID, toRoomID, config) {
    const from = str(fromRoomID)
    const to = str(toRoomID)
    if (from === null || to === null) return this._fail('switchRoom', ZegoErrorCode.RoomRoomidInvalidCharacter)
    let c
    if (config && typeof config === 'object') {
      c = {
        maxMemberCount: Number.isInteger(config.maxMemberCount) ? config.maxMemberCount : 0,
        isUserStatusNotify: config.isUserStatusNotify === true,
        token: optStr(config.token) || '',
      }
    }
    return this._call((n) => n.switchRoom(from, to, c), voidResult)
  }

  renewToken(roomID, token) {
    const r = str(roomID)
    const t = str(token)
    if (r === null || t === null) return this._fail('renewToken', ZegoErrorCode.CommonIllegalParam)
    return this._call((n) => n.renewToken(r, t), voidResult)
  }

  setRoomExtraInfo(roomID, key, value) {
    const r = str(roomID)
    const k = str(key)
    const v = str(value)
    if (r === null || k === null || v === null) return this._fail('setRoomExtraInfo', ZegoErrorCode.CommonIllegalParam, {})
    return this._call((n) => n.setRoomExtraInfo(r, k, v), codeResult)
  }

  // ---- publishing ---------------------------------------------------------------------

  /** In multi-room mode `config.roomID` must name a logged-in room (1003070 / 1003071). */
  startPublishingStream(streamID, channel, config) {
    const s = str(streamID)
    const ch = channelOf(channel)
    const roomID = config && typeof config === 'object' ? optStr(config.roomID) : undefined
    if (s === null) return this._fail('startPublishingStream', ZegoErrorCode.CommonStreamIdInvalidCharacter)
    if (ch === null || roomID === null) return this._fail('startPublishingStream', ZegoErrorCode.CommonIllegalParam)
    return this._call((n) => n.startPublishingStream(s, ch, roomID), voidResult)
  }

  /**
   * ZegoVideoConfig or a ZegoVideoConfigPreset. The encode size, fps and bitrate apply at once,
   * also while publishing. Widths and heights must be even.
   */
  setVideoConfig(config, channel) {
    const ch = channelOf(channel)
    if (ch === null) return this._fail('setVideoConfig', ZegoErrorCode.CommonIllegalParam)
    let c
    if (typeof config === 'number') {
      if (!Number.isInteger(config) || !VIDEO_PRESETS[config]) return this._fail('setVideoConfig', ZegoErrorCode.CommonIllegalParam)
      c = videoConfigOf(config)
    } else if (config && typeof config === 'object') {
      const base = this._videoConfigs[ch]
      c = { ...base, ...config }
      if (config.encodeWidth === undefined && config.captureWidth !== undefined) c.encodeWidth = config.captureWidth
      if (config.encodeHeight === undefined && config.captureHeight !== undefined) c.encodeHeight = config.captureHeight
    } else {
      return this._fail('setVideoConfig', ZegoErrorCode.CommonIllegalParam)
    }
    const even = (n) => Number.isInteger(n) && n >= 16 && n <= 4096 && n % 2 === 0
    if (!even(c.encodeWidth) || !even(c.encodeHeight) || !Number.isInteger(c.fps) || c.fps < 1 || c.fps > 60) {
      return this._fail('setVideoConfig', ZegoErrorCode.CommonIllegalParam)
    }
    if (!Number.isFinite(c.bitrate) || c.bitrate <= 0) return this._fail('setVideoConfig', ZegoErrorCode.PublisherBitrateInvalid)
    if (!SUPPORTED_VIDEO_CODECS.has(c.codecID ?? 0)) return this._fail('setVideoConfig', ZegoErrorCode.PublisherVideoEncoderNoSupportted)
    const kfi = Number.isInteger(c.keyFrameInterval) ? Math.min(5, Math.max(2, c.keyFrameInterval)) : 2
    this._videoConfigs[ch] = { ...c, keyFrameInterval: kfi }
    this._native.setVideoConfig(ch, {
      width: c.encodeWidth,
      height: c.encodeHeight,
      fps: c.fps,
      bitrateKbps: Math.round(c.bitrate),
      keyFrameInterval: kfi,
      codecID: c.codecID ?? 0,
    })
    this._report('setVideoConfig', 0, '', false)
    return Promise.resolve()
  }

  /**
   * Publish frames the app pushes (sendCustomVideoCaptureRawData) instead of the camera or the
   * test pattern. Before startPublishingStream on that channel.
   */
  async enableCustomVideoCapture(enable, config, channel) {
    const ch = channelOf(channel)
    if (ch === null || typeof enable !== 'boolean') return this._fail('enableCustomVideoCapture', ZegoErrorCode.CommonIllegalParam)
    this._native.enableCustomVideoCapture(enable, ch)
    this._report('enableCustomVideoCapture', 0, '', false)
  }

  /**
   * One frame of custom capture. `params`: `{format, width, height}` with ZEGO's
   * ZegoVideoFrameFormat: I420 = 1, BGRA32 = 4, RGBA32 = 5; planes tightly packed.
   */
  async sendCustomVideoCaptureRawData(data, dataLength, params, referenceTimeMillisecond, channel) {
    const ch = channelOf(channel)
    const p = params && typeof params === 'object' ? params : {}
    const bytes = data instanceof Uint8Array ? data : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null
    const len = Number.isInteger(dataLength) ? Math.min(dataLength, bytes?.byteLength ?? 0) : bytes?.byteLength ?? 0
    if (ch === null || !bytes || !Number.isInteger(p.width) || !Number.isInteger(p.height)) {
      return this._fail('sendCustomVideoCaptureRawData', ZegoErrorCode.CommonIllegalParam)
    }
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, len)
    if (!this._native.sendCustomVideoFrame(ch, p.format, p.width, p.height, buf)) {
      this._report('sendCustomVideoCaptureRawData', ZegoErrorCode.CommonIllegalParam, 'frame not taken: format, size or state', false)
    }
  }

  mutePublishStreamAudio(mute, channel) {
    const ch = channelOf(channel)
    if (ch === null || typeof mute !== 'boolean') return this._fail('mutePublishStreamAudio', ZegoErrorCode.CommonIllegalParam)
    return this._call((n) => n.mutePublishStreamAudio(mute, ch), voidResult)
  }

  mutePublishStreamVideo(mute, channel) {
    const ch = channelOf(channel)
    if (ch === null || typeof mute !== 'boolean') return this._fail('mutePublishStreamVideo', ZegoErrorCode.CommonIllegalParam)
    return this._call((n) => n.mutePublishStreamVideo(mute, ch), voidResult)
  }

  /** Capture goes on but every channel sends silence; players see remoteMicStateUpdate Mute. */
  muteMicrophone(mute) {
    if (typeof mute !== 'boolean') return this._fail('muteMicrophone', ZegoErrorCode.CommonIllegalParam)
    this._micMuted = mute
    return this._call((n) => n.muteMicrophone(mute), voidResult)
  }

  async isMicrophoneMuted() {
    return !!this._micMuted
  }

  /** Players see black and remoteCameraStateUpdate Disable while the camera is off. */
  enableCamera(enable, channel) {
    const ch = channelOf(channel)
    if (ch === null || typeof enable !== 'boolean') return this._fail('enableCamera', ZegoErrorCode.CommonIllegalParam)
    return this._call((n) => n.enableCamera(enable, ch), voidResult)
  }

  // Player-side switches live in the engine (Rust) and act on what the view and the speaker
  // get: a muted stream's video is not decoded, its audio is silence; volumes scale the PCM.
  // They apply before or while playing; stopPlayingStream resets them (as ZEGO does).

  async mutePlayStreamAudio(streamID, mute) {
    const s = str(streamID)
    if (s === null) return this._fail('mutePlayStreamAudio', ZegoErrorCode.CommonStreamIdInvalidCharacter)
    this._native.mutePlayStreamAudio(s, !!mute)
  }

  async mutePlayStreamVideo(streamID, mute) {
    const s = str(streamID)
    if (s === null) return this._fail('mutePlayStreamVideo', ZegoErrorCode.CommonStreamIdInvalidCharacter)
    this._native.mutePlayStreamVideo(s, !!mute)
  }

  async muteAllPlayStreamAudio(mute) {
    this._native.mutePlayStreamAudio(null, !!mute)
  }

  async muteAllPlayStreamVideo(mute) {
    this._native.mutePlayStreamVideo(null, !!mute)
  }

  /** 0..200, 100 = unchanged. */
  async setPlayVolume(streamID, volume) {
    const s = str(streamID)
    if (s === null) return this._fail('setPlayVolume', ZegoErrorCode.CommonStreamIdInvalidCharacter)
    if (!Number.isFinite(volume)) return this._fail('setPlayVolume', ZegoErrorCode.CommonIllegalParam)
    this._native.setPlayVolume(s, Math.round(Math.min(200, Math.max(0, volume))))
  }

  async setAllPlayStreamVolume(volume) {
    if (!Number.isFinite(volume)) return this._fail('setAllPlayStreamVolume', ZegoErrorCode.CommonIllegalParam)
    this._native.setPlayVolume(null, Math.round(Math.min(200, Math.max(0, volume))))
  }

  // ---- devices (ZEGO's desktop API) ---------------------------------------------------------
  // Microphone and speaker through cpal, cameras through nokhwa. Lists leave out pseudo
  // devices (ALSA's "null"), which can still be chosen by ID. A missing or failing device is
  // reported with localDeviceExceptionOccurred and the stream carries the synthetic source.

  /** `type`: ZegoAudioDeviceType Input 0, Output 1. Resolves `[{deviceID, deviceName}]`. */
  async getAudioDeviceList(type) {
    if (type !== 0 && type !== 1) return this._fail('getAudioDeviceList', ZegoErrorCode.CommonIllegalParam, { deviceList: [] }).then(() => [])
    return this._native.audioDevices(type === 1)
  }

  /** The system's default device ID, `""` when it has none. */
  async getDefaultAudioDeviceID(type) {
    if (type !== 0 && type !== 1) return this._fail('getDefaultAudioDeviceID', ZegoErrorCode.CommonIllegalParam).then(() => '')
    return this._native.defaultAudioDevice(type === 1)
  }

  /**
   * Capture or play through `deviceID` (`""`: the default). A running one moves at once: the
   * promise resolves once it has.
   */
  async useAudioDevice(deviceID, type) {
    if ((type !== 0 && type !== 1) || typeof deviceID !== 'string') return this._fail('useAudioDevice', ZegoErrorCode.CommonIllegalParam)
    if (this._destroyed) return
    await this._native.useAudioDevice(type === 1, deviceID)
    this._report('useAudioDevice', 0, '', false)
  }

  /** `{deviceID, deviceName}` of the chosen device (`deviceID ""`: the system default). */
  async getCurrentAudioDevice(type) {
    if (type !== 0 && type !== 1) return this._fail('getCurrentAudioDevice', ZegoErrorCode.CommonIllegalParam).then(() => null)
    const deviceID = this._native.currentAudioDevice(type === 1)
    const listed = this._native.audioDevices(type === 1).find((d) => d.deviceID === deviceID)
    return { deviceID, deviceName: listed ? listed.deviceName : deviceID }
  }

  async getVideoDeviceList() {
    return this._native.videoDevices()
  }

  /** The first camera's ID, `""` without cameras. */
  async getDefaultVideoDeviceID() {
    const list = this._native.videoDevices()
    return list.length ? list[0].deviceID : ''
  }

  /** The camera of `channel`'s next capture (`""`: the first camera). */
  async useVideoDevice(deviceID, channel) {
    const ch = channelOf(channel)
    if (ch === null || typeof deviceID !== 'string') return this._fail('useVideoDevice', ZegoErrorCode.CommonIllegalParam)
    this._native.useVideoDevice(ch, deviceID)
    this._report('useVideoDevice', 0, '', false)
  }

  async muteSpeaker(mute) {
    if (typeof mute !== 'boolean') return this._fail('muteSpeaker', ZegoErrorCode.CommonIllegalParam)
    this._native.muteSpeaker(mute)
  }

  async isSpeakerMuted() {
    return this._native.isSpeakerMuted()
  }

  /** 0..200 (100: unchanged), applied to the microphone's samples. */
  async setCaptureVolume(volume) {
    if (!Number.isFinite(volume)) return this._fail('setCaptureVolume', ZegoErrorCode.CommonIllegalParam)
    this._native.setCaptureVolume(Math.round(Math.min(200, Math.max(0, volume))))
  }

  /**
   * false releases the microphone (publishers send silence); true opens it again. Resolves
   * once it has.
   */
  async enableAudioCaptureDevice(enable) {
    if (typeof enable !== 'boolean') return this._fail('enableAudioCaptureDevice', ZegoErrorCode.CommonIllegalParam)
    if (this._destroyed) return
    await this._native.enableAudioCaptureDevice(enable)
  }

  /** What devices run now (not ZEGO's API): `{speaker: {deviceID, frames, peak} | null, microphones, cameras}`. */
  getDeviceState() {
    return this._native.deviceState()
  }

  /**
   * Every `config.millisecond` (100..3000, default 100): capturedSoundLevelUpdate(level) and
   * remoteSoundLevelUpdate({streamID: level}), levels 0..100.
   */
  async startSoundLevelMonitor(config) {
    const ms = Math.min(3000, Math.max(100, Number(config?.millisecond) || 100))
    this.stopSoundLevelMonitor()
    this._soundTimer = setInterval(() => {
      if (this._destroyed) return
      const { captured, remote } = this._native.soundLevels()
      this._emit('capturedSoundLevelUpdate', [captured])
      this._emit('remoteSoundLevelUpdate', [remote])
    }, ms)
    // The monitor alone does not keep the process alive.
    this._soundTimer.unref?.()
  }

  async stopSoundLevelMonitor() {
    if (this._soundTimer) clearInterval(this._soundTimer)
    this._soundTimer = null
  }

  /**
   * The latest decoded picture of a played stream: `{errorCode, image}` with image
   * `{format: 'I420', width, height, data}` (1004011 when the stream is not played, 1004030
   * before its first picture).
   */
  async takePlayStreamSnapshot(streamID) {
    const s = str(streamID)
    if (s === null || !this._native.isPlaying(s)) return { errorCode: ZegoErrorCode.PlayerStreamWasNotPlayed, image: null }
    const f = this._native.snapshot(s)
    if (!f) return { errorCode: ZegoErrorCode.PlayerTakePlayStreamSnapshotFailed, image: null }
    const data = new Uint8Array(f.data.buffer, f.data.byteOffset, f.data.byteLength)
    return { errorCode: 0, image: { format: 'I420', width: f.width, height: f.height, data } }
  }

  /**
   * Publish PCM the app pushes (sendCustomAudioCapturePCMData) instead of the microphone or the
   * tone. Before startPublishingStream on that channel.
   */
  async enableCustomAudioIO(enable, config, channel) {
    const ch = channelOf(channel)
    if (ch === null || typeof enable !== 'boolean') return this._fail('enableCustomAudioIO', ZegoErrorCode.CommonIllegalParam)
    this._native.enableCustomAudioIo(enable, ch)
    this._report('enableCustomAudioIO', 0, '', false)
  }

  /**
   * 16-bit PCM (Int16Array, or its bytes) with `param` `{sampleRate: 48000, channel: 1 | 2}`
   * (ZegoAudioChannel: Mono 1, Stereo 2; stereo is downmixed). Other rates are refused with
   * 1000017 for now.
   */
  async sendCustomAudioCapturePCMData(data, dataLength, param, channel) {
    const ch = channelOf(channel)
    const p = param && typeof param === 'object' ? param : {}
    const bytes = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null
    const len = Number.isInteger(dataLength) ? Math.min(dataLength, bytes?.byteLength ?? 0) : bytes?.byteLength ?? 0
    const channels = p.channel ?? 1
    if (ch === null || !bytes || p.sampleRate !== 48000 || (channels !== 1 && channels !== 2)) {
      return this._fail('sendCustomAudioCapturePCMData', ZegoErrorCode.CommonIllegalParam)
    }
    if (!this._native.sendCustomAudio(ch, channels, Buffer.from(bytes.buffer, bytes.byteOffset, len & ~1))) {
      this._report('sendCustomAudioCapturePCMData', ZegoErrorCode.CommonIllegalParam, 'audio not taken: no custom-audio publisher on the channel, or it is behind', false)
    }
  }

  /** ZegoAudioConfig `{bitrate (kbps), channel (1 mono, 2 stereo), codecID}` or a preset. */
  setAudioConfig(config, channel) {
    const ch = channelOf(channel)
    if (ch === null) return this._fail('setAudioConfig', ZegoErrorCode.CommonIllegalParam)
    let c
    if (typeof config === 'number' && AUDIO_PRESETS[config]) c = audioConfigOf(config)
    else if (config && typeof config === 'object') c = { ...this._audioConfigs[ch], ...config }
    else return this._fail('setAudioConfig', ZegoErrorCode.CommonIllegalParam)
    if (!Number.isFinite(c.bitrate) || c.bitrate < 6 || c.bitrate > 510 || (c.channel !== 1 && c.channel !== 2)) {
      return this._fail('setAudioConfig', ZegoErrorCode.CommonIllegalParam)
    }
    this._audioConfigs[ch] = c
    this._native.setAudioConfig(ch, Math.round(c.bitrate), c.channel)
    this._report('setAudioConfig', 0, '', false)
    return Promise.resolve()
  }

  async getAudioConfig(channel) {
    return { ...this._audioConfigs[channelOf(channel) ?? 0] }
  }

  async getVideoConfig(channel) {
    const ch = channelOf(channel) ?? 0
    return { ...this._videoConfigs[ch] }
  }

  /**
   * Local pictures of `channel` to `view.onFrame({channel, format: 'I420', width, height,
   * data})`; captures even before publishing. publisherRenderVideoFirstFrame on the first.
   */
  async startPreview(view, channel) {
    const ch = channelOf(channel)
    if (ch === null) return this._fail('startPreview', ZegoErrorCode.CommonIllegalParam)
    if (view && typeof view.onFrame === 'function') this._previews[ch] = view
    else delete this._previews[ch]
    this._native.setPreview(ch, true)
    this._report('startPreview', 0, '', false)
  }

  async stopPreview(channel) {
    const ch = channelOf(channel)
    if (ch === null) return this._fail('stopPreview', ZegoErrorCode.CommonIllegalParam)
    delete this._previews[ch]
    this._native.setPreview(ch, false)
    this._report('stopPreview', 0, '', false)
  }

  stopPublishingStream(channel) {
    const ch = channelOf(channel)
    if (ch === null) return this._fail('stopPublishingStream', ZegoErrorCode.CommonIllegalParam)
    return this._call((n) => n.stopPublishingStream(ch), voidResult)
  }

  setStreamExtraInfo(extraInfo, channel) {
    const ch = channelOf(channel)
    const info = optStr(extraInfo)
    if (ch === null || info === null) return this._fail('setStreamExtraInfo', ZegoErrorCode.CommonIllegalParam, {})
    return this._call((n) => n.setStreamExtraInfo(info, ch), codeResult)
  }

  // ---- playing ------------------------------------------------------------------------

  /**
   * `startPlayingStream(streamID, view?, config?)`; the uni-app App form
   * `startPlayingStream(streamID, config)` is accepted too. In multi-room mode `config.roomID`
   * must name a logged-in room (1004070 / 1004071).
   *
   * In Node the view is where decoded media goes: `{onFrame(frame), onAudioFrame(frame)}`.
   * Video frames are `{streamID, format: 'I420', width, height, timestamp, data: Uint8Array}`
   * (Y, U, V planes packed); audio frames `{streamID, sampleRate, channels, data: Int16Array}`.
   */
  startPlayingStream(streamID, view, config) {
    if (config === undefined && view && typeof view === 'object' && 'roomID' in view) {
      config = view
      view = undefined
    }
    const s = str(streamID)
    const roomID = config && typeof config === 'object' ? optStr(config.roomID) : undefined
    if (s === null) return this._fail('startPlayingStream', ZegoErrorCode.CommonStreamIdInvalidCharacter)
    if (roomID === null) return this._fail('startPlayingStream', ZegoErrorCode.CommonIllegalParam)
    const video = !!view && typeof view.onFrame === 'function'
    const audio = !!view && typeof view.onAudioFrame === 'function'
    if (video || audio) this._views.set(s, view)
    else this._views.delete(s)
    return this._call((n) => n.startPlayingStream(s, roomID, video, audio), voidResult)
  }

  stopPlayingStream(streamID) {
    const s = str(streamID)
    if (s === null) return this._fail('stopPlayingStream', ZegoErrorCode.CommonStreamIdInvalidCharacter)
    // The view goes; the engine forgets the stream's mutes and volume (as ZEGO does).
    this._views.delete(s)
    return this._call((n) => n.stopPlayingStream(s), voidResult)
  }

  // ---- messages -----------------------------------------------------------------------

  sendBroadcastMessage(roomID, message) {
    const r = str(roomID)
    const m = str(message)
    if (r === null || m === null) return this._fail('sendBroadcastMessage', ZegoErrorCode.CommonIllegalParam, { messageID: 0 })
    return this._call((n) => n.sendBroadcastMessage(r, m), (ev) => ({ errorCode: ev.code, messageID: ev.messageID ?? 0 }))
  }

  sendBarrageMessage(roomID, message) {
    const r = str(roomID)
    const m = str(message)
    if (r === null || m === null) return this._fail('sendBarrageMessage', ZegoErrorCode.CommonIllegalParam, { messageID: '' })
    return this._call((n) => n.sendBarrageMessage(r, m), (ev) => ({ errorCode: ev.code, messageID: ev.messageID ?? '' }))
  }

  /** `toUserList` empty or omitted: everyone else in the room. */
  sendCustomCommand(roomID, command, toUserList) {
    const r = str(roomID)
    const c = str(command)
    if (r === null || c === null) return this._fail('sendCustomCommand', ZegoErrorCode.CommonIllegalParam, {})
    const to = []
    for (const u of Array.isArray(toUserList) ? toUserList : []) {
      const id = u && typeof u === 'object' ? str(u.userID) : str(u)
      if (id === null) return this._fail('sendCustomCommand', ZegoErrorCode.IMUserIdEmpty, {})
      to.push(id)
    }
    return this._call((n) => n.sendCustomCommand(r, c, to), codeResult)
  }

  // ---- internals ----------------------------------------------------------------------

  _call(invoke, shape) {
    if (this._destroyed) return Promise.resolve(shape({ code: ZegoErrorCode.CommonEngineNotCreate }))
    return new Promise((resolve) => {
      const op = invoke(this._native)
      this._pending.set(op, { resolve, shape })
      this._updateKeepalive()
    })
  }

  /** A call refused before reaching the engine: report it the way the engine reports its own. */
  _fail(func, code, extra) {
    this._report(func, code, `${func}: invalid argument`)
    return Promise.resolve(extra === undefined ? undefined : { errorCode: code, ...extra })
  }

  _report(func, code, info, isError = true) {
    if (isError) this._emit('debugError', [code, func, info])
    this._emit('apiCalledResult', [code, func, info])
  }

  _onEvent(ev) {
    if (this._destroyed || !ev || typeof ev !== 'object') return
    if (ev.e === '$ended') {
      this._driverEnded()
      return
    }
    if (ev.e === '$done') {
      const p = this._pending.get(ev.op)
      if (p) {
        this._pending.delete(ev.op)
        p.resolve(p.shape(ev))
      }
    } else {
      if (ev.e === 'roomStateChanged') {
        const [roomID, reason] = ev.a
        if (LIVE_REASONS.has(reason)) this._rooms.add(roomID)
        else this._rooms.delete(roomID)
      }
      this._emit(ev.e, ev.a)
    }
    this._updateKeepalive()
  }

  _onFrame(f) {
    if (this._destroyed || !f) return
    if (f.kind === 'preview') {
      const pv = this._previews[f.channel]
      if (!pv) return
      try {
        const data = new Uint8Array(f.data.buffer, f.data.byteOffset, f.data.byteLength)
        pv.onFrame({ channel: f.channel, format: 'I420', width: f.width, height: f.height, timestamp: f.timestamp, data })
      } catch (err) {
        console.error(`[zrooms] preview callback of channel ${f.channel} threw:`, err)
      }
      return
    }
    const view = this._views.get(f.streamID)
    if (!view) return
    // A frame decoded before a mute or stop is still on its way: the engine says whether the
    // view takes it now.
    if (!this._native.frameWanted(f.streamID, f.kind === 'video')) return
    try {
      if (f.kind === 'video' && typeof view.onFrame === 'function') {
        const data = new Uint8Array(f.data.buffer, f.data.byteOffset, f.data.byteLength)
        view.onFrame({ streamID: f.streamID, format: 'I420', width: f.width, height: f.height, timestamp: f.timestamp, data })
      } else if (f.kind === 'audio' && typeof view.onAudioFrame === 'function') {
        // The engine applied the stream's mutes and volumes.
        const data = new Int16Array(f.data.buffer.slice(f.data.byteOffset, f.data.byteOffset + f.data.byteLength))
        view.onAudioFrame({ streamID: f.streamID, sampleRate: f.sampleRate, channels: f.channels, data })
      }
    } catch (err) {
      console.error(`[zrooms] frame callback of '${f.streamID}' threw:`, err)
    }
  }

  _emit(name, args) {
    const set = this._listeners.get(name)
    if (!set || set.size === 0) return
    for (const fn of [...set]) {
      if (this._destroyed) return
      try {
        fn(...args)
      } catch (err) {
        // A throwing listener must not break the engine or starve the other listeners.
        console.error(`[zrooms] listener of '${name}' threw:`, err)
      }
    }
  }

  /** Holds the process open while a room is logged in or a call is in flight. */
  _updateKeepalive() {
    const active = !this._destroyed && (this._rooms.size > 0 || this._pending.size > 0)
    if (active && !this._keepalive) {
      this._keepalive = setInterval(() => {}, 1 << 30)
    } else if (!active && this._keepalive) {
      clearInterval(this._keepalive)
      this._keepalive = null
    }
  }

  /**
   * The native driver stopped without destroyEngine (a bug): nothing will answer again. Every
   * logged-in room ends (ReconnectFailed, 1002099), every pending call settles with 1000001,
   * later calls too, and nothing holds the process open any more.
   */
  _driverEnded() {
    const rooms = [...this._rooms]
    const pending = [...this._pending.values()]
    this._destroyed = true
    this._pending.clear()
    this._rooms.clear()
    this._updateKeepalive()
    console.error('[zrooms] the engine stopped unexpectedly; destroy it and create a new one')
    const code = ZegoErrorCode.RoomInnerError
    const alive = this._listeners
    const emit = (name, args) => {
      for (const fn of [...(alive.get(name) ?? [])]) {
        try {
          fn(...args)
        } catch (err) {
          console.error(`[zrooms] listener of '${name}' threw:`, err)
        }
      }
    }
    for (const roomID of rooms) {
      emit('roomStateChanged', [roomID, defines.ZegoRoomStateChangedReason.ReconnectFailed, code, ''])
      emit('roomStateUpdate', [roomID, defines.ZegoRoomState.Disconnected, code, ''])
    }
    for (const p of pending) p.resolve(p.shape({ code: ZegoErrorCode.CommonEngineNotCreate }))
  }

  async _destroy() {
    this._destroyed = true
    this._listeners.clear()
    this._views.clear()
    this.stopSoundLevelMonitor()
    const pending = [...this._pending.values()]
    this._pending.clear()
    this._rooms.clear()
    this._updateKeepalive()
    for (const p of pending) p.resolve(p.shape({ code: ZegoErrorCode.CommonEngineNotCreate }))
    await this._native.destroy()
  }
}

const constructToken = Symbol('ZegoExpressEngine')

function engineError(code, message) {
  const err = new Error(`${message} (error ${code})`)
  err.errorCode = code
  return err
}

function roomResult(ev) {
  return { errorCode: ev.code, extendedData: ev.extendedData ?? '' }
}

function codeResult(ev) {
  return { errorCode: ev.code }
}

function voidResult() {
  return undefined
}

/**
 * Starts a room server inside this process (for examples and tests). Resolves
 * `{url, port, close()}`. Options: `{host, port, apps: [{appID, appSign, multiRoom,
 * maxRoomsPerUser, maxMembers, serverSecret, requireToken, tokenLayouts, maxStreamsPerUser}],
 * devDefault, onlineCountIntervalMs, maxConnectionsPerIp, allowedOrigins}`. Without `apps` the
 * server runs the open development mode and says so once on stderr.
 */
async function startServer(options) {
  if (typeof native.startServer !== 'function') {
    throw new Error('this build of zrooms has no embedded server (built without the "server" feature)')
  }
  const server = await native.startServer(options ?? undefined)
  return { url: server.url, port: server.port, close: () => server.close() }
}

module.exports = ZegoExpressEngine
module.exports.default = ZegoExpressEngine
module.exports.ZegoExpressEngine = ZegoExpressEngine
module.exports.ZegoErrorCode = ZegoErrorCode
module.exports.startServer = startServer
module.exports.generateToken04 = token.generateToken04
module.exports.makePrivilegePayload = token.makePrivilegePayload
module.exports.readTestPattern = pattern.readTestPattern
module.exports.streamTag = pattern.streamTag
module.exports.toneFrequency = pattern.toneFrequency
module.exports.ZegoRoomMode = defines.ZegoRoomMode
module.exports.ZegoRoomState = defines.ZegoRoomState
module.exports.ZegoRoomStateChangedReason = defines.ZegoRoomStateChangedReason
module.exports.ZegoUpdateType = defines.ZegoUpdateType
module.exports.ZegoPublisherState = defines.ZegoPublisherState
module.exports.ZegoPlayerState = defines.ZegoPlayerState
module.exports.ZegoPublishChannel = defines.ZegoPublishChannel
module.exports.ZegoScenario = defines.ZegoScenario
module.exports.ZegoEngineState = defines.ZegoEngineState
module.exports.ZegoVideoConfigPreset = defines.ZegoVideoConfigPreset
module.exports.ZegoAudioConfigPreset = defines.ZegoAudioConfigPreset
module.exports.ZegoVideoCodecID = defines.ZegoVideoCodecID
module.exports.ZegoViewMode = defines.ZegoViewMode
module.exports.ZegoStreamQualityLevel = defines.ZegoStreamQualityLevel
module.exports.ZegoAudioDeviceType = defines.ZegoAudioDeviceType
module.exports.ZegoRemoteDeviceState = defines.ZegoRemoteDeviceState
