//! One task per WebSocket connection: reads requests, applies them to the shared state, and
//! leaves every room when the socket goes away.
//!
//! Loop: `select!` over the next inbound frame, the server's shutdown signal, and the "stuck"
//! flag raised when this connection's outbound queue overflows. A separate writer task drains
//! the outbound queue into the socket, so a slow reader only ever fills its own queue.

use crate::sfu::SfuCmd;
use crate::state::{lock, App, ConnId, Outbound, PublishedStream};
use crate::Shared;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use zrooms_proto::wire::{
    BarrageMessage, BroadcastMessage, ClientFrame, DeleteReason, LoginConfig, ReplyBody, Request,
    RoomExtraInfo, ServerMsg, StreamInfo, TrackDirection, TrackSpec, UpdateType, MAX_MESSAGE_BYTES,
    MAX_ROOM_EXTRA_INFO_BYTES, MAX_STREAM_EXTRA_INFO_BYTES, PROTOCOL_VERSION,
};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User, UserId};

type Res<T> = Result<T, ErrorCode>;

/// What the connection knows about itself; the rooms hold the shared truth.
struct Conn {
    id: ConnId,
    out: Outbound,
    shared: Arc<Shared>,
    app: Option<Arc<App>>,
    user: Option<User>,
    rooms: HashMap<RoomId, Arc<crate::state::Room>>,
    /// Streams this connection plays, and through which room.
    playing: HashMap<StreamId, RoomId>,
}

pub(crate) async fn serve(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(shared.config.max_message_bytes))
        .max_frame_size(Some(shared.config.max_message_bytes));
    let ws = match tokio_tungstenite::accept_async_with_config(stream, Some(ws_config)).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!("handshake failed: {e}");
            return;
        }
    };
    let (mut sink, mut source) = ws.split();
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (out, mut rx, stuck) = Outbound::new(id, shared.config.outbound_queue);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.send(Message::Text(frame)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut conn = Conn {
        id,
        out,
        shared,
        app: None,
        user: None,
        rooms: HashMap::new(),
        playing: HashMap::new(),
    };
    loop {
        tokio::select! {
            msg = source.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if !conn.on_text(text.as_str()) {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // Binary frames are not part of the protocol.
                Some(Ok(Message::Binary(_))) | Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            _ = stuck.wait() => {
                tracing::warn!(conn = id, "outbound queue full: closing a connection that does not read");
                break;
            }
            _ = shutdown.changed() => break,
        }
    }
    conn.leave_all(DeleteReason::DISCONNECTED);
    conn.shared.sfu.send(SfuCmd::Close { conn: id });
    // Dropping the last sender ends the writer once it has flushed what is queued.
    drop(conn);
    let _ = writer.await;
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
        if let Some(sign) = &config.app_sign {
            if !sign.eq_ignore_ascii_case(app_sign) {
                return Err(ErrorCode::ENGINE_APP_SIGN_INCORRECT);
            }
        }
        let app = {
            let mut apps = lock(&self.shared.apps);
            apps.entry(app_id)
                .or_insert_with(|| Arc::new(App::new(config)))
                .clone()
        };
        self.app = Some(app);
        Ok(ReplyBody::Hello {
            session_id: self.id.to_string(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }

    /// `Ok(Some(body))`: reply success with `body`; `Ok(None)`: already replied.
    fn request(&mut self, app: &Arc<App>, id: u64, req: Request) -> Res<Option<Option<ReplyBody>>> {
        match req {
            Request::Hello { .. } => Err(ErrorCode::COMMON_ILLEGAL_PARAM),
            Request::Ping => Ok(Some(None)),
            Request::MediaOffer { sdp, tracks } => {
                self.media_offer(app, id, sdp, tracks).map(|()| None)
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
            Request::RenewToken { room_id, .. } => {
                self.member_room(&room_id)?;
                Ok(Some(None))
            }
            Request::SetRoomExtraInfo {
                room_id,
                key,
                value,
            } => self
                .set_room_extra_info(id, room_id, key, value)
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
                .set_stream_extra_info(id, room_id, stream_id, extra_info)
                .map(|()| None),
            Request::Play { room_id, stream_id } => {
                self.member_room(&room_id)?;
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
                check_message(&message)?;
                self.in_room(&room_id, |st, user, out| {
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
                })?;
                Ok(None)
            }
            Request::Barrage { room_id, message } => {
                check_message(&message)?;
                self.in_room(&room_id, |st, user, out| {
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
                })?;
                Ok(None)
            }
            Request::CustomCommand {
                room_id,
                command,
                to,
            } => {
                check_message(&command)?;
                self.in_room(&room_id, |st, user, out| {
                    let msg = ServerMsg::CustomCommand {
                        room_id: room_id.clone(),
                        from: user,
                        command,
                    };
                    if to.is_empty() {
                        st.broadcast(&msg, Some(out.conn));
                    } else {
                        let frame = crate::state::encode(&msg);
                        let mut seen: Vec<&UserId> = Vec::with_capacity(to.len());
                        for target in &to {
                            if seen.contains(&target) {
                                continue;
                            }
                            seen.push(target);
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
        f: impl FnOnce(&mut crate::state::RoomState, User, &Outbound),
    ) -> Res<()> {
        let room = self.member_room(room_id)?;
        let user = self.user()?;
        let mut st = lock(&room.state);
        if !st.is_member(&user.user_id, self.id) {
            return Err(ErrorCode::IM_INCONSISTENT_ROOM_ID);
        }
        f(&mut st, user, &self.out);
        Ok(())
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
            }
            st.members.insert(
                user.user_id.clone(),
                crate::state::Member {
                    user: user.clone(),
                    out: self.out.clone(),
                    notify: config.user_status_notify,
                },
            );
            let users: Vec<User> = st
                .members
                .values()
                .filter(|m| m.out.conn != self.id)
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
        self.rooms.insert(room_id, room);
        Ok(())
    }

    /// Leaves one room: its streams go with `reason`, the others are told.
    fn leave(&mut self, app: &Arc<App>, room_id: &RoomId, reason: DeleteReason) {
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
        if extra_info.len() >= MAX_STREAM_EXTRA_INFO_BYTES {
            return Err(ErrorCode::PUBLISHER_EXTRA_INFO_TOO_LONG);
        }
        let room = self.member_room(&room_id)?;
        let user = self.user()?;
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
            if !app.claim_stream(&stream_id, &room_id, self.id) {
                return Err(ErrorCode::PUBLISHER_ERROR_REPETITIVE_PUBLISH_STREAM);
            }
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
    ) -> Res<()> {
        for t in &tracks {
            let allowed = match t.direction {
                TrackDirection::Send => app.publisher_of(&t.stream_id) == Some(self.id),
                TrackDirection::Recv => self.playing.contains_key(&t.stream_id),
            };
            if !allowed {
                return Err(match t.direction {
                    TrackDirection::Send => ErrorCode::PUBLISHER_FORBIDDEN,
                    TrackDirection::Recv => ErrorCode::PLAYER_FORBIDDEN,
                });
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.sfu.send(SfuCmd::Offer {
            conn: self.id,
            sdp,
            tracks,
            reply: tx,
        });
        let out = self.out.clone();
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
            out.send_msg(&msg);
        });
        Ok(())
    }

    fn set_stream_extra_info(
        &mut self,
        id: u64,
        room_id: RoomId,
        stream_id: StreamId,
        extra_info: String,
    ) -> Res<()> {
        if extra_info.len() >= MAX_STREAM_EXTRA_INFO_BYTES {
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
        id: u64,
        room_id: RoomId,
        key: String,
        value: String,
    ) -> Res<()> {
        if key.is_empty() {
            return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_KEY_EMPTY);
        }
        if key.len() >= MAX_ROOM_EXTRA_INFO_BYTES {
            return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_KEY_TOO_LONG);
        }
        if value.len() >= MAX_ROOM_EXTRA_INFO_BYTES {
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

fn check_message(message: &str) -> Res<()> {
    if message.is_empty() {
        return Err(ErrorCode::IM_CONTENT_NULL);
    }
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(ErrorCode::IM_CONTENT_TOO_LONG);
    }
    Ok(())
}
