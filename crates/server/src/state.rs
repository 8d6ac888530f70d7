//! Shared server state: apps, their rooms and streams.
//!
//! Locking: each room has its own mutex, and the message path (broadcast, barrage, custom
//! command, extra info) takes only that one. An app's room map is locked only to find or drop a
//! room, its stream registry only to claim or release a stream ID. No lock is held across an
//! `.await`; frames are handed to connections with `try_send`, never waited on.

use crate::config::AppConfig;
use crate::limits::Bucket;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use zrooms_proto::wire::{
    DeleteReason, RoomExtraInfo, ServerMsg, StreamDelete, StreamInfo, UpdateType,
};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User, UserId};

pub type ConnId = u64;

/// Locks a mutex, ignoring poisoning: the state under it stays consistent because nothing
/// panics while holding it, and a server must not die because one task did.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sending half of one connection's outbound queue.
#[derive(Clone, Debug)]
pub struct Outbound {
    pub conn: ConnId,
    tx: mpsc::Sender<Utf8Bytes>,
    stuck: Arc<Flag>,
}

/// A one-way flag a task can wait for (a stuck reader, a connection to shed).
#[derive(Debug, Default)]
pub struct Flag {
    flag: AtomicBool,
    notify: Notify,
}

impl Flag {
    pub fn raise(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub fn is_raised(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.flag.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Outbound {
    pub fn new(conn: ConnId, capacity: usize) -> (Self, mpsc::Receiver<Utf8Bytes>, Arc<Flag>) {
        let (tx, rx) = mpsc::channel(capacity);
        let stuck = Arc::new(Flag::default());
        (
            Outbound {
                conn,
                tx,
                stuck: stuck.clone(),
            },
            rx,
            stuck,
        )
    }

    /// Queues a frame. A connection whose queue is full is not keeping up: it is marked stuck
    /// and its task closes it, so it can never slow down the others.
    pub fn send(&self, frame: Utf8Bytes) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(frame) {
            self.stuck.raise();
        }
    }

    pub fn send_msg(&self, msg: &ServerMsg) {
        self.send(encode(msg));
    }
}

/// Serializes a server frame once; the result is shared by every recipient.
pub fn encode(msg: &ServerMsg) -> Utf8Bytes {
    match serde_json::to_string(msg) {
        Ok(s) => Utf8Bytes::from(s),
        // Serializing our own types cannot fail; an empty object is a harmless fallback.
        Err(_) => Utf8Bytes::from_static("{}"),
    }
}

/// Who publishes each stream ID of an app, and how many streams each connection publishes.
#[derive(Default)]
struct StreamRegistry {
    by_id: HashMap<StreamId, (RoomId, ConnId)>,
    per_conn: HashMap<ConnId, u32>,
}

/// The players of one stream: connection → (the room they play it through, their queue).
type Players = HashMap<ConnId, (RoomId, Outbound)>;

pub struct App {
    pub config: AppConfig,
    rooms: Mutex<HashMap<RoomId, Arc<Room>>>,
    /// Stream IDs are unique per app: who publishes each, in which room.
    streams: Mutex<StreamRegistry>,
    /// Failed token logins, all sources together (`auth_failures_per_app`).
    pub auth_failures: Mutex<Bucket>,
    /// Who plays each stream ID, through which of their rooms.
    players: Mutex<HashMap<StreamId, Players>>,
    /// Publishers' device states (audio, video) that are not plain "open".
    stream_states: Mutex<HashMap<StreamId, (u32, u32)>>,
}

impl App {
    pub fn new(config: AppConfig) -> Self {
        App {
            config,
            rooms: Mutex::new(HashMap::new()),
            streams: Mutex::new(StreamRegistry::default()),
            auth_failures: Mutex::new(Bucket::default()),
            players: Mutex::new(HashMap::new()),
            stream_states: Mutex::new(HashMap::new()),
        }
    }

    /// Records a publisher's device state and tells the stream's players.
    pub fn set_stream_state(&self, stream: &StreamId, audio: u32, video: u32) {
        {
            let mut states = lock(&self.stream_states);
            if (audio, video) == (0, 0) {
                states.remove(stream);
            } else {
                states.insert(stream.clone(), (audio, video));
            }
        }
        let targets: Vec<(RoomId, Outbound)> = lock(&self.players)
            .get(stream)
            .map(|set| set.values().cloned().collect())
            .unwrap_or_default();
        for (room_id, out) in targets {
            out.send_msg(&ServerMsg::StreamState {
                room_id,
                stream_id: stream.clone(),
                audio,
                video,
            });
        }
    }

    /// The device state of `stream` when it is not plain "open".
    pub fn stream_state(&self, stream: &StreamId) -> Option<(u32, u32)> {
        lock(&self.stream_states).get(stream).copied()
    }

    /// The room, created if needed. The returned room may have been closed by the time the
    /// caller locks it; [`RoomState::closed`] says so and the caller asks again.
    pub fn room(&self, id: &RoomId, next_session: impl FnOnce() -> u64) -> Arc<Room> {
        lock(&self.rooms)
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(Room {
                    id: id.clone(),
                    state: Mutex::new(RoomState::new(next_session())),
                })
            })
            .clone()
    }

    /// Drops a room that has no members left.
    pub fn drop_room_if_empty(&self, room: &Arc<Room>) {
        let mut rooms = lock(&self.rooms);
        let mut st = lock(&room.state);
        if st.members.is_empty() && !st.closed {
            st.closed = true;
            if rooms.get(&room.id).is_some_and(|r| Arc::ptr_eq(r, room)) {
                rooms.remove(&room.id);
            }
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
        match reg.by_id.get(stream) {
            Some((r, c)) if *c == conn && r == room => Ok(()),
            Some(_) => Err(ErrorCode::PUBLISHER_ERROR_REPETITIVE_PUBLISH_STREAM),
            None => {
                let n = reg.per_conn.entry(conn).or_insert(0);
                if *n >= max_per_conn {
                    return Err(ErrorCode::PUBLISHER_FORBIDDEN);
                }
                *n += 1;
                reg.by_id.insert(stream.clone(), (room.clone(), conn));
                Ok(())
            }
        }
    }

    pub fn release_stream(&self, stream: &StreamId, conn: ConnId) {
        let mut reg = lock(&self.streams);
        if reg.by_id.get(stream).is_some_and(|(_, c)| *c == conn) {
            reg.by_id.remove(stream);
            if let Some(n) = reg.per_conn.get_mut(&conn) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    reg.per_conn.remove(&conn);
                }
            }
            lock(&self.stream_states).remove(stream);
        }
    }

    /// The connection publishing `stream`, if any.
    pub fn publisher_of(&self, stream: &StreamId) -> Option<ConnId> {
        lock(&self.streams).by_id.get(stream).map(|(_, c)| *c)
    }

    pub fn is_published(&self, stream: &StreamId) -> bool {
        lock(&self.streams).by_id.contains_key(stream)
    }

    /// Whether `conn` plays `stream` (through any room).
    pub fn is_player(&self, stream: &StreamId, conn: ConnId) -> bool {
        lock(&self.players)
            .get(stream)
            .is_some_and(|set| set.contains_key(&conn))
    }

    /// Removes `conn` as a player of every stream it plays through `room`: it was kicked out of
    /// that room (another login of its user). Returns those streams.
    pub fn revoke_player(&self, conn: ConnId, room: &RoomId) -> Vec<StreamId> {
        let mut players = lock(&self.players);
        let mut gone = Vec::new();
        players.retain(|stream, set| {
            if set.get(&conn).is_some_and(|(r, _)| r == room) {
                set.remove(&conn);
                gone.push(stream.clone());
            }
            !set.is_empty()
        });
        gone
    }

    pub fn add_player(&self, stream: &StreamId, room: &RoomId, out: &Outbound) {
        lock(&self.players)
            .entry(stream.clone())
            .or_default()
            .insert(out.conn, (room.clone(), out.clone()));
    }

    pub fn remove_player(&self, stream: &StreamId, conn: ConnId) {
        let mut players = lock(&self.players);
        if let Some(set) = players.get_mut(stream) {
            set.remove(&conn);
            if set.is_empty() {
                players.remove(stream);
            }
        }
    }

    /// Tells every player of `stream` that it started (`reason` None) or stopped.
    pub fn notify_players(&self, stream: &StreamId, reason: Option<DeleteReason>) {
        let targets: Vec<(RoomId, Outbound)> = lock(&self.players)
            .get(stream)
            .map(|set| set.values().cloned().collect())
            .unwrap_or_default();
        for (room_id, out) in targets {
            let msg = match reason {
                None => ServerMsg::StreamAvailable {
                    room_id,
                    stream_id: stream.clone(),
                },
                Some(reason) => ServerMsg::StreamUnavailable {
                    room_id,
                    stream_id: stream.clone(),
                    reason,
                },
            };
            out.send_msg(&msg);
        }
    }
}

pub struct Room {
    pub id: RoomId,
    pub state: Mutex<RoomState>,
}

pub struct Member {
    pub user: User,
    pub out: Outbound,
    /// The member asked for `roomUserUpdate` (`isUserStatusNotify`).
    pub notify: bool,
    /// This member's message rates in this room.
    pub rates: MemberRates,
}

/// Per-member rate buckets (see [`crate::limits`]).
#[derive(Default)]
pub struct MemberRates {
    pub broadcast: Bucket,
    pub command_single: Bucket,
    pub command_multi: Bucket,
}

/// Per-room rate buckets.
#[derive(Default)]
pub struct RoomRates {
    pub broadcast: Bucket,
    pub barrage: Bucket,
    pub logins: Bucket,
    pub extra_info: Bucket,
}

pub struct PublishedStream {
    pub info: StreamInfo,
    pub conn: ConnId,
}

pub struct RoomState {
    pub session_id: u64,
    pub closed: bool,
    /// The first member's `maxMemberCount`, 0 = no limit of the room's own.
    pub max_members: u32,
    pub members: HashMap<UserId, Member>,
    pub streams: BTreeMap<StreamId, PublishedStream>,
    pub extra_info: Option<RoomExtraInfo>,
    pub next_message_id: u64,
    pub next_barrage_id: u64,
    pub rates: RoomRates,
}

impl RoomState {
    fn new(session_id: u64) -> Self {
        RoomState {
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

    /// Sends `msg` to every member but `except`.
    pub fn broadcast(&self, msg: &ServerMsg, except: Option<ConnId>) {
        let frame = encode(msg);
        for m in self.members.values() {
            if Some(m.out.conn) != except {
                m.out.send(frame.clone());
            }
        }
    }

    /// Sends `msg` to members that asked for user updates, but `except`.
    pub fn broadcast_user_update(
        &self,
        room_id: &RoomId,
        update: UpdateType,
        users: Vec<User>,
        except: ConnId,
    ) {
        if users.is_empty() {
            return;
        }
        let frame = encode(&ServerMsg::UserUpdate {
            room_id: room_id.clone(),
            update,
            users,
        });
        for m in self.members.values() {
            if m.out.conn != except && m.notify {
                m.out.send(frame.clone());
            }
        }
    }

    /// Removes the streams `conn` publishes as `user`, telling the room why; returns their IDs.
    pub fn remove_streams_of(
        &mut self,
        room_id: &RoomId,
        user: &UserId,
        conn: ConnId,
        reason: DeleteReason,
    ) -> Vec<StreamId> {
        let gone: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.conn == conn && s.info.user.user_id == *user)
            .map(|(id, _)| id.clone())
            .collect();
        self.remove_streams(room_id, &gone, reason, None);
        gone
    }

    /// Removes the named streams and tells the room (all but `except`).
    pub fn remove_streams(
        &mut self,
        room_id: &RoomId,
        ids: &[StreamId],
        reason: DeleteReason,
        except: Option<ConnId>,
    ) {
        let mut infos = Vec::new();
        for id in ids {
            if let Some(s) = self.streams.remove(id) {
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
        self.broadcast(
            &ServerMsg::StreamUpdate {
                room_id: room_id.clone(),
                update: UpdateType::Delete,
                streams: infos,
                deleted,
            },
            except,
        );
    }
}
