//! A session's streams: publishing (with the token's stream privileges), playing, device
//! states, stream extra info, and media offers to the SFU.

use super::{Answer, Res, Session};
use crate::app::App;
use crate::clock::Now;
use crate::sfu::{SfuCmd, SfuNotice};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use zrooms_proto::wire::{ReplyBody, ServerMsg, StreamInfo, TrackDirection, TrackSpec};
use zrooms_proto::{ErrorCode, RoomId, StreamId};

impl Session {
    pub(super) fn publish(
        &mut self,
        app: &Arc<App>,
        id: u64,
        room_id: RoomId,
        stream_id: StreamId,
        extra_info: String,
        now: Now,
    ) -> Res<Answer> {
        if extra_info.len() >= app.config.limits.stream_extra_info_bytes {
            return Err(ErrorCode::PUBLISHER_EXTRA_INFO_TOO_LONG);
        }
        let room = self.member_room(&room_id)?;
        let user = self.user()?;
        let granted = self.grants.get(&room_id);
        if granted.is_some_and(|g| !g.may_publish(stream_id.as_str(), now.unix_s())) {
            return Err(ErrorCode::PUBLISHER_ERROR_DISPATCH_AUTH_ERROR);
        }
        let conn = self.id;
        let policy = &app.config;
        let claim = || app.claim_stream(&stream_id, &room_id, conn, policy.max_streams_per_user);
        let info = StreamInfo {
            stream_id: stream_id.clone(),
            user,
            extra_info,
        };
        let max = policy.max_streams_per_room;
        let (published, after) = room.run(&self.out, |core, fx| {
            core.publish(id, conn, info, max, claim, fx)
        });
        self.settle(app, &room_id, after);
        published.map(|()| Answer::Sent)
    }

    pub(super) fn unpublish(
        &mut self,
        app: &Arc<App>,
        room_id: &RoomId,
        stream_id: &StreamId,
    ) -> Res<Answer> {
        let room = self.member_room(room_id)?;
        let conn = self.id;
        let (_, after) = room.run(&self.out, |core, fx| core.unpublish(conn, stream_id, fx));
        self.settle(app, room_id, after);
        Ok(Answer::Reply(None))
    }

    pub(super) fn set_stream_extra_info(
        &mut self,
        app: &App,
        id: u64,
        room_id: RoomId,
        stream_id: StreamId,
        extra_info: String,
    ) -> Res<Answer> {
        if extra_info.len() >= app.config.limits.stream_extra_info_bytes {
            return Err(ErrorCode::PUBLISHER_EXTRA_INFO_TOO_LONG);
        }
        let room = self.member_room(&room_id)?;
        let conn = self.id;
        let (set, _) = room.run(&self.out, |core, fx| {
            core.set_stream_extra_info(id, conn, &stream_id, extra_info, fx)
        });
        set.map(|()| Answer::Sent)
    }

    /// Plays `stream_id` through `room_id`: the reply says whether it is published now, and a
    /// device state that is not plain "open" follows it.
    pub(super) fn play(
        &mut self,
        app: &App,
        id: u64,
        room_id: RoomId,
        stream_id: StreamId,
    ) -> Res<Answer> {
        self.member_room_checked(&room_id)?;
        let (available, state) = app.add_player(&stream_id, &room_id, &self.out);
        self.reply(id, ErrorCode::SUCCESS, Some(ReplyBody::Play { available }));
        if let Some((audio, video)) = state {
            self.out.send_msg(&ServerMsg::StreamState {
                room_id: room_id.clone(),
                stream_id: stream_id.clone(),
                audio,
                video,
            });
        }
        self.playing.insert(stream_id, room_id);
        Ok(Answer::Sent)
    }

    pub(super) fn unplay(&mut self, app: &App, stream: StreamId) -> Answer {
        if self.playing.remove(&stream).is_some() {
            app.remove_player(&stream, self.id);
            self.shared.sfu.send(SfuCmd::Unplay {
                conn: self.id,
                stream,
            });
        }
        Answer::Reply(None)
    }

    /// An engine's SDP offer: every `send` track must be a stream this session publishes,
    /// every `recv` track one it plays. The SFU answers the request itself when it has.
    pub(super) fn media_offer(
        &mut self,
        app: &Arc<App>,
        id: u64,
        sdp: String,
        tracks: Vec<TrackSpec>,
        fresh: bool,
    ) -> Res<Answer> {
        // Media only for a session that is logged into a room.
        self.forget_kicked_rooms();
        if self.rooms.is_empty() {
            return Err(ErrorCode::COMMON_NOT_LOGIN_ROOM);
        }
        for t in &tracks {
            self.may_carry(app, t)?;
        }
        // One offer at a time per session (the engine and the web client wait for each
        // answer), and none when the SFU's queue is full.
        if self.offer_in_flight.swap(true, Ordering::AcqRel) {
            return Err(ErrorCode::ROOM_ERROR_SIGNALLING_FREQUENCY_LIMIT);
        }
        let out = self.out.clone();
        let in_flight = self.offer_in_flight.clone();
        let reply = Box::new(move |answer: Result<String, crate::sfu::Refusal>| {
            in_flight.store(false, Ordering::Release);
            let (code, message, body) = match answer {
                Ok(sdp) => (
                    ErrorCode::SUCCESS,
                    String::new(),
                    Some(ReplyBody::MediaAnswer { sdp }),
                ),
                Err((code, why)) => (code, why, None),
            };
            out.send_msg(&ServerMsg::Reply {
                id,
                code,
                message,
                body,
            });
        });
        let out = self.out.clone();
        let notices: crate::sfu::Notices = Arc::new(move |notice| match notice {
            SfuNotice::NoCodec { stream, kind } => out.send_msg(&ServerMsg::PlayFailed {
                stream_id: stream,
                kind,
                code: ErrorCode::PLAYER_VIDEO_DECODER_NOT_SUPPORTED,
            }),
        });
        let queued = self.shared.sfu.offer(SfuCmd::Offer {
            conn: self.id,
            app_id: app.config.app_id,
            sdp,
            tracks,
            fresh,
            reply,
            notices: Some(notices),
        });
        if !queued {
            self.offer_in_flight.store(false, Ordering::Release);
            self.shared.metrics.sfu_busy.inc();
            return Err(ErrorCode::PUBLISHER_INNER_ERROR);
        }
        Ok(Answer::Sent)
    }

    /// Whether this session may carry track `t` (publish it or play it).
    fn may_carry(&self, app: &App, t: &TrackSpec) -> Res<()> {
        match t.direction {
            TrackDirection::Send if app.publisher_of(&t.stream_id) == Some(self.id) => Ok(()),
            TrackDirection::Send => Err(ErrorCode::PUBLISHER_FORBIDDEN),
            TrackDirection::Recv
                if self.playing.contains_key(&t.stream_id)
                    && app.is_player(&t.stream_id, self.id) =>
            {
                Ok(())
            }
            TrackDirection::Recv => Err(ErrorCode::PLAYER_FORBIDDEN),
        }
    }
}
