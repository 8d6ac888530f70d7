//! The one place where engine events become JavaScript values: `{e: name, a: [positional
//! args]}` as ZEGO's uni-app/React Native listeners take them, or `{e: "$done", op, code, ...}`
//! for a call's completion.
//!
//! Each event is built as a [`JsEvent`]: its name and its arguments named as ZEGO names the
//! listener's parameters. A test checks every event against `ZegoEventListener` in
//! `index.d.ts` (same names, same parameters in the same order), so the typings cannot drift
//! from what the engine emits.

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use serde_json::{json, Value};
use zrooms_engine::proto::wire::{RoomExtraInfo, StreamInfo};
use zrooms_engine::proto::User;
use zrooms_engine::session::{OpValue, SessionEvent};
use zrooms_engine::{EngineEvent, MediaEvent};

/// A decoded frame for JS: `kind` "video" (I420, width × height) or "audio" (16-bit PCM).
#[napi(object)]
pub struct JsFrame {
    pub kind: String,
    #[napi(js_name = "streamID")]
    pub stream_id: String,
    pub width: u32,
    pub height: u32,
    pub timestamp: f64,
    pub sample_rate: u32,
    pub channels: u32,
    /// The publish channel of a "preview" frame.
    pub channel: u32,
    pub data: Buffer,
}

/// Splits decoded frames off the event stream.
pub fn frame(event: EngineEvent) -> Result<JsFrame, EngineEvent> {
    match event {
        EngineEvent::VideoFrame(f) => Ok(JsFrame {
            kind: "video".into(),
            stream_id: f.stream_id,
            width: f.width,
            height: f.height,
            timestamp: f.timestamp_ms,
            sample_rate: 0,
            channels: 0,
            channel: 0,
            data: f.data.into(),
        }),
        EngineEvent::PreviewFrame(f, channel) => Ok(JsFrame {
            kind: "preview".into(),
            stream_id: String::new(),
            width: f.width,
            height: f.height,
            timestamp: f.timestamp_ms,
            sample_rate: 0,
            channels: 0,
            channel: channel as u32,
            data: f.data.into(),
        }),
        EngineEvent::AudioFrame(f) => Ok(JsFrame {
            kind: "audio".into(),
            stream_id: f.stream_id,
            width: 0,
            height: 0,
            timestamp: 0.0,
            sample_rate: f.sample_rate,
            channels: f.channels,
            channel: 0,
            data: f
                .samples
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        }),
        other => Err(other),
    }
}

/// One event for JS: a listener's name and its arguments, named as `index.d.ts` names them.
#[derive(Debug)]
pub enum JsEvent {
    Event {
        name: &'static str,
        args: Vec<(&'static str, Value)>,
    },
    /// A call's completion: `{e: "$done", op, code, ...}`.
    Done(Value),
}

impl JsEvent {
    /// `{e: name, a: [args in order]}` or the completion object.
    pub fn into_value(self) -> Value {
        match self {
            JsEvent::Event { name, args } => {
                let a: Vec<Value> = args.into_iter().map(|(_, v)| v).collect();
                json!({"e": name, "a": a})
            }
            JsEvent::Done(v) => v,
        }
    }
}

fn ev<const N: usize>(name: &'static str, args: [(&'static str, Value); N]) -> JsEvent {
    JsEvent::Event {
        name,
        args: args.into(),
    }
}

/// An event with a single argument (a channel or a stream ID).
fn one_arg(name: &'static str, arg: &'static str, value: Value) -> JsEvent {
    ev(name, [(arg, value)])
}

fn media(event: MediaEvent) -> Vec<JsEvent> {
    let one = match event {
        MediaEvent::PublisherQuality { stream_id, quality } => {
            publisher_quality(stream_id, &quality)
        }
        MediaEvent::PlayerQuality { stream_id, quality } => player_quality(stream_id, &quality),
        MediaEvent::PublisherCapturedVideoFirstFrame { channel } => one_arg(
            "publisherCapturedVideoFirstFrame",
            "channel",
            json!(channel),
        ),
        MediaEvent::PublisherRenderVideoFirstFrame { channel } => {
            one_arg("publisherRenderVideoFirstFrame", "channel", json!(channel))
        }
        MediaEvent::PublisherCapturedAudioFirstFrame => ev("publisherCapturedAudioFirstFrame", []),
        MediaEvent::PublisherVideoSizeChanged {
            channel,
            width,
            height,
        } => ev(
            "publisherVideoSizeChanged",
            [
                ("width", json!(width)),
                ("height", json!(height)),
                ("channel", json!(channel)),
            ],
        ),
        MediaEvent::PlayerRecvVideoFirstFrame { stream_id } => {
            one_arg("playerRecvVideoFirstFrame", "streamID", json!(stream_id))
        }
        MediaEvent::PlayerRecvAudioFirstFrame { stream_id } => {
            one_arg("playerRecvAudioFirstFrame", "streamID", json!(stream_id))
        }
        MediaEvent::PlayerRenderVideoFirstFrame { stream_id } => {
            one_arg("playerRenderVideoFirstFrame", "streamID", json!(stream_id))
        }
        MediaEvent::PlayerVideoSizeChanged {
            stream_id,
            width,
            height,
        } => ev(
            "playerVideoSizeChanged",
            [
                ("streamID", json!(stream_id)),
                ("width", json!(width)),
                ("height", json!(height)),
            ],
        ),
        MediaEvent::LocalDeviceException {
            exception,
            device_type,
            device_id,
        } => ev(
            "localDeviceExceptionOccurred",
            [
                ("exceptionType", json!(exception)),
                ("deviceType", json!(device_type)),
                ("deviceID", json!(device_id)),
            ],
        ),
    };
    vec![one]
}

fn quality_event(name: &'static str, stream_id: String, quality: Value) -> JsEvent {
    ev(name, [("streamID", json!(stream_id)), ("quality", quality)])
}

/// `publisherQualityUpdate` with ZEGO's `ZegoPublishStreamQuality`.
fn publisher_quality(stream_id: String, q: &zrooms_engine::Quality) -> JsEvent {
    quality_event(
        "publisherQualityUpdate",
        stream_id,
        json!({
            "videoCaptureFPS": q.video_fps, "videoEncodeFPS": q.video_fps, "videoSendFPS": q.video_fps,
            "videoKBPS": q.video_kbps, "audioCaptureFPS": q.audio_fps, "audioSendFPS": q.audio_fps,
            "audioKBPS": q.audio_kbps, "rtt": q.rtt_ms, "packetLostRate": q.loss, "level": q.level(),
            "isHardwareEncode": false, "videoCodecID": q.video_codec_id,
            "totalSendBytes": q.video_bytes + q.audio_bytes, "audioSendBytes": q.audio_bytes,
            "videoSendBytes": q.video_bytes
        }),
    )
}

/// `playerQualityUpdate` with ZEGO's `ZegoPlayStreamQuality`.
fn player_quality(stream_id: String, q: &zrooms_engine::Quality) -> JsEvent {
    quality_event(
        "playerQualityUpdate",
        stream_id,
        json!({
            "videoRecvFPS": q.video_fps, "videoDejitterFPS": q.video_fps, "videoDecodeFPS": q.video_fps,
            "videoRenderFPS": q.video_fps, "videoKBPS": q.video_kbps, "videoBreakRate": 0,
            "audioRecvFPS": q.audio_fps, "audioDejitterFPS": q.audio_fps, "audioDecodeFPS": q.audio_fps,
            "audioRenderFPS": q.audio_fps, "audioKBPS": q.audio_kbps, "audioBreakRate": 0,
            "rtt": q.rtt_ms, "packetLostRate": q.loss, "peerToPeerDelay": q.rtt_ms,
            "peerToPeerPacketLostRate": q.loss, "level": q.level(), "delay": 0, "avTimestampDiff": 0,
            "isHardwareDecode": false, "videoCodecID": q.video_codec_id,
            "totalRecvBytes": q.video_bytes + q.audio_bytes, "audioRecvBytes": q.audio_bytes,
            "videoRecvBytes": q.video_bytes
        }),
    )
}

fn user(u: &User) -> Value {
    json!({"userID": u.user_id.as_str(), "userName": u.user_name.as_str()})
}

fn stream(s: &StreamInfo) -> Value {
    json!({"user": user(&s.user), "streamID": s.stream_id.as_str(), "extraInfo": s.extra_info})
}

fn extra(i: &RoomExtraInfo) -> Value {
    json!({"key": i.key, "value": i.value, "updateUser": user(&i.update_user), "updateTime": i.update_time_ms})
}

/// ZEGO's `ZegoBroadcastMessageInfo` / `ZegoBarrageMessageInfo`.
fn message(text: &str, id: Value, send_time_ms: u64, from: &User) -> Value {
    json!({"message": text, "messageID": id, "sendTime": send_time_ms, "fromUser": user(from)})
}

pub fn to_js(event: EngineEvent) -> Vec<JsEvent> {
    let event = match event {
        EngineEvent::Session(e) => e,
        EngineEvent::Media(m) => return media(m),
        // Frames travel through `frame()`; nothing reaches here.
        EngineEvent::VideoFrame(_) | EngineEvent::AudioFrame(_) | EngineEvent::PreviewFrame(..) => {
            return Vec::new()
        }
    };
    match event {
        e @ (SessionEvent::Completed { .. } | SessionEvent::ApiCalled { .. }) => calls(e),
        e @ (SessionEvent::RoomState { .. }
        | SessionEvent::UserUpdate { .. }
        | SessionEvent::OnlineCount { .. }
        | SessionEvent::TokenWillExpire { .. }
        | SessionEvent::StreamUpdate { .. }
        | SessionEvent::StreamExtraInfo { .. }
        | SessionEvent::RoomExtraInfo { .. }) => rooms(e),
        e @ (SessionEvent::PublisherState { .. }
        | SessionEvent::PlayerState { .. }
        | SessionEvent::RemoteMicState { .. }
        | SessionEvent::RemoteCameraState { .. }) => streams(e),
        e @ (SessionEvent::Broadcast { .. }
        | SessionEvent::Barrage { .. }
        | SessionEvent::CustomCommand { .. }) => messages(e),
    }
}

/// A call's completion and its `apiCalledResult` (and `debugError` when it failed).
fn calls(event: SessionEvent) -> Vec<JsEvent> {
    match event {
        SessionEvent::Completed { op, code, value } => {
            let mut v = json!({"e": "$done", "op": op, "code": code.0});
            match value {
                OpValue::None => {}
                OpValue::Extended(s) => v["extendedData"] = json!(s),
                OpValue::MessageId(id) => v["messageID"] = json!(id),
                OpValue::BarrageId(id) => v["messageID"] = json!(id),
            }
            vec![JsEvent::Done(v)]
        }
        SessionEvent::ApiCalled { func, code, info } => {
            let args = || {
                [
                    ("errorCode", json!(code.0)),
                    ("funcName", json!(func)),
                    ("info", json!(info)),
                ]
            };
            let mut out = Vec::with_capacity(2);
            if !code.is_success() {
                out.push(ev("debugError", args()));
            }
            out.push(ev("apiCalledResult", args()));
            out
        }
        // Routed to another group by `to_js`.
        _ => Vec::new(),
    }
}

/// `roomStateChanged` and ZEGO's older `roomStateUpdate` for one change.
fn room_state(
    room_id: &str,
    reason: zrooms_engine::session::RoomReason,
    code: u32,
    extended: &str,
) -> Vec<JsEvent> {
    vec![
        ev(
            "roomStateChanged",
            [
                ("roomID", json!(room_id)),
                ("reason", json!(reason as u32)),
                ("errorCode", json!(code)),
                ("extendedData", json!(extended)),
            ],
        ),
        ev(
            "roomStateUpdate",
            [
                ("roomID", json!(room_id)),
                ("state", json!(reason.state() as u32)),
                ("errorCode", json!(code)),
                ("extendedData", json!(extended)),
            ],
        ),
    ]
}

/// A room's state, users, count, token, streams and extra info.
fn rooms(event: SessionEvent) -> Vec<JsEvent> {
    match event {
        SessionEvent::RoomState {
            room_id,
            reason,
            code,
            extended,
        } => room_state(&room_id, reason, code.0, &extended),
        SessionEvent::UserUpdate {
            room_id,
            update,
            users,
        } => vec![ev(
            "roomUserUpdate",
            [
                ("roomID", json!(room_id)),
                ("updateType", json!(update.zego())),
                ("userList", users.iter().map(user).collect()),
            ],
        )],
        SessionEvent::OnlineCount { room_id, count } => vec![ev(
            "roomOnlineUserCountUpdate",
            [("roomID", json!(room_id)), ("count", json!(count))],
        )],
        SessionEvent::TokenWillExpire { room_id, remain_s } => vec![ev(
            "roomTokenWillExpire",
            [
                ("roomID", json!(room_id)),
                ("remainTimeInSecond", json!(remain_s)),
            ],
        )],
        SessionEvent::StreamUpdate {
            room_id,
            update,
            streams,
            extended,
        } => vec![ev(
            "roomStreamUpdate",
            [
                ("roomID", json!(room_id)),
                ("updateType", json!(update.zego())),
                ("streamList", streams.iter().map(stream).collect()),
                ("extendedData", json!(extended)),
            ],
        )],
        SessionEvent::StreamExtraInfo { room_id, streams } => vec![ev(
            "roomStreamExtraInfoUpdate",
            [
                ("roomID", json!(room_id)),
                ("streamList", streams.iter().map(stream).collect()),
            ],
        )],
        SessionEvent::RoomExtraInfo { room_id, infos } => vec![ev(
            "roomExtraInfoUpdate",
            [
                ("roomID", json!(room_id)),
                ("roomExtraInfoList", infos.iter().map(extra).collect()),
            ],
        )],
        // Routed to another group by `to_js`.
        _ => Vec::new(),
    }
}

/// A stream's state: `[streamID, state, errorCode, extendedData]`.
fn state_args(
    stream_id: &str,
    state: u32,
    code: u32,
    extended: String,
) -> [(&'static str, Value); 4] {
    [
        ("streamID", json!(stream_id)),
        ("state", json!(state)),
        ("errorCode", json!(code)),
        ("extendedData", json!(extended)),
    ]
}

/// Publisher and player states, and the remote devices' states.
fn streams(event: SessionEvent) -> Vec<JsEvent> {
    match event {
        SessionEvent::PublisherState {
            stream_id,
            state,
            code,
            extended,
        } => vec![ev(
            "publisherStateUpdate",
            state_args(stream_id.as_str(), state as u32, code.0, extended),
        )],
        SessionEvent::PlayerState {
            stream_id,
            state,
            code,
            extended,
        } => vec![ev(
            "playerStateUpdate",
            state_args(stream_id.as_str(), state as u32, code.0, extended),
        )],
        SessionEvent::RemoteMicState { stream_id, state } => vec![ev(
            "remoteMicStateUpdate",
            [
                ("streamID", json!(stream_id.as_str())),
                ("state", json!(state)),
            ],
        )],
        SessionEvent::RemoteCameraState { stream_id, state } => vec![ev(
            "remoteCameraStateUpdate",
            [
                ("streamID", json!(stream_id.as_str())),
                ("state", json!(state)),
            ],
        )],
        // Routed to another group by `to_js`.
        _ => Vec::new(),
    }
}

/// Broadcast, barrage and custom command messages.
fn messages(event: SessionEvent) -> Vec<JsEvent> {
    match event {
        SessionEvent::Broadcast { room_id, messages } => vec![ev(
            "IMRecvBroadcastMessage",
            [
                ("roomID", json!(room_id)),
                (
                    "messageList",
                    messages
                        .iter()
                        .map(|m| message(&m.message, json!(m.message_id), m.send_time_ms, &m.from))
                        .collect(),
                ),
            ],
        )],
        SessionEvent::Barrage { room_id, messages } => vec![ev(
            "IMRecvBarrageMessage",
            [
                ("roomID", json!(room_id)),
                (
                    "messageList",
                    messages
                        .iter()
                        .map(|m| message(&m.message, json!(m.message_id), m.send_time_ms, &m.from))
                        .collect(),
                ),
            ],
        )],
        SessionEvent::CustomCommand {
            room_id,
            from,
            command,
        } => vec![ev(
            "IMRecvCustomCommand",
            [
                ("roomID", json!(room_id)),
                ("fromUser", user(&from)),
                ("command", json!(command)),
            ],
        )],
        // Routed to another group by `to_js`.
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
