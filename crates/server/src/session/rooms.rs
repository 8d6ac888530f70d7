//! A session in its rooms: login (the multi-room rules, authority, admission), logout, and
//! what the session remembers of each room.

use super::{Answer, Res, Session};
use crate::app::App;
use crate::clock::Now;
use crate::room::{Fx, Join, Room};
use crate::sfu::SfuCmd;
use crate::state::lock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use zrooms_proto::wire::{DeleteReason, LoginConfig};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User};

impl Session {
    pub(super) fn login(
        &mut self,
        app: &Arc<App>,
        id: u64,
        room_id: RoomId,
        user: User,
        config: LoginConfig,
        now: Now,
    ) -> Res<Answer> {
        self.forget_kicked_rooms();
        self.may_join(app, &room_id, &user, &config)?;
        let grant = self.authorize(app, &user.user_id, &room_id, &config.token, now)?;
        let shared = self.shared.clone();
        let room = app.room(&room_id, || {
            shared.next_session.fetch_add(1, Ordering::Relaxed)
        });
        let join = Join {
            id,
            user: user.clone(),
            out: &self.out,
            notify: config.user_status_notify,
            max_member_count: config.max_member_count,
        };
        let replay = self.replay.clone();
        let (joined, after) = room.run(&self.out, |core, fx| {
            let joined = core.join(join, &app.config, now.at, fx);
            // From the login's answer on, the session's frames are kept for a resume.
            if let (Ok(()), Some(replay)) = (&joined, replay) {
                lock(&replay).keep();
            }
            joined
        });
        self.settle(app, &room_id, after);
        if let Err(code) = joined {
            // A room this login created and could not join is dropped again.
            app.drop_room_if_empty(&room);
            return Err(code);
        }
        self.user = Some(user);
        self.grants.insert(room_id.clone(), grant);
        self.rooms.insert(room_id, room);
        if !self.logged_in_once {
            self.logged_in_once = true;
            self.shared.pending.remove(self.id);
        }
        Ok(Answer::Sent)
    }

    /// The multi-room rules, before any token is looked at.
    fn may_join(&self, app: &App, room_id: &RoomId, user: &User, config: &LoginConfig) -> Res<()> {
        let policy = &app.config;
        if config.multi_room && !policy.multi_room {
            return Err(ErrorCode::ROOM_ERROR_MULTI_ROOM_NOT_SUPPORT);
        }
        if self.rooms.contains_key(room_id) {
            return Err(ErrorCode::ROOM_COUNT_EXCEED);
        }
        if !config.multi_room && !self.rooms.is_empty() {
            return Err(ErrorCode::ROOM_COUNT_EXCEED);
        }
        if config.multi_room && self.rooms.len() >= policy.max_rooms_per_user as usize {
            return Err(ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_ROOM_COUNT);
        }
        if self.user.as_ref().is_some_and(|u| *u != *user) && !self.rooms.is_empty() {
            return Err(ErrorCode::ROOM_MULTI_ROOM_USER_INFO_DIFFERENT);
        }
        Ok(())
    }

    /// Applies what a change in `room_id` means outside it: a stopped stream's ID is released,
    /// its players are told and the SFU stops forwarding it; a started one's players are told;
    /// a replaced member's plays through the room are revoked.
    pub(super) fn settle(&self, app: &App, room_id: &RoomId, after: Vec<Fx>) {
        for fx in after {
            match fx {
                Fx::Started(stream) => app.notify_players(&stream, None),
                Fx::Stopped {
                    stream,
                    conn,
                    reason,
                } => {
                    app.release_stream(&stream, conn);
                    app.notify_players(&stream, Some(reason));
                    self.shared.sfu.send(SfuCmd::Unpublish { conn, stream });
                }
                Fx::Revoked { conn } => {
                    for stream in app.revoke_player(conn, room_id) {
                        self.shared.sfu.send(SfuCmd::Unplay { conn, stream });
                    }
                }
            }
        }
    }

    /// Forgets every room this session was kicked out of since it last looked.
    pub(super) fn forget_kicked_rooms(&mut self) {
        let Some(user) = self.user.clone() else {
            return;
        };
        let conn = self.id;
        let gone: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, room)| !room.read(|core| core.is_member(&user.user_id, conn)))
            .map(|(id, _)| id.clone())
            .collect();
        for room_id in gone {
            self.forget_room(&room_id);
        }
    }

    /// A room this session is a member of now. A room it was kicked out of (its user logged in
    /// again elsewhere) is forgotten here: the session loses every right in it at once (the
    /// kicker already removed its plays and streams).
    pub(super) fn member_room_checked(&mut self, room_id: &RoomId) -> Res<Arc<Room>> {
        let room = self.member_room(room_id)?;
        let user = self.user()?;
        if room.read(|core| core.is_member(&user.user_id, self.id)) {
            return Ok(room);
        }
        self.forget_room(room_id);
        Err(ErrorCode::COMMON_NOT_LOGIN_ROOM)
    }

    /// Drops what this session knows of a room it no longer belongs to.
    fn forget_room(&mut self, room_id: &RoomId) {
        self.rooms.remove(room_id);
        self.grants.remove(room_id);
        self.playing.retain(|_, r| r != room_id);
        if self.rooms.is_empty() {
            self.user = None;
        }
    }

    pub(super) fn user(&self) -> Res<User> {
        self.user.clone().ok_or(ErrorCode::COMMON_NOT_LOGIN_ROOM)
    }

    /// A room this session has logged into (it may since have been kicked; the room's owner
    /// checks membership).
    pub(super) fn member_room(&self, room_id: &RoomId) -> Res<Arc<Room>> {
        self.rooms
            .get(room_id)
            .cloned()
            .ok_or(ErrorCode::COMMON_NOT_LOGIN_ROOM)
    }

    /// Leaves one room: its streams go with `reason`, the members who asked are told, and what
    /// it played through the room stops.
    pub(super) fn leave(&mut self, app: &Arc<App>, room_id: &RoomId, reason: DeleteReason) {
        self.grants.remove(room_id);
        let Some(room) = self.rooms.remove(room_id) else {
            return;
        };
        let Some(user) = self.user.clone() else {
            return;
        };
        let conn = self.id;
        tracing::info!(
            target: super::EVENTS,
            event = "logout",
            app = app.config.app_id,
            room = room_id.as_str(),
            user = user.user_id.as_str(),
            reason = reason.0,
            session = conn
        );
        let (_, after) = room.run(&self.out, |core, fx| core.leave(&user, conn, reason, fx));
        self.settle(app, room_id, after);
        let players: Vec<StreamId> = self
            .playing
            .iter()
            .filter(|(_, r)| *r == room_id)
            .map(|(s, _)| s.clone())
            .collect();
        for stream in players {
            self.playing.remove(&stream);
            app.remove_player(&stream, conn);
            self.shared.sfu.send(SfuCmd::Unplay { conn, stream });
        }
        app.drop_room_if_empty(&room);
        if self.rooms.is_empty() {
            self.user = None;
        }
    }

    pub(super) fn leave_all(&mut self, reason: DeleteReason) {
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
}
