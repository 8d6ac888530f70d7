//! The app's calls: ZEGO's client-side rules (room mode, same user, ids, sizes, channels),
//! then the request to the server or the answer at once.

use super::*;
use crate::commands::{Command, ConfigRoom, RoomConfig};
use crate::events::*;
use std::collections::BTreeMap;
use std::time::Instant;
use zrooms_proto::wire::{
    LoginConfig, Request, MAX_MESSAGE_BYTES, MAX_ROOM_EXTRA_INFO_BYTES, MAX_STREAM_EXTRA_INFO_BYTES,
};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User, UserId, UserName};

impl Session {
    /// Runs one call. `Ok(Some(v))` resolves it now, `Ok(None)` later (on a reply), `Err` now
    /// with the code, having changed nothing.
    pub(super) fn command(&mut self, now: Instant, op: OpId, cmd: Command) -> Res<Option<OpValue>> {
        match cmd {
            Command::LoginRoom {
                room_id,
                user_id,
                user_name,
                config,
            } => self.login(now, op, room_id, user_id, user_name, config),
            Command::LogoutRoom { room_id } => self.logout(room_id).map(Some),
            Command::SwitchRoom { from, to, config } => self.switch_room(now, from, to, config),
            Command::RenewToken { room_id, token } => self.renew_token(room_id, token),
            Command::SetRoomExtraInfo {
                room_id,
                key,
                value,
            } => self.set_room_extra_info(op, room_id, key, value),
            Command::StartPublishing {
                stream_id,
                channel,
                room_id,
            } => self.start_publishing(stream_id, channel, room_id).map(Some),
            Command::StopPublishing { channel } => self.stop_publishing(channel),
            Command::SetStreamExtraInfo {
                extra_info,
                channel,
            } => self.set_stream_extra_info(op, extra_info, channel),
            Command::StartPlaying { stream_id, room_id } => {
                self.start_playing(stream_id, room_id).map(Some)
            }
            Command::StopPlaying { stream_id } => Ok(Some(self.stop_playing(stream_id))),
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
            } => self.send_custom_command(op, room_id, command, to),
            Command::MutePublishAudio { mute, channel } => {
                self.set_devices(channel, |d| d.audio_muted = mute)
            }
            Command::MutePublishVideo { mute, channel } => {
                self.set_devices(channel, |d| d.video_muted = mute)
            }
            Command::EnableCamera { enable, channel } => {
                self.set_devices(channel, |d| d.camera_disabled = !enable)
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

    /// `switchRoom` (single-room mode only): leave `from`, log into `to` as the same user.
    pub(super) fn switch_room(
        &mut self,
        now: Instant,
        from: String,
        to: String,
        config: Option<RoomConfig>,
    ) -> Res<Option<OpValue>> {
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

    pub(super) fn renew_token(&mut self, room_id: String, token: String) -> Res<Option<OpValue>> {
        let room_id = self.logged_room(&room_id, ErrorCode::ROOM_ROOMID_INCORRECT)?;
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.login.token = token.clone();
        }
        self.send(Pending::Renew, Request::RenewToken { room_id, token });
        Ok(Some(OpValue::None))
    }

    pub(super) fn set_room_extra_info(
        &mut self,
        op: OpId,
        room_id: String,
        key: String,
        value: String,
    ) -> Res<Option<OpValue>> {
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

    pub(super) fn stop_publishing(&mut self, channel: u32) -> Res<Option<OpValue>> {
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

    pub(super) fn set_stream_extra_info(
        &mut self,
        op: OpId,
        extra_info: Option<String>,
        channel: u32,
    ) -> Res<Option<OpValue>> {
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

    /// `stopPlayingStream`: always succeeds (an unknown stream is nothing to stop).
    pub(super) fn stop_playing(&mut self, stream_id: String) -> OpValue {
        if let Ok(stream_id) = StreamId::new(stream_id) {
            if let Some(p) = self.players.remove(&stream_id) {
                self.stop_player_media(&stream_id, &p);
                self.emit_player(stream_id.clone(), PlayerState::NoPlay, ErrorCode::SUCCESS);
                self.send(
                    Pending::Ignore,
                    Request::Unplay {
                        room_id: p.room_id,
                        stream_id,
                    },
                );
            }
        }
        OpValue::None
    }

    pub(super) fn send_custom_command(
        &mut self,
        op: OpId,
        room_id: String,
        command: String,
        to: Vec<String>,
    ) -> Res<Option<OpValue>> {
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

    /// Changes one channel's device switches and tells the media side and the players.
    pub(super) fn set_devices(
        &mut self,
        channel: u32,
        f: impl FnOnce(&mut Devices),
    ) -> Res<Option<OpValue>> {
        let ch = channel_index(channel)?;
        f(&mut self.devices[ch]);
        self.devices_changed(ch);
        Ok(Some(OpValue::None))
    }

    /// The (mic, camera) state players of `channel`'s stream see.
    pub(super) fn device_state(&self, ch: usize) -> (u32, u32) {
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
    pub(super) fn devices_changed(&mut self, ch: usize) {
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
    pub(super) fn send_stream_state(&mut self, ch: usize, only_if_not_open: bool) {
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

    pub(super) fn login(
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

    pub(super) fn start_login(
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

    pub(super) fn logout(&mut self, room_id: Option<String>) -> Res<OpValue> {
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

    pub(super) fn start_publishing(
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
        self.request_publish(ch, room_id, stream_id);
        Ok(OpValue::None)
    }

    pub(super) fn start_playing(&mut self, stream_id: String, room: ConfigRoom) -> Res<OpValue> {
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
        self.request_play(room_id, stream_id);
        Ok(OpValue::None)
    }

    /// A room the engine is logged into (or logging into), or `code`.
    pub(super) fn logged_room(&self, room_id: &str, code: ErrorCode) -> Res<RoomId> {
        self.rooms
            .get_key_value(room_id)
            .map(|(k, _)| k.clone())
            .ok_or(code)
    }

    pub(super) fn message_room(&self, room_id: &str, message: &str) -> Res<RoomId> {
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
    pub(super) fn stream_room(
        &self,
        room: ConfigRoom,
        missing: ErrorCode,
        empty: ErrorCode,
    ) -> Res<RoomId> {
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
}
