//! One engine's session on the server: what it knows about itself (its app, user, rooms, plays,
//! grants, request rate) and the handlers of its requests.
//!
//! A session is driven by its connection's task ([`crate::transport`]) with one text frame or
//! one timer at a time, and the time passed in ([`Now`]); it reads no clock and owns no socket.
//! Handlers are grouped by area: [`auth`] (hello, tokens), [`rooms`] (login, logout),
//! [`streams`] (publish, play, media offers), [`messages`] (broadcast, barrage, custom
//! command, room extra info). A room's shared state is changed only through its owner
//! ([`crate::room`]); what a room change means outside the room (the app's stream registry,
//! players, the SFU) is applied in one place, [`Session::settle`].

mod auth;
mod messages;
mod rooms;
mod streams;

use crate::app::App;
use crate::clock::Now;
use crate::limits::Bucket;
use crate::resume::{self, Replay};
use crate::room::Room;
use crate::sfu::SfuCmd;
use crate::state::{lock, ConnId, Outbound};
use crate::Shared;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use zrooms_proto::wire::{ClientFrame, DeleteReason, ReplyBody, Request, ServerMsg};
use zrooms_proto::{ErrorCode, RoomId, StreamId, User};

pub(crate) use auth::Grant;

type Res<T> = Result<T, ErrorCode>;

/// How a handler answered.
enum Answer {
    /// Reply success now, with this body.
    Reply(Option<ReplyBody>),
    /// The reply is already queued (under a room's lock, ordered with the room's events) or
    /// will be (a media answer).
    Sent,
}

/// See the module's documentation.
pub(crate) struct Session {
    pub id: ConnId,
    out: Outbound,
    shared: Arc<Shared>,
    /// The peer's address (failed token logins are counted per address).
    ip: IpAddr,
    /// The session has logged into a room once: it no longer counts as pending.
    pub logged_in_once: bool,
    /// A media offer of this session waits for the SFU's answer (one at a time).
    offer_in_flight: Arc<AtomicBool>,
    pub app: Option<Arc<App>>,
    user: Option<User>,
    pub rooms: HashMap<RoomId, Arc<Room>>,
    /// Streams this session plays, and through which room.
    playing: HashMap<StreamId, RoomId>,
    /// The hello carried the app's appSign.
    signed: bool,
    /// What each logged-in room's token (or appSign) allows.
    grants: HashMap<RoomId, Grant>,
    /// Requests of any kind from this session.
    requests: Bucket,
    /// Presented with the session id to resume this session after a drop.
    pub resume_key: String,
    /// The session's unacknowledged frames (none in the fuzzing harness).
    pub replay: Option<Arc<Mutex<Replay>>>,
    /// The request ids processed (docs/protocol.md, Request ids).
    ids: RequestIds,
    /// The type of the last request read (its time is measured around [`Session::on_text`]).
    pub last_request: Option<&'static str>,
}

/// Ids of processed requests remembered to recognize those sent again after a resume.
const RECENT_IDS: usize = 256;

/// The request ids a session has processed: the highest, and the last [`RECENT_IDS`].
#[derive(Default)]
struct RequestIds {
    highest: u64,
    recent: std::collections::VecDeque<u64>,
}

enum IdCheck {
    /// Above every id processed: do it.
    New,
    /// Processed already: sent again after a resume, its reply is among the replayed frames.
    Again,
    /// Not above the highest and not one of the recent ones: refused (ids only grow).
    Stale,
}

impl RequestIds {
    fn check(&mut self, id: u64) -> IdCheck {
        if id > self.highest {
            self.highest = id;
            if self.recent.len() == RECENT_IDS {
                self.recent.pop_front();
            }
            self.recent.push_back(id);
            IdCheck::New
        } else if self.recent.binary_search(&id).is_ok() {
            IdCheck::Again
        } else {
            IdCheck::Stale
        }
    }
}

/// Target of the session event log: one `info` line per login, logout, publish, unpublish,
/// play and stop, with the app, room, user and result (`--log-format json`: one JSON object
/// per line; docs/operations.md, Logs).
pub(crate) const EVENTS: &str = "zrooms::session";

/// A request worth a line in the session event log, taken before it is handled.
struct SessionEvent {
    kind: &'static str,
    room: Option<RoomId>,
    stream: Option<StreamId>,
    /// A login's user (the session has none before its first login).
    user: Option<String>,
}

impl SessionEvent {
    fn of(req: &Request) -> Option<SessionEvent> {
        let (stream, user) = match req {
            Request::Login { user, .. } => (None, Some(user.user_id.to_string())),
            Request::Publish { stream_id, .. }
            | Request::Unpublish { stream_id, .. }
            | Request::Play { stream_id, .. }
            | Request::Unplay { stream_id, .. } => (Some(stream_id.clone()), None),
            _ => return None,
        };
        let room = req.room_id().cloned();
        let kind = req.kind();
        Some(SessionEvent {
            kind,
            room,
            stream,
            user,
        })
    }

    fn log(self, app: u32, conn: ConnId, user: Option<&User>, code: u32) {
        let user = self
            .user
            .or_else(|| user.map(|u| u.user_id.to_string()))
            .unwrap_or_default();
        let room = self.room.as_ref().map(|r| r.as_str()).unwrap_or_default();
        let stream = self.stream.as_ref().map(|s| s.as_str()).unwrap_or_default();
        tracing::info!(target: EVENTS, event = self.kind, app, room, user, stream, code, session = conn);
    }
}

/// The `id` of a frame that failed to parse, so the error can still be answered.
fn frame_id(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: u64,
    }
    serde_json::from_str::<IdOnly>(text).ok().map(|f| f.id)
}

impl Session {
    pub fn new(id: ConnId, out: Outbound, shared: Arc<Shared>, ip: IpAddr) -> Self {
        Session {
            id,
            out,
            shared,
            ip,
            logged_in_once: false,
            offer_in_flight: Arc::new(AtomicBool::new(false)),
            app: None,
            user: None,
            rooms: HashMap::new(),
            playing: HashMap::new(),
            signed: false,
            grants: HashMap::new(),
            requests: Bucket::default(),
            resume_key: resume::new_key(),
            replay: None,
            ids: RequestIds::default(),
            last_request: None,
        }
    }

    /// The session is over: its user leaves every room and its media peer is dropped.
    pub fn close(mut self) {
        self.leave_all(DeleteReason::DISCONNECTED);
        self.shared.sfu.send(SfuCmd::Close { conn: self.id });
    }

    /// Handles one text frame; false closes the connection.
    pub fn on_text(&mut self, text: &str, now: Now) -> bool {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(conn = self.id, "bad frame: {e}");
                let Some(id) = frame_id(text) else {
                    return false;
                };
                self.reply(id, ErrorCode::COMMON_ILLEGAL_PARAM, None);
                return true;
            }
        };
        let id = frame.id;
        self.last_request = Some(frame.req.kind());
        if let Request::Hello {
            version,
            app_id,
            app_sign,
            ..
        } = frame.req
        {
            let hello = self.hello(version, app_id, &app_sign);
            let ok = hello.is_ok();
            self.answer(id, hello.map(|b| Answer::Reply(Some(b))));
            return ok;
        }
        let Some(app) = self.app.clone() else {
            self.reply(id, ErrorCode::COMMON_ENGINE_NOT_CREATE, None);
            return false;
        };
        match self.ids.check(id) {
            IdCheck::New => {}
            IdCheck::Again => {
                tracing::debug!(conn = self.id, id, "request already done: skipped");
                return true;
            }
            IdCheck::Stale => {
                let highest = self.ids.highest;
                tracing::debug!(conn = self.id, id, highest, "request id does not grow");
                self.reply(id, ErrorCode::COMMON_ILLEGAL_PARAM, None);
                return true;
            }
        }
        let rate = app.config.limits.requests_per_connection;
        if !self.requests.take(rate, now.at) {
            self.reply(id, ErrorCode::ROOM_ERROR_SIGNALLING_FREQUENCY_LIMIT, None);
            return true;
        }
        let event = SessionEvent::of(&frame.req);
        let answer = self.request(&app, id, frame.req, now);
        if let Some(event) = event {
            let code = answer.as_ref().map_or_else(|c| c.0, |_| 0);
            event.log(app.config.app_id, self.id, self.user.as_ref(), code);
        }
        self.answer(id, answer);
        true
    }

    fn answer(&self, id: u64, answer: Res<Answer>) {
        match answer {
            Ok(Answer::Reply(body)) => self.reply(id, ErrorCode::SUCCESS, body),
            Ok(Answer::Sent) => {}
            Err(code) => self.reply(id, code, None),
        }
    }

    fn reply(&self, id: u64, code: ErrorCode, body: Option<ReplyBody>) {
        if code != ErrorCode::SUCCESS {
            self.shared.metrics.refused(code.0);
        }
        let message = String::new();
        self.out.send_msg(&ServerMsg::Reply {
            id,
            code,
            message,
            body,
        });
    }

    /// Dispatches one request (after the hello) to its handler.
    fn request(&mut self, app: &Arc<App>, id: u64, req: Request, now: Now) -> Res<Answer> {
        match req {
            Request::Hello { .. } => Err(ErrorCode::COMMON_ILLEGAL_PARAM),
            Request::Ping { received } => {
                if let Some(replay) = &self.replay {
                    lock(replay).ack(received);
                }
                Ok(Answer::Reply(None))
            }
            Request::Login {
                room_id,
                user,
                config,
            } => self.login(app, id, room_id, user, config, now),
            Request::Logout { room_id } => {
                self.leave(app, &room_id, DeleteReason::STOPPED);
                Ok(Answer::Reply(None))
            }
            Request::RenewToken { room_id, token } => self.renew_token(app, room_id, &token, now),
            Request::SetRoomExtraInfo {
                room_id,
                key,
                value,
            } => self.set_room_extra_info(app, id, room_id, key, value, now),
            Request::Publish {
                room_id,
                stream_id,
                extra_info,
            } => self.publish(app, id, room_id, stream_id, extra_info, now),
            Request::Unpublish { room_id, stream_id } => self.unpublish(app, &room_id, &stream_id),
            Request::SetStreamExtraInfo {
                room_id,
                stream_id,
                extra_info,
            } => self.set_stream_extra_info(app, id, room_id, stream_id, extra_info),
            Request::Play { room_id, stream_id } => self.play(app, id, room_id, stream_id),
            Request::SetStreamState {
                stream_id,
                audio,
                video,
                ..
            } => app
                .set_stream_state(&stream_id, self.id, audio, video)
                .map(|()| Answer::Reply(None)),
            Request::Unplay { stream_id, .. } => Ok(self.unplay(app, stream_id)),
            Request::MediaOffer { sdp, tracks, fresh } => {
                self.media_offer(app, id, sdp, tracks, fresh)
            }
            Request::Broadcast { room_id, message } => {
                self.broadcast(app, id, room_id, message, now)
            }
            Request::Barrage { room_id, message } => self.barrage(app, id, room_id, message, now),
            Request::CustomCommand {
                room_id,
                command,
                to,
            } => self.custom_command(app, id, room_id, command, to, now),
        }
    }
}

#[cfg(test)]
mod tests;
