//! The engine: a tokio driver around the sans-IO [`Session`].
//!
//! [`Engine::start`] spawns one driver task and returns a handle plus the receiver of
//! [`EngineEvent`]s. The handle turns API calls into [`Command`]s with an [`OpId`]; the event
//! stream carries every outcome, including each call's completion, in one total order.
//!
//! Driver loop: drain `session.poll_output()` (connect, transmit, emit, media commands) and the
//! media peer until both are idle, then `select!` over API calls, the connection attempt,
//! inbound frames, UDP datagrams, encoded frames from the publisher threads and the earliest
//! deadline; feed the one that fired in with `now`, and drain again.

pub mod media;

use futures_util::{SinkExt, StreamExt};
use media::pipeline::{CustomSources, Encoded, MeterMap, Pushed, RawFrame, Render, RenderMap};
use media::Media;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
pub use zrooms_session::{Command, OpId, OpValue, RoomConfig, SessionConfig, SessionEvent};
use zrooms_session::{Output, Session};

pub use zrooms_proto as proto;
pub use zrooms_session as session;

/// How long opening the signaling connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `ws://host:port` of the room server.
    pub server_url: String,
    pub session: SessionConfig,
    /// Capture from the microphone and camera (false: the synthetic pattern and tone).
    pub use_devices: bool,
}

/// Everything an engine reports, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    Session(SessionEvent),
    Media(MediaEvent),
    /// A decoded picture of a played stream (only for streams whose app asked for frames).
    VideoFrame(VideoFrame),
    /// Decoded audio of a played stream (likewise).
    AudioFrame(AudioFrame),
    /// A captured picture for the app's preview of a publish channel.
    PreviewFrame(VideoFrame, usize),
}

/// Media milestones, with ZEGO's event names.
#[derive(Clone, Debug, PartialEq)]
pub enum MediaEvent {
    PublisherCapturedVideoFirstFrame {
        channel: usize,
    },
    PublisherCapturedAudioFirstFrame,
    PublisherRenderVideoFirstFrame {
        channel: usize,
    },
    PublisherVideoSizeChanged {
        channel: usize,
        width: u32,
        height: u32,
    },
    PlayerRecvVideoFirstFrame {
        stream_id: String,
    },
    PlayerRecvAudioFirstFrame {
        stream_id: String,
    },
    PlayerRenderVideoFirstFrame {
        stream_id: String,
    },
    PlayerVideoSizeChanged {
        stream_id: String,
        width: u32,
        height: u32,
    },
    /// Every 3 s per published stream.
    PublisherQuality {
        stream_id: String,
        quality: Quality,
    },
    /// Every 3 s per played stream.
    PlayerQuality {
        stream_id: String,
        quality: Quality,
    },
    /// ZEGO's `localDeviceExceptionOccurred(exceptionType, deviceType, deviceID)`: a device
    /// is missing or failed; the stream carries the synthetic source instead.
    LocalDeviceException {
        exception: u32,
        device_type: u32,
        device_id: String,
    },
}

/// One stream's figures over the last quality interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quality {
    pub video_fps: f64,
    pub audio_fps: f64,
    pub video_kbps: f64,
    pub audio_kbps: f64,
    pub rtt_ms: f64,
    /// 0..1
    pub loss: f64,
    pub video_bytes: u64,
    pub audio_bytes: u64,
    /// ZEGO's `ZegoVideoCodecID` of the video: 0 H.264, 2 VP8.
    pub video_codec_id: u32,
}

impl Quality {
    /// ZEGO's `ZegoStreamQualityLevel` from loss and round-trip time.
    pub fn level(&self) -> u32 {
        match (self.loss, self.rtt_ms) {
            (l, r) if l < 0.02 && r < 100.0 => 0,
            (l, r) if l < 0.05 && r < 200.0 => 1,
            (l, r) if l < 0.10 && r < 400.0 => 2,
            (l, _) if l < 0.20 => 3,
            _ => 4,
        }
    }
}

/// An I420 picture: Y, then U, then V planes, tightly packed.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoFrame {
    pub stream_id: String,
    pub width: u32,
    pub height: u32,
    pub timestamp_ms: f64,
    pub data: Vec<u8>,
}

/// Interleaved 16-bit PCM.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioFrame {
    pub stream_id: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub samples: Vec<i16>,
}

enum Cmd {
    Api(OpId, Command),
    VideoConfig(usize, media::pipeline::VideoConfig),
    CustomVideo(usize, bool),
    CustomAudio(usize, bool),
    AudioConfig(usize, media::pipeline::AudioConfig),
    Preview(usize, bool),
    /// Device choices changed (in the shared settings): apply them.
    Devices,
    Destroy(oneshot::Sender<()>),
}

/// A handle to a running engine. Dropping it stops the driver as `destroy` would.
pub struct Engine {
    tx: mpsc::UnboundedSender<Cmd>,
    next_op: AtomicU64,
    render: RenderMap,
    custom: CustomSources,
    levels: MeterMap,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Connecting = Pin<Box<dyn Future<Output = Result<Ws, String>> + Send>>;

impl Engine {
    pub fn start(
        rt: &Handle,
        config: EngineConfig,
    ) -> (Engine, mpsc::UnboundedReceiver<EngineEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let render: RenderMap = Arc::new(Mutex::new(HashMap::new()));
        let custom: CustomSources = Arc::new(Mutex::new(Default::default()));
        let levels: MeterMap = Arc::new(Mutex::new(Default::default()));
        if let Ok(mut l) = levels.lock() {
            l.devices.use_devices = config.use_devices;
        }
        rt.spawn(drive(
            config,
            rx,
            ev_tx,
            render.clone(),
            custom.clone(),
            levels.clone(),
        ));
        (
            Engine {
                tx,
                next_op: AtomicU64::new(1),
                render,
                custom,
                levels,
            },
            ev_rx,
        )
    }

    /// ZEGO's `setVideoConfig` for `channel` (0..3).
    pub fn set_video_config(&self, channel: usize, config: media::pipeline::VideoConfig) {
        let _ = self.tx.send(Cmd::VideoConfig(channel, config));
    }

    /// ZEGO's `setAudioConfig` for `channel`.
    pub fn set_audio_config(&self, channel: usize, config: media::pipeline::AudioConfig) {
        let _ = self.tx.send(Cmd::AudioConfig(channel, config));
    }

    /// `startPreview` / `stopPreview` of `channel`.
    pub fn set_preview(&self, channel: usize, on: bool) {
        let _ = self.tx.send(Cmd::Preview(channel, on));
    }

    /// ZEGO's `enableCustomVideoCapture` for `channel`; applies to the next publish.
    pub fn enable_custom_video(&self, channel: usize, enable: bool) {
        let _ = self.tx.send(Cmd::CustomVideo(channel, enable));
    }

    /// A frame pushed by the app for `channel`. False when no custom-capture publisher runs
    /// there or it is behind (the frame is dropped).
    pub fn push_custom_frame(&self, channel: usize, frame: RawFrame) -> bool {
        self.push(channel, Pushed::Video(frame))
    }

    /// ZEGO's `enableCustomAudioIO` for `channel`; applies to the next publish.
    pub fn enable_custom_audio(&self, channel: usize, enable: bool) {
        let _ = self.tx.send(Cmd::CustomAudio(channel, enable));
    }

    /// 48 kHz mono PCM pushed by the app for `channel` (same rules as frames).
    pub fn push_custom_audio(&self, channel: usize, pcm: Vec<i16>) -> bool {
        self.push(channel, Pushed::Audio(pcm))
    }

    fn push(&self, channel: usize, item: Pushed) -> bool {
        let Ok(map) = self.custom.lock() else {
            return false;
        };
        match map.get(channel).and_then(Option::as_ref) {
            Some(tx) => tx.try_send(item).is_ok(),
            None => false,
        }
    }

    /// The latest captured level (loudest publish channel) and each played stream's level,
    /// 0..100, for the sound-level monitor.
    pub fn sound_levels(&self) -> (f32, Vec<(String, f32)>) {
        match self.levels.lock() {
            Ok(l) => (
                l.captured.iter().copied().fold(0.0, f32::max),
                l.remote.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            ),
            Err(_) => (0.0, Vec::new()),
        }
    }

    /// The latest decoded picture of a played stream (`takePlayStreamSnapshot`).
    pub fn snapshot(&self, stream_id: &str) -> Option<Arc<media::pattern::I420>> {
        self.levels
            .lock()
            .ok()?
            .last_picture
            .get(stream_id)
            .cloned()
    }

    /// Which decoded media of `stream_id` the app wants as frames.
    pub fn set_render(&self, stream_id: &str, render: Render) {
        if let Ok(mut map) = self.render.lock() {
            if render == Render::default() {
                map.remove(stream_id);
            } else {
                map.insert(stream_id.to_string(), render);
            }
        }
    }

    /// Reads or changes the device settings; `apply`: the media driver acts on the change
    /// (reopens the speaker, releases or reopens microphones).
    pub fn devices<T>(
        &self,
        apply: bool,
        f: impl FnOnce(&mut media::devices::DeviceSettings) -> T,
    ) -> Option<T> {
        let out = self.levels.lock().ok().map(|mut l| f(&mut l.devices));
        if apply {
            let _ = self.tx.send(Cmd::Devices);
        }
        out
    }

    /// Submits an API call; its [`SessionEvent::Completed`] carries the returned id.
    pub fn call(&self, cmd: Command) -> OpId {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Cmd::Api(op, cmd));
        op
    }

    /// Leaves every room (telling the server) and stops the driver; no event follows.
    pub async fn destroy(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Cmd::Destroy(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

struct Driver {
    session: Session,
    url: String,
    events: mpsc::UnboundedSender<EngineEvent>,
    sink: Option<futures_util::stream::SplitSink<Ws, Message>>,
    source: Option<futures_util::stream::SplitStream<Ws>>,
    connecting: Option<Connecting>,
    /// The local IP of the signaling connection: the address that routes to the server, and
    /// so the media host candidate.
    local_ip: Option<IpAddr>,
    media: Media,
    udp: Option<Arc<UdpSocket>>,
}

async fn drive(
    config: EngineConfig,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<EngineEvent>,
    render: RenderMap,
    custom: CustomSources,
    levels: MeterMap,
) {
    let (encoded_tx, mut encoded_rx) = mpsc::unbounded_channel::<Encoded>();
    let (keyframe_tx, mut keyframe_rx) = mpsc::unbounded_channel::<String>();
    let mut d = Driver {
        session: Session::new(config.session),
        url: config.server_url,
        media: Media::new(
            events.clone(),
            encoded_tx,
            keyframe_tx,
            render,
            custom,
            levels,
        ),
        events,
        sink: None,
        source: None,
        connecting: None,
        local_ip: None,
        udp: None,
    };
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = d.drain().await;
        let deadline = match (deadline, d.media.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let udp = d.udp.clone();
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Api(op, cmd)) => d.session.handle_command(Instant::now(), op, cmd),
                Some(Cmd::VideoConfig(channel, config)) => d.media.set_video_config(channel, config),
                Some(Cmd::CustomVideo(channel, enable)) => d.media.set_custom_video(channel, enable),
                Some(Cmd::CustomAudio(channel, enable)) => d.media.set_custom_audio(channel, enable),
                Some(Cmd::AudioConfig(channel, config)) => d.media.set_audio_config(channel, config),
                Some(Cmd::Preview(channel, on)) => d.media.set_preview(channel, on),
                Some(Cmd::Devices) => d.media.apply_devices(),
                Some(Cmd::Destroy(ack)) => {
                    d.shutdown().await;
                    let _ = ack.send(());
                    return;
                }
                None => {
                    d.shutdown().await;
                    return;
                }
            },
            res = async { match d.connecting.as_mut() { Some(c) => c.await, None => std::future::pending().await } }, if d.connecting.is_some() => {
                d.connecting = None;
                match res {
                    Ok(ws) => {
                        d.local_ip = match ws.get_ref() {
                            MaybeTlsStream::Plain(tcp) => tcp.local_addr().ok().map(|a| a.ip()),
                            _ => None,
                        };
                        let (sink, source) = ws.split();
                        d.sink = Some(sink);
                        d.source = Some(source);
                        d.session.handle_connected(Instant::now());
                    }
                    Err(e) => {
                        tracing::debug!("connect to {} failed: {e}", d.url);
                        d.session.handle_disconnected(Instant::now());
                    }
                }
            }
            msg = async { match d.source.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } }, if d.source.is_some() => {
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        tracing::trace!("recv {:.120}", text.as_str());
                        match serde_json::from_str(text.as_str()) {
                            Ok(msg) => d.session.handle_server(Instant::now(), msg),
                            Err(e) => tracing::warn!("ignoring a server frame that does not parse: {e}"),
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        tracing::debug!("signaling connection lost: {msg:?}");
                        d.lost();
                    }
                    Some(Ok(_)) => {}
                }
            }
            r = async { match &udp { Some(u) => u.recv_from(&mut buf).await, None => std::future::pending().await } } => {
                if let Ok((n, from)) = r {
                    d.media.receive(from, buf.get(..n).unwrap_or_default(), Instant::now());
                }
            }
            Some(frame) = encoded_rx.recv() => {
                d.media.write(frame);
                // Take what else is ready without going round the loop for each frame.
                while let Ok(frame) = encoded_rx.try_recv() {
                    d.media.write(frame);
                }
            }
            Some(stream) = keyframe_rx.recv() => d.media.request_keyframe(&stream),
            _ = sleep => {
                let now = Instant::now();
                d.session.handle_timeout(now);
                d.media.timeout(now);
            }
        }
    }
}

impl Driver {
    /// Carries out the session's and the media peer's outputs until both are idle; returns the
    /// session's next deadline.
    async fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.session.poll_output() {
                Output::Media(cmd) => {
                    self.media.command(cmd);
                    if self.media.needs_peer() {
                        self.open_media_socket().await;
                    }
                }
                Output::MediaAnswer(answer) => self.media.on_answer(answer),
                Output::MediaReset => {
                    self.media.reset();
                    self.udp = None;
                }
                Output::Disconnect => self.lost(),
                Output::Connect => {
                    let url = self.url.clone();
                    self.connecting = Some(Box::pin(async move {
                        match tokio::time::timeout(
                            CONNECT_TIMEOUT,
                            tokio_tungstenite::connect_async(url),
                        )
                        .await
                        {
                            Ok(Ok((ws, _))) => Ok(ws),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("timed out".into()),
                        }
                    }));
                }
                Output::Transmit(frame) => {
                    let text = match serde_json::to_string(&frame) {
                        Ok(t) => t,
                        Err(_) => continue,
                    };
                    tracing::trace!("send {text:.120}");
                    let sent = match &mut self.sink {
                        Some(sink) => sink.send(Message::text(text)).await.is_ok(),
                        None => false,
                    };
                    if !sent {
                        self.lost();
                    }
                }
                Output::Event(ev) => {
                    let _ = self.events.send(EngineEvent::Session(ev));
                }
                Output::Idle(deadline) => {
                    let now = Instant::now();
                    if let Some(offer) = self.media.negotiate(now) {
                        self.session
                            .send_media_offer(offer.sdp, offer.tracks, offer.fresh);
                        continue;
                    }
                    let mut out = Vec::new();
                    let first_media = self.media.poll(now, &mut out);
                    for stream_id in &first_media {
                        self.session.handle_media_received(now, stream_id);
                    }
                    let touched = !first_media.is_empty();
                    if let Some(udp) = &self.udp {
                        for t in out {
                            let _ = udp.send_to(&t.contents, t.destination).await;
                        }
                    }
                    if touched {
                        continue;
                    }
                    return deadline;
                }
            }
        }
    }

    /// Binds the media UDP socket on the signaling connection's local IP.
    async fn open_media_socket(&mut self) {
        let ip = self.local_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
            Ok(sock) => match sock.local_addr() {
                Ok(local) => {
                    self.media.ensure_peer(local, Instant::now());
                    self.udp = Some(Arc::new(sock));
                }
                Err(e) => tracing::warn!("media socket: {e}"),
            },
            Err(e) => tracing::warn!("cannot bind a media socket on {ip}: {e}"),
        }
    }

    /// The signaling connection is gone. The media peer stays: the server keeps the session
    /// (and its media peer) for a while, and a resumed session goes on with it. The session
    /// says when it must go ([`Output::MediaReset`]).
    fn lost(&mut self) {
        self.sink = None;
        self.source = None;
        self.connecting = None;
        self.session.handle_disconnected(Instant::now());
    }

    /// Destroy: the session logs out of every room; those frames are flushed before closing.
    async fn shutdown(&mut self) {
        self.media.reset();
        self.udp = None;
        self.session.destroy();
        loop {
            match self.session.poll_output() {
                Output::Transmit(frame) => {
                    if let (Some(sink), Ok(text)) = (&mut self.sink, serde_json::to_string(&frame))
                    {
                        let _ = sink.send(Message::text(text)).await;
                    }
                }
                Output::Idle(_) => break,
                Output::Connect
                | Output::Event(_)
                | Output::Media(_)
                | Output::MediaAnswer(_)
                | Output::MediaReset
                | Output::Disconnect => {}
            }
        }
        if let Some(mut sink) = self.sink.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        }
        self.source = None;
    }
}
