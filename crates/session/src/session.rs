//! The state machine itself.

use crate::commands::{Command, ConfigRoom, RoomConfig};
use crate::events::*;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};
use zrooms_proto::wire::Resume;
use zrooms_proto::wire::{
    BarrageMessage, BroadcastMessage, ClientFrame, LoginConfig, ReplyBody, Request, ServerMsg,
    StreamDelete, StreamInfo, TrackSpec, UpdateType, MAX_MESSAGE_BYTES, MAX_ROOM_EXTRA_INFO_BYTES,
    MAX_STREAM_EXTRA_INFO_BYTES, PROTOCOL_VERSION,
};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User, UserId, UserName};

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
    /// jitter.
    pub reconnect_delay: Duration,
    pub reconnect_max_delay: Duration,
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

    /// The connection failed to open or broke. With rooms logged in, every such room reports
    /// Reconnecting (its publishers and players go back to requesting) and the connection is
    /// retried with backoff until the horizon; the server keeps the session meanwhile, so a quick
    /// return resumes it. Rooms still logging in fail. Without logged-in rooms, everything
    /// waiting on the connection fails.
    pub fn handle_disconnected(&mut self, now: Instant) {
        let was_open = matches!(self.conn, Conn::Open | Conn::Handshaking);
        self.conn = Conn::Closed;
        self.last_rx = None;
        self.next_ping = None;
        let logining: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, r)| matches!(r.phase, Phase::Logining { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        for room_id in logining {
            self.pending
                .retain(|_, p| !matches!(p, Pending::Login { room_id: r } if *r == room_id));
            self.fail_login(&room_id, ErrorCode::ROOM_ERROR_CONNECT_FAILED);
        }
        let has_rooms = !self.rooms.is_empty();
        let within_horizon = self
            .reconnect
            .as_ref()
            .is_none_or(|r| now < r.since + self.config.reconnect_horizon);
        if has_rooms && within_horizon && (was_open || self.reconnect.is_some()) {
            if self.reconnect.is_none() {
                self.reconnect = Some(Reconnect {
                    since: now,
                    attempt: 0,
                    next_at: None,
                });
                self.enter_reconnecting();
            }
            self.schedule_reconnect(now);
            return;
        }
        let code = if self.reconnect.is_some() {
            ErrorCode::ROOM_RETRY_TIMEOUT
        } else if was_open {
            ErrorCode::ROOM_DISCONNECT
        } else {
            ErrorCode::ROOM_ERROR_CONNECT_FAILED
        };
        self.give_up(code);
    }

    /// The rooms report Reconnecting; publishers and players go back to requesting.
    fn enter_reconnecting(&mut self) {
        let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for room_id in &rooms {
            self.emit_room(
                room_id,
                RoomReason::Reconnecting,
                ErrorCode::ROOM_CONNECT_TEMPORARY_BROKEN,
                "",
            );
        }
        self.move_publishers(
            PublisherState::Publishing,
            PublisherState::PublishRequesting,
            |_, _| true,
        );
        self.move_players(
            |p| p.state == PlayerState::Playing,
            PlayerState::PlayRequesting,
        );
    }

    /// Every publisher in state `from` whose channel passes `keep` goes to `to`, with its event.
    fn move_publishers(
        &mut self,
        from: PublisherState,
        to: PublisherState,
        keep: impl Fn(&Self, usize) -> bool,
    ) {
        for ch in 0..CHANNELS {
            let moved = match &self.publishers[ch] {
                Some(p) if p.state == from && keep(self, ch) => p.stream_id.clone(),
                _ => continue,
            };
            if let Some(p) = self.publishers[ch].as_mut() {
                p.state = to;
            }
            self.emit_publisher(moved, to);
        }
    }

    /// Every player that `pred` picks goes to `to`, with its event.
    fn move_players(&mut self, pred: impl Fn(&Player) -> bool, to: PlayerState) {
        let picked: Vec<(StreamId, RoomId)> = self
            .players
            .iter()
            .filter(|(_, p)| pred(p))
            .map(|(s, p)| (s.clone(), p.room_id.clone()))
            .collect();
        for (stream_id, room_id) in picked {
            self.set_player(&room_id, &stream_id, to, ErrorCode::SUCCESS);
        }
    }

    fn schedule_reconnect(&mut self, now: Instant) {
        let base = self.config.reconnect_delay;
        let max = self.config.reconnect_max_delay;
        let jitter = self.next_jitter();
        let Some(r) = self.reconnect.as_mut() else {
            return;
        };
        let exp = base.saturating_mul(1u32 << r.attempt.min(16)).min(max);
        // ±25 %.
        let factor = 0.75 + 0.5 * jitter;
        r.next_at = Some(now + exp.mul_f64(factor));
        r.attempt = r.attempt.saturating_add(1);
    }

    fn next_jitter(&mut self) -> f64 {
        // xorshift64*: deterministic per seed, enough to spread clients' retries.
        let mut x = self.jitter;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.jitter = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Reconnection is over without success (or was not possible): every room ends with
    /// ReconnectFailed and `code`, and everything waiting on the connection fails.
    fn give_up(&mut self, code: ErrorCode) {
        self.reconnect = None;
        self.server_session = None;
        self.outbox.clear();
        self.inflight.clear();
        let pending = std::mem::take(&mut self.pending);
        for (_, p) in pending {
            match p {
                Pending::Op { op } => self.complete(op, ErrorCode::IM_SEND_FAILED, OpValue::None),
                Pending::MediaOffer => self
                    .out
                    .push_back(Output::MediaAnswer(Err(ErrorCode::ROOM_DISCONNECT))),
                _ => {}
            }
        }
        let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for room_id in rooms {
            self.leave_room(&room_id, RoomReason::ReconnectFailed, code);
        }
        self.out.push_back(Output::MediaReset);
    }

    /// The hello of a reconnection was answered.
    fn on_reconnected(&mut self, resumed: bool) {
        self.reconnect = None;
        if resumed {
            // Everything as it was: send again what was in flight (the server skips what it
            // already did), then what was written meanwhile.
            let inflight: Vec<ClientFrame> =
                std::mem::take(&mut self.inflight).into_values().collect();
            for frame in inflight {
                self.transmit(frame);
            }
            for frame in std::mem::take(&mut self.outbox) {
                self.transmit(frame);
            }
            let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
            for room_id in &rooms {
                self.emit_room(room_id, RoomReason::Reconnected, ErrorCode::SUCCESS, "");
            }
            // A publisher whose publish request is still pending gets its answer first.
            self.move_publishers(
                PublisherState::PublishRequesting,
                PublisherState::Publishing,
                |me, ch| {
                    !me.pending
                        .values()
                        .any(|q| matches!(q, Pending::Publish { channel, .. } if *channel == ch))
                },
            );
            self.move_players(
                |p| p.receiving && p.state == PlayerState::PlayRequesting,
                PlayerState::Playing,
            );
            return;
        }
        // A new server session (the old one expired, or the server restarted): what was in
        // flight or queued cannot be known to have happened, so it fails with a code; the media
        // peer is rebuilt; every room logs in again, then its streams are published and played
        // again.
        self.inflight.clear();
        self.outbox.clear();
        let stale: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| !matches!(p, Pending::Hello))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            match self.pending.remove(&id) {
                Some(Pending::Op { op }) => {
                    self.complete(op, ErrorCode::IM_SEND_FAILED, OpValue::None)
                }
                Some(Pending::MediaOffer) => self
                    .out
                    .push_back(Output::MediaAnswer(Err(ErrorCode::ROOM_DISCONNECT))),
                _ => {}
            }
        }
        self.out.push_back(Output::MediaReset);
        for p in self.players.values_mut() {
            p.receiving = false;
        }
        let rooms: Vec<(RoomId, LoginConfig)> = self
            .rooms
            .iter()
            .map(|(id, r)| (id.clone(), r.login.clone()))
            .collect();
        let Some(user) = self.user.clone() else {
            return;
        };
        for (room_id, login) in rooms {
            self.send(
                Pending::Relogin {
                    room_id: room_id.clone(),
                },
                Request::Login {
                    room_id,
                    user: user.clone(),
                    config: login,
                },
            );
        }
    }

    /// A room logged in again after the server lost the session: what changed meanwhile is
    /// reported, then its streams are published and played again.
    fn on_relogin_reply(&mut self, room_id: RoomId, code: ErrorCode, body: Option<ReplyBody>) {
        if !self.rooms.contains_key(&room_id) {
            return;
        }
        let Some(ReplyBody::Login {
            room_session_id,
            users,
            streams,
            online_count,
            ..
        }) = body.filter(|_| code.is_success())
        else {
            let code = if code.is_success() {
                ErrorCode::ROOM_INNER_ERROR
            } else {
                code
            };
            self.leave_room(&room_id, RoomReason::ReconnectFailed, code);
            return;
        };
        let extended = format!("{{\"room_session_id\":{}}}", json_string(&room_session_id));
        self.emit_room(
            &room_id,
            RoomReason::Reconnected,
            ErrorCode::SUCCESS,
            &extended,
        );
        let users = self.others(users);
        let streams = self.other_streams(streams);
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let now_streams: BTreeMap<StreamId, StreamInfo> = streams
            .into_iter()
            .map(|s| (s.stream_id.clone(), s))
            .collect();
        let now_users: BTreeMap<UserId, User> =
            users.into_iter().map(|u| (u.user_id.clone(), u)).collect();
        let (gone_streams, new_streams) = diff(&room.streams, &now_streams);
        let (gone_users, new_users) = diff(&room.users, &now_users);
        let notify = room.notify;
        room.streams = now_streams;
        room.users = now_users;
        let users = [
            (UpdateType::Delete, gone_users),
            (UpdateType::Add, new_users),
        ];
        let streams = [
            (UpdateType::Delete, gone_streams),
            (UpdateType::Add, new_streams),
        ];
        let user_events = users
            .into_iter()
            .filter(|(_, list)| notify && !list.is_empty())
            .map(|(update, users)| SessionEvent::UserUpdate {
                room_id: room_id.to_string(),
                update,
                users,
            });
        let stream_events = streams
            .into_iter()
            .filter(|(_, list)| !list.is_empty())
            .map(|(update, streams)| SessionEvent::StreamUpdate {
                room_id: room_id.to_string(),
                update,
                streams,
                extended: String::new(),
            });
        let events: Vec<SessionEvent> = user_events.chain(stream_events).collect();
        for ev in events {
            self.emit(ev);
        }
        self.emit(SessionEvent::OnlineCount {
            room_id: room_id.to_string(),
            count: online_count,
        });
        for ch in 0..CHANNELS {
            let Some(p) = self.publishers[ch]
                .as_ref()
                .filter(|p| p.room_id == room_id)
            else {
                continue;
            };
            let stream_id = p.stream_id.clone();
            let extra_info = self.extra_info[ch].clone();
            self.send(
                Pending::Publish {
                    channel: ch,
                    stream_id: stream_id.clone(),
                },
                Request::Publish {
                    room_id: room_id.clone(),
                    stream_id,
                    extra_info,
                },
            );
        }
        let players: Vec<StreamId> = self
            .players
            .iter()
            .filter(|(_, p)| p.room_id == room_id)
            .map(|(s, _)| s.clone())
            .collect();
        for stream_id in players {
            self.send(
                Pending::Play {
                    stream_id: stream_id.clone(),
                },
                Request::Play {
                    room_id: room_id.clone(),
                    stream_id,
                },
            );
        }
    }

    /// A frame from the server.
    pub fn handle_server(&mut self, now: Instant, msg: ServerMsg) {
        self.received += 1;
        self.last_rx = Some(now);
        match msg {
            ServerMsg::Reply { id, code, body } => self.on_reply(now, id, code, body),
            ServerMsg::UserUpdate {
                room_id,
                update,
                users,
            } => {
                if self.rooms.get(&room_id).is_some_and(|r| r.notify) {
                    let users = self.others(users);
                    if let Some(room) = self.rooms.get_mut(&room_id) {
                        track(&mut room.users, update, &users, |u| u.user_id.clone());
                    }
                    if !users.is_empty() {
                        self.emit(SessionEvent::UserUpdate {
                            room_id: room_id.into(),
                            update,
                            users,
                        });
                    }
                }
            }
            ServerMsg::StreamUpdate {
                room_id,
                update,
                streams,
                deleted,
            } => {
                if self.is_logined(&room_id) {
                    if let Some(room) = self.rooms.get_mut(&room_id) {
                        track(&mut room.streams, update, &streams, |s| s.stream_id.clone());
                    }
                    self.emit_streams(room_id, update, streams, &deleted);
                }
            }
            ServerMsg::StreamExtraInfo { room_id, streams } => {
                if self.is_logined(&room_id) {
                    let streams = self.other_streams(streams);
                    if !streams.is_empty() {
                        self.emit(SessionEvent::StreamExtraInfo {
                            room_id: room_id.into(),
                            streams,
                        });
                    }
                }
            }
            ServerMsg::RoomExtraInfo { room_id, infos } => {
                if self.is_logined(&room_id) && !infos.is_empty() {
                    self.emit(SessionEvent::RoomExtraInfo {
                        room_id: room_id.into(),
                        infos,
                    });
                }
            }
            ServerMsg::Broadcast { room_id, messages } => {
                if let Some(messages) = self.incoming(&room_id, messages) {
                    self.emit(SessionEvent::Broadcast {
                        room_id: room_id.into(),
                        messages,
                    });
                }
            }
            ServerMsg::Barrage { room_id, messages } => {
                if let Some(messages) = self.incoming(&room_id, messages) {
                    self.emit(SessionEvent::Barrage {
                        room_id: room_id.into(),
                        messages,
                    });
                }
            }
            ServerMsg::CustomCommand {
                room_id,
                from,
                command,
            } => {
                if self.is_logined(&room_id) && !self.is_me(&from) {
                    self.emit(SessionEvent::CustomCommand {
                        room_id: room_id.into(),
                        from,
                        command,
                    });
                }
            }
            ServerMsg::OnlineCount { room_id, count } => {
                if self.is_logined(&room_id) {
                    self.emit(SessionEvent::OnlineCount {
                        room_id: room_id.into(),
                        count,
                    });
                }
            }
            ServerMsg::TokenWillExpire { room_id, remain_s } => {
                if self.is_logined(&room_id) {
                    self.emit(SessionEvent::TokenWillExpire {
                        room_id: room_id.into(),
                        remain_s,
                    });
                }
            }
            ServerMsg::Kicked { room_id, code } => {
                if self.rooms.contains_key(&room_id) {
                    self.leave_room(&room_id, RoomReason::KickOut, code);
                }
            }
            ServerMsg::StreamAvailable { room_id, stream_id } => {
                self.stream_available(&room_id, &stream_id);
            }
            ServerMsg::StreamState {
                room_id,
                stream_id,
                audio,
                video,
            } => {
                let Some(p) = self.players.get_mut(&stream_id) else {
                    return;
                };
                if p.room_id != room_id {
                    return;
                }
                let (old_audio, old_video) = std::mem::replace(&mut p.remote, (audio, video));
                if old_audio != audio {
                    self.emit(SessionEvent::RemoteMicState {
                        stream_id: stream_id.clone(),
                        state: audio,
                    });
                }
                if old_video != video {
                    self.emit(SessionEvent::RemoteCameraState {
                        stream_id,
                        state: video,
                    });
                }
            }
            ServerMsg::StreamUnavailable {
                room_id,
                stream_id,
                reason: _,
            } => {
                let Some(p) = self.players.get_mut(&stream_id) else {
                    return;
                };
                if p.room_id != room_id {
                    return;
                }
                if std::mem::take(&mut p.receiving) {
                    self.out.push_back(Output::Media(MediaCmd::StopPlay {
                        stream_id: stream_id.clone(),
                    }));
                }
                self.set_player(
                    &room_id,
                    &stream_id,
                    PlayerState::PlayRequesting,
                    ErrorCode::PLAYER_ERROR_STREAM_NOT_EXIST,
                );
            }
        }
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

    /// Runs one call. `Ok(Some(v))` resolves it now, `Ok(None)` later (on a reply), `Err` now
    /// with the code, having changed nothing.
    fn command(&mut self, now: Instant, op: OpId, cmd: Command) -> Res<Option<OpValue>> {
        match cmd {
            Command::LoginRoom {
                room_id,
                user_id,
                user_name,
                config,
            } => self.login(now, op, room_id, user_id, user_name, config),
            Command::LogoutRoom { room_id } => self.logout(room_id).map(Some),
            Command::SwitchRoom { from, to, config } => {
                if self.config.multi_room {
                    return Err(ErrorCode::ROOM_MULTI_ROOM_SWITCH_ROOM_INVALID);
                }
                let from_id = self.logged_room(&from, ErrorCode::ROOM_ROOMID_INCORRECT)?;
                let user = self.user.clone().ok_or(ErrorCode::ROOM_ROOMID_INCORRECT)?;
                let to_id = RoomId::new(to)?;
                let notify = self.rooms.get(&from_id).is_some_and(|r| r.notify);
                self.leave_room(&from_id, RoomReason::Logout, ErrorCode::SUCCESS);
                self.send(Pending::Ignore, Request::Logout { room_id: from_id });
                let config = config.unwrap_or(RoomConfig {
                    is_user_status_notify: notify,
                    ..RoomConfig::default()
                });
                self.start_login(now, None, to_id, user, config);
                Ok(Some(OpValue::None))
            }
            Command::RenewToken { room_id, token } => {
                let room_id = self.logged_room(&room_id, ErrorCode::ROOM_ROOMID_INCORRECT)?;
                if let Some(room) = self.rooms.get_mut(&room_id) {
                    room.login.token = token.clone();
                }
                self.send(Pending::Renew, Request::RenewToken { room_id, token });
                Ok(Some(OpValue::None))
            }
            Command::SetRoomExtraInfo {
                room_id,
                key,
                value,
            } => {
                let room_id = self.logged_room(&room_id, ErrorCode::ROOM_ROOMID_INCORRECT)?;
                if key.is_empty() {
                    return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_KEY_EMPTY);
                }
                if key.len() >= MAX_ROOM_EXTRA_INFO_BYTES {
                    return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_KEY_TOO_LONG);
                }
                if value.len() >= MAX_ROOM_EXTRA_INFO_BYTES {
                    return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_VALUE_TOO_LONG);
                }
                self.send(
                    Pending::Op { op },
                    Request::SetRoomExtraInfo {
                        room_id,
                        key,
                        value,
                    },
                );
                Ok(None)
            }
            Command::StartPublishing {
                stream_id,
                channel,
                room_id,
            } => self.start_publishing(stream_id, channel, room_id).map(Some),
            Command::StopPublishing { channel } => {
                let ch = channel_index(channel)?;
                if let Some(p) = self.publishers[ch].take() {
                    self.stop_publisher_media(ch, &p);
                    self.emit_publisher(p.stream_id.clone(), PublisherState::NoPublish);
                    self.send(
                        Pending::Ignore,
                        Request::Unpublish {
                            room_id: p.room_id,
                            stream_id: p.stream_id,
                        },
                    );
                }
                Ok(Some(OpValue::None))
            }
            Command::SetStreamExtraInfo {
                extra_info,
                channel,
            } => {
                let ch = channel_index(channel)?;
                let extra_info = extra_info.ok_or(ErrorCode::PUBLISHER_EXTRA_INFO_NULL)?;
                if extra_info.len() >= MAX_STREAM_EXTRA_INFO_BYTES {
                    return Err(ErrorCode::PUBLISHER_EXTRA_INFO_TOO_LONG);
                }
                self.extra_info[ch] = extra_info.clone();
                match &self.publishers[ch] {
                    Some(p) => {
                        let req = Request::SetStreamExtraInfo {
                            room_id: p.room_id.clone(),
                            stream_id: p.stream_id.clone(),
                            extra_info,
                        };
                        self.send(Pending::Op { op }, req);
                        Ok(None)
                    }
                    None => Ok(Some(OpValue::None)),
                }
            }
            Command::StartPlaying { stream_id, room_id } => {
                self.start_playing(stream_id, room_id).map(Some)
            }
            Command::StopPlaying { stream_id } => {
                if let Ok(stream_id) = StreamId::new(stream_id) {
                    if let Some(p) = self.players.remove(&stream_id) {
                        self.stop_player_media(&stream_id, &p);
                        self.emit_player(
                            stream_id.clone(),
                            PlayerState::NoPlay,
                            ErrorCode::SUCCESS,
                        );
                        self.send(
                            Pending::Ignore,
                            Request::Unplay {
                                room_id: p.room_id,
                                stream_id,
                            },
                        );
                    }
                }
                Ok(Some(OpValue::None))
            }
            Command::SendBroadcast { room_id, message } => {
                let room_id = self.message_room(&room_id, &message)?;
                self.send(Pending::Op { op }, Request::Broadcast { room_id, message });
                Ok(None)
            }
            Command::SendBarrage { room_id, message } => {
                let room_id = self.message_room(&room_id, &message)?;
                self.send(Pending::Op { op }, Request::Barrage { room_id, message });
                Ok(None)
            }
            Command::SendCustomCommand {
                room_id,
                command,
                to,
            } => {
                let room_id = self.message_room(&room_id, &command)?;
                let to = to
                    .into_iter()
                    .map(|id| {
                        UserId::new(id).map_err(|e| match e {
                            ErrorCode::ROOM_USER_ID_TOO_LONG => ErrorCode::IM_USER_ID_TOO_LONG,
                            _ => ErrorCode::IM_USER_ID_EMPTY,
                        })
                    })
                    .collect::<Res<Vec<_>>>()?;
                self.send(
                    Pending::Op { op },
                    Request::CustomCommand {
                        room_id,
                        command,
                        to,
                    },
                );
                Ok(None)
            }
            Command::MutePublishAudio { mute, channel } => {
                let ch = channel_index(channel)?;
                self.devices[ch].audio_muted = mute;
                self.devices_changed(ch);
                Ok(Some(OpValue::None))
            }
            Command::MutePublishVideo { mute, channel } => {
                let ch = channel_index(channel)?;
                self.devices[ch].video_muted = mute;
                self.devices_changed(ch);
                Ok(Some(OpValue::None))
            }
            Command::EnableCamera { enable, channel } => {
                let ch = channel_index(channel)?;
                self.devices[ch].camera_disabled = !enable;
                self.devices_changed(ch);
                Ok(Some(OpValue::None))
            }
            Command::MuteMicrophone { mute } => {
                self.microphone_muted = mute;
                for ch in 0..CHANNELS {
                    self.devices_changed(ch);
                }
                Ok(Some(OpValue::None))
            }
        }
    }

    /// The (mic, camera) state players of `channel`'s stream see.
    fn device_state(&self, ch: usize) -> (u32, u32) {
        let d = self.devices.get(ch).copied().unwrap_or_default();
        let audio = if d.audio_muted || self.microphone_muted {
            DEVICE_MUTE
        } else {
            DEVICE_OPEN
        };
        let video = if d.camera_disabled {
            DEVICE_DISABLE
        } else if d.video_muted {
            DEVICE_MUTE
        } else {
            DEVICE_OPEN
        };
        (audio, video)
    }

    /// A mute or camera switch changed on `ch`: the media side sends silence/black, and the
    /// players of a running stream are told.
    fn devices_changed(&mut self, ch: usize) {
        let (audio, video) = self.device_state(ch);
        self.out.push_back(Output::Media(MediaCmd::Mute {
            channel: ch,
            silent: audio != DEVICE_OPEN,
            black: video != DEVICE_OPEN,
        }));
        self.send_stream_state(ch, false);
    }

    /// Tells the server the device state of `ch`'s stream (unless it is plain open and
    /// `only_if_not_open`).
    fn send_stream_state(&mut self, ch: usize, only_if_not_open: bool) {
        let (audio, video) = self.device_state(ch);
        if only_if_not_open && (audio, video) == (DEVICE_OPEN, DEVICE_OPEN) {
            return;
        }
        let Some(p) = self.publishers.get(ch).and_then(Option::as_ref) else {
            return;
        };
        if p.state != PublisherState::Publishing {
            return;
        }
        let req = Request::SetStreamState {
            room_id: p.room_id.clone(),
            stream_id: p.stream_id.clone(),
            audio,
            video,
        };
        self.send(Pending::Ignore, req);
    }

    fn login(
        &mut self,
        now: Instant,
        op: OpId,
        room_id: String,
        user_id: String,
        user_name: Option<String>,
        config: RoomConfig,
    ) -> Res<Option<OpValue>> {
        if !self.config.multi_room && !self.rooms.is_empty() {
            return Err(ErrorCode::ROOM_COUNT_EXCEED);
        }
        let room_id = RoomId::new(room_id)?;
        let user_name = user_name.unwrap_or_else(|| user_id.clone());
        let user = User {
            user_id: UserId::new(user_id)?,
            user_name: UserName::new(user_name)?,
        };
        if self.rooms.contains_key(&room_id) {
            return Err(ErrorCode::ROOM_COUNT_EXCEED);
        }
        if let Some(current) = &self.user {
            if !self.rooms.is_empty() && *current != user {
                return Err(ErrorCode::ROOM_MULTI_ROOM_USER_INFO_DIFFERENT);
            }
        }
        self.start_login(now, Some(op), room_id, user, config);
        Ok(None)
    }

    fn start_login(
        &mut self,
        now: Instant,
        op: Option<OpId>,
        room_id: RoomId,
        user: User,
        config: RoomConfig,
    ) {
        self.user = Some(user.clone());
        let notify = config.is_user_status_notify;
        self.emit_room(&room_id, RoomReason::Logining, ErrorCode::SUCCESS, "");
        let login = LoginConfig {
            max_member_count: config.max_member_count,
            user_status_notify: notify,
            token: config.token,
            multi_room: self.config.multi_room,
        };
        let req = self.send(
            Pending::Login {
                room_id: room_id.clone(),
            },
            Request::Login {
                room_id: room_id.clone(),
                user,
                config: login.clone(),
            },
        );
        self.rooms.insert(
            room_id,
            Room {
                phase: Phase::Logining {
                    op: op.unwrap_or(0),
                    req,
                    deadline: now + self.config.login_timeout,
                },
                notify,
                login,
                streams: BTreeMap::new(),
                users: BTreeMap::new(),
            },
        );
    }

    fn logout(&mut self, room_id: Option<String>) -> Res<OpValue> {
        let targets: Vec<RoomId> = match room_id {
            Some(r) => vec![self.logged_room(&r, ErrorCode::ROOM_ROOMID_INCORRECT)?],
            None => self.rooms.keys().cloned().collect(),
        };
        for room_id in targets {
            // A login still in progress is abandoned: its reply will find no room and be
            // dropped, and its promise resolves now.
            let abandoned = self.take_login_op(&room_id);
            self.leave_room(&room_id, RoomReason::Logout, ErrorCode::SUCCESS);
            if let Some(op) = abandoned {
                self.complete(
                    op,
                    ErrorCode::ROOM_DISCONNECT,
                    OpValue::Extended(String::new()),
                );
            }
            self.send(Pending::Ignore, Request::Logout { room_id });
        }
        Ok(OpValue::Extended(String::new()))
    }

    fn start_publishing(
        &mut self,
        stream_id: String,
        channel: u32,
        room: ConfigRoom,
    ) -> Res<OpValue> {
        let ch = channel_index(channel)?;
        let room_id = self.stream_room(
            room,
            ErrorCode::PUBLISHER_ROOM_ID_REQUIRED,
            ErrorCode::PUBLISHER_ROOM_ID_EMPTY,
        )?;
        let stream_id = StreamId::new(stream_id)?;
        if let Some(p) = &self.publishers[ch] {
            if p.stream_id == stream_id && p.room_id == room_id {
                return Ok(OpValue::None);
            }
            return Err(ErrorCode::PUBLISHER_BUSY_CHANNEL);
        }
        if self
            .publishers
            .iter()
            .flatten()
            .any(|p| p.stream_id == stream_id)
        {
            return Err(ErrorCode::PUBLISHER_ERROR_REPETITIVE_PUBLISH_STREAM);
        }
        self.publishers[ch] = Some(Publisher {
            stream_id: stream_id.clone(),
            room_id: room_id.clone(),
            state: PublisherState::PublishRequesting,
        });
        self.emit_publisher(stream_id.clone(), PublisherState::PublishRequesting);
        let extra_info = self.extra_info[ch].clone();
        self.send(
            Pending::Publish {
                channel: ch,
                stream_id: stream_id.clone(),
            },
            Request::Publish {
                room_id,
                stream_id,
                extra_info,
            },
        );
        Ok(OpValue::None)
    }

    fn start_playing(&mut self, stream_id: String, room: ConfigRoom) -> Res<OpValue> {
        let room_id = self.stream_room(
            room,
            ErrorCode::PLAYER_ROOM_ID_REQUIRED,
            ErrorCode::PLAYER_ROOM_ID_EMPTY,
        )?;
        let stream_id = StreamId::new(stream_id)?;
        if self.players.contains_key(&stream_id) {
            return Ok(OpValue::None);
        }
        self.players.insert(
            stream_id.clone(),
            Player {
                room_id: room_id.clone(),
                state: PlayerState::PlayRequesting,
                receiving: false,
                remote: (DEVICE_OPEN, DEVICE_OPEN),
            },
        );
        self.emit_player(
            stream_id.clone(),
            PlayerState::PlayRequesting,
            ErrorCode::SUCCESS,
        );
        self.send(
            Pending::Play {
                stream_id: stream_id.clone(),
            },
            Request::Play { room_id, stream_id },
        );
        Ok(OpValue::None)
    }

    // ---- replies ------------------------------------------------------------------------

    fn on_reply(&mut self, _now: Instant, id: u64, code: ErrorCode, body: Option<ReplyBody>) {
        self.inflight.remove(&id);
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match pending {
            Pending::Hello => {
                if !code.is_success() {
                    self.reconnect = None;
                    self.reject_connection(code);
                    return;
                }
                let (resumed, session) = match body {
                    Some(ReplyBody::Hello {
                        session_id,
                        resume_key,
                        resumed,
                        ..
                    }) => (resumed, Some((session_id, resume_key))),
                    _ => (false, None),
                };
                self.conn = Conn::Open;
                self.next_ping = Some(_now + self.config.heartbeat_interval);
                if resumed {
                    // A resume's reply is not one of the session's frames.
                    self.received -= 1;
                } else {
                    self.received = 1;
                }
                self.server_session = session;
                if self.reconnect.is_some() {
                    self.on_reconnected(resumed);
                }
                for frame in std::mem::take(&mut self.outbox) {
                    self.transmit(frame);
                }
            }
            Pending::Relogin { room_id } => self.on_relogin_reply(room_id, code, body),
            Pending::Login { room_id } => self.on_login_reply(id, room_id, code, body),
            Pending::Publish { channel, stream_id } => {
                let Some(p) = &mut self.publishers[channel] else {
                    return;
                };
                if p.stream_id != stream_id {
                    return;
                }
                if code.is_success() {
                    p.state = PublisherState::Publishing;
                    self.out.push_back(Output::Media(MediaCmd::StartPublish {
                        channel,
                        stream_id: stream_id.clone(),
                    }));
                    self.emit_publisher(stream_id, PublisherState::Publishing);
                    self.send_stream_state(channel, true);
                } else {
                    self.publishers[channel] = None;
                    self.emit(SessionEvent::PublisherState {
                        stream_id,
                        state: PublisherState::NoPublish,
                        code,
                        extended: String::new(),
                    });
                }
            }
            Pending::Play { stream_id } => {
                let Some(player) = self.players.get(&stream_id) else {
                    return;
                };
                if !code.is_success() {
                    self.players.remove(&stream_id);
                    self.emit_player(stream_id, PlayerState::NoPlay, code);
                } else if matches!(body, Some(ReplyBody::Play { available: true })) {
                    let room_id = player.room_id.clone();
                    self.stream_available(&room_id, &stream_id);
                }
            }
            Pending::MediaOffer => {
                let answer = match body {
                    Some(ReplyBody::MediaAnswer { sdp }) if code.is_success() => Ok(sdp),
                    _ if code.is_success() => Err(ErrorCode::PUBLISHER_INNER_ERROR),
                    _ => Err(code),
                };
                self.out.push_back(Output::MediaAnswer(answer));
            }
            Pending::Op { op } => {
                let value = match body {
                    Some(ReplyBody::Broadcast { message_id }) => OpValue::MessageId(message_id),
                    Some(ReplyBody::Barrage { message_id }) => OpValue::BarrageId(message_id),
                    _ => OpValue::None,
                };
                self.complete(op, code, value);
            }
            Pending::Renew => {
                if !code.is_success() {
                    self.emit(SessionEvent::ApiCalled {
                        func: "renewToken",
                        code,
                        info: "the server refused the renewed token".into(),
                    });
                }
            }
            Pending::Ignore => {}
        }
    }

    fn on_login_reply(
        &mut self,
        req: u64,
        room_id: RoomId,
        code: ErrorCode,
        body: Option<ReplyBody>,
    ) {
        if !matches!(
            self.rooms.get(&room_id).map(|r| &r.phase),
            Some(Phase::Logining { req: r, .. }) if *r == req
        ) {
            return;
        }
        if !code.is_success() {
            self.fail_login(&room_id, code);
            return;
        }
        let Some(ReplyBody::Login {
            room_session_id,
            users,
            streams,
            extra_info,
            online_count,
        }) = body
        else {
            self.fail_login(&room_id, ErrorCode::ROOM_INNER_ERROR);
            return;
        };
        let extended = format!("{{\"room_session_id\":{}}}", json_string(&room_session_id));
        let notify = self.rooms.get(&room_id).is_some_and(|r| r.notify);
        let op = match self.rooms.get_mut(&room_id) {
            Some(room) => match std::mem::replace(&mut room.phase, Phase::Logined) {
                Phase::Logining { op, .. } => op,
                Phase::Logined => 0,
            },
            None => return,
        };
        self.emit_room(&room_id, RoomReason::Logined, ErrorCode::SUCCESS, &extended);
        let users = self.others(users);
        let known_streams = self.other_streams(streams.clone());
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.users = users
                .iter()
                .map(|u| (u.user_id.clone(), u.clone()))
                .collect();
            room.streams = known_streams
                .into_iter()
                .map(|s| (s.stream_id.clone(), s))
                .collect();
        }
        if notify && !users.is_empty() {
            self.emit(SessionEvent::UserUpdate {
                room_id: room_id.to_string(),
                update: UpdateType::Add,
                users,
            });
        }
        self.emit_streams(room_id.clone(), UpdateType::Add, streams, &[]);
        if !extra_info.is_empty() {
            self.emit(SessionEvent::RoomExtraInfo {
                room_id: room_id.to_string(),
                infos: extra_info,
            });
        }
        self.emit(SessionEvent::OnlineCount {
            room_id: room_id.to_string(),
            count: online_count,
        });
        if op != 0 {
            self.complete(op, ErrorCode::SUCCESS, OpValue::Extended(extended));
        }
    }

    /// The server refused the hello: nothing can work on this connection.
    fn reject_connection(&mut self, code: ErrorCode) {
        self.conn = Conn::Closed;
        self.outbox.clear();
        let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for room_id in rooms {
            self.fail_login(&room_id, code);
        }
        let pending = std::mem::take(&mut self.pending);
        for (_, p) in pending {
            if let Pending::Op { op } = p {
                self.complete(op, code, OpValue::None);
            }
        }
    }

    // ---- helpers ------------------------------------------------------------------------

    /// A login ends in failure: the room's events first, then the login's promise.
    fn fail_login(&mut self, room_id: &RoomId, code: ErrorCode) {
        let op = self.take_login_op(room_id);
        self.leave_room(room_id, RoomReason::LoginFailed, code);
        if let Some(op) = op {
            self.complete(op, code, OpValue::Extended(String::new()));
        }
    }

    /// The promise of a login still in progress, taken so that it resolves only once.
    fn take_login_op(&mut self, room_id: &RoomId) -> Option<OpId> {
        match self.rooms.get_mut(room_id).map(|r| &mut r.phase) {
            Some(Phase::Logining { op, .. }) => Some(std::mem::take(op)).filter(|&op| op != 0),
            _ => None,
        }
    }

    /// Removes a room, stopping the streams bound to it, and reports `reason`.
    fn leave_room(&mut self, room_id: &RoomId, reason: RoomReason, code: ErrorCode) {
        if self.rooms.remove(room_id).is_none() {
            return;
        }
        for ch in 0..CHANNELS {
            if self.publishers[ch]
                .as_ref()
                .is_some_and(|p| p.room_id == *room_id)
            {
                if let Some(p) = self.publishers[ch].take() {
                    self.stop_publisher_media(ch, &p);
                    self.emit_publisher(p.stream_id, PublisherState::NoPublish);
                }
            }
        }
        let players: Vec<StreamId> = self
            .players
            .iter()
            .filter(|(_, p)| p.room_id == *room_id)
            .map(|(s, _)| s.clone())
            .collect();
        for stream_id in players {
            if let Some(p) = self.players.remove(&stream_id) {
                self.stop_player_media(&stream_id, &p);
            }
            self.emit_player(stream_id, PlayerState::NoPlay, ErrorCode::SUCCESS);
        }
        self.emit_room(room_id, reason, code, "");
        if self.rooms.is_empty() {
            self.user = None;
        }
    }

    /// The played stream exists: the media side starts receiving it. The player stays in
    /// PlayRequesting until media arrives ([`Session::handle_media_received`]).
    fn stream_available(&mut self, room_id: &RoomId, stream_id: &StreamId) {
        let Some(p) = self.players.get_mut(stream_id) else {
            return;
        };
        if p.room_id != *room_id || p.receiving {
            return;
        }
        p.receiving = true;
        self.out.push_back(Output::Media(MediaCmd::StartPlay {
            stream_id: stream_id.clone(),
        }));
    }

    fn stop_player_media(&mut self, stream_id: &StreamId, p: &Player) {
        if p.receiving {
            self.out.push_back(Output::Media(MediaCmd::StopPlay {
                stream_id: stream_id.clone(),
            }));
        }
    }

    fn stop_publisher_media(&mut self, channel: usize, p: &Publisher) {
        if p.state == PublisherState::Publishing {
            self.out.push_back(Output::Media(MediaCmd::StopPublish {
                channel,
                stream_id: p.stream_id.clone(),
            }));
        }
    }

    fn set_player(
        &mut self,
        room_id: &RoomId,
        stream_id: &StreamId,
        state: PlayerState,
        code: ErrorCode,
    ) {
        let Some(p) = self.players.get_mut(stream_id) else {
            return;
        };
        if p.room_id != *room_id || p.state == state {
            return;
        }
        p.state = state;
        self.emit_player(stream_id.clone(), state, code);
    }

    fn emit_streams(
        &mut self,
        room_id: RoomId,
        update: UpdateType,
        streams: Vec<StreamInfo>,
        deleted: &[StreamDelete],
    ) {
        let streams = self.other_streams(streams);
        if streams.is_empty() {
            return;
        }
        let extended = if deleted.is_empty() {
            String::new()
        } else {
            let items: Vec<String> = deleted
                .iter()
                .filter(|d| streams.iter().any(|s| s.stream_id == d.stream_id))
                .map(|d| {
                    format!(
                        "{{\"stream_id\":{},\"code\":{}}}",
                        json_string(d.stream_id.as_str()),
                        d.code.0
                    )
                })
                .collect();
            format!("{{\"stream_delete_reason\":[{}]}}", items.join(","))
        };
        self.emit(SessionEvent::StreamUpdate {
            room_id: room_id.into(),
            update,
            streams,
            extended,
        });
    }

    /// Messages of a logged-in room that others sent (nobody hears their own).
    fn incoming<M: Sent>(&self, room_id: &RoomId, messages: Vec<M>) -> Option<Vec<M>> {
        if !self.is_logined(room_id) {
            return None;
        }
        let messages: Vec<M> = messages
            .into_iter()
            .filter(|m| !self.is_me(m.sender()))
            .collect();
        (!messages.is_empty()).then_some(messages)
    }

    fn is_me(&self, user: &User) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.user_id == user.user_id)
    }

    fn others(&self, users: Vec<User>) -> Vec<User> {
        users.into_iter().filter(|u| !self.is_me(u)).collect()
    }

    fn other_streams(&self, streams: Vec<StreamInfo>) -> Vec<StreamInfo> {
        streams
            .into_iter()
            .filter(|s| !self.is_me(&s.user))
            .collect()
    }

    fn is_logined(&self, room_id: &RoomId) -> bool {
        matches!(
            self.rooms.get(room_id),
            Some(Room {
                phase: Phase::Logined,
                ..
            })
        )
    }

    /// A room the engine is logged into (or logging into), or `code`.
    fn logged_room(&self, room_id: &str, code: ErrorCode) -> Res<RoomId> {
        self.rooms
            .get_key_value(room_id)
            .map(|(k, _)| k.clone())
            .ok_or(code)
    }

    fn message_room(&self, room_id: &str, message: &str) -> Res<RoomId> {
        let room_id = self.logged_room(room_id, ErrorCode::IM_INCONSISTENT_ROOM_ID)?;
        if !self.is_logined(&room_id) {
            return Err(ErrorCode::IM_INCONSISTENT_ROOM_ID);
        }
        if message.is_empty() {
            return Err(ErrorCode::IM_CONTENT_NULL);
        }
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(ErrorCode::IM_CONTENT_TOO_LONG);
        }
        Ok(room_id)
    }

    /// The room a publisher or player binds to: in multi-room mode the config must name it; in
    /// single-room mode it is the one room logged in.
    fn stream_room(&self, room: ConfigRoom, missing: ErrorCode, empty: ErrorCode) -> Res<RoomId> {
        if self.config.multi_room {
            match room {
                None => Err(missing),
                Some(r) if r.is_empty() => Err(empty),
                Some(r) => self.logged_room(&r, ErrorCode::COMMON_NOT_LOGIN_ROOM),
            }
        } else {
            self.rooms
                .keys()
                .next()
                .cloned()
                .ok_or(ErrorCode::COMMON_NOT_LOGIN_ROOM)
        }
    }

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

/// Applies an add or delete update to a room's known set.
fn track<K: Ord, V: Clone>(
    known: &mut BTreeMap<K, V>,
    update: UpdateType,
    items: &[V],
    key: impl Fn(&V) -> K,
) {
    for item in items {
        match update {
            UpdateType::Add => {
                known.insert(key(item), item.clone());
            }
            UpdateType::Delete => {
                known.remove(&key(item));
            }
        }
    }
}

/// What left `old` and what is new in `now`.
fn diff<K: Ord, V: Clone>(old: &BTreeMap<K, V>, now: &BTreeMap<K, V>) -> (Vec<V>, Vec<V>) {
    let gone = old
        .iter()
        .filter(|(k, _)| !now.contains_key(*k))
        .map(|(_, v)| v.clone())
        .collect();
    let added = now
        .iter()
        .filter(|(k, _)| !old.contains_key(*k))
        .map(|(_, v)| v.clone())
        .collect();
    (gone, added)
}
