//! The engine's driver: one tokio task per engine that owns the sans-IO session and the media,
//! and does their I/O.
//!
//! Loop: drain the session's and the media's outputs until both are idle ([`Driver::drain`]),
//! then wait for the next thing that concerns them ([`Driver::wait`]): an API call, the
//! connection attempt, a server frame, a datagram, an encoded frame or a keyframe request or
//! an event of the codec threads, or the next deadline; hand it over ([`Driver::on_wake`]).
//! Signaling frames go to the socket through their own writer task and bounded queue, so a
//! slow socket never holds up the media (RTCP, retransmissions) behind a write.

use crate::media::{Inbox, Media};
use crate::{Cmd, EngineConfig, EngineEvent};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zrooms_session::{Output, Session};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Connecting = Pin<Box<dyn Future<Output = Result<Ws, ConnectError>> + Send>>;

/// How long the first step of a connection attempt, reaching the server's port, may take. It
/// costs the server nothing (no byte reaches its application), so while the network is down
/// the session probes every half second (see `SessionConfig::reconnect_probe_interval`); two
/// seconds cover Linux's first SYN retransmission (at one second).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the WebSocket handshake may then take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Signaling frames waiting for the socket. A server that lets this many pile up is not
/// reading: the connection counts as lost (the session reconnects and resumes).
pub const SIGNAL_QUEUE: usize = 256;
/// How long a destroy may take to say goodbye: its last frames (the logouts) leave, the close
/// frame goes, and the server's replies and close are read, before the socket is dropped.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a connection attempt failed.
pub(crate) enum ConnectError {
    /// The server's port was not reached (refused, no route, no answer): the network is down
    /// or the server is gone. Retried at the probe interval.
    Unreachable(String),
    /// Reached, but the handshake failed: retried with the growing backoff.
    Failed(String),
}

pub(crate) struct Driver {
    session: Session,
    url: String,
    /// The TLS client of a `wss://` server (built once, when the engine starts).
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    pub events: mpsc::UnboundedSender<EngineEvent>,
    /// Frames for the signaling socket's writer task.
    sink: Option<mpsc::Sender<Message>>,
    writer: Option<JoinHandle<()>>,
    source: Option<SplitStream<Ws>>,
    connecting: Option<Connecting>,
    /// The local IP of the signaling connection: the address that routes to the server, and
    /// so the media host candidate.
    local_ip: Option<IpAddr>,
    media: Media,
    udp: Option<Arc<UdpSocket>>,
    /// Changes of the machine's network (links, addresses, routes), from the OS.
    network: tokio::sync::watch::Receiver<u64>,
}

/// What woke the driver.
enum Wake {
    Cmd(Option<Cmd>),
    Connected(Result<Box<Ws>, ConnectError>),
    Server(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Datagram(SocketAddr, usize),
    Encoded(crate::media::pipeline::Encoded),
    KeyframeWanted(String),
    ThreadEvent(EngineEvent),
    NetworkChanged,
    Deadline,
    /// The media socket's read failed (an ICMP error, say): nothing to do.
    Nothing,
}

pub(crate) async fn drive(
    config: EngineConfig,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<EngineEvent>,
    media: (Media, Inbox),
) {
    let (media, mut inbox) = media;
    let mut d = Driver {
        session: Session::new(config.session),
        url: config.server_url,
        tls: config.tls,
        media,
        events,
        sink: None,
        writer: None,
        source: None,
        connecting: None,
        local_ip: None,
        udp: None,
        network: crate::netwatch::subscribe(),
    };
    let mut buf = vec![0u8; 2048];
    loop {
        let wake = d.wait(&mut cmds, &mut inbox, &mut buf).await;
        if !d.on_wake(wake, &mut inbox, &buf).await {
            return;
        }
    }
}

impl Driver {
    /// Drains the outputs, then waits for the next input.
    async fn wait(
        &mut self,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
        inbox: &mut Inbox,
        buf: &mut [u8],
    ) -> Wake {
        let deadline = self.drain().await;
        let deadline = match (deadline, self.media.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let udp = self.udp.clone();
        let connecting = self.connecting.is_some();
        let reading = self.source.is_some();
        tokio::select! {
            cmd = cmds.recv() => Wake::Cmd(cmd),
            res = pending_or(self.connecting.as_mut()), if connecting => Wake::Connected(res.map(Box::new)),
            msg = next_frame(self.source.as_mut()), if reading => Wake::Server(msg),
            r = recv_datagram(udp.as_deref(), buf) => match r {
                Some((n, from)) => Wake::Datagram(from, n),
                None => Wake::Nothing,
            },
            Some(frame) = inbox.encoded.recv() => Wake::Encoded(frame),
            Some(stream) = inbox.keyframes.recv() => Wake::KeyframeWanted(stream),
            // The codec threads' events join the engine's one ordered stream here.
            Some(ev) = inbox.notices.recv() => Wake::ThreadEvent(ev),
            Some(ev) = inbox.frames.recv() => Wake::ThreadEvent(ev),
            Ok(()) = self.network.changed() => Wake::NetworkChanged,
            _ = sleep_until(deadline) => Wake::Deadline,
        }
    }

    /// Hands one input to the session or the media; false when the driver is done.
    async fn on_wake(&mut self, wake: Wake, inbox: &mut Inbox, buf: &[u8]) -> bool {
        let now = Instant::now();
        match wake {
            Wake::Cmd(Some(cmd)) => return self.command(cmd).await,
            Wake::Cmd(None) => {
                self.shutdown().await;
                return false;
            }
            Wake::Connected(res) => self.connected(res),
            Wake::Server(msg) => self.server_frame(msg),
            Wake::Datagram(from, n) => {
                self.media
                    .receive(from, buf.get(..n).unwrap_or_default(), now);
            }
            Wake::Encoded(frame) => {
                self.media.write(frame);
                // Take what else is ready without going round the loop for each frame.
                while let Some(frame) = inbox.encoded.try_recv() {
                    self.media.write(frame);
                }
            }
            Wake::KeyframeWanted(stream) => self.media.request_keyframe(&stream),
            Wake::ThreadEvent(ev) => {
                let _ = self.events.send(ev);
            }
            Wake::NetworkChanged => self.session.handle_network_changed(now),
            Wake::Deadline => {
                self.session.handle_timeout(now);
                self.media.timeout(now);
            }
            Wake::Nothing => {}
        }
        true
    }

    /// An API call or a media setting; false after destroy.
    async fn command(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Api(op, cmd) => self.session.handle_command(Instant::now(), op, cmd),
            Cmd::VideoConfig(channel, config) => self.media.set_video_config(channel, config),
            Cmd::CustomVideo(channel, enable) => self.media.set_custom_video(channel, enable),
            Cmd::CustomAudio(channel, enable) => self.media.set_custom_audio(channel, enable),
            Cmd::AudioConfig(channel, config) => self.media.set_audio_config(channel, config),
            Cmd::Preview(channel, on) => self.media.set_preview(channel, on),
            Cmd::Devices(ack) => {
                self.media.apply_devices();
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            Cmd::Fail => panic!("the engine's driver was asked to fail"),
            Cmd::Destroy(ack) => {
                self.shutdown().await;
                let _ = ack.send(());
                return false;
            }
        }
        true
    }

    fn connected(&mut self, res: Result<Box<Ws>, ConnectError>) {
        self.connecting = None;
        match res {
            Ok(ws) => {
                self.local_ip = match ws.get_ref() {
                    MaybeTlsStream::Plain(tcp) => tcp.local_addr().ok().map(|a| a.ip()),
                    _ => None,
                };
                let (sink, source) = (*ws).split();
                let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
                self.writer = Some(tokio::spawn(write_signaling(sink, rx)));
                self.sink = Some(tx);
                self.source = Some(source);
                self.session.handle_connected(Instant::now());
            }
            Err(ConnectError::Unreachable(e)) => {
                tracing::debug!("{} not reachable: {e}", self.url);
                self.session.handle_unreachable(Instant::now());
            }
            Err(ConnectError::Failed(e)) => {
                tracing::debug!("connect to {} failed: {e}", self.url);
                self.session.handle_disconnected(Instant::now());
            }
        }
    }

    fn server_frame(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) {
        match msg {
            Some(Ok(Message::Text(text))) => {
                tracing::trace!("recv {:.120}", text.as_str());
                match serde_json::from_str(text.as_str()) {
                    Ok(msg) => self.session.handle_server(Instant::now(), msg),
                    Err(e) => tracing::warn!("ignoring a server frame that does not parse: {e}"),
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                tracing::debug!("signaling connection lost: {msg:?}");
                self.lost();
            }
            Some(Ok(_)) => {}
        }
    }

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
                Output::Connect => self.connect(),
                Output::Transmit(frame) => self.transmit(&frame),
                Output::Event(ev) => {
                    let _ = self.events.send(EngineEvent::Session(ev));
                }
                Output::Idle(deadline) => {
                    if self.media_outputs().await {
                        continue;
                    }
                    return deadline;
                }
            }
        }
    }

    /// The media's offer and datagrams; true when the session was given something (its
    /// outputs must be drained again).
    async fn media_outputs(&mut self) -> bool {
        let now = Instant::now();
        if let Some(offer) = self.media.negotiate(now) {
            self.session
                .send_media_offer(offer.sdp, offer.tracks, offer.fresh);
            return true;
        }
        let mut out = Vec::new();
        let first_media = self.media.poll(now, &mut out);
        for stream_id in &first_media {
            self.session.handle_media_received(now, stream_id);
        }
        if let Some(udp) = &self.udp {
            for t in out {
                let _ = udp.send_to(&t.contents, t.destination).await;
            }
        }
        !first_media.is_empty()
    }

    fn connect(&mut self) {
        let open = open_signaling(self.url.clone(), self.tls.clone());
        self.connecting = Some(Box::pin(open));
    }

    /// Queues a frame for the socket's writer; a full queue or a writer that stopped means the
    /// connection is gone.
    fn transmit(&mut self, frame: &zrooms_proto::wire::ClientFrame) {
        let Ok(text) = serde_json::to_string(frame) else {
            return;
        };
        tracing::trace!("send {text:.120}");
        let queued = match &self.sink {
            Some(tx) => tx.try_send(Message::text(text)).is_ok(),
            None => false,
        };
        if !queued {
            self.lost();
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
        // The socket goes without a close frame: a close frame tells the server the user left
        // (no grace period), and this is a link that broke, not a goodbye.
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
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
                    let text = serde_json::to_string(&frame);
                    if let (Some(tx), Ok(text)) = (&self.sink, text) {
                        let _ = tx.try_send(Message::text(text));
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
        // The writer sends what is queued, then the close frame.
        self.sink = None;
        let deadline = tokio::time::Instant::now() + FLUSH_TIMEOUT;
        if let Some(writer) = self.writer.take() {
            let _ = tokio::time::timeout_at(deadline, writer).await;
        }
        // The close handshake: read (the logouts' replies) until the server's close frame and
        // the end of the stream. A socket closed with unread bytes is reset by the kernel, and
        // the reset can discard the logout before the server reads it.
        if let Some(mut source) = self.source.take() {
            let drained = async { while let Some(Ok(_)) = source.next().await {} };
            let _ = tokio::time::timeout_at(deadline, drained).await;
        }
    }
}

/// Writes a connection's signaling frames until its queue closes or the socket fails, then
/// closes the socket.
async fn write_signaling(mut sink: SplitSink<Ws, Message>, mut frames: mpsc::Receiver<Message>) {
    while let Some(frame) = frames.recv().await {
        if let Err(e) = sink.send(frame).await {
            tracing::debug!("signaling write failed: {e}");
            return;
        }
    }
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, sink.close()).await;
}

/// Opens the signaling connection in two steps: reaching the server's port (cheap, and quick
/// to fail while the network is down), then the WebSocket handshake on that socket. Nagle's
/// algorithm is off: a request or a logout leaves at once, not after the previous one's ACK.
async fn open_signaling(
    url: String,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
) -> Result<Ws, ConnectError> {
    let request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Failed(e.to_string()))?;
    let uri = request.uri();
    let host = uri.host().unwrap_or_default();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let secure = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let reach = TcpStream::connect((host.as_str(), port));
    let tcp = match tokio::time::timeout(PROBE_TIMEOUT, reach).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(ConnectError::Unreachable(e.to_string())),
        Err(_) => return Err(ConnectError::Unreachable("no answer".into())),
    };
    let _ = tcp.set_nodelay(true);
    let stream = match secure {
        true => MaybeTlsStream::Rustls(tls_handshake(tcp, &host, tls).await?),
        false => MaybeTlsStream::Plain(tcp),
    };
    let handshake = tokio_tungstenite::client_async(request, stream);
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok((ws, _))) => Ok(ws),
        // The socket was reset or closed before any HTTP answer: nothing serves behind the
        // port (a server going down, a proxy without its backend). Probed like a refusal.
        Ok(Err(
            e @ (WsError::Io(_)
            | WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Protocol(ProtocolError::HandshakeIncomplete)),
        )) => Err(ConnectError::Unreachable(e.to_string())),
        // An answer that is not the upgrade (a 503, say): the server is there; back off.
        Ok(Err(e)) => Err(ConnectError::Failed(e.to_string())),
        Err(_) => Err(ConnectError::Failed("timed out".into())),
    }
}

/// TLS over `tcp` for a `wss://` server named `host` (its certificate must name it and chain
/// to a trusted root). A refused certificate is a failure that backs off, not an unreachable
/// server.
async fn tls_handshake(
    tcp: TcpStream,
    host: &str,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
    let config = match tls {
        Some(c) => c,
        None => crate::tls::client_config(None).map_err(ConnectError::Failed)?,
    };
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| ConnectError::Failed(format!("TLS server name {host:?}: {e}")))?;
    let connect = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(ConnectError::Failed(format!("TLS: {e}"))),
        Err(_) => Err(ConnectError::Failed("TLS: timed out".into())),
    }
}

async fn pending_or<F: Future + Unpin>(f: Option<&mut F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn next_frame(
    source: Option<&mut SplitStream<Ws>>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match source {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// A datagram into `buf`: its length and source; `None` for a read error.
async fn recv_datagram(udp: Option<&UdpSocket>, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match udp {
        Some(u) => u.recv_from(buf).await.ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
