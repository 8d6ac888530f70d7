//! The state machine itself: its types, inputs and outputs. The handlers are grouped by where
//! the input comes from: [`api`] (the app's calls), [`server`] (frames from the server),
//! [`reconnect`] (a dropped connection).

mod api;
mod reconnect;
mod server;

use crate::commands::Command;
use crate::events::*;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};
use zrooms_proto::wire::Resume;
use zrooms_proto::wire::{
    BarrageMessage, BroadcastMessage, ClientFrame, LoginConfig, Request, StreamInfo, TrackSpec,
    PROTOCOL_VERSION,
};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User, UserId};

/// Publish channels: Main, Aux, Third, Fourth.
pub const CHANNELS: usize = 4;

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub app_id: u32,
    pub app_sign: String,
    pub multi_room: bool,
    pub sdk_version: String,
    /// A login without an answer for this long fails with 1002031.
    pub login_timeout: Duration,
    /// A heartbeat goes to the server this often while connected.
    pub heartbeat_interval: Duration,
    /// Nothing from the server for this long: the connection is dead.
    pub heartbeat_timeout: Duration,
    /// After a drop, reconnection is tried for this long (ZEGO: 20 minutes), then the rooms
    /// end with ReconnectFailed.
    pub reconnect_horizon: Duration,
    /// The first retry's delay; each next one doubles, up to `reconnect_max_delay`, with ±25 %
    /// jitter. An attempt that reached the server and failed counts toward the doubling.
    pub reconnect_delay: Duration,
    pub reconnect_max_delay: Duration,
    /// While the server is unreachable (no byte reached it), the next attempt comes within this
    /// (±25 %) whatever the backoff: the network's return is noticed this quickly.
    pub reconnect_probe_interval: Duration,
    /// Seeds the jitter.
    pub jitter_seed: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            app_id: 1,
            app_sign: String::new(),
            multi_room: false,
            sdk_version: String::new(),
            login_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
            reconnect_horizon: Duration::from_secs(20 * 60),
            reconnect_delay: Duration::from_millis(250),
            reconnect_max_delay: Duration::from_secs(8),
            reconnect_probe_interval: Duration::from_millis(500),
            jitter_seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// What the driver must do next.
#[derive(Debug, PartialEq)]
pub enum Output {
    /// Open the signaling connection, then call [`Session::handle_connected`] or
    /// [`Session::handle_disconnected`].
    Connect,
    /// Send this frame on the open connection.
    Transmit(ClientFrame),
    /// Deliver this event to the app.
    Event(SessionEvent),
    /// Start or stop media for a publisher or player.
    Media(MediaCmd),
    /// The server answered the last media offer (`Err` with its code when it refused it).
    MediaAnswer(Result<String, ErrorCode>),
    /// Close the connection (it is dead), then call [`Session::handle_disconnected`].
    Disconnect,
    /// The server started a new session: its media peer is gone. Drop the local one; the
    /// streams are published and played again through new offers.
    MediaReset,
    /// Nothing more now; call [`Session::handle_timeout`] at the deadline, if any.
    Idle(Option<Instant>),
}

/// What the media side must do; the session decides when, from the signaling state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaCmd {
    /// The server accepted the publish: start sending `stream_id` from `channel`.
    StartPublish { channel: usize, stream_id: StreamId },
    /// Stop sending on `channel`.
    StopPublish { channel: usize, stream_id: StreamId },
    /// The stream is published: start receiving it.
    StartPlay { stream_id: StreamId },
    /// Stop receiving `stream_id`.
    StopPlay { stream_id: StreamId },
    /// Send silence and/or black on `channel` (mutes, disabled camera).
    Mute {
        channel: usize,
        silent: bool,
        black: bool,
    },
}

/// ZEGO's `ZegoRemoteDeviceState` values the session produces.
pub const DEVICE_OPEN: u32 = 0;
pub const DEVICE_DISABLE: u32 = 9;
pub const DEVICE_MUTE: u32 = 10;

/// A channel's local device switches.
#[derive(Clone, Copy, Debug, Default)]
struct Devices {
    audio_muted: bool,
    video_muted: bool,
    camera_disabled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conn {
    Closed,
    Connecting,
    /// Socket open, hello sent, waiting for its reply.
    Handshaking,
    Open,
}

#[derive(Debug)]
enum Phase {
    /// `req` is the login request's id: a late reply to an earlier login of the same room
    /// must not complete this one.
    Logining {
        op: OpId,
        req: u64,
        deadline: Instant,
    },
    Logined,
}

#[derive(Debug)]
struct Room {
    phase: Phase,
    notify: bool,
    /// What the login sent (the token is replaced by renewToken), for logging in again.
    login: LoginConfig,
    /// Others' streams and users as last reported, to tell the app what changed while a
    /// reconnection had to log in again.
    streams: BTreeMap<StreamId, StreamInfo>,
    users: BTreeMap<UserId, User>,
}

/// A broken connection being retried.
#[derive(Debug)]
struct Reconnect {
    since: Instant,
    attempt: u32,
    /// The next attempt; `None` while one is under way.
    next_at: Option<Instant>,
}

#[derive(Debug)]
struct Publisher {
    stream_id: StreamId,
    room_id: RoomId,
    state: PublisherState,
}

#[derive(Debug)]
struct Player {
    room_id: RoomId,
    state: PlayerState,
    /// The media side was told to receive it (the stream is published).
    receiving: bool,
    /// The publisher's last reported (mic, camera) state.
    remote: (u32, u32),
}

/// What a request in flight is waiting to finish.
#[derive(Debug)]
enum Pending {
    Hello,
    Login {
        room_id: RoomId,
    },
    Publish {
        channel: usize,
        stream_id: StreamId,
    },
    Play {
        stream_id: StreamId,
    },
    /// A call whose promise resolves with the reply's code (and message id, if any).
    Op {
        op: OpId,
    },
    /// A media offer waiting for its answer.
    MediaOffer,
    /// A renewed token: a refusal is reported as `debugError` (the old token stays).
    Renew,
    /// Logging into a room again after the server lost the session.
    Relogin {
        room_id: RoomId,
    },
    /// Nobody waits for the reply.
    Ignore,
}

pub struct Session {
    config: SessionConfig,
    conn: Conn,
    next_req: u64,
    /// Frames written before the connection was open.
    outbox: Vec<ClientFrame>,
    out: VecDeque<Output>,
    pending: HashMap<u64, Pending>,
    /// The user of the logged-in rooms; multi-room requires the same one everywhere.
    user: Option<User>,
    rooms: BTreeMap<RoomId, Room>,
    publishers: [Option<Publisher>; CHANNELS],
    /// Stream extra info per channel, sent with the next publish.
    extra_info: [String; CHANNELS],
    devices: [Devices; CHANNELS],
    microphone_muted: bool,
    players: BTreeMap<StreamId, Player>,
    /// The server session (id, resume key) of the last hello.
    server_session: Option<(String, String)>,
    /// Frames of the server session received (every frame but a resume's hello reply).
    received: u64,
    /// Requests transmitted and not answered, sent again when a session resumes.
    inflight: BTreeMap<u64, ClientFrame>,
    last_rx: Option<Instant>,
    next_ping: Option<Instant>,
    reconnect: Option<Reconnect>,
    jitter: u64,
}

type Res<T> = Result<T, ErrorCode>;

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        Session {
            conn: Conn::Closed,
            next_req: 1,
            outbox: Vec::new(),
            out: VecDeque::new(),
            pending: HashMap::new(),
            user: None,
            rooms: BTreeMap::new(),
            publishers: Default::default(),
            extra_info: Default::default(),
            devices: Default::default(),
            microphone_muted: false,
            players: BTreeMap::new(),
            server_session: None,
            received: 0,
            inflight: BTreeMap::new(),
            last_rx: None,
            next_ping: None,
            reconnect: None,
            jitter: config.jitter_seed | 1,
            config,
        }
    }

    pub fn is_multi_room(&self) -> bool {
        self.config.multi_room
    }

    /// Rooms that are logged in or logging in.
    pub fn room_ids(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(RoomId::as_str)
    }

    /// True while a dropped connection is being retried.
    pub fn is_reconnecting(&self) -> bool {
        self.reconnect.is_some()
    }

    /// True while the app has something that can still produce events: a room (streams only
    /// live inside rooms) or a call whose promise has not resolved.
    pub fn is_active(&self) -> bool {
        !self.rooms.is_empty()
            || self
                .pending
                .values()
                .any(|p| matches!(p, Pending::Op { .. }))
    }

    // ---- inputs -------------------------------------------------------------------------

    /// An API call from the app. Its promise resolves with the [`SessionEvent::Completed`] that
    /// carries `op`.
    pub fn handle_command(&mut self, now: Instant, op: OpId, cmd: Command) {
        let func = cmd.func_name();
        let mark = self.out.len();
        match self.command(now, op, cmd) {
            Ok(done) => {
                // The call's own report comes before the events it caused.
                self.out.insert(
                    mark,
                    Output::Event(SessionEvent::ApiCalled {
                        func,
                        code: ErrorCode::SUCCESS,
                        info: String::new(),
                    }),
                );
                if let Some(value) = done {
                    self.complete(op, ErrorCode::SUCCESS, value);
                }
            }
            Err(code) => {
                self.emit(SessionEvent::ApiCalled {
                    func,
                    code,
                    info: format!("{func} failed: {code}"),
                });
                self.complete(op, code, OpValue::None);
            }
        }
    }

    /// The signaling connection opened.
    pub fn handle_connected(&mut self, _now: Instant) {
        if self.conn != Conn::Connecting {
            return;
        }
        self.conn = Conn::Handshaking;
        self.last_rx = Some(_now);
        let resume = match (&self.reconnect, &self.server_session) {
            (Some(_), Some((session_id, key))) => Some(Resume {
                session_id: session_id.clone(),
                key: key.clone(),
                received: self.received,
            }),
            _ => None,
        };
        let id = self.alloc_req(Pending::Hello);
        self.out.push_back(Output::Transmit(ClientFrame {
            id,
            req: Request::Hello {
                version: PROTOCOL_VERSION,
                app_id: self.config.app_id,
                app_sign: self.config.app_sign.clone(),
                sdk_version: self.config.sdk_version.clone(),
                resume,
            },
        }));
    }

    /// Time passed: logins that got no answer fail.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(r) = &self.reconnect {
            if now >= r.since + self.config.reconnect_horizon {
                // Gave up: any attempt under way is dropped with it.
                self.conn = Conn::Closed;
                self.out.push_back(Output::Disconnect);
                self.give_up(ErrorCode::ROOM_RETRY_TIMEOUT);
                return;
            }
            if self.conn == Conn::Closed && r.next_at.is_some_and(|t| t <= now) {
                if let Some(r) = self.reconnect.as_mut() {
                    r.next_at = None;
                }
                self.conn = Conn::Connecting;
                self.out.push_back(Output::Connect);
            }
        }
        let alive = matches!(self.conn, Conn::Open | Conn::Handshaking);
        let silent = alive
            && self
                .last_rx
                .is_some_and(|t| now >= t + self.config.heartbeat_timeout);
        if silent {
            // Silent for too long: the connection is dead even if the socket does not know.
            // The driver closes it and reports the disconnection.
            self.last_rx = None;
            self.out.push_back(Output::Disconnect);
        } else if self.conn == Conn::Open && self.next_ping.is_some_and(|t| now >= t) {
            self.next_ping = Some(now + self.config.heartbeat_interval);
            let received = self.received;
            self.send(Pending::Ignore, Request::Ping { received });
        }
        let expired: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, r)| matches!(r.phase, Phase::Logining { deadline, .. } if deadline <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for room_id in expired {
            self.pending
                .retain(|_, p| !matches!(p, Pending::Login { room_id: r } if *r == room_id));
            self.fail_login(&room_id, ErrorCode::ROOM_ERROR_LOGIN_TIMEOUT);
            // The server may still admit us late; make sure it forgets us.
            self.send(Pending::Ignore, Request::Logout { room_id });
        }
    }

    /// Media of a played stream arrived: the player reaches Playing.
    pub fn handle_media_received(&mut self, _now: Instant, stream_id: &StreamId) {
        let Some(p) = self.players.get(stream_id) else {
            return;
        };
        if p.receiving && p.state != PlayerState::Playing {
            let room_id = p.room_id.clone();
            self.set_player(
                &room_id,
                stream_id,
                PlayerState::Playing,
                ErrorCode::SUCCESS,
            );
        }
    }

    /// Sends an SDP offer for the engine's peer connection; the answer comes back as
    /// [`Output::MediaAnswer`].
    /// `fresh`: the offer comes from a new peer that replaces the current one.
    pub fn send_media_offer(&mut self, sdp: String, tracks: Vec<TrackSpec>, fresh: bool) {
        self.send(
            Pending::MediaOffer,
            Request::MediaOffer { sdp, tracks, fresh },
        );
    }

    /// The engine is being destroyed: leave every room without telling the app.
    pub fn destroy(&mut self) {
        let rooms: Vec<RoomId> = std::mem::take(&mut self.rooms).into_keys().collect();
        self.publishers = Default::default();
        self.players.clear();
        self.user = None;
        if self.conn == Conn::Open {
            for room_id in rooms {
                self.send(Pending::Ignore, Request::Logout { room_id });
            }
        }
        self.pending.clear();
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let logins = self.rooms.values().filter_map(|r| match r.phase {
            Phase::Logining { deadline, .. } => Some(deadline),
            Phase::Logined => None,
        });
        let open = self.conn == Conn::Open;
        let heartbeat = [
            self.next_ping.filter(|_| open),
            self.last_rx
                .filter(|_| matches!(self.conn, Conn::Open | Conn::Handshaking))
                .map(|t| t + self.config.heartbeat_timeout),
        ];
        let reconnect = self.reconnect.as_ref().map(|r| {
            let horizon = r.since + self.config.reconnect_horizon;
            r.next_at.map_or(horizon, |t| t.min(horizon))
        });
        let deadline = logins
            .chain(heartbeat.into_iter().flatten())
            .chain(reconnect)
            .min();
        Output::Idle(deadline)
    }

    // ---- commands -----------------------------------------------------------------------

    // ---- replies ------------------------------------------------------------------------

    fn alloc_req(&mut self, pending: Pending) -> u64 {
        let id = self.next_req;
        self.next_req += 1;
        self.pending.insert(id, pending);
        id
    }

    fn send(&mut self, pending: Pending, req: Request) -> u64 {
        let id = self.alloc_req(pending);
        let frame = ClientFrame { id, req };
        match self.conn {
            Conn::Open => self.transmit(frame),
            Conn::Handshaking | Conn::Connecting => self.outbox.push(frame),
            // While reconnecting, the backoff decides when to connect.
            Conn::Closed if self.reconnect.is_some() => self.outbox.push(frame),
            Conn::Closed => {
                self.outbox.push(frame);
                self.conn = Conn::Connecting;
                self.out.push_back(Output::Connect);
            }
        }
        id
    }

    /// Writes a frame on the open connection, remembering it until its reply.
    /// The streams played through `room_id`.
    fn players_in(&self, room_id: &RoomId) -> Vec<StreamId> {
        let through = self.players.iter().filter(|(_, p)| p.room_id == *room_id);
        through.map(|(s, _)| s.clone()).collect()
    }

    /// Asks the server to publish `channel`'s stream (with the channel's extra info).
    fn request_publish(&mut self, channel: usize, room_id: RoomId, stream_id: StreamId) {
        let extra_info = self.extra_info[channel].clone();
        let pending = Pending::Publish {
            channel,
            stream_id: stream_id.clone(),
        };
        let req = Request::Publish {
            room_id,
            stream_id,
            extra_info,
        };
        self.send(pending, req);
    }

    /// Asks the server to play `stream_id` through `room_id`.
    fn request_play(&mut self, room_id: RoomId, stream_id: StreamId) {
        let pending = Pending::Play {
            stream_id: stream_id.clone(),
        };
        self.send(pending, Request::Play { room_id, stream_id });
    }

    fn transmit(&mut self, frame: ClientFrame) {
        if !matches!(frame.req, Request::Hello { .. } | Request::Ping { .. }) {
            self.inflight.insert(frame.id, frame.clone());
        }
        self.out.push_back(Output::Transmit(frame));
    }

    fn emit(&mut self, ev: SessionEvent) {
        self.out.push_back(Output::Event(ev));
    }

    fn complete(&mut self, op: OpId, code: ErrorCode, value: OpValue) {
        self.emit(SessionEvent::Completed { op, code, value });
    }

    fn emit_room(&mut self, room_id: &RoomId, reason: RoomReason, code: ErrorCode, ext: &str) {
        self.emit(SessionEvent::RoomState {
            room_id: room_id.to_string(),
            reason,
            code,
            extended: ext.to_string(),
        });
    }

    fn emit_publisher(&mut self, stream_id: StreamId, state: PublisherState) {
        self.emit(SessionEvent::PublisherState {
            stream_id,
            state,
            code: ErrorCode::SUCCESS,
            extended: String::new(),
        });
    }

    fn emit_player(&mut self, stream_id: StreamId, state: PlayerState, code: ErrorCode) {
        self.emit(SessionEvent::PlayerState {
            stream_id,
            state,
            code,
            extended: String::new(),
        });
    }
}

fn channel_index(channel: u32) -> Res<usize> {
    let ch = channel as usize;
    if ch < CHANNELS {
        Ok(ch)
    } else {
        Err(ErrorCode::COMMON_ILLEGAL_PARAM)
    }
}

/// A JSON string literal (for the few `extendedData` strings ZEGO defines as JSON text).
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// A room message with a sender.
trait Sent {
    fn sender(&self) -> &User;
}

impl Sent for BroadcastMessage {
    fn sender(&self) -> &User {
        &self.from
    }
}

impl Sent for BarrageMessage {
    fn sender(&self) -> &User {
        &self.from
    }
}
