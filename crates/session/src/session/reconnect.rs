//! A dropped connection: rooms report Reconnecting, the connection is retried with backoff
//! until the horizon, and a reconnection either resumes the server session or logs every room
//! in again and reports what changed meanwhile.

use super::*;
use crate::events::*;
use std::collections::BTreeMap;
use std::time::Instant;
use zrooms_proto::wire::{ClientFrame, LoginConfig, ReplyBody, Request, StreamInfo, UpdateType};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User, UserId};

impl Session {
    /// The connection failed to open or broke. With rooms logged in, every such room reports
    /// Reconnecting (its publishers and players go back to requesting) and the connection is
    /// retried with backoff until the horizon; the server keeps the session meanwhile, so a quick
    /// return resumes it. Rooms still logging in fail. Without logged-in rooms, everything
    /// waiting on the connection fails.
    pub fn handle_disconnected(&mut self, now: Instant) {
        self.disconnected(now, true);
    }

    /// A connection attempt did not reach the server (refused, no route, no answer): as
    /// [`Session::handle_disconnected`], but the next attempt comes within the probe interval
    /// and the backoff does not grow, so the return of the network is noticed at once.
    pub fn handle_unreachable(&mut self, now: Instant) {
        self.disconnected(now, false);
    }

    fn disconnected(&mut self, now: Instant, reached: bool) {
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
            self.schedule_reconnect(now, reached);
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
    pub(super) fn enter_reconnecting(&mut self) {
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
    pub(super) fn move_publishers(
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
    pub(super) fn move_players(&mut self, pred: impl Fn(&Player) -> bool, to: PlayerState) {
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

    /// The OS says the network changed (a link, address or route came or went). Waiting to
    /// reconnect: the next attempt is now, not at its slot. Connected: a heartbeat goes now,
    /// so a connection the change broke is found without waiting for the next one.
    pub fn handle_network_changed(&mut self, now: Instant) {
        match self.conn {
            Conn::Closed => {
                if let Some(r) = self.reconnect.as_mut().filter(|r| r.next_at.is_some()) {
                    r.next_at = Some(now);
                }
            }
            Conn::Open => self.next_ping = Some(now),
            Conn::Connecting | Conn::Handshaking => {}
        }
        self.handle_timeout(now);
    }

    /// When to try again: the backoff (doubling from `reconnect_delay` to `reconnect_max_delay`)
    /// grows with attempts that reached the server; while it is unreachable, the next attempt
    /// comes within `reconnect_probe_interval`. Both ±25 %.
    pub(super) fn schedule_reconnect(&mut self, now: Instant, reached: bool) {
        let base = self.config.reconnect_delay;
        let max = self.config.reconnect_max_delay;
        let probe = self.config.reconnect_probe_interval;
        let jitter = self.next_jitter();
        let Some(r) = self.reconnect.as_mut() else {
            return;
        };
        let mut delay = base.saturating_mul(1u32 << r.attempt.min(16)).min(max);
        if reached {
            r.attempt = r.attempt.saturating_add(1);
        } else {
            delay = delay.min(probe);
        }
        // ±25 %.
        let factor = 0.75 + 0.5 * jitter;
        r.next_at = Some(now + delay.mul_f64(factor));
    }

    pub(super) fn next_jitter(&mut self) -> f64 {
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
    pub(super) fn give_up(&mut self, code: ErrorCode) {
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
    pub(super) fn on_reconnected(&mut self, resumed: bool) {
        self.reconnect = None;
        if resumed {
            self.resume();
            return;
        }
        self.start_over();
    }

    /// The server kept the session: everything is as it was. What was in flight is sent again
    /// (the server skips what it already did), then what was written meanwhile.
    fn resume(&mut self) {
        let inflight: Vec<ClientFrame> = std::mem::take(&mut self.inflight).into_values().collect();
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
    }

    /// A new server session (the old one expired, or the server restarted): what was in
    /// flight or queued cannot be known to have happened, so it fails with a code; the media
    /// peer is rebuilt; every room logs in again, then its streams are published and played
    /// again.
    fn start_over(&mut self) {
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
    pub(super) fn on_relogin_reply(
        &mut self,
        room_id: RoomId,
        code: ErrorCode,
        body: Option<ReplyBody>,
    ) {
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
        self.report_changes(&room_id, users, streams, online_count);
        self.publish_and_play_again(&room_id);
    }

    /// What changed in a room while the session was lost: users and streams gone and new,
    /// then the online count.
    fn report_changes(
        &mut self,
        room_id: &RoomId,
        users: Vec<User>,
        streams: Vec<StreamInfo>,
        online_count: u32,
    ) {
        let users = self.others(users);
        let streams = self.other_streams(streams);
        let Some(room) = self.rooms.get_mut(room_id) else {
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
    }

    /// A room's publishers and players ask the new server session again.
    fn publish_and_play_again(&mut self, room_id: &RoomId) {
        for ch in 0..CHANNELS {
            let Some(p) = self.publishers[ch]
                .as_ref()
                .filter(|p| p.room_id == *room_id)
            else {
                continue;
            };
            let stream_id = p.stream_id.clone();
            self.request_publish(ch, room_id.clone(), stream_id);
        }
        let players = self.players_in(room_id);
        for stream_id in players {
            self.request_play(room_id.clone(), stream_id);
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
