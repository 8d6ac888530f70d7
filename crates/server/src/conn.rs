//! One task per WebSocket connection: reads requests, applies them to the shared state, and
//! leaves every room when the socket goes away.
//!
//! Loop: `select!` over the next inbound frame, the server's shutdown signal, and the "stuck"
//! flag raised when this connection's outbound queue overflows. A separate writer task drains
//! the outbound queue into the socket, so a slow reader only ever fills its own queue.

use crate::config::ExpireAction;
use crate::limits::Bucket;
use crate::metrics::Metrics;
use crate::resume::{self, Attach, Handoff, Replay, WsSink, WsSource};
use crate::sfu::SfuCmd;
use crate::state::{lock, App, ConnId, Flag, Outbound, PublishedStream, RoomState};
use crate::{web, Shared};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use zrooms_proto::wire::{
    BarrageMessage, BroadcastMessage, ClientFrame, DeleteReason, LoginConfig, ReplyBody, Request,
    Resume, RoomExtraInfo, ServerMsg, StreamInfo, TrackDirection, TrackSpec, UpdateType,
    PROTOCOL_VERSION,
};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User, UserId};
use zrooms_token::Privileges;

/// `roomTokenWillExpire` goes out this long before a room's token expires (ZEGO: 30 s).
const TOKEN_WARNING_S: i64 = 30;
/// Members listed in a login's snapshot, at most (ZEGO's user list is not complete past 500
/// either): with 10,000 members the reply would otherwise be half a megabyte per login.
pub(crate) const LOGIN_SNAPSHOT_USERS: usize = 500;

type Res<T> = Result<T, ErrorCode>;

/// What the connection knows about itself; the rooms hold the shared truth.
struct Conn {
    id: ConnId,
    out: Outbound,
    shared: Arc<Shared>,
    /// The peer's address (failed token logins are counted per address).
    ip: IpAddr,
    /// The connection has logged into a room once: it no longer counts as pending.
    logged_in_once: bool,
    /// A media offer of this connection waits for the SFU's answer (one at a time).
    offer_in_flight: Arc<AtomicBool>,
    app: Option<Arc<App>>,
    user: Option<User>,
    rooms: HashMap<RoomId, Arc<crate::state::Room>>,
    /// Streams this connection plays, and through which room.
    playing: HashMap<StreamId, RoomId>,
    /// The hello carried the app's appSign.
    signed: bool,
    /// What each logged-in room's token (or appSign) allows.
    grants: HashMap<RoomId, Grant>,
    /// Requests of any kind from this connection.
    requests: Bucket,
    /// Presented with the session id to resume this session after a drop.
    resume_key: String,
    /// The session's unacknowledged frames (none in the fuzzing harness).
    replay: Option<Arc<std::sync::Mutex<Replay>>>,
    /// The highest request id processed: a resumed engine sends again what it had in flight,
    /// and what was already done is skipped (its reply is among the replayed frames).
    last_request: u64,
}

/// The authority a room was logged into with.
struct Grant {
    privileges: Privileges,
    /// Unix seconds; `None` for appSign or open apps.
    expire_s: Option<i64>,
    /// `TokenWillExpire` was sent for this token.
    warned: bool,
}

impl Grant {
    fn unlimited() -> Self {
        Grant {
            privileges: Privileges::ALL,
            expire_s: None,
            warned: false,
        }
    }

    fn expired(&self, now_s: i64) -> bool {
        self.expire_s.is_some_and(|e| e <= now_s)
    }
}
pub(crate) async fn serve(
    stream: TcpStream,
    ip: IpAddr,
    id: ConnId,
    shed: Arc<Flag>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let accepted = tokio::time::Instant::now();
    // Until its hello is answered a connection may be shed at any await (nothing is registered
    // for it yet); after, the session loop watches the flag until the first login.
    let opened = tokio::select! {
        o = open(stream, ip, &shared) => o,
        _ = shed.wait() => None,
    };
    let Some((sink, source, first)) = opened else {
        return;
    };
    let (sink, source) = match resume_hello(first.as_str()) {
        Some((hello_id, app_id, resume)) => {
            match resume::handoff(&shared, app_id, &resume, hello_id, sink, source) {
                Ok(()) => return,
                // Not resumable: the hello starts a new session.
                Err(socket) => socket,
            }
        }
        None => (sink, source),
    };
    let start = Start {
        id,
        ip,
        shed,
        login_deadline: accepted + shared.config.login_timeout,
    };
    run_session(shared, start, sink, source, first.as_str(), &mut shutdown).await;
}

/// The request head, the WebSocket handshake and the first text frame (the hello), each within
/// the hello timeout. Plain requests are answered and end here.
async fn open(
    mut stream: TcpStream,
    ip: IpAddr,
    shared: &Shared,
) -> Option<(WsSink, WsSource, tokio_tungstenite::tungstenite::Utf8Bytes)> {
    // Small buffers: tungstenite's defaults (128 KiB to read, 128 KiB gathered before a write)
    // cost about 130 KB of resident memory a connection, 1.3 GB for 10,000 users
    // (bench/RESULTS.md); ours are messages of a few hundred bytes, written at once.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(shared.config.max_message_bytes))
        .max_frame_size(Some(shared.config.max_message_bytes));
    // A peer that connects and then says nothing holds a task and a connection slot: it gets
    // `hello_timeout` for the handshake, and as long again for its hello.
    let hello_deadline = tokio::time::Instant::now() + shared.config.hello_timeout;
    // The same port serves the browser client's files (web.rs); only upgrades go on.
    let read = tokio::time::timeout_at(hello_deadline, web::read_head(&mut stream)).await;
    let prefix = match read {
        Ok(Some((web::Head::Upgrade { origin }, bytes))) => {
            if !web::origin_allowed(origin.as_deref(), &shared.config.allowed_origins) {
                Metrics::inc(&shared.metrics.refused_origin);
                tracing::debug!(?origin, "origin not allowed: refused");
                web::refuse(stream).await;
                return None;
            }
            bytes
        }
        Ok(Some((web::Head::Plain { method, path, .. }, _))) => {
            let metrics = ip.is_loopback().then(|| shared.render_metrics());
            let _ = tokio::time::timeout_at(
                hello_deadline,
                web::serve_plain(stream, &method, &path, metrics),
            )
            .await;
            return None;
        }
        Ok(None) | Err(_) => return None,
    };
    let handshake = tokio_tungstenite::accept_async_with_config(
        web::Prefixed::new(prefix, stream),
        Some(ws_config),
    );
    let ws = match tokio::time::timeout_at(hello_deadline, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!("handshake failed: {e}");
            return None;
        }
        Err(_) => {
            tracing::debug!("no handshake in time: closed");
            return None;
        }
    };
    let hello_deadline = tokio::time::Instant::now() + shared.config.hello_timeout;
    let (sink, mut source) = ws.split();
    // The first frame is the hello. One that resumes a parked session hands the socket over.
    loop {
        match tokio::time::timeout_at(hello_deadline, source.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some((sink, source, text)),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
            _ => return None,
        }
    }
}

/// What a new session starts from.
struct Start {
    id: ConnId,
    ip: IpAddr,
    /// Raised to close the connection while it has not logged in (budget or descriptors).
    shed: Arc<Flag>,
    /// A connection that has not logged into a room by then is closed.
    login_deadline: tokio::time::Instant,
}

/// The request id, app and resume of a hello that asks to resume.
fn resume_hello(text: &str) -> Option<(u64, u32, Resume)> {
    let frame: ClientFrame = serde_json::from_str(text).ok()?;
    match frame.req {
        Request::Hello {
            app_id,
            resume: Some(resume),
            ..
        } => Some((frame.id, app_id, resume)),
        _ => None,
    }
}

/// Why a session's connection is no longer read.
enum Lost {
    /// Closed by the peer, broken, or silent past the heartbeat timeout: park if possible.
    Dropped,
    /// Ended on purpose (protocol violation, stuck reader, shutdown): the session ends.
    Ended,
}

async fn run_session(
    shared: Arc<Shared>,
    start: Start,
    sink: WsSink,
    source: WsSource,
    hello: &str,
    shutdown: &mut watch::Receiver<bool>,
) {
    let id = start.id;
    let (out, rx, stuck) = Outbound::new(id, shared.config.outbound_queue);
    let replay = Arc::new(std::sync::Mutex::new(Replay::new(
        shared.config.replay_window,
        shared.config.replay_window_bytes,
    )));
    let (attach_tx, attach_rx) = mpsc::channel::<Attach>(1);
    let (handoff_tx, mut handoff_rx) = mpsc::channel::<Handoff>(1);
    let writer = tokio::spawn(resume::writer(rx, replay.clone(), attach_rx, Some(sink)));
    let mut conn = Conn::new(id, out, shared.clone(), start.ip);
    conn.replay = Some(replay.clone());
    let hello_ok = conn.on_text(hello) && conn.app.is_some();
    let session_id = id.to_string();
    if hello_ok {
        if let Some(app) = &conn.app {
            lock(&shared.sessions).insert(
                session_id.clone(),
                resume::Entry {
                    key: conn.resume_key.clone(),
                    app_id: app.config.app_id,
                    replay: replay.clone(),
                    handoff: handoff_tx,
                },
            );
        }
    }
    let heartbeat = shared.config.heartbeat_timeout;
    let grace = shared.config.reconnect_grace;
    let mut source = hello_ok.then_some(source);
    let mut last_rx = tokio::time::Instant::now();
    let mut grace_until: Option<tokio::time::Instant> = None;
    // A refused hello ends the connection at once (its reply is already queued).
    loop {
        if !hello_ok {
            break;
        }
        let token_deadline = conn.token_deadline();
        let lost = tokio::select! {
            msg = async { match source.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } }, if source.is_some() => {
                last_rx = tokio::time::Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        tracing::trace!(conn = id, "recv {:.120}", text.as_str());
                        if conn.on_text(text.as_str()) { None } else { Some(Lost::Ended) }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => None,
                    // Binary frames are not part of the protocol.
                    Some(Ok(Message::Binary(_))) => Some(Lost::Ended),
                    Some(Ok(Message::Close(_))) | None => Some(Lost::Dropped),
                    // The socket broke: the engine may come back.
                    Some(Err(
                        WsError::Io(_)
                        | WsError::ConnectionClosed
                        | WsError::AlreadyClosed
                        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                    )) => Some(Lost::Dropped),
                    // A frame over the size limit, bad framing or bad UTF-8: the connection
                    // cannot go on (the socket is closed, so the engine sees it at once).
                    Some(Err(e)) => {
                        tracing::debug!(conn = id, "protocol violation: {e}");
                        Some(Lost::Ended)
                    }
                }
            }
            _ = tokio::time::sleep_until(last_rx + heartbeat), if source.is_some() => {
                tracing::debug!(conn = id, "no heartbeat: connection dead");
                Some(Lost::Dropped)
            }
            h = handoff_rx.recv() => {
                if let Some(h) = h {
                    tracing::debug!(conn = id, "session resumed on a new connection");
                    let hello = crate::state::encode(&ServerMsg::Reply {
                        id: h.id,
                        code: ErrorCode::SUCCESS,
                        body: Some(conn.hello_body(true)),
                    });
                    source = Some(h.source);
                    grace_until = None;
                    last_rx = tokio::time::Instant::now();
                    let _ = attach_tx.send(Attach { sink: h.sink, hello, received: h.received }).await;
                }
                None
            }
            _ = async { match grace_until { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } }, if grace_until.is_some() => {
                tracing::debug!(conn = id, "not resumed within the grace period");
                Some(Lost::Ended)
            }
            _ = sleep_until(token_deadline) => { conn.token_timer(); None }
            _ = start.shed.wait(), if !conn.logged_in_once => {
                tracing::debug!(conn = id, "shed: had not logged in, and room was needed");
                Some(Lost::Ended)
            }
            _ = tokio::time::sleep_until(start.login_deadline), if !conn.logged_in_once => {
                tracing::debug!(conn = id, "no login in time: closed");
                Metrics::inc(&shared.metrics.login_timeouts);
                Some(Lost::Ended)
            }
            _ = stuck.wait() => {
                tracing::warn!(conn = id, "outbound queue full: closing a connection that does not read");
                Some(Lost::Ended)
            }
            _ = shutdown.changed() => Some(Lost::Ended),
        };
        match lost {
            None => {}
            Some(Lost::Dropped) if !grace.is_zero() && !conn.rooms.is_empty() => {
                // Keep the rooms and streams for the engine to come back.
                source = None;
                grace_until = Some(tokio::time::Instant::now() + grace);
            }
            Some(_) => break,
        }
    }
    lock(&shared.sessions).remove(&session_id);
    conn.close();
    drop(attach_tx);
    // Dropping the last sender (in close) ends the writer once it has flushed what is queued.
    let _ = writer.await;
}

/// Runs text frames through connections of an in-memory server (no sockets), for the fuzz
/// targets: each frame goes to connection `i % conns`, which says hello to app 1 first unless
/// the frame is a hello itself; a frame that would close its connection closes it and a new
/// one takes its place. Returns how many frames were queued to the peers.
pub(crate) fn run_frames(shared: &Arc<Shared>, conns: usize, frames: &[&str]) -> usize {
    let hello = r#"{"id":0,"type":"hello","version":1,"app_id":1}"#;
    let open = |receivers: &mut Vec<tokio::sync::mpsc::Receiver<_>>| {
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let (out, rx, _stuck) = Outbound::new(id, shared.config.outbound_queue);
        receivers.push(rx);
        Conn::new(id, out, shared.clone(), IpAddr::from([127, 0, 0, 1]))
    };
    let mut receivers = Vec::new();
    let mut live: Vec<Conn> = (0..conns.max(1)).map(|_| open(&mut receivers)).collect();
    for (i, frame) in frames.iter().enumerate() {
        let k = i % live.len();
        if live[k].app.is_none() && !frame.contains("hello") && !live[k].on_text(hello) {
            continue;
        }
        if !live[k].on_text(frame) {
            let fresh = open(&mut receivers);
            std::mem::replace(&mut live[k], fresh).close();
        }
        if live[k].token_deadline().is_some() {
            live[k].token_timer();
        }
    }
    for c in live {
        c.close();
    }
    receivers
        .iter_mut()
        .map(|rx| std::iter::from_fn(|| rx.try_recv().ok()).count())
        .sum()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn now_s() -> i64 {
    (now_ms() / 1000) as i64
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The `id` of a frame that failed to parse, so the error can still be answered.
fn frame_id(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: u64,
    }
    serde_json::from_str::<IdOnly>(text).ok().map(|f| f.id)
}

impl Conn {
    fn new(id: ConnId, out: Outbound, shared: Arc<Shared>, ip: IpAddr) -> Self {
        Conn {
            id,
            out,
            shared,
            ip,
            logged_in_once: false,
            offer_in_flight: Arc::new(AtomicBool::new(false)),
            app: None,
            user: None,
            rooms: HashMap::new(),
            playing: HashMap::new(),
            signed: false,
            grants: HashMap::new(),
            requests: Bucket::default(),
            resume_key: resume::new_key(),
            replay: None,
            last_request: 0,
        }
    }

    /// The connection is gone: its user leaves every room and its media peer is dropped.
    fn close(mut self) {
        self.leave_all(DeleteReason::DISCONNECTED);
        self.shared.sfu.send(SfuCmd::Close { conn: self.id });
    }

    /// Handles one text frame; false closes the connection.
    fn on_text(&mut self, text: &str) -> bool {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(conn = self.id, "bad frame: {e}");
                return match frame_id(text) {
                    Some(id) => {
                        self.reply(id, ErrorCode::COMMON_ILLEGAL_PARAM, None);
                        true
                    }
                    None => false,
                };
            }
        };
        let id = frame.id;
        if let Request::Hello {
            version,
            app_id,
            app_sign,
            ..
        } = frame.req
        {
            return match self.hello(version, app_id, &app_sign) {
                Ok(body) => {
                    self.reply(id, ErrorCode::SUCCESS, Some(body));
                    true
                }
                Err(code) => {
                    self.reply(id, code, None);
                    false
                }
            };
        }
        let Some(app) = self.app.clone() else {
            self.reply(id, ErrorCode::COMMON_ENGINE_NOT_CREATE, None);
            return false;
        };
        // Sent again after a resume, and already done: skipped.
        if id <= self.last_request {
            tracing::debug!(
                conn = self.id,
                id,
                last = self.last_request,
                "request already done: skipped"
            );
            return true;
        }
        self.last_request = id;
        if !self
            .requests
            .take(app.config.limits.requests_per_connection, Instant::now())
        {
            self.reply(id, ErrorCode::ROOM_ERROR_SIGNALLING_FREQUENCY_LIMIT, None);
            return true;
        }
        // Requests that reply under a room lock (to order the reply with room events) return
        // `Ok(None)`; the others reply here.
        match self.request(&app, id, frame.req) {
            Ok(Some(body)) => self.reply(id, ErrorCode::SUCCESS, body),
            Ok(None) => {}
            Err(code) => self.reply(id, code, None),
        }
        true
    }

    fn reply(&self, id: u64, code: ErrorCode, body: Option<ReplyBody>) {
        self.out.send_msg(&ServerMsg::Reply { id, code, body });
    }

    fn hello(&mut self, version: u32, app_id: u32, app_sign: &str) -> Res<ReplyBody> {
        if self.app.is_some() || version != PROTOCOL_VERSION {
            return Err(ErrorCode::COMMON_ILLEGAL_PARAM);
        }
        let config = self
            .shared
            .config
            .app(app_id)
            .ok_or(ErrorCode::ENGINE_APP_ID_INCORRECT_OR_NOT_ONLINE)?;
        // No appSign is allowed (ZEGO 2.17+): the logins then need tokens.
        if let Some(sign) = &config.app_sign {
            if !app_sign.is_empty() {
                let given = app_sign.to_ascii_lowercase();
                if !crate::ct_eq(sign.to_ascii_lowercase().as_bytes(), given.as_bytes()) {
                    return Err(ErrorCode::ENGINE_APP_SIGN_INCORRECT);
                }
                self.signed = true;
            }
        }
        let app = {
            let mut apps = lock(&self.shared.apps);
            apps.entry(app_id)
                .or_insert_with(|| Arc::new(App::new(config)))
                .clone()
        };
        self.app = Some(app);
        Ok(self.hello_body(false))
    }

    fn hello_body(&self, resumed: bool) -> ReplyBody {
        ReplyBody::Hello {
            session_id: self.id.to_string(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            resume_key: self.resume_key.clone(),
            resumed,
        }
    }

    /// `Ok(Some(body))`: reply success with `body`; `Ok(None)`: already replied.
    fn request(&mut self, app: &Arc<App>, id: u64, req: Request) -> Res<Option<Option<ReplyBody>>> {
        match req {
            Request::Hello { .. } => Err(ErrorCode::COMMON_ILLEGAL_PARAM),
            Request::Ping { received } => {
                if let Some(replay) = &self.replay {
                    lock(replay).ack(received);
                }
                Ok(Some(None))
            }
            Request::MediaOffer { sdp, tracks, fresh } => {
                self.media_offer(app, id, sdp, tracks, fresh).map(|()| None)
            }
            Request::Login {
                room_id,
                user,
                config,
            } => self.login(app, id, room_id, user, config).map(|()| None),
            Request::Logout { room_id } => {
                self.leave(app, &room_id, DeleteReason::STOPPED);
                Ok(Some(None))
            }
            Request::RenewToken { room_id, token } => {
                self.member_room_checked(&room_id)?;
                self.renew_token(app, room_id, &token)?;
                Ok(Some(None))
            }
            Request::SetRoomExtraInfo {
                room_id,
                key,
                value,
            } => self
                .set_room_extra_info(app, id, room_id, key, value)
                .map(|()| None),
            Request::Publish {
                room_id,
                stream_id,
                extra_info,
            } => self
                .publish(app, id, room_id, stream_id, extra_info)
                .map(|()| None),
            Request::Unpublish { room_id, stream_id } => {
                self.unpublish(app, &room_id, &stream_id)?;
                Ok(Some(None))
            }
            Request::SetStreamExtraInfo {
                room_id,
                stream_id,
                extra_info,
            } => self
                .set_stream_extra_info(app, id, room_id, stream_id, extra_info)
                .map(|()| None),
            Request::Play { room_id, stream_id } => {
                self.member_room_checked(&room_id)?;
                app.add_player(&stream_id, &room_id, &self.out);
                let available = app.is_published(&stream_id);
                self.reply(id, ErrorCode::SUCCESS, Some(ReplyBody::Play { available }));
                if let Some((audio, video)) = app.stream_state(&stream_id) {
                    self.out.send_msg(&ServerMsg::StreamState {
                        room_id: room_id.clone(),
                        stream_id: stream_id.clone(),
                        audio,
                        video,
                    });
                }
                self.playing.insert(stream_id, room_id);
                Ok(None)
            }
            Request::SetStreamState {
                stream_id,
                audio,
                video,
                ..
            } => {
                if app.publisher_of(&stream_id) != Some(self.id) {
                    return Err(ErrorCode::PUBLISHER_FORBIDDEN);
                }
                app.set_stream_state(&stream_id, audio, video);
                Ok(Some(None))
            }
            Request::Unplay { stream_id, .. } => {
                if self.playing.remove(&stream_id).is_some() {
                    app.remove_player(&stream_id, self.id);
                    self.shared.sfu.send(SfuCmd::Unplay {
                        conn: self.id,
                        stream: stream_id,
                    });
                }
                Ok(Some(None))
            }
            Request::Broadcast { room_id, message } => {
                let limits = &app.config.limits;
                check_message(&message, limits.message_bytes)?;
                self.in_room(&room_id, |st, user, out| {
                    let RoomState { rates, members, .. } = &mut *st;
                    let member = members
                        .get_mut(&user.user_id)
                        .ok_or(ErrorCode::IM_INCONSISTENT_ROOM_ID)?;
                    if !Bucket::take_both(
                        (&mut rates.broadcast, limits.broadcast_per_room),
                        (&mut member.rates.broadcast, limits.broadcast_per_user),
                        Instant::now(),
                    ) {
                        return Err(ErrorCode::IM_BROADCAST_MESSAGE_QPS_OVERRATE);
                    }
                    let message_id = st.next_message_id;
                    st.next_message_id += 1;
                    let msg = BroadcastMessage {
                        message,
                        message_id,
                        send_time_ms: now_ms(),
                        from: user,
                    };
                    let push = ServerMsg::Broadcast {
                        room_id: room_id.clone(),
                        messages: vec![msg],
                    };
                    deliver(st, &push, out, id, ReplyBody::Broadcast { message_id });
                    Ok(())
                })?;
                Ok(None)
            }
            Request::Barrage { room_id, message } => {
                let limits = &app.config.limits;
                check_message(&message, limits.message_bytes)?;
                self.in_room(&room_id, |st, user, out| {
                    if !st
                        .rates
                        .barrage
                        .take(limits.barrage_per_room, Instant::now())
                    {
                        return Err(ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
                    }
                    let message_id = format!("{}-{}", st.session_id, st.next_barrage_id);
                    st.next_barrage_id += 1;
                    let msg = BarrageMessage {
                        message,
                        message_id: message_id.clone(),
                        send_time_ms: now_ms(),
                        from: user,
                    };
                    let push = ServerMsg::Barrage {
                        room_id: room_id.clone(),
                        messages: vec![msg],
                    };
                    deliver(st, &push, out, id, ReplyBody::Barrage { message_id });
                    Ok(())
                })?;
                Ok(None)
            }
            Request::CustomCommand {
                room_id,
                command,
                to,
            } => {
                let limits = &app.config.limits;
                check_message(&command, limits.message_bytes)?;
                if to.len() > limits.custom_command_recipients {
                    return Err(ErrorCode::IM_INPUT_PARAMS_LENGTH_LIMIT);
                }
                self.in_room(&room_id, |st, user, out| {
                    let rates = &mut st
                        .members
                        .get_mut(&user.user_id)
                        .ok_or(ErrorCode::IM_INCONSISTENT_ROOM_ID)?
                        .rates;
                    let allowed = if to.len() == 1 {
                        rates
                            .command_single
                            .take(limits.custom_command_single, Instant::now())
                    } else {
                        rates
                            .command_multi
                            .take(limits.custom_command_multi, Instant::now())
                    };
                    if !allowed {
                        return Err(ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
                    }
                    let msg = ServerMsg::CustomCommand {
                        room_id: room_id.clone(),
                        from: user,
                        command,
                    };
                    if to.is_empty() {
                        st.broadcast(&msg, Some(out.conn));
                    } else {
                        let frame = crate::state::encode(&msg);
                        let mut seen: HashSet<&UserId> = HashSet::with_capacity(to.len());
                        for target in &to {
                            if !seen.insert(target) {
                                continue;
                            }
                            if let Some(m) = st.members.get(target) {
                                if m.out.conn != out.conn {
                                    m.out.send(frame.clone());
                                }
                            }
                        }
                    }
                    out.send_msg(&ServerMsg::Reply {
                        id,
                        code: ErrorCode::SUCCESS,
                        body: None,
                    });
                    Ok(())
                })?;
                Ok(None)
            }
        }
    }

    /// Runs a room message (the sender must be a member) under the room's lock, so its
    /// delivery and its reply are ordered with everything else in the room.
    fn in_room(
        &self,
        room_id: &RoomId,
        f: impl FnOnce(&mut RoomState, User, &Outbound) -> Res<()>,
    ) -> Res<()> {
        let room = self.member_room(room_id)?;
        let user = self.user()?;
        let mut st = lock(&room.state);
        if !st.is_member(&user.user_id, self.id) {
            return Err(ErrorCode::IM_INCONSISTENT_ROOM_ID);
        }
        f(&mut st, user, &self.out)
    }

    /// A room this connection is a member of now, checked under the room's lock. A room it
    /// was kicked out of (its user logged in again elsewhere) is forgotten here: the connection
    /// loses every right in it at once (the kicker already removed its plays and streams).
    fn member_room_checked(&mut self, room_id: &RoomId) -> Res<Arc<crate::state::Room>> {
        let room = self.member_room(room_id)?;
        let user = self.user()?;
        if lock(&room.state).is_member(&user.user_id, self.id) {
            return Ok(room);
        }
        self.forget_room(room_id);
        Err(ErrorCode::COMMON_NOT_LOGIN_ROOM)
    }

    /// Drops what this connection knows of a room it no longer belongs to.
    fn forget_room(&mut self, room_id: &RoomId) {
        self.rooms.remove(room_id);
        self.grants.remove(room_id);
        self.playing.retain(|_, r| r != room_id);
        if self.rooms.is_empty() {
            self.user = None;
        }
    }

    fn user(&self) -> Res<User> {
        self.user.clone().ok_or(ErrorCode::COMMON_NOT_LOGIN_ROOM)
    }

    /// A room this connection has logged into (it may since have been kicked; callers check
    /// membership under the room lock).
    fn member_room(&self, room_id: &RoomId) -> Res<Arc<crate::state::Room>> {
        self.rooms
            .get(room_id)
            .cloned()
            .ok_or(ErrorCode::COMMON_NOT_LOGIN_ROOM)
    }

    fn login(
        &mut self,
        app: &Arc<App>,
        id: u64,
        room_id: RoomId,
        user: User,
        config: LoginConfig,
    ) -> Res<()> {
        let policy = &app.config;
        if config.multi_room && !policy.multi_room {
            return Err(ErrorCode::ROOM_ERROR_MULTI_ROOM_NOT_SUPPORT);
        }
        self.forget_kicked_rooms();
        if self.rooms.contains_key(&room_id) {
            return Err(ErrorCode::ROOM_COUNT_EXCEED);
        }
        if !config.multi_room && !self.rooms.is_empty() {
            return Err(ErrorCode::ROOM_COUNT_EXCEED);
        }
        if config.multi_room && self.rooms.len() >= policy.max_rooms_per_user as usize {
            return Err(ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_ROOM_COUNT);
        }
        if let Some(current) = &self.user {
            if !self.rooms.is_empty() && *current != user {
                return Err(ErrorCode::ROOM_MULTI_ROOM_USER_INFO_DIFFERENT);
            }
        }
        let grant = self.authorize(app, &user.user_id, &room_id, &config.token)?;
        let shared = self.shared.clone();
        let next_session = || shared.next_session.fetch_add(1, Ordering::Relaxed);
        let room = loop {
            let room = app.room(&room_id, next_session);
            if !lock(&room.state).closed {
                break room;
            }
        };
        let mut kicked_streams = Vec::new();
        {
            let mut st = lock(&room.state);
            let existing = st.members.get(&user.user_id).map(|m| m.out.clone());
            if existing.is_none() {
                let room_limit = if st.members.is_empty() {
                    config.max_member_count
                } else {
                    st.max_members
                };
                let limit = [room_limit, policy.max_members]
                    .into_iter()
                    .filter(|&n| n > 0)
                    .min();
                if limit.is_some_and(|n| st.members.len() >= n as usize) {
                    return Err(ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_MEMBER);
                }
            }
            // Only admissible logins count against the room's rate.
            if !st
                .rates
                .logins
                .take(policy.limits.logins_per_room, Instant::now())
            {
                return Err(ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
            }
            if st.members.is_empty() {
                st.max_members = config.max_member_count;
            }
            if let Some(old) = &existing {
                // The same userID logs in from another connection: the earlier one is kicked.
                old.send_msg(&ServerMsg::Kicked {
                    room_id: room_id.clone(),
                    code: ErrorCode::ROOM_KICKED_OUT,
                });
                kicked_streams = st.remove_streams_of(
                    &room_id,
                    &user.user_id,
                    old.conn,
                    DeleteReason::REPEATED_LOGIN,
                );
                for s in &kicked_streams {
                    app.release_stream(s, old.conn);
                    self.shared.sfu.send(SfuCmd::Unpublish {
                        conn: old.conn,
                        stream: s.clone(),
                    });
                }
                // The kicked connection plays nothing more through this room, at once.
                for s in app.revoke_player(old.conn, &room_id) {
                    self.shared.sfu.send(SfuCmd::Unplay {
                        conn: old.conn,
                        stream: s,
                    });
                }
            }
            st.members.insert(
                user.user_id.clone(),
                crate::state::Member {
                    user: user.clone(),
                    out: self.out.clone(),
                    notify: config.user_status_notify,
                    rates: Default::default(),
                },
            );
            let users: Vec<User> = st
                .members
                .values()
                .filter(|m| m.out.conn != self.id)
                .take(LOGIN_SNAPSHOT_USERS)
                .map(|m| m.user.clone())
                .collect();
            let streams: Vec<StreamInfo> = st.streams.values().map(|s| s.info.clone()).collect();
            let body = ReplyBody::Login {
                room_session_id: st.session_id.to_string(),
                users,
                streams,
                extra_info: st.extra_info.iter().cloned().collect(),
                online_count: st.members.len() as u32,
            };
            // From the login's answer on, the session's frames are kept for a resume.
            if let Some(replay) = &self.replay {
                lock(replay).keep();
            }
            // Replied under the lock, so no room event can overtake the login's answer.
            self.reply(id, ErrorCode::SUCCESS, Some(body));
            if existing.is_none() {
                st.broadcast_user_update(&room_id, UpdateType::Add, vec![user.clone()], self.id);
            }
        }
        for s in &kicked_streams {
            app.notify_players(s, Some(DeleteReason::REPEATED_LOGIN));
        }
        self.user = Some(user);
        self.grants.insert(room_id.clone(), grant);
        self.rooms.insert(room_id, room);
        if !self.logged_in_once {
            self.logged_in_once = true;
            self.shared.pending.remove(self.id);
        }
        Ok(())
    }

    /// Forgets every room this connection was kicked out of since it last looked.
    fn forget_kicked_rooms(&mut self) {
        let Some(user) = self.user.clone() else {
            return;
        };
        let gone: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, room)| !lock(&room.state).is_member(&user.user_id, self.id))
            .map(|(id, _)| id.clone())
            .collect();
        for room_id in gone {
            self.forget_room(&room_id);
        }
    }

    /// Who may log into `room_id`: an open app (no appSign, no secret) admits anyone; an engine
    /// that presented the appSign needs no token unless the app requires one; otherwise the
    /// token must verify with the app's secret and its privileges must allow this room.
    fn authorize(&self, app: &App, user_id: &UserId, room_id: &RoomId, token: &str) -> Res<Grant> {
        let policy = &app.config;
        let open = policy.app_sign.is_none() && policy.server_secret.is_none();
        let by_sign = open || (self.signed && !policy.require_token);
        if token.is_empty() {
            return if by_sign {
                Ok(Grant::unlimited())
            } else {
                Err(ErrorCode::ROOM_NO_TOKEN)
            };
        }
        let Some(secret) = &policy.server_secret else {
            // A token nobody here can check: what the appSign allows, or nothing.
            return if by_sign {
                Ok(Grant::unlimited())
            } else {
                Err(ErrorCode::ROOM_TOKEN_INNER_ERROR)
            };
        };
        // Failed tokens are throttled per address and per app: past the budget a token is not
        // even looked at, and the answer is the same as for a bad one.
        let now = Instant::now();
        let ip_rate = self.shared.config.auth_failures_per_ip;
        let app_rate = policy.auth_failures_per_app;
        let allowed = self.shared.auth_failures.allowed(self.ip, ip_rate, now)
            && lock(&app.auth_failures).ready(app_rate, now);
        if !allowed {
            Metrics::inc(&self.shared.metrics.auth_throttled);
            return Err(ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED);
        }
        let verified = zrooms_token::verify(
            token,
            secret.as_bytes(),
            policy.app_id,
            user_id.as_str(),
            now_s(),
            policy.token_check(),
        )
        .map_err(|e| {
            self.shared.auth_failures.failed(self.ip, ip_rate, now);
            lock(&app.auth_failures).take(app_rate, now);
            Metrics::inc(&self.shared.metrics.auth_failures);
            tracing::info!(
                app = policy.app_id,
                ip = %self.ip,
                reason = ?e,
                "token refused"
            );
            ErrorCode(e.code())
        })?;
        let privileges = if policy.privilege_check {
            verified.privileges
        } else {
            Privileges::ALL
        };
        let other_room = !privileges.room_id.is_empty() && privileges.room_id != room_id.as_str();
        if other_room || !privileges.login {
            return Err(ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED);
        }
        Ok(Grant {
            privileges,
            expire_s: Some(verified.claims.expire),
            warned: false,
        })
    }

    /// A new token for a logged-in room. Refused (and the old one kept) when it does not verify,
    /// or when it would not allow a stream this user is publishing there (1002082).
    fn renew_token(&mut self, app: &Arc<App>, room_id: RoomId, token: &str) -> Res<()> {
        let room = self.member_room(&room_id)?;
        let user = self.user()?;
        let grant = self.authorize(app, &user.user_id, &room_id, token)?;
        {
            let st = lock(&room.state);
            let denied = st.streams.iter().any(|(stream_id, s)| {
                s.conn == self.id && !grant.privileges.may_publish(stream_id.as_str())
            });
            if denied {
                return Err(ErrorCode::ROOM_RENEW_TOKEN_NO_PUBLISH_AUTH_ERROR);
            }
        }
        self.grants.insert(room_id, grant);
        Ok(())
    }

    /// When the connection must next look at its tokens: a warning or an expiry.
    fn token_deadline(&self) -> Option<tokio::time::Instant> {
        let kick = self
            .app
            .as_ref()
            .is_some_and(|a| a.config.token_expire_action == ExpireAction::Kick);
        let next_s = self
            .grants
            .values()
            .filter_map(|g| {
                let expire = g.expire_s?;
                if !g.warned {
                    Some(expire - TOKEN_WARNING_S)
                } else if kick {
                    Some(expire)
                } else {
                    None
                }
            })
            .min()?;
        let wait_ms = next_s
            .saturating_mul(1000)
            .saturating_sub(now_ms() as i64)
            .clamp(0, 24 * 3600 * 1000) as u64;
        Some(tokio::time::Instant::now() + Duration::from_millis(wait_ms))
    }

    /// Sends due `TokenWillExpire` warnings, and kicks out of rooms whose token expired (when
    /// the app chose to).
    fn token_timer(&mut self) {
        let Some(app) = self.app.clone() else {
            return;
        };
        self.forget_kicked_rooms();
        let now = now_s();
        let mut expired = Vec::new();
        for (room_id, g) in &mut self.grants {
            let Some(expire) = g.expire_s else {
                continue;
            };
            if !g.warned && now >= expire - TOKEN_WARNING_S {
                g.warned = true;
                self.out.send_msg(&ServerMsg::TokenWillExpire {
                    room_id: room_id.clone(),
                    remain_s: (expire - now).max(0) as u32,
                });
            }
            if now >= expire && app.config.token_expire_action == ExpireAction::Kick {
                expired.push(room_id.clone());
            }
        }
        for room_id in expired {
            tracing::debug!(conn = self.id, room = %room_id, "token expired: kicked out");
            self.out.send_msg(&ServerMsg::Kicked {
                room_id: room_id.clone(),
                code: ErrorCode::ROOM_TOKEN_EXPIRED_KICKED_OUT,
            });
            self.leave(&app, &room_id, DeleteReason::KICKED_OUT);
        }
    }

    /// Leaves one room: its streams go with `reason`, the others are told.
    fn leave(&mut self, app: &Arc<App>, room_id: &RoomId, reason: DeleteReason) {
        self.grants.remove(room_id);
        let Some(room) = self.rooms.remove(room_id) else {
            return;
        };
        let Some(user) = self.user.clone() else {
            return;
        };
        let gone = {
            let mut st = lock(&room.state);
            if st.is_member(&user.user_id, self.id) {
                let gone = st.remove_streams_of(room_id, &user.user_id, self.id, reason);
                st.members.remove(&user.user_id);
                st.broadcast_user_update(room_id, UpdateType::Delete, vec![user], self.id);
                gone
            } else {
                Vec::new()
            }
        };
        for s in &gone {
            app.release_stream(s, self.id);
            app.notify_players(s, Some(reason));
            self.shared.sfu.send(SfuCmd::Unpublish {
                conn: self.id,
                stream: s.clone(),
            });
        }
        let players: Vec<StreamId> = self
            .playing
            .iter()
            .filter(|(_, r)| *r == room_id)
            .map(|(s, _)| s.clone())
            .collect();
        for s in players {
            self.playing.remove(&s);
            app.remove_player(&s, self.id);
            self.shared.sfu.send(SfuCmd::Unplay {
                conn: self.id,
                stream: s,
            });
        }
        app.drop_room_if_empty(&room);
        if self.rooms.is_empty() {
            self.user = None;
        }
    }

    fn leave_all(&mut self, reason: DeleteReason) {
        let Some(app) = self.app.clone() else {
            return;
        };
        let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for room_id in rooms {
            self.leave(&app, &room_id, reason);
        }
        for (s, _) in std::mem::take(&mut self.playing) {
            app.remove_player(&s, self.id);
        }
    }

    fn publish(
        &mut self,
        app: &Arc<App>,
        id: u64,
        room_id: RoomId,
        stream_id: StreamId,
        extra_info: String,
    ) -> Res<()> {
        if extra_info.len() >= app.config.limits.stream_extra_info_bytes {
            return Err(ErrorCode::PUBLISHER_EXTRA_INFO_TOO_LONG);
        }
        let room = self.member_room(&room_id)?;
        let user = self.user()?;
        // The room's token must allow this stream, and must not have expired (an app that keeps
        // sessions past expiry still needs a valid token for new publishes).
        if let Some(g) = self.grants.get(&room_id) {
            if !g.privileges.may_publish(stream_id.as_str()) || g.expired(now_s()) {
                return Err(ErrorCode::PUBLISHER_ERROR_DISPATCH_AUTH_ERROR);
            }
        }
        {
            let mut st = lock(&room.state);
            if !st.is_member(&user.user_id, self.id) {
                return Err(ErrorCode::COMMON_NOT_LOGIN_ROOM);
            }
            if st
                .streams
                .get(&stream_id)
                .is_some_and(|s| s.conn == self.id)
            {
                self.reply(id, ErrorCode::SUCCESS, None);
                return Ok(());
            }
            if st.streams.len() >= app.config.max_streams_per_room as usize {
                return Err(ErrorCode::PUBLISHER_FORBIDDEN);
            }
            app.claim_stream(
                &stream_id,
                &room_id,
                self.id,
                app.config.max_streams_per_user,
            )?;
            let info = StreamInfo {
                stream_id: stream_id.clone(),
                user,
                extra_info,
            };
            st.streams.insert(
                stream_id.clone(),
                PublishedStream {
                    info: info.clone(),
                    conn: self.id,
                },
            );
            self.reply(id, ErrorCode::SUCCESS, None);
            st.broadcast(
                &ServerMsg::StreamUpdate {
                    room_id,
                    update: UpdateType::Add,
                    streams: vec![info],
                    deleted: Vec::new(),
                },
                Some(self.id),
            );
        }
        app.notify_players(&stream_id, None);
        Ok(())
    }

    fn unpublish(&mut self, app: &Arc<App>, room_id: &RoomId, stream_id: &StreamId) -> Res<()> {
        let room = self.member_room(room_id)?;
        {
            let mut st = lock(&room.state);
            if st.streams.get(stream_id).is_none_or(|s| s.conn != self.id) {
                return Ok(());
            }
            st.remove_streams(
                room_id,
                std::slice::from_ref(stream_id),
                DeleteReason::STOPPED,
                Some(self.id),
            );
        }
        app.release_stream(stream_id, self.id);
        app.notify_players(stream_id, Some(DeleteReason::STOPPED));
        self.shared.sfu.send(SfuCmd::Unpublish {
            conn: self.id,
            stream: stream_id.clone(),
        });
        Ok(())
    }

    /// An engine's SDP offer: every `send` track must be a stream this connection publishes,
    /// every `recv` track one it plays. The SFU answers; the reply goes out when it has.
    fn media_offer(
        &mut self,
        app: &Arc<App>,
        id: u64,
        sdp: String,
        tracks: Vec<TrackSpec>,
        fresh: bool,
    ) -> Res<()> {
        // Media only for a session that is logged into a room.
        self.forget_kicked_rooms();
        if self.rooms.is_empty() {
            return Err(ErrorCode::COMMON_NOT_LOGIN_ROOM);
        }
        for t in &tracks {
            let allowed = match t.direction {
                TrackDirection::Send => app.publisher_of(&t.stream_id) == Some(self.id),
                TrackDirection::Recv => {
                    self.playing.contains_key(&t.stream_id) && app.is_player(&t.stream_id, self.id)
                }
            };
            if !allowed {
                return Err(match t.direction {
                    TrackDirection::Send => ErrorCode::PUBLISHER_FORBIDDEN,
                    TrackDirection::Recv => ErrorCode::PLAYER_FORBIDDEN,
                });
            }
        }
        // One offer at a time per connection (the engine and the web client wait for each
        // answer), and none when the SFU's queue is full.
        if self.offer_in_flight.swap(true, Ordering::AcqRel) {
            return Err(ErrorCode::ROOM_ERROR_SIGNALLING_FREQUENCY_LIMIT);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = self.shared.sfu.offer(SfuCmd::Offer {
            conn: self.id,
            app_id: app.config.app_id,
            sdp,
            tracks,
            fresh,
            reply: tx,
        });
        if !queued {
            self.offer_in_flight.store(false, Ordering::Release);
            Metrics::inc(&self.shared.metrics.sfu_busy);
            return Err(ErrorCode::PUBLISHER_INNER_ERROR);
        }
        let out = self.out.clone();
        let in_flight = self.offer_in_flight.clone();
        tokio::spawn(async move {
            let msg = match rx.await {
                Ok(Ok(sdp)) => ServerMsg::Reply {
                    id,
                    code: ErrorCode::SUCCESS,
                    body: Some(ReplyBody::MediaAnswer { sdp }),
                },
                Ok(Err(code)) => ServerMsg::Reply {
                    id,
                    code,
                    body: None,
                },
                Err(_) => ServerMsg::Reply {
                    id,
                    code: ErrorCode::PUBLISHER_INNER_ERROR,
                    body: None,
                },
            };
            in_flight.store(false, Ordering::Release);
            out.send_msg(&msg);
        });
        Ok(())
    }

    fn set_stream_extra_info(
        &mut self,
        app: &App,
        id: u64,
        room_id: RoomId,
        stream_id: StreamId,
        extra_info: String,
    ) -> Res<()> {
        if extra_info.len() >= app.config.limits.stream_extra_info_bytes {
            return Err(ErrorCode::PUBLISHER_EXTRA_INFO_TOO_LONG);
        }
        let room = self.member_room(&room_id)?;
        let mut st = lock(&room.state);
        let Some(stream) = st.streams.get_mut(&stream_id).filter(|s| s.conn == self.id) else {
            return Err(ErrorCode::PUBLISHER_INNER_ERROR);
        };
        stream.info.extra_info = extra_info;
        let info = stream.info.clone();
        self.reply(id, ErrorCode::SUCCESS, None);
        st.broadcast(
            &ServerMsg::StreamExtraInfo {
                room_id,
                streams: vec![info],
            },
            Some(self.id),
        );
        Ok(())
    }

    fn set_room_extra_info(
        &mut self,
        app: &App,
        id: u64,
        room_id: RoomId,
        key: String,
        value: String,
    ) -> Res<()> {
        if key.is_empty() {
            return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_KEY_EMPTY);
        }
        let limits = &app.config.limits;
        if key.len() >= limits.room_extra_info_bytes {
            return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_KEY_TOO_LONG);
        }
        if value.len() >= limits.room_extra_info_bytes {
            return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_VALUE_TOO_LONG);
        }
        let room = self
            .member_room(&room_id)
            .map_err(|_| ErrorCode::ROOM_ROOMID_INCORRECT)?;
        let user = self.user()?;
        let mut st = lock(&room.state);
        if !st.is_member(&user.user_id, self.id) {
            return Err(ErrorCode::ROOM_ROOMID_INCORRECT);
        }
        // ZEGO keeps one key per room.
        if st.extra_info.as_ref().is_some_and(|e| e.key != key) {
            return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_EXCEED_KEYS);
        }
        if !st
            .rates
            .extra_info
            .take(limits.room_extra_info_per_room, Instant::now())
        {
            return Err(ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
        }
        let info = RoomExtraInfo {
            key,
            value,
            update_user: user,
            update_time_ms: now_ms(),
        };
        st.extra_info = Some(info.clone());
        self.reply(id, ErrorCode::SUCCESS, None);
        st.broadcast(
            &ServerMsg::RoomExtraInfo {
                room_id,
                infos: vec![info],
            },
            Some(self.id),
        );
        Ok(())
    }
}

/// A room message goes to everyone but its sender, then the sender gets its reply (both
/// under the room lock held by the caller).
fn deliver(
    st: &crate::state::RoomState,
    push: &ServerMsg,
    out: &Outbound,
    id: u64,
    body: ReplyBody,
) {
    st.broadcast(push, Some(out.conn));
    out.send_msg(&ServerMsg::Reply {
        id,
        code: ErrorCode::SUCCESS,
        body: Some(body),
    });
}

fn check_message(message: &str, max_bytes: usize) -> Res<()> {
    if message.is_empty() {
        return Err(ErrorCode::IM_CONTENT_NULL);
    }
    if message.len() > max_bytes {
        return Err(ErrorCode::IM_CONTENT_TOO_LONG);
    }
    Ok(())
}
