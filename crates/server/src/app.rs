//! One app's shared state: its rooms, and who publishes and plays each of its stream IDs.
//!
//! Stream IDs are unique per app, and a stream is played by ID from any of the player's rooms,
//! so the stream registry lives beside the rooms rather than in one. Locking: the room map is
//! locked only to find, create or drop a room; the registry only for one short operation. When
//! both a room and the registry are needed (a publish claims its ID), the room is locked first.

use crate::config::AppConfig;
use crate::limits::Bucket;
use crate::room::Room;
use crate::state::{lock, ConnId, Outbound};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zrooms_proto::wire::{DeleteReason, ServerMsg};
use zrooms_proto::{ErrorCode, RoomId, StreamId};

/// One published stream ID.
struct Publication {
    room: RoomId,
    conn: ConnId,
    /// The publisher's device state (audio, video) when not plain "open" (0, 0).
    state: (u32, u32),
}

/// The players of one stream: connection → (the room they play it through, their queue).
type Players = HashMap<ConnId, (RoomId, Outbound)>;

/// Rooms, their members, streams and their players of one app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub rooms: usize,
    pub members: usize,
    pub streams: usize,
    pub players: usize,
}

/// Who publishes and who plays each stream ID of an app.
#[derive(Default)]
struct Streams {
    published: HashMap<StreamId, Publication>,
    /// Streams published per connection (`max_streams_per_user`).
    per_conn: HashMap<ConnId, u32>,
    players: HashMap<StreamId, Players>,
}

impl Streams {
    fn players_of(&self, stream: &StreamId) -> Vec<(RoomId, Outbound)> {
        self.players
            .get(stream)
            .map(|set| set.values().cloned().collect())
            .unwrap_or_default()
    }
}

pub struct App {
    pub config: AppConfig,
    rooms: Mutex<HashMap<RoomId, Arc<Room>>>,
    streams: Mutex<Streams>,
    /// Failed token logins, all sources together (`auth_failures_per_app`).
    pub auth_failures: Mutex<Bucket>,
}

impl App {
    pub fn new(config: AppConfig) -> Self {
        App {
            config,
            rooms: Mutex::new(HashMap::new()),
            streams: Mutex::new(Streams::default()),
            auth_failures: Mutex::new(Bucket::default()),
        }
    }

    /// How much of this app there is now (for metrics).
    pub fn counts(&self) -> Counts {
        let rooms = self.rooms();
        let members = rooms.iter().map(|r| r.read(|core| core.online())).sum();
        let streams = lock(&self.streams);
        Counts {
            rooms: rooms.len(),
            members,
            streams: streams.published.len(),
            players: streams.players.values().map(HashMap::len).sum(),
        }
    }

    /// The room, created if needed and open (a room closed between finding and locking it is
    /// replaced by a new one).
    pub fn room(&self, id: &RoomId, next_session: impl Fn() -> u64) -> Arc<Room> {
        loop {
            let room = lock(&self.rooms)
                .entry(id.clone())
                .or_insert_with(|| Arc::new(Room::new(id.clone(), next_session())))
                .clone();
            if !room.is_closed() {
                return room;
            }
        }
    }

    /// Drops a room that has no members left.
    pub fn drop_room_if_empty(&self, room: &Arc<Room>) {
        let mut rooms = lock(&self.rooms);
        if room.close_if_empty() && rooms.get(&room.id).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(&room.id);
        }
    }

    pub fn rooms(&self) -> Vec<Arc<Room>> {
        lock(&self.rooms).values().cloned().collect()
    }

    /// Claims a stream ID for `conn`: refused if someone else holds it (1003028), or if
    /// `conn` already publishes `max_per_conn` streams (1003025).
    pub fn claim_stream(
        &self,
        stream: &StreamId,
        room: &RoomId,
        conn: ConnId,
        max_per_conn: u32,
    ) -> Result<(), ErrorCode> {
        let mut reg = lock(&self.streams);
        match reg.published.get(stream) {
            Some(p) if p.conn == conn && p.room == *room => Ok(()),
            Some(_) => Err(ErrorCode::PUBLISHER_ERROR_REPETITIVE_PUBLISH_STREAM),
            None => {
                let n = reg.per_conn.entry(conn).or_insert(0);
                if *n >= max_per_conn {
                    return Err(ErrorCode::PUBLISHER_FORBIDDEN);
                }
                *n += 1;
                let publication = Publication {
                    room: room.clone(),
                    conn,
                    state: (0, 0),
                };
                reg.published.insert(stream.clone(), publication);
                Ok(())
            }
        }
    }

    pub fn release_stream(&self, stream: &StreamId, conn: ConnId) {
        let mut reg = lock(&self.streams);
        if reg.published.get(stream).is_some_and(|p| p.conn == conn) {
            reg.published.remove(stream);
            if let Some(n) = reg.per_conn.get_mut(&conn) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    reg.per_conn.remove(&conn);
                }
            }
        }
    }

    /// The connection publishing `stream`, if any.
    pub fn publisher_of(&self, stream: &StreamId) -> Option<ConnId> {
        lock(&self.streams).published.get(stream).map(|p| p.conn)
    }

    /// Records the device state of a stream `conn` publishes and tells its players; refused
    /// (1003025) when `conn` does not publish it.
    pub fn set_stream_state(
        &self,
        stream: &StreamId,
        conn: ConnId,
        audio: u32,
        video: u32,
    ) -> Result<(), ErrorCode> {
        let targets = {
            let mut reg = lock(&self.streams);
            let p = reg
                .published
                .get_mut(stream)
                .filter(|p| p.conn == conn)
                .ok_or(ErrorCode::PUBLISHER_FORBIDDEN)?;
            p.state = (audio, video);
            reg.players_of(stream)
        };
        for (room_id, out) in targets {
            out.send_msg(&ServerMsg::StreamState {
                room_id,
                stream_id: stream.clone(),
                audio,
                video,
            });
        }
        Ok(())
    }

    /// `conn` plays `stream` through `room`: whether it is published now, and its device state
    /// when not plain "open".
    pub fn add_player(
        &self,
        stream: &StreamId,
        room: &RoomId,
        out: &Outbound,
    ) -> (bool, Option<(u32, u32)>) {
        let mut reg = lock(&self.streams);
        reg.players
            .entry(stream.clone())
            .or_default()
            .insert(out.conn, (room.clone(), out.clone()));
        match reg.published.get(stream) {
            Some(p) => (true, Some(p.state).filter(|s| *s != (0, 0))),
            None => (false, None),
        }
    }

    /// Whether `conn` plays `stream` (through any room).
    pub fn is_player(&self, stream: &StreamId, conn: ConnId) -> bool {
        lock(&self.streams)
            .players
            .get(stream)
            .is_some_and(|set| set.contains_key(&conn))
    }

    /// Removes `conn` as a player of every stream it plays through `room` (it was replaced
    /// there). Returns those streams.
    pub fn revoke_player(&self, conn: ConnId, room: &RoomId) -> Vec<StreamId> {
        let mut reg = lock(&self.streams);
        let mut gone = Vec::new();
        reg.players.retain(|stream, set| {
            if set.get(&conn).is_some_and(|(r, _)| r == room) {
                set.remove(&conn);
                gone.push(stream.clone());
            }
            !set.is_empty()
        });
        gone
    }

    pub fn remove_player(&self, stream: &StreamId, conn: ConnId) {
        let mut reg = lock(&self.streams);
        if let Some(set) = reg.players.get_mut(stream) {
            set.remove(&conn);
            if set.is_empty() {
                reg.players.remove(stream);
            }
        }
    }

    /// Tells every player of `stream` that it started (`reason` None) or stopped.
    pub fn notify_players(&self, stream: &StreamId, reason: Option<DeleteReason>) {
        let targets = lock(&self.streams).players_of(stream);
        for (room_id, out) in targets {
            let stream_id = stream.clone();
            let msg = match reason {
                None => ServerMsg::StreamAvailable { room_id, stream_id },
                Some(reason) => ServerMsg::StreamUnavailable {
                    room_id,
                    stream_id,
                    reason,
                },
            };
            out.send_msg(&msg);
        }
    }
}
