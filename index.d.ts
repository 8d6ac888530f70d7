// Typings of the zrooms facade: ZEGO Express, uni-app / React Native flavour.
// Names, parameter order and numeric values follow ZEGO's; see docs/api.md for what differs.

export declare const ZegoRoomMode: { readonly SingleRoom: 0; readonly MultiRoom: 1 }
export type ZegoRoomMode = 0 | 1

export declare const ZegoRoomState: { readonly Disconnected: 0; readonly Connecting: 1; readonly Connected: 2 }
export type ZegoRoomState = 0 | 1 | 2

export declare const ZegoRoomStateChangedReason: {
  readonly Logining: 0
  readonly Logined: 1
  readonly LoginFailed: 2
  readonly Reconnecting: 3
  readonly Reconnected: 4
  readonly ReconnectFailed: 5
  readonly KickOut: 6
  readonly Logout: 7
  readonly LogoutFailed: 8
}
export type ZegoRoomStateChangedReason = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8

export declare const ZegoUpdateType: { readonly Add: 0; readonly Delete: 1 }
export type ZegoUpdateType = 0 | 1

export declare const ZegoPublisherState: { readonly NoPublish: 0; readonly PublishRequesting: 1; readonly Publishing: 2 }
export type ZegoPublisherState = 0 | 1 | 2

export declare const ZegoPlayerState: { readonly NoPlay: 0; readonly PlayRequesting: 1; readonly Playing: 2 }
export type ZegoPlayerState = 0 | 1 | 2

export declare const ZegoPublishChannel: { readonly Main: 0; readonly Aux: 1; readonly Third: 2; readonly Fourth: 3 }
export type ZegoPublishChannel = 0 | 1 | 2 | 3

export declare const ZegoScenario: {
  readonly General: 0
  readonly Communication: 1
  readonly Live: 2
  readonly Default: 3
  readonly StandardVideoCall: 4
  readonly HighQualityVideoCall: 5
  readonly StandardChatroom: 6
  readonly HighQualityChatroom: 7
  readonly Broadcast: 8
  readonly Karaoke: 9
  readonly StandardVoiceCall: 10
}
export type ZegoScenario = number

export declare const ZegoEngineState: { readonly Start: 0; readonly Stop: 1 }
export declare const ZegoVideoConfigPreset: Readonly<Record<string, number>>
export declare const ZegoAudioConfigPreset: Readonly<Record<string, number>>
export declare const ZegoVideoCodecID: Readonly<Record<string, number>>
export declare const ZegoViewMode: Readonly<Record<string, number>>
export declare const ZegoStreamQualityLevel: Readonly<Record<string, number>>
export declare const ZegoAudioDeviceType: { readonly Input: 0; readonly Output: 1 }
export declare const ZegoRemoteDeviceState: Readonly<Record<string, number>>

/** ZEGO's error codes by name (0 = success). */
export declare const ZegoErrorCode: Readonly<Record<string, number>>

export interface ZegoEngineProfile {
  appID: number
  /** 64 hex characters; optional when the server does not check it. */
  appSign?: string
  scenario: ZegoScenario
}

export interface ZegoEngineConfig {
  logConfig?: { logPath?: string; logSize?: number; logCount?: number }
  /**
   * `server`: the room server's URL, `ws://host:port` or `wss://host:port` (fallback: the
   * ZROOMS_SERVER environment variable, then ws://127.0.0.1:9000). `login_timeout_ms`: how long
   * a login may wait. `tls_ca`: a CA to trust for `wss://` besides the system's, as a PEM file's
   * path or the PEM text (fallback: ZROOMS_TLS_CA).
   */
  advancedConfig?: Record<string, string>
}

export interface ZegoUser {
  userID: string
  /** Defaults to the userID when omitted. */
  userName?: string
}

export interface ZegoRoomConfig {
  maxMemberCount?: number
  isUserStatusNotify?: boolean
  token?: string
}

export interface ZegoPublisherConfig {
  /** Required in multi-room mode (1003070 without it, 1003071 when empty). */
  roomID?: string
}

export interface ZegoPlayerConfig {
  /** Required in multi-room mode (1004070 without it, 1004071 when empty). */
  roomID?: string
  resourceMode?: number
  videoCodecID?: number
}

/** A decoded or captured picture: Y, U, V planes packed (I420). */
export interface ZegoVideoFrame {
  streamID?: string
  channel?: ZegoPublishChannel
  format: 'I420'
  width: number
  height: number
  timestamp: number
  data: Uint8Array
}

/** Decoded audio: 16-bit PCM, interleaved. */
export interface ZegoAudioFrame {
  streamID: string
  sampleRate: number
  channels: number
  data: Int16Array
}

/** In Node, a view is where decoded media goes. */
export interface ZegoView {
  onFrame?: (frame: ZegoVideoFrame) => void
  onAudioFrame?: (frame: ZegoAudioFrame) => void
}

export interface ZegoVideoConfig {
  captureWidth?: number
  captureHeight?: number
  encodeWidth: number
  encodeHeight: number
  fps: number
  /** kbps */
  bitrate: number
  /** 0 H.264 (default), 2 VP8 */
  codecID: number
  keyFrameInterval?: number
}

export interface ZegoSoundLevelConfig {
  /** 100..3000, default 100 */
  millisecond?: number
  enableVAD?: boolean
}

/** ZegoVideoFrameFormat: I420 = 1, BGRA32 = 4, RGBA32 = 5. */
export interface ZegoVideoFrameParam {
  format: 1 | 4 | 5
  width: number
  height: number
}

export interface ZegoPlayStreamQuality {
  videoRecvFPS: number
  videoDecodeFPS: number
  videoRenderFPS: number
  videoKBPS: number
  audioRecvFPS: number
  audioKBPS: number
  rtt: number
  packetLostRate: number
  level: number
  totalRecvBytes: number
  [key: string]: number | boolean
}

export interface ZegoPublishStreamQuality {
  videoCaptureFPS: number
  videoEncodeFPS: number
  videoSendFPS: number
  videoKBPS: number
  audioCaptureFPS: number
  audioKBPS: number
  rtt: number
  packetLostRate: number
  level: number
  totalSendBytes: number
  [key: string]: number | boolean
}

export interface ZegoStream {
  user: Required<ZegoUser>
  streamID: string
  extraInfo: string
}

export interface ZegoRoomExtraInfo {
  key: string
  value: string
  updateUser: Required<ZegoUser>
  updateTime: number
}

export interface ZegoBroadcastMessageInfo {
  message: string
  messageID: number
  sendTime: number
  fromUser: Required<ZegoUser>
}

export interface ZegoBarrageMessageInfo {
  message: string
  messageID: string
  sendTime: number
  fromUser: Required<ZegoUser>
}

export interface ZegoRoomLoginResult {
  errorCode: number
  extendedData: string
}
export type ZegoRoomLogoutResult = ZegoRoomLoginResult
export interface ZegoRoomSetRoomExtraInfoResult {
  errorCode: number
}
export interface ZegoPublisherSetStreamExtraInfoResult {
  errorCode: number
}
export interface ZegoIMSendBroadcastMessageResult {
  errorCode: number
  messageID: number
}
export interface ZegoIMSendBarrageMessageResult {
  errorCode: number
  messageID: string
}
export interface ZegoIMSendCustomCommandResult {
  errorCode: number
}

/** Listener signatures, with ZEGO's positional arguments. */
export interface ZegoEventListener {
  debugError: (errorCode: number, funcName: string, info: string) => void
  apiCalledResult: (errorCode: number, funcName: string, info: string) => void
  roomStateUpdate: (roomID: string, state: ZegoRoomState, errorCode: number, extendedData: string) => void
  roomStateChanged: (roomID: string, reason: ZegoRoomStateChangedReason, errorCode: number, extendedData: string) => void
  roomUserUpdate: (roomID: string, updateType: ZegoUpdateType, userList: Required<ZegoUser>[]) => void
  roomOnlineUserCountUpdate: (roomID: string, count: number) => void
  /** The room's token expires in `remainTimeInSecond` seconds (30 s before): call renewToken. */
  roomTokenWillExpire: (roomID: string, remainTimeInSecond: number) => void
  roomStreamUpdate: (roomID: string, updateType: ZegoUpdateType, streamList: ZegoStream[], extendedData: string) => void
  roomStreamExtraInfoUpdate: (roomID: string, streamList: ZegoStream[]) => void
  roomExtraInfoUpdate: (roomID: string, roomExtraInfoList: ZegoRoomExtraInfo[]) => void
  publisherStateUpdate: (streamID: string, state: ZegoPublisherState, errorCode: number, extendedData: string) => void
  playerStateUpdate: (streamID: string, state: ZegoPlayerState, errorCode: number, extendedData: string) => void
  IMRecvBroadcastMessage: (roomID: string, messageList: ZegoBroadcastMessageInfo[]) => void
  IMRecvBarrageMessage: (roomID: string, messageList: ZegoBarrageMessageInfo[]) => void
  IMRecvCustomCommand: (roomID: string, fromUser: Required<ZegoUser>, command: string) => void
  publisherCapturedAudioFirstFrame: () => void
  publisherCapturedVideoFirstFrame: (channel: ZegoPublishChannel) => void
  publisherRenderVideoFirstFrame: (channel: ZegoPublishChannel) => void
  publisherVideoSizeChanged: (width: number, height: number, channel: ZegoPublishChannel) => void
  publisherQualityUpdate: (streamID: string, quality: ZegoPublishStreamQuality) => void
  playerRecvAudioFirstFrame: (streamID: string) => void
  playerRecvVideoFirstFrame: (streamID: string) => void
  playerRenderVideoFirstFrame: (streamID: string) => void
  playerVideoSizeChanged: (streamID: string, width: number, height: number) => void
  playerQualityUpdate: (streamID: string, quality: ZegoPlayStreamQuality) => void
  remoteCameraStateUpdate: (streamID: string, state: number) => void
  remoteMicStateUpdate: (streamID: string, state: number) => void
  /** exceptionType: ZegoDeviceExceptionType; deviceType: ZegoDeviceType (1 camera, 2 microphone, 3 speaker). */
  localDeviceExceptionOccurred: (exceptionType: number, deviceType: number, deviceID: string) => void
  capturedSoundLevelUpdate: (soundLevel: number) => void
  remoteSoundLevelUpdate: (soundLevels: Record<string, number>) => void
}

export default class ZegoExpressEngine {
  private constructor()
  /** Creates this JS environment's engine, or returns the one that exists. */
  static createEngineWithProfile(profile: ZegoEngineProfile): Promise<ZegoExpressEngine>
  /** Throws before createEngineWithProfile. */
  static instance(): ZegoExpressEngine
  static destroyEngine(): Promise<void>
  static setEngineConfig(config: ZegoEngineConfig): Promise<void>
  /** Before createEngineWithProfile only; after it, debugError 1001020 and nothing changes. */
  static setRoomMode(mode: ZegoRoomMode): Promise<void>
  static getVersion(): Promise<string>

  getVersion(): Promise<string>
  on<E extends keyof ZegoEventListener>(event: E, callback: ZegoEventListener[E]): void
  off<E extends keyof ZegoEventListener>(event: E, callback?: ZegoEventListener[E]): void

  loginRoom(roomID: string, user: ZegoUser, config?: ZegoRoomConfig): Promise<ZegoRoomLoginResult>
  /** Without roomID: every room. */
  logoutRoom(roomID?: string): Promise<ZegoRoomLogoutResult>
  switchRoom(fromRoomID: string, toRoomID: string, config?: ZegoRoomConfig): Promise<void>
  renewToken(roomID: string, token: string): Promise<void>
  setRoomExtraInfo(roomID: string, key: string, value: string): Promise<ZegoRoomSetRoomExtraInfoResult>

  startPublishingStream(streamID: string, channel?: ZegoPublishChannel, config?: ZegoPublisherConfig): Promise<void>
  stopPublishingStream(channel?: ZegoPublishChannel): Promise<void>
  setStreamExtraInfo(extraInfo: string, channel?: ZegoPublishChannel): Promise<ZegoPublisherSetStreamExtraInfoResult>

  startPlayingStream(streamID: string, view?: ZegoView, config?: ZegoPlayerConfig): Promise<void>
  startPlayingStream(streamID: string, config: ZegoPlayerConfig): Promise<void>
  stopPlayingStream(streamID: string): Promise<void>

  startPreview(view?: ZegoView, channel?: ZegoPublishChannel): Promise<void>
  stopPreview(channel?: ZegoPublishChannel): Promise<void>
  /** A ZegoVideoConfigPreset or a config; applies at once, also while publishing. */
  setVideoConfig(config: ZegoVideoConfig | number, channel?: ZegoPublishChannel): Promise<void>
  getVideoConfig(channel?: ZegoPublishChannel): Promise<ZegoVideoConfig>
  /** A ZegoAudioConfigPreset or `{bitrate (kbps, 6..510), channel (1 | 2), codecID}`. */
  setAudioConfig(config: { bitrate: number; channel: 1 | 2; codecID?: number } | number, channel?: ZegoPublishChannel): Promise<void>
  getAudioConfig(channel?: ZegoPublishChannel): Promise<{ bitrate: number; channel: number; codecID: number }>
  enableCustomVideoCapture(enable: boolean, config?: { bufferType: number }, channel?: ZegoPublishChannel): Promise<void>
  sendCustomVideoCaptureRawData(
    data: Uint8Array,
    dataLength: number,
    params: ZegoVideoFrameParam,
    referenceTimeMillisecond: number,
    channel?: ZegoPublishChannel,
  ): Promise<void>
  enableCustomAudioIO(enable: boolean, config?: unknown, channel?: ZegoPublishChannel): Promise<void>
  /** 16-bit PCM at 48 kHz; `param.channel` 1 mono or 2 stereo. */
  sendCustomAudioCapturePCMData(
    data: Int16Array | Uint8Array,
    dataLength: number,
    param: { sampleRate: 48000; channel: 1 | 2 },
    channel?: ZegoPublishChannel,
  ): Promise<void>
  mutePublishStreamAudio(mute: boolean, channel?: ZegoPublishChannel): Promise<void>
  mutePublishStreamVideo(mute: boolean, channel?: ZegoPublishChannel): Promise<void>
  muteMicrophone(mute: boolean): Promise<void>
  isMicrophoneMuted(): Promise<boolean>
  enableCamera(enable: boolean, channel?: ZegoPublishChannel): Promise<void>
  mutePlayStreamAudio(streamID: string, mute: boolean): Promise<void>
  mutePlayStreamVideo(streamID: string, mute: boolean): Promise<void>
  muteAllPlayStreamAudio(mute: boolean): Promise<void>
  muteAllPlayStreamVideo(mute: boolean): Promise<void>
  /** 0..200 */
  setPlayVolume(streamID: string, volume: number): Promise<void>
  setAllPlayStreamVolume(volume: number): Promise<void>
  /** type: ZegoAudioDeviceType (0 input, 1 output). */
  getAudioDeviceList(type: number): Promise<ZegoDeviceInfo[]>
  getDefaultAudioDeviceID(type: number): Promise<string>
  useAudioDevice(deviceID: string, type: number): Promise<void>
  getCurrentAudioDevice(type: number): Promise<ZegoDeviceInfo | null>
  getVideoDeviceList(): Promise<ZegoDeviceInfo[]>
  getDefaultVideoDeviceID(): Promise<string>
  useVideoDevice(deviceID: string, channel?: number): Promise<void>
  muteSpeaker(mute: boolean): Promise<void>
  isSpeakerMuted(): Promise<boolean>
  setCaptureVolume(volume: number): Promise<void>
  enableAudioCaptureDevice(enable: boolean): Promise<void>
  /** Not ZEGO's API: which devices run now. */
  getDeviceState(): { speaker: { deviceID: string; frames: number; peak: number } | null; microphones: Record<string, string>; cameras: Record<string, string> }
  takePlayStreamSnapshot(streamID: string): Promise<{ errorCode: number; image: ZegoVideoFrame | null }>
  startSoundLevelMonitor(config?: ZegoSoundLevelConfig): Promise<void>
  stopSoundLevelMonitor(): Promise<void>

  sendBroadcastMessage(roomID: string, message: string): Promise<ZegoIMSendBroadcastMessageResult>
  sendBarrageMessage(roomID: string, message: string): Promise<ZegoIMSendBarrageMessageResult>
  /** `toUserList` empty or omitted: everyone else in the room. */
  sendCustomCommand(roomID: string, command: string, toUserList?: ZegoUser[] | null): Promise<ZegoIMSendCustomCommandResult>
}

export { ZegoExpressEngine }

export interface ServerAppOptions {
  appID: number
  appSign?: string
  multiRoom?: boolean
  maxRoomsPerUser?: number
  maxMembers?: number
  /** The app's 32-character ServerSecret: logins' token04s are verified with it. */
  serverSecret?: string
  /** A token is needed even with the right appSign (needs `serverSecret`). */
  requireToken?: boolean
  /** Token layouts accepted; default `['gcm']`. `'cbc'` is weaker (docs/security.md). */
  tokenLayouts?: Array<'gcm' | 'cbc'>
  /** Streams one engine may publish at once; default 4. */
  maxStreamsPerUser?: number
}

export interface StartServerOptions {
  host?: string
  /** 0 (default) picks a free port. */
  port?: number
  apps?: ServerAppOptions[]
  /** Admit unknown appIDs with multi-room on; default true when `apps` is absent. */
  devDefault?: boolean
  onlineCountIntervalMs?: number
  /** Open connections from one IP address; default 128, 0 = unlimited. */
  maxConnectionsPerIp?: number
  /** Browser origins whose WebSocket connections are admitted; default any. */
  allowedOrigins?: string[]
  /** PEM certificate chain file; with `tlsKey` the port serves `https://` and `wss://` only. */
  tlsCert?: string
  /** PEM private key file of `tlsCert`. */
  tlsKey?: string
}

export interface RunningServer {
  url: string
  port: number
  close(): Promise<void>
}

/** `{counter, tag}` read from a picture of the synthetic test pattern. */
export declare function readTestPattern(frame: { width: number; height: number; data: Uint8Array }): {
  counter: number | null
  tag: number | null
}
/** The tag the publisher of `streamID` draws into its test pattern. */
export declare function streamTag(streamID: string): number
/** The dominant frequency of 16-bit mono samples. */
export declare function toneFrequency(samples: ArrayLike<number>, sampleRate: number): number | null

/** Starts a room server inside this process (examples, tests). */
export declare function startServer(options?: StartServerOptions): Promise<RunningServer>

/** Room privileges carried by a token's payload (docs/tokens.md). */
export interface PrivilegeOptions {
  /** '' (default): any room. */
  roomID?: string
  /** May log into the room (default true). */
  login?: boolean
  /** May publish (default true). */
  publish?: boolean
  /** Only these streamIDs may be published; null or [] (default): any. */
  streamIDList?: string[] | null
}

/**
 * Makes a ZEGO token04 for an app server (ZEGO's published algorithm): `secret` is the app's
 * 32-character ServerSecret, `payload` '' or `makePrivilegePayload(...)`. Layout 'gcm' (default)
 * or 'cbc'. Throws on bad arguments.
 */
export declare function generateToken04(
  appID: number,
  userID: string,
  secret: string,
  effectiveTimeInSeconds: number,
  payload?: string,
  options?: { mode?: 'gcm' | 'cbc' },
): string

/** The privilege payload string of a room token. */
export declare function makePrivilegePayload(options?: PrivilegeOptions): string

export interface ZegoDeviceInfo {
  deviceID: string
  deviceName: string
}
