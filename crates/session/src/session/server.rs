//! Frames from the server: replies matched to what waits for them, and each room's pushes
//! (users, streams, extra info, messages, counts, kicks, stream states), never leaking
//! between rooms.

use super::*;
use crate::events::*;
use std::time::Instant;
use zrooms_proto::wire::{ReplyBody, ServerMsg, StreamDelete, StreamInfo, UpdateType};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User};

impl Session {
    /// A frame from the server.
    pub fn handle_server(&mut self, now: Instant, msg: ServerMsg) {
        self.received += 1;
        self.last_rx = Some(now);
        match msg {
            // The message (a refusal in words) is for people reading logs, not for the app.
            ServerMsg::Reply { id, code, body, .. } => self.on_reply(now, id, code, body),
            ServerMsg::UserUpdate {
                room_id,
                update,
                users,
            } => self.on_user_update(room_id, update, users),
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
            push @ (ServerMsg::StreamExtraInfo { .. }
            | ServerMsg::RoomExtraInfo { .. }
            | ServerMsg::Broadcast { .. }
            | ServerMsg::Barrage { .. }
            | ServerMsg::CustomCommand { .. }
            | ServerMsg::OnlineCount { .. }
            | ServerMsg::TokenWillExpire { .. }) => self.on_room_push(push),
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
            } => self.on_stream_state(room_id, stream_id, audio, video),
            ServerMsg::StreamUnavailable {
                room_id, stream_id, ..
            } => self.on_stream_unavailable(room_id, stream_id),
            ServerMsg::PlayFailed {
                stream_id, code, ..
            } => self.on_play_failed(stream_id, code),
        }
    }

    fn on_user_update(&mut self, room_id: RoomId, update: UpdateType, users: Vec<User>) {
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

    /// A room's push that only needs the room to be logged in (and some, a sender other than
    /// this user).
    fn on_room_push(&mut self, push: ServerMsg) {
        let event = match push {
            ServerMsg::StreamExtraInfo { room_id, streams } if self.is_logined(&room_id) => {
                let streams = self.other_streams(streams);
                let room_id = room_id.into();
                (!streams.is_empty()).then_some(SessionEvent::StreamExtraInfo { room_id, streams })
            }
            ServerMsg::RoomExtraInfo { room_id, infos }
                if self.is_logined(&room_id) && !infos.is_empty() =>
            {
                let room_id = room_id.into();
                Some(SessionEvent::RoomExtraInfo { room_id, infos })
            }
            ServerMsg::Broadcast { room_id, messages } => {
                let messages = self.incoming(&room_id, messages);
                let room_id = room_id.into();
                messages.map(|messages| SessionEvent::Broadcast { room_id, messages })
            }
            ServerMsg::Barrage { room_id, messages } => {
                let messages = self.incoming(&room_id, messages);
                let room_id = room_id.into();
                messages.map(|messages| SessionEvent::Barrage { room_id, messages })
            }
            ServerMsg::CustomCommand {
                room_id,
                from,
                command,
            } if self.is_logined(&room_id) && !self.is_me(&from) => {
                let room_id = room_id.into();
                Some(SessionEvent::CustomCommand {
                    room_id,
                    from,
                    command,
                })
            }
            ServerMsg::OnlineCount { room_id, count } if self.is_logined(&room_id) => {
                let room_id = room_id.into();
                Some(SessionEvent::OnlineCount { room_id, count })
            }
            ServerMsg::TokenWillExpire { room_id, remain_s } if self.is_logined(&room_id) => {
                let room_id = room_id.into();
                Some(SessionEvent::TokenWillExpire { room_id, remain_s })
            }
            // A room this engine is not logged into, or a push with a handler of its own
            // (handle_server).
            _ => None,
        };
        if let Some(ev) = event {
            self.emit(ev);
        }
    }

    fn on_stream_state(&mut self, room_id: RoomId, stream_id: StreamId, audio: u32, video: u32) {
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

    fn on_stream_unavailable(&mut self, room_id: RoomId, stream_id: StreamId) {
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

    /// The server cannot bring this stream here (the offer lacks the codec its publisher
    /// sends): the player ends with the code, as ZEGO's does when it cannot decode, and the
    /// server forgets the play.
    fn on_play_failed(&mut self, stream_id: StreamId, code: ErrorCode) {
        let Some(p) = self.players.remove(&stream_id) else {
            return;
        };
        self.stop_player_media(&stream_id, &p);
        self.emit_player(stream_id.clone(), PlayerState::NoPlay, code);
        self.send(
            Pending::Ignore,
            Request::Unplay {
                room_id: p.room_id,
                stream_id,
            },
        );
    }

    pub(super) fn on_reply(
        &mut self,
        now: Instant,
        id: u64,
        code: ErrorCode,
        body: Option<ReplyBody>,
    ) {
        self.inflight.remove(&id);
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match pending {
            Pending::Hello => self.on_hello_reply(now, code, body),
            Pending::Relogin { room_id } => self.on_relogin_reply(room_id, code, body),
            Pending::Login { room_id } => self.on_login_reply(id, room_id, code, body),
            Pending::Publish { channel, stream_id } => {
                self.on_publish_reply(channel, stream_id, code)
            }
            Pending::Play { stream_id } => self.on_play_reply(stream_id, code, body),
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

    /// The server's answer to the hello: the connection is open (or refused), and a
    /// reconnection resumes or starts over.
    fn on_hello_reply(&mut self, now: Instant, code: ErrorCode, body: Option<ReplyBody>) {
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
        self.next_ping = Some(now + self.config.heartbeat_interval);
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

    fn on_publish_reply(&mut self, channel: usize, stream_id: StreamId, code: ErrorCode) {
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

    fn on_play_reply(&mut self, stream_id: StreamId, code: ErrorCode, body: Option<ReplyBody>) {
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

    pub(super) fn on_login_reply(
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
    pub(super) fn reject_connection(&mut self, code: ErrorCode) {
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
    pub(super) fn fail_login(&mut self, room_id: &RoomId, code: ErrorCode) {
        let op = self.take_login_op(room_id);
        self.leave_room(room_id, RoomReason::LoginFailed, code);
        if let Some(op) = op {
            self.complete(op, code, OpValue::Extended(String::new()));
        }
    }

    /// The promise of a login still in progress, taken so that it resolves only once.
    pub(super) fn take_login_op(&mut self, room_id: &RoomId) -> Option<OpId> {
        match self.rooms.get_mut(room_id).map(|r| &mut r.phase) {
            Some(Phase::Logining { op, .. }) => Some(std::mem::take(op)).filter(|&op| op != 0),
            _ => None,
        }
    }

    /// Removes a room, stopping the streams bound to it, and reports `reason`.
    pub(super) fn leave_room(&mut self, room_id: &RoomId, reason: RoomReason, code: ErrorCode) {
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
        let players = self.players_in(room_id);
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
    pub(super) fn stream_available(&mut self, room_id: &RoomId, stream_id: &StreamId) {
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

    pub(super) fn stop_player_media(&mut self, stream_id: &StreamId, p: &Player) {
        if p.receiving {
            self.out.push_back(Output::Media(MediaCmd::StopPlay {
                stream_id: stream_id.clone(),
            }));
        }
    }

    pub(super) fn stop_publisher_media(&mut self, channel: usize, p: &Publisher) {
        if p.state == PublisherState::Publishing {
            self.out.push_back(Output::Media(MediaCmd::StopPublish {
                channel,
                stream_id: p.stream_id.clone(),
            }));
        }
    }

    pub(super) fn set_player(
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

    pub(super) fn emit_streams(
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
    pub(super) fn incoming<M: Sent>(&self, room_id: &RoomId, messages: Vec<M>) -> Option<Vec<M>> {
        if !self.is_logined(room_id) {
            return None;
        }
        let messages: Vec<M> = messages
            .into_iter()
            .filter(|m| !self.is_me(m.sender()))
            .collect();
        (!messages.is_empty()).then_some(messages)
    }

    pub(super) fn is_me(&self, user: &User) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.user_id == user.user_id)
    }

    pub(super) fn others(&self, users: Vec<User>) -> Vec<User> {
        users.into_iter().filter(|u| !self.is_me(u)).collect()
    }

    pub(super) fn other_streams(&self, streams: Vec<StreamInfo>) -> Vec<StreamInfo> {
        streams
            .into_iter()
            .filter(|s| !self.is_me(&s.user))
            .collect()
    }

    pub(super) fn is_logined(&self, room_id: &RoomId) -> bool {
        matches!(
            self.rooms.get(room_id),
            Some(Room {
                phase: Phase::Logined,
                ..
            })
        )
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
