//! A session's room messages: broadcast, barrage, custom command and room extra info. Each is
//! checked here for what needs no room (size, emptiness), then applied by the room's owner,
//! which delivers it and the reply in the room's order.

use super::{Answer, Res, Session};
use crate::app::App;
use crate::clock::Now;
use crate::room::{Effects, RoomCore, Sender};
use zrooms_proto::{ErrorCode, RoomId, UserId};

fn check_message(message: &str, max_bytes: usize) -> Res<()> {
    if message.is_empty() {
        return Err(ErrorCode::IM_CONTENT_NULL);
    }
    if message.len() > max_bytes {
        return Err(ErrorCode::IM_CONTENT_TOO_LONG);
    }
    Ok(())
}

impl Session {
    fn sender(&self, id: u64) -> Res<Sender> {
        let user = self.user()?;
        Ok(Sender {
            id,
            conn: self.id,
            user,
        })
    }

    pub(super) fn broadcast(
        &mut self,
        app: &App,
        id: u64,
        room_id: RoomId,
        message: String,
        now: Now,
    ) -> Res<Answer> {
        self.room_message(app, id, room_id, message, |core, by, message, fx| {
            core.broadcast(by, message, &app.config, now, fx)
        })
    }

    pub(super) fn barrage(
        &mut self,
        app: &App,
        id: u64,
        room_id: RoomId,
        message: String,
        now: Now,
    ) -> Res<Answer> {
        self.room_message(app, id, room_id, message, |core, by, message, fx| {
            core.barrage(by, message, &app.config, now, fx)
        })
    }

    /// A broadcast or barrage message: checked for size, then sent by the room's owner.
    fn room_message(
        &mut self,
        app: &App,
        id: u64,
        room_id: RoomId,
        message: String,
        send: impl FnOnce(&mut RoomCore, Sender, String, &mut Effects) -> Res<()>,
    ) -> Res<Answer> {
        check_message(&message, app.config.limits.message_bytes)?;
        let room = self.member_room(&room_id)?;
        let by = self.sender(id)?;
        let (sent, _) = room.run(&self.out, |core, fx| send(core, by, message, fx));
        sent.map(|()| Answer::Sent)
    }

    pub(super) fn custom_command(
        &mut self,
        app: &App,
        id: u64,
        room_id: RoomId,
        command: String,
        to: Vec<UserId>,
        now: Now,
    ) -> Res<Answer> {
        let limits = &app.config.limits;
        check_message(&command, limits.message_bytes)?;
        if to.len() > limits.custom_command_recipients {
            return Err(ErrorCode::IM_INPUT_PARAMS_LENGTH_LIMIT);
        }
        let room = self.member_room(&room_id)?;
        let by = self.sender(id)?;
        let policy = &app.config;
        let (sent, _) = room.run(&self.out, |core, fx| {
            core.custom_command(by, command, &to, policy, now, fx)
        });
        sent.map(|()| Answer::Sent)
    }

    pub(super) fn set_room_extra_info(
        &mut self,
        app: &App,
        id: u64,
        room_id: RoomId,
        key: String,
        value: String,
        now: Now,
    ) -> Res<Answer> {
        if key.is_empty() {
            return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_KEY_EMPTY);
        }
        let max = app.config.limits.room_extra_info_bytes;
        if key.len() >= max {
            return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_KEY_TOO_LONG);
        }
        if value.len() >= max {
            return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_VALUE_TOO_LONG);
        }
        let room = self
            .member_room(&room_id)
            .map_err(|_| ErrorCode::ROOM_ROOMID_INCORRECT)?;
        let by = self.sender(id)?;
        let policy = &app.config;
        let (set, _) = room.run(&self.out, |core, fx| {
            core.set_extra_info(by, key, value, policy, now, fx)
        });
        set.map(|()| Answer::Sent)
    }
}
