//! A room's messages: broadcast, barrage, custom command and the room's extra info, each
//! checked against the room (membership, rates) and sent in the room's order.

use super::{Effects, RoomCore, To};
use crate::clock::Now;
use crate::config::AppConfig;
use crate::limits::Bucket;
use crate::state::{ConnId, Outbound};
use std::collections::HashSet;
use zrooms_proto::wire::{BarrageMessage, BroadcastMessage, ReplyBody, RoomExtraInfo, ServerMsg};
use zrooms_proto::{ErrorCode, User, UserId};

type Res<T> = Result<T, ErrorCode>;

/// Who sends a message: the request's id, the connection and the user it is in the room as.
pub struct Sender {
    pub id: u64,
    pub conn: ConnId,
    pub user: User,
}

impl Effects {
    /// A message goes to every member but its sender, then the sender gets its reply.
    fn deliver(&mut self, (id, conn): (u64, ConnId), push: ServerMsg, body: ReplyBody) {
        self.send(To::Room { except: Some(conn) }, push);
        self.reply(id, Some(body));
    }
}

impl RoomCore {
    /// The room's one extra-info key (ZEGO keeps one per room) is set by a member.
    pub fn set_extra_info(
        &mut self,
        by: Sender,
        key: String,
        value: String,
        policy: &AppConfig,
        now: Now,
        fx: &mut Effects,
    ) -> Res<()> {
        if !self.is_member(&by.user.user_id, by.conn) {
            return Err(ErrorCode::ROOM_ROOMID_INCORRECT);
        }
        if self.extra_info.as_ref().is_some_and(|e| e.key != key) {
            return Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_EXCEED_KEYS);
        }
        let rate = policy.limits.room_extra_info_per_room;
        if !self.rates.extra_info.take(rate, now.at) {
            return Err(ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
        }
        let info = RoomExtraInfo {
            key,
            value,
            update_user: by.user,
            update_time_ms: now.unix_ms,
        };
        self.extra_info = Some(info.clone());
        fx.reply(by.id, None);
        let room_id = self.id.clone();
        let infos = vec![info];
        let except = Some(by.conn);
        fx.send(
            To::Room { except },
            ServerMsg::RoomExtraInfo { room_id, infos },
        );
        Ok(())
    }

    /// A member broadcasts `message` (room and member rates).
    pub fn broadcast(
        &mut self,
        by: Sender,
        message: String,
        policy: &AppConfig,
        now: Now,
        fx: &mut Effects,
    ) -> Res<()> {
        let limits = &policy.limits;
        let member = self
            .members
            .get_mut(&by.user.user_id)
            .filter(|m| m.out.conn == by.conn)
            .ok_or(ErrorCode::IM_INCONSISTENT_ROOM_ID)?;
        if !Bucket::take_both(
            (&mut self.rates.broadcast, limits.broadcast_per_room),
            (&mut member.rates.broadcast, limits.broadcast_per_user),
            now.at,
        ) {
            return Err(ErrorCode::IM_BROADCAST_MESSAGE_QPS_OVERRATE);
        }
        let message_id = self.next_message_id;
        self.next_message_id += 1;
        let messages = vec![BroadcastMessage {
            message,
            message_id,
            send_time_ms: now.unix_ms,
            from: by.user,
        }];
        let room_id = self.id.clone();
        let push = ServerMsg::Broadcast { room_id, messages };
        fx.deliver((by.id, by.conn), push, ReplyBody::Broadcast { message_id });
        Ok(())
    }

    /// A member sends a barrage message (room rate); ids are unique across the room's sessions.
    pub fn barrage(
        &mut self,
        by: Sender,
        message: String,
        policy: &AppConfig,
        now: Now,
        fx: &mut Effects,
    ) -> Res<()> {
        if !self.is_member(&by.user.user_id, by.conn) {
            return Err(ErrorCode::IM_INCONSISTENT_ROOM_ID);
        }
        if !self
            .rates
            .barrage
            .take(policy.limits.barrage_per_room, now.at)
        {
            return Err(ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
        }
        let message_id = format!("{}-{}", self.session_id, self.next_barrage_id);
        self.next_barrage_id += 1;
        let messages = vec![BarrageMessage {
            message,
            message_id: message_id.clone(),
            send_time_ms: now.unix_ms,
            from: by.user,
        }];
        let room_id = self.id.clone();
        let push = ServerMsg::Barrage { room_id, messages };
        fx.deliver((by.id, by.conn), push, ReplyBody::Barrage { message_id });
        Ok(())
    }

    /// A member sends `command` to the members `to` (everyone else when empty; the sender and
    /// unknown or repeated IDs are skipped).
    pub fn custom_command(
        &mut self,
        by: Sender,
        command: String,
        to: &[UserId],
        policy: &AppConfig,
        now: Now,
        fx: &mut Effects,
    ) -> Res<()> {
        let limits = &policy.limits;
        let conn = by.conn;
        let rates = &mut self
            .members
            .get_mut(&by.user.user_id)
            .filter(|m| m.out.conn == conn)
            .ok_or(ErrorCode::IM_INCONSISTENT_ROOM_ID)?
            .rates;
        let allowed = if to.len() == 1 {
            rates
                .command_single
                .take(limits.custom_command_single, now.at)
        } else {
            rates
                .command_multi
                .take(limits.custom_command_multi, now.at)
        };
        if !allowed {
            return Err(ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
        }
        let msg = ServerMsg::CustomCommand {
            room_id: self.id.clone(),
            from: by.user,
            command,
        };
        if to.is_empty() {
            fx.send(To::Room { except: Some(conn) }, msg);
        } else {
            let mut seen: HashSet<&UserId> = HashSet::with_capacity(to.len());
            let targets: Vec<Outbound> = to
                .iter()
                .filter(|t| seen.insert(t))
                .filter_map(|t| self.members.get(t))
                .filter(|m| m.out.conn != conn)
                .map(|m| m.out.clone())
                .collect();
            fx.send(To::Each(targets), msg);
        }
        fx.reply(by.id, None);
        Ok(())
    }
}
