//! One room's state and its only owner.
//!
//! [`RoomCore`] holds who is in a room, what is published there, its extra info, message ids and
//! rates. Its fields are private: it changes only through its methods (join, leave, publish,
//! unpublish, messages, extra info), which check the request against the room, change the state
//! and return what follows from it as [`Effects`]: the frames to send (to the caller, a member,
//! the room) and the changes outside the room ([`Fx`]: a stream started or stopped, a member's
//! plays revoked) for the app's registries and the SFU. The core reads no clock: the time is
//! passed in, so it runs on virtual time in tests.
//!
//! [`Room`] puts a core behind a lock. [`Room::run`] applies one method and sends its frames
//! before the lock is released, so every member sees a room's events in the order they
//! happened, and a reply is never overtaken by an event it caused. The changes outside the room
//! are returned to the caller, who applies them after the lock is released
//! ([`crate::session`] does, in one place).
//!
//! This is the seam for several nodes: a room's methods are the operations a shared store has to
//! order, and their effects are what a node has to deliver to its own members.

use crate::config::AppConfig;
use crate::limits::Bucket;
use crate::state::{encode, lock, ConnId, Outbound};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;
use zrooms_proto::wire::{
    DeleteReason, ReplyBody, RoomExtraInfo, ServerMsg, StreamDelete, StreamInfo, UpdateType,
};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User, UserId};

type Res<T> = Result<T, ErrorCode>;

/// Members listed in a login's snapshot, at most (ZEGO's user list is not complete past 500
/// either): with 10,000 members the reply would otherwise be half a megabyte per login.
pub(crate) const LOGIN_SNAPSHOT_USERS: usize = 500;

/// Who a frame goes to. `Room` and `Notified` mean the members the room has when the method
/// that sent the frame is done (a member that left during it is not sent it; one that joined
/// is, unless excepted).
#[derive(Debug)]
pub enum To {
    /// The connection whose request this is.
    Caller,
    /// One connection (a member being replaced).
    Out(Outbound),
    /// Some members (a custom command's recipients).
    Each(Vec<Outbound>),
    /// Every member, but `except`.
    Room { except: Option<ConnId> },
    /// Members that asked for user updates, but `except`.
    Notified { except: ConnId },
}

/// A change outside the room that follows from a change inside it.
#[derive(Debug, PartialEq, Eq)]
pub enum Fx {
    /// `stream` is published now: its players are told.
    Started(StreamId),
    /// The stream `conn` published is gone: the app releases its ID, its players are told why,
    /// and the SFU stops forwarding it.
    Stopped {
        stream: StreamId,
        conn: ConnId,
        reason: DeleteReason,
    },
    /// `conn` was replaced in this room (its user logged in elsewhere): it plays nothing more
    /// through the room.
    Revoked { conn: ConnId },
}

/// What one method of a room produced.
#[derive(Default, Debug)]
pub struct Effects {
    frames: Vec<(To, ServerMsg)>,
    after: Vec<Fx>,
}

impl Effects {
    fn send(&mut self, to: To, msg: ServerMsg) {
        self.frames.push((to, msg));
    }

    fn reply(&mut self, id: u64, body: Option<ReplyBody>) {
        self.send(
            To::Caller,
            ServerMsg::Reply {
                id,
                code: ErrorCode::SUCCESS,
                message: String::new(),
                body,
            },
        );
    }

    /// The frames, in order.
    pub fn frames(&self) -> &[(To, ServerMsg)] {
        &self.frames
    }

    /// The changes outside the room, in order.
    pub fn after(&self) -> &[Fx] {
        &self.after
    }
}

struct Member {
    user: User,
    out: Outbound,
    /// The member asked for `roomUserUpdate` (`isUserStatusNotify`).
    notify: bool,
    rates: MemberRates,
}

/// Per-member rate buckets (see [`crate::limits`]).
#[derive(Default)]
struct MemberRates {
    broadcast: Bucket,
    command_single: Bucket,
    command_multi: Bucket,
}

/// Per-room rate buckets.
#[derive(Default)]
struct RoomRates {
    broadcast: Bucket,
    barrage: Bucket,
    logins: Bucket,
    extra_info: Bucket,
}

struct Published {
    info: StreamInfo,
    conn: ConnId,
}

/// A login into a room.
pub struct Join<'a> {
    /// The request's id (the reply carries it).
    pub id: u64,
    pub user: User,
    pub out: &'a Outbound,
    /// The member wants `roomUserUpdate`.
    pub notify: bool,
    /// The login's `maxMemberCount` (the first member's sets the room's).
    pub max_member_count: u32,
}

/// One room's state; see the module's documentation.
pub struct RoomCore {
    id: RoomId,
    session_id: u64,
    closed: bool,
    /// The first member's `maxMemberCount`, 0 = no limit of the room's own.
    max_members: u32,
    members: HashMap<UserId, Member>,
    streams: BTreeMap<StreamId, Published>,
    extra_info: Option<RoomExtraInfo>,
    next_message_id: u64,
    next_barrage_id: u64,
    rates: RoomRates,
}

impl RoomCore {
    pub fn new(id: RoomId, session_id: u64) -> Self {
        RoomCore {
            id,
            session_id,
            closed: false,
            max_members: 0,
            members: HashMap::new(),
            streams: BTreeMap::new(),
            extra_info: None,
            next_message_id: 1,
            next_barrage_id: 1,
            rates: RoomRates::default(),
        }
    }

    /// Whether `conn` is the member `user` of this room.
    pub fn is_member(&self, user: &UserId, conn: ConnId) -> bool {
        self.members.get(user).is_some_and(|m| m.out.conn == conn)
    }

    pub fn online(&self) -> usize {
        self.members.len()
    }

    /// The streams `conn` publishes here.
    pub fn streams_of(&self, conn: ConnId) -> impl Iterator<Item = &StreamId> {
        self.streams
            .iter()
            .filter(move |(_, s)| s.conn == conn)
            .map(|(id, _)| id)
    }

    /// Admits `j.user` (replacing the same user's earlier connection), replies with the room's
    /// snapshot and tells the members who asked.
    pub fn join(
        &mut self,
        j: Join<'_>,
        policy: &AppConfig,
        now: Instant,
        fx: &mut Effects,
    ) -> Res<()> {
        let existing = self.members.get(&j.user.user_id).map(|m| m.out.clone());
        if existing.is_none() {
            let room_limit = if self.members.is_empty() {
                j.max_member_count
            } else {
                self.max_members
            };
            let limit = [room_limit, policy.max_members]
                .into_iter()
                .filter(|&n| n > 0)
                .min();
            if limit.is_some_and(|n| self.members.len() >= n as usize) {
                return Err(ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_MEMBER);
            }
        }
        // Only admissible logins count against the room's rate.
        if !self.rates.logins.take(policy.limits.logins_per_room, now) {
            return Err(ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
        }
        if self.members.is_empty() {
            self.max_members = j.max_member_count;
        }
        if let Some(old) = &existing {
            self.replace(old, &j.user.user_id, j.out.conn, fx);
        }
        self.members.insert(
            j.user.user_id.clone(),
            Member {
                user: j.user.clone(),
                out: j.out.clone(),
                notify: j.notify,
                rates: MemberRates::default(),
            },
        );
        let body = self.snapshot(j.out.conn);
        fx.reply(j.id, Some(body));
        if existing.is_none() {
            self.user_update(UpdateType::Add, j.user, j.out.conn, fx);
        }
        Ok(())
    }

    /// The same user logs in from another connection: the earlier one is kicked out, its
    /// streams stop and its plays through this room are revoked.
    fn replace(&mut self, old: &Outbound, user: &UserId, new: ConnId, fx: &mut Effects) {
        fx.send(
            To::Out(old.clone()),
            ServerMsg::Kicked {
                room_id: self.id.clone(),
                code: ErrorCode::ROOM_KICKED_OUT,
            },
        );
        let reason = DeleteReason::REPEATED_LOGIN;
        self.remove_streams_of(user, old.conn, reason, Some(new), fx);
        fx.after.push(Fx::Revoked { conn: old.conn });
    }

    /// A login's answer: the room's session, other members (at most [`LOGIN_SNAPSHOT_USERS`]),
    /// streams, extra info and the exact count.
    fn snapshot(&self, conn: ConnId) -> ReplyBody {
        let users: Vec<User> = self
            .members
            .values()
            .filter(|m| m.out.conn != conn)
            .take(LOGIN_SNAPSHOT_USERS)
            .map(|m| m.user.clone())
            .collect();
        ReplyBody::Login {
            room_session_id: self.session_id.to_string(),
            users,
            streams: self.streams.values().map(|s| s.info.clone()).collect(),
            extra_info: self.extra_info.iter().cloned().collect(),
            online_count: self.members.len() as u32,
        }
    }

    fn user_update(&self, update: UpdateType, user: User, except: ConnId, fx: &mut Effects) {
        fx.send(
            To::Notified { except },
            ServerMsg::UserUpdate {
                room_id: self.id.clone(),
                update,
                users: vec![user],
            },
        );
    }

    /// `conn` leaves as `user`: its streams stop with `reason` and the members who asked are
    /// told. False when it was not the member (already replaced or gone).
    pub fn leave(
        &mut self,
        user: &User,
        conn: ConnId,
        reason: DeleteReason,
        fx: &mut Effects,
    ) -> bool {
        if !self.is_member(&user.user_id, conn) {
            return false;
        }
        self.remove_streams_of(&user.user_id, conn, reason, None, fx);
        self.members.remove(&user.user_id);
        self.user_update(UpdateType::Delete, user.clone(), conn, fx);
        true
    }

    /// Removes the streams `conn` publishes as `user`, telling the room (all but `except`) why.
    fn remove_streams_of(
        &mut self,
        user: &UserId,
        conn: ConnId,
        reason: DeleteReason,
        except: Option<ConnId>,
        fx: &mut Effects,
    ) {
        let gone: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.conn == conn && s.info.user.user_id == *user)
            .map(|(id, _)| id.clone())
            .collect();
        self.remove_streams(&gone, reason, except, fx);
    }

    /// Removes the named streams and tells the room (all but `except`).
    fn remove_streams(
        &mut self,
        ids: &[StreamId],
        reason: DeleteReason,
        except: Option<ConnId>,
        fx: &mut Effects,
    ) {
        let mut infos = Vec::new();
        for id in ids {
            if let Some(s) = self.streams.remove(id) {
                fx.after.push(Fx::Stopped {
                    stream: id.clone(),
                    conn: s.conn,
                    reason,
                });
                infos.push(s.info);
            }
        }
        if infos.is_empty() {
            return;
        }
        let deleted = infos
            .iter()
            .map(|s| StreamDelete {
                stream_id: s.stream_id.clone(),
                code: reason,
            })
            .collect();
        fx.send(
            To::Room { except },
            ServerMsg::StreamUpdate {
                room_id: self.id.clone(),
                update: UpdateType::Delete,
                streams: infos,
                deleted,
            },
        );
    }

    /// `conn` publishes `info.stream_id` here. `claim` reserves the ID in the app (unique per
    /// app, a bounded number per connection); it runs only when the room admits the stream.
    pub fn publish(
        &mut self,
        id: u64,
        conn: ConnId,
        info: StreamInfo,
        max_streams: u32,
        claim: impl FnOnce() -> Res<()>,
        fx: &mut Effects,
    ) -> Res<()> {
        if !self.is_member(&info.user.user_id, conn) {
            return Err(ErrorCode::COMMON_NOT_LOGIN_ROOM);
        }
        if self
            .streams
            .get(&info.stream_id)
            .is_some_and(|s| s.conn == conn)
        {
            fx.reply(id, None);
            return Ok(());
        }
        if self.streams.len() >= max_streams as usize {
            return Err(ErrorCode::PUBLISHER_FORBIDDEN);
        }
        claim()?;
        let published = Published {
            info: info.clone(),
            conn,
        };
        self.streams.insert(info.stream_id.clone(), published);
        fx.reply(id, None);
        fx.after.push(Fx::Started(info.stream_id.clone()));
        fx.send(
            To::Room { except: Some(conn) },
            ServerMsg::StreamUpdate {
                room_id: self.id.clone(),
                update: UpdateType::Add,
                streams: vec![info],
                deleted: Vec::new(),
            },
        );
        Ok(())
    }

    /// `conn` stops publishing `stream` (nothing happens when it does not publish it).
    pub fn unpublish(&mut self, conn: ConnId, stream: &StreamId, fx: &mut Effects) {
        if self.streams.get(stream).is_some_and(|s| s.conn == conn) {
            let ids = std::slice::from_ref(stream);
            self.remove_streams(ids, DeleteReason::STOPPED, Some(conn), fx);
        }
    }

    pub fn set_stream_extra_info(
        &mut self,
        id: u64,
        conn: ConnId,
        stream: &StreamId,
        extra_info: String,
        fx: &mut Effects,
    ) -> Res<()> {
        let Some(s) = self.streams.get_mut(stream).filter(|s| s.conn == conn) else {
            return Err(ErrorCode::PUBLISHER_INNER_ERROR);
        };
        s.info.extra_info = extra_info;
        let info = s.info.clone();
        fx.reply(id, None);
        fx.send(
            To::Room { except: Some(conn) },
            ServerMsg::StreamExtraInfo {
                room_id: self.id.clone(),
                streams: vec![info],
            },
        );
        Ok(())
    }

    /// Sends a room's frames: each is serialized once, whatever its number of recipients.
    fn deliver(&self, caller: &Outbound, frames: Vec<(To, ServerMsg)>) {
        for (to, msg) in frames {
            let frame = encode(&msg);
            match to {
                To::Caller => caller.send(frame),
                To::Out(out) => out.send(frame),
                To::Each(outs) => {
                    for out in outs {
                        out.send(frame.clone());
                    }
                }
                To::Room { except } => {
                    for m in self.members.values().filter(|m| Some(m.out.conn) != except) {
                        m.out.send(frame.clone());
                    }
                }
                To::Notified { except } => {
                    let notified = self.members.values().filter(|m| m.notify);
                    for m in notified.filter(|m| m.out.conn != except) {
                        m.out.send(frame.clone());
                    }
                }
            }
        }
    }
}

/// A room: its id and its state behind a lock.
pub struct Room {
    pub id: RoomId,
    core: Mutex<RoomCore>,
}

impl Room {
    pub fn new(id: RoomId, session_id: u64) -> Self {
        Room {
            core: Mutex::new(RoomCore::new(id.clone(), session_id)),
            id,
        }
    }

    /// Applies `f` to the room's state and sends the frames it produced (`To::Caller` to
    /// `caller`) before the lock is released. Returns `f`'s result and the changes outside the
    /// room, for the caller to apply.
    pub fn run<T>(
        &self,
        caller: &Outbound,
        f: impl FnOnce(&mut RoomCore, &mut Effects) -> T,
    ) -> (T, Vec<Fx>) {
        let mut core = lock(&self.core);
        let mut fx = Effects::default();
        let out = f(&mut core, &mut fx);
        core.deliver(caller, fx.frames);
        (out, fx.after)
    }

    /// Reads the room's state.
    pub fn read<T>(&self, f: impl FnOnce(&RoomCore) -> T) -> T {
        f(&lock(&self.core))
    }

    /// Whether the room was dropped (a caller that found it in the app's map asks again).
    pub fn is_closed(&self) -> bool {
        lock(&self.core).closed
    }

    /// Marks an empty room closed; true when it was empty.
    pub(crate) fn close_if_empty(&self) -> bool {
        let mut core = lock(&self.core);
        if core.members.is_empty() && !core.closed {
            core.closed = true;
            return true;
        }
        false
    }

    /// Pushes the room's online count to every member.
    pub fn push_online_count(&self) {
        let core = lock(&self.core);
        let msg = ServerMsg::OnlineCount {
            room_id: self.id.clone(),
            count: core.members.len() as u32,
        };
        let frame = encode(&msg);
        for m in core.members.values() {
            m.out.send(frame.clone());
        }
    }
}

mod messages;
pub use messages::Sender;

#[cfg(test)]
mod tests;
