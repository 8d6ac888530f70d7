//! napi binding of the zrooms engine and room server. Type conversion and the event pump only:
//! the logic lives in `crates/`. The ZEGO-shaped API is the hand-written `index.js` facade.

// napi-derive compiles registration out under cfg(test), which leaves exported items unused there.
#![cfg_attr(test, allow(dead_code))]

mod devices;
mod events;
mod media_calls;
#[cfg(feature = "server")]
mod server;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use zrooms_engine::{Command, Engine, EngineConfig, RoomConfig, SessionConfig};

/// One tokio runtime per process: napi's own (its `async fn`s run there), built at module load
/// with our settings and shared by the engines of every JS environment and by embedded
/// servers. Its threads never keep Node alive; the facade decides that. napi shuts it down when
/// the last JS environment that loaded the addon exits.
#[napi_derive::module_init]
fn init() {
    init_logging();
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("zrooms")
        .enable_all()
        .build();
    match built {
        Ok(rt) => create_custom_tokio_runtime(rt),
        // napi then tries its default runtime on first use; failing that, `runtime()` says so.
        Err(e) => eprintln!("[zrooms] cannot build the runtime: {e}"),
    }
}

/// A handle to the runtime. A runtime that cannot start (no threads left, say) is a JS error
/// of every call that needs it, never a panic reaching Node.
pub(crate) fn runtime() -> Result<tokio::runtime::Handle> {
    std::panic::catch_unwind(|| within_runtime_if_available(tokio::runtime::Handle::current))
        .map_err(|_| Error::from_reason("cannot start the zrooms runtime"))
}

/// `ZROOMS_LOG` (a tracing filter such as `zrooms_engine=trace`) turns on the native log, on
/// stderr; without it the engine writes nothing.
fn init_logging() {
    if let Ok(filter) = std::env::var("ZROOMS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Events go to JS through one weak threadsafe function per engine: it never holds the process
/// open by itself; the facade keeps a timer referenced while rooms or calls are active.
type EventFn = ThreadsafeFunction<serde_json::Value, (), serde_json::Value, Status, false, true>;
/// Decoded frames take their own (weak) threadsafe function: binary data, no JSON. At most
/// [`JS_FRAME_QUEUE`] wait for the JS thread; beyond that the newest is dropped (the app is
/// not keeping up with the pictures, and older ones are already late).
type FrameFn =
    ThreadsafeFunction<events::JsFrame, (), events::JsFrame, Status, false, true, JS_FRAME_QUEUE>;
const JS_FRAME_QUEUE: usize = 8;

#[napi(object)]
pub struct EngineOptions {
    #[napi(js_name = "appID")]
    pub app_id: u32,
    pub app_sign: Option<String>,
    pub server: String,
    pub multi_room: bool,
    pub login_timeout_ms: Option<u32>,
    pub heartbeat_interval_ms: Option<u32>,
    pub heartbeat_timeout_ms: Option<u32>,
    /// ZEGO's `room_retry_time`: how long a dropped connection is retried, in seconds.
    pub room_retry_time_s: Option<u32>,
    pub reconnect_delay_ms: Option<u32>,
    /// `"device"` (default): microphone and camera; `"synthetic"`: the pattern and tone.
    pub capture: Option<String>,
    /// A CA to trust for a `wss://` server besides the system's: a PEM file's path or the PEM
    /// text (`advancedConfig.tls_ca`).
    pub tls_ca: Option<String>,
}

#[napi(object)]
pub struct NativeVideoConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub key_frame_interval: u32,
    #[napi(js_name = "codecID")]
    pub codec_id: u32,
}

#[napi(object)]
pub struct NativeRoomConfig {
    pub max_member_count: Option<u32>,
    pub is_user_status_notify: Option<bool>,
    pub token: Option<String>,
}

impl From<NativeRoomConfig> for RoomConfig {
    fn from(c: NativeRoomConfig) -> Self {
        RoomConfig {
            max_member_count: c.max_member_count.unwrap_or(0),
            is_user_status_notify: c.is_user_status_notify.unwrap_or(false),
            token: c.token.unwrap_or_default(),
        }
    }
}

/// The native half of one `ZegoExpressEngine`. Every call returns an operation id at once;
/// its outcome arrives through the event callback as a `$done` event with the same id.
#[napi]
pub struct NativeEngine {
    engine: Arc<Engine>,
    /// Set by `destroy`: the end of the event stream is expected then. Otherwise the driver
    /// died, and the pump says so with a last `$ended` event (the facade settles every pending
    /// call and lets the process exit).
    destroyed: Arc<AtomicBool>,
}

#[napi]
impl NativeEngine {
    #[napi(constructor)]
    pub fn new(
        options: EngineOptions,
        on_event: Function<serde_json::Value, ()>,
        on_frame: Function<events::JsFrame, ()>,
    ) -> Result<Self> {
        let tsfn: EventFn = on_event
            .build_threadsafe_function()
            .weak::<true>()
            .callee_handled::<false>()
            .build()?;
        let frames: FrameFn = on_frame
            .build_threadsafe_function()
            .weak::<true>()
            .callee_handled::<false>()
            .max_queue_size::<JS_FRAME_QUEUE>()
            .build()?;
        let tls = match options.server.starts_with("wss://") || options.tls_ca.is_some() {
            true => Some(
                zrooms_engine::tls::client_config(options.tls_ca.as_deref())
                    .map_err(|e| Error::new(Status::InvalidArg, e))?,
            ),
            false => None,
        };
        let config = EngineConfig {
            server_url: options.server,
            tls,
            session: SessionConfig {
                app_id: options.app_id,
                app_sign: options.app_sign.unwrap_or_default(),
                multi_room: options.multi_room,
                sdk_version: env!("CARGO_PKG_VERSION").to_string(),
                login_timeout: Duration::from_millis(
                    options.login_timeout_ms.unwrap_or(30_000) as u64
                ),
                heartbeat_interval: Duration::from_millis(
                    options.heartbeat_interval_ms.unwrap_or(5_000).max(50) as u64,
                ),
                heartbeat_timeout: Duration::from_millis(
                    options.heartbeat_timeout_ms.unwrap_or(15_000).max(100) as u64,
                ),
                reconnect_horizon: Duration::from_secs(
                    options.room_retry_time_s.unwrap_or(20 * 60) as u64,
                ),
                reconnect_delay: Duration::from_millis(
                    options.reconnect_delay_ms.unwrap_or(250).max(10) as u64,
                ),
                reconnect_max_delay: Duration::from_secs(8),
                reconnect_probe_interval: Duration::from_millis(500),
                jitter_seed: jitter_seed(),
            },
            use_devices: options.capture.as_deref() != Some("synthetic"),
        };
        let rt = runtime()?;
        let (engine, mut events) = Engine::start(&rt, config);
        let destroyed = Arc::new(AtomicBool::new(false));
        let expected_end = destroyed.clone();
        rt.spawn(async move {
            while let Some(ev) = events.recv().await {
                match events::frame(ev) {
                    Ok(frame) => {
                        frames.call(frame, ThreadsafeFunctionCallMode::NonBlocking);
                    }
                    Err(ev) => {
                        for event in events::to_js(ev) {
                            let value = event.into_value();
                            tsfn.call(value, ThreadsafeFunctionCallMode::NonBlocking);
                        }
                    }
                }
            }
            if !expected_end.load(Ordering::Acquire) {
                let ended = serde_json::json!({ "e": "$ended", "a": [] });
                tsfn.call(ended, ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
        Ok(NativeEngine {
            engine: Arc::new(engine),
            destroyed,
        })
    }

    fn call(&self, cmd: Command) -> i64 {
        self.engine.call(cmd) as i64
    }

    #[napi]
    pub fn login_room(
        &self,
        room_id: String,
        user_id: String,
        user_name: Option<String>,
        config: NativeRoomConfig,
    ) -> i64 {
        self.call(Command::LoginRoom {
            room_id,
            user_id,
            user_name,
            config: config.into(),
        })
    }

    #[napi]
    pub fn logout_room(&self, room_id: Option<String>) -> i64 {
        self.call(Command::LogoutRoom { room_id })
    }

    #[napi]
    pub fn switch_room(&self, from: String, to: String, config: Option<NativeRoomConfig>) -> i64 {
        self.call(Command::SwitchRoom {
            from,
            to,
            config: config.map(Into::into),
        })
    }

    #[napi]
    pub fn renew_token(&self, room_id: String, token: String) -> i64 {
        self.call(Command::RenewToken { room_id, token })
    }

    #[napi]
    pub fn set_room_extra_info(&self, room_id: String, key: String, value: String) -> i64 {
        self.call(Command::SetRoomExtraInfo {
            room_id,
            key,
            value,
        })
    }

    #[napi]
    pub fn start_publishing_stream(
        &self,
        stream_id: String,
        channel: u32,
        room_id: Option<String>,
    ) -> i64 {
        self.call(Command::StartPublishing {
            stream_id,
            channel,
            room_id,
        })
    }

    #[napi]
    pub fn stop_publishing_stream(&self, channel: u32) -> i64 {
        self.call(Command::StopPublishing { channel })
    }

    #[napi]
    pub fn set_stream_extra_info(&self, extra_info: Option<String>, channel: u32) -> i64 {
        self.call(Command::SetStreamExtraInfo {
            extra_info,
            channel,
        })
    }

    /// `video`/`audio`: the app's view wants decoded frames of that kind.
    #[napi]
    pub fn start_playing_stream(
        &self,
        stream_id: String,
        room_id: Option<String>,
        video: bool,
        audio: bool,
    ) -> i64 {
        self.engine.set_render(&stream_id, video, audio);
        self.call(Command::StartPlaying { stream_id, room_id })
    }

    #[napi]
    pub fn stop_playing_stream(&self, stream_id: String) -> i64 {
        self.engine.clear_render(&stream_id);
        self.call(Command::StopPlaying { stream_id })
    }

    /// `mutePlayStreamVideo` (a stream) or `muteAllPlayStreamVideo` (`null`): muted video is
    /// not decoded and no frame of it crosses into JS.
    #[napi]
    pub fn mute_play_stream_video(&self, stream_id: Option<String>, mute: bool) {
        self.engine.mute_play_video(stream_id.as_deref(), mute);
    }

    /// `mutePlayStreamAudio` (a stream) or `muteAllPlayStreamAudio` (`null`): silence to the
    /// view and the speaker.
    #[napi]
    pub fn mute_play_stream_audio(&self, stream_id: Option<String>, mute: bool) {
        self.engine.mute_play_audio(stream_id.as_deref(), mute);
    }

    /// `setPlayVolume` (a stream) or `setAllPlayStreamVolume` (`null`), 0..200.
    #[napi]
    pub fn set_play_volume(&self, stream_id: Option<String>, volume: u32) {
        self.engine.set_play_volume(stream_id.as_deref(), volume);
    }

    /// Whether the app's view still takes this decoded frame: frames already on their way
    /// to JS when a mute or stop came are dropped by the facade on this answer.
    #[napi]
    pub fn frame_wanted(&self, stream_id: String, video: bool) -> bool {
        self.engine.frame_wanted(&stream_id, video)
    }

    /// Whether a player runs for the stream (`takePlayStreamSnapshot` answers 1004011
    /// otherwise).
    #[napi]
    pub fn is_playing(&self, stream_id: String) -> bool {
        self.engine.is_playing(&stream_id)
    }

    #[napi]
    pub fn send_broadcast_message(&self, room_id: String, message: String) -> i64 {
        self.call(Command::SendBroadcast { room_id, message })
    }

    #[napi]
    pub fn send_barrage_message(&self, room_id: String, message: String) -> i64 {
        self.call(Command::SendBarrage { room_id, message })
    }

    #[napi]
    pub fn send_custom_command(&self, room_id: String, command: String, to: Vec<String>) -> i64 {
        self.call(Command::SendCustomCommand {
            room_id,
            command,
            to,
        })
    }

    #[napi]
    pub fn mute_publish_stream_audio(&self, mute: bool, channel: u32) -> i64 {
        self.call(Command::MutePublishAudio { mute, channel })
    }

    #[napi]
    pub fn mute_publish_stream_video(&self, mute: bool, channel: u32) -> i64 {
        self.call(Command::MutePublishVideo { mute, channel })
    }

    #[napi]
    pub fn mute_microphone(&self, mute: bool) -> i64 {
        self.call(Command::MuteMicrophone { mute })
    }

    #[napi]
    pub fn enable_camera(&self, enable: bool, channel: u32) -> i64 {
        self.call(Command::EnableCamera { enable, channel })
    }

    /// Leaves every room and stops the engine; no event follows.
    #[napi]
    pub async fn destroy(&self) -> Result<()> {
        self.destroyed.store(true, Ordering::Release);
        self.engine.destroy().await;
        Ok(())
    }
}

#[napi]
impl NativeEngine {
    /// Makes the engine's driver fail as a bug would: for the test that a dead driver settles
    /// every call and lets the process exit.
    #[napi(js_name = "__failDriverForTest")]
    pub fn fail_driver_for_test(&self) {
        self.engine.fail_for_test();
    }
}

/// The package's version.
#[napi]
pub fn native_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Spreads engines' reconnection attempts: differs per process and per engine.
fn jitter_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(0x9e37_79b9, Ordering::Relaxed)
}
