//! The one place where engine events become JavaScript values: `{e: name, a: [positional
//! args]}` as ZEGO's uni-app/React Native listeners take them, or `{e: "$done", op, code, ...}`
//! for a call's completion.

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

fn media(event: MediaEvent) -> Vec<Value> {
    match event {
        MediaEvent::PublisherCapturedVideoFirstFrame { channel } => {
            vec![ev("publisherCapturedVideoFirstFrame", json!([channel]))]
        }
        MediaEvent::PublisherRenderVideoFirstFrame { channel } => {
            vec![ev("publisherRenderVideoFirstFrame", json!([channel]))]
        }
        MediaEvent::PublisherCapturedAudioFirstFrame => {
            vec![ev("publisherCapturedAudioFirstFrame", json!([]))]
        }
        MediaEvent::PublisherVideoSizeChanged {
            channel,
            width,
            height,
        } => vec![ev(
            "publisherVideoSizeChanged",
            json!([width, height, channel]),
        )],
        MediaEvent::PlayerRecvVideoFirstFrame { stream_id } => {
            vec![ev("playerRecvVideoFirstFrame", json!([stream_id]))]
        }
        MediaEvent::PlayerRecvAudioFirstFrame { stream_id } => {
            vec![ev("playerRecvAudioFirstFrame", json!([stream_id]))]
        }
        MediaEvent::PlayerRenderVideoFirstFrame { stream_id } => {
            vec![ev("playerRenderVideoFirstFrame", json!([stream_id]))]
        }
        MediaEvent::PlayerVideoSizeChanged {
            stream_id,
            width,
            height,
        } => vec![ev(
            "playerVideoSizeChanged",
            json!([stream_id, width, height]),
        )],
        MediaEvent::LocalDeviceException {
            exception,
            device_type,
            device_id,
        } => vec![ev(
            "localDeviceExceptionOccurred",
            json!([exception, device_type, device_id]),
        )],
        MediaEvent::PublisherQuality {
            stream_id,
            quality: q,
        } => vec![ev(
            "publisherQualityUpdate",
            json!([stream_id, {
                "videoCaptureFPS": q.video_fps, "videoEncodeFPS": q.video_fps, "videoSendFPS": q.video_fps,
                "videoKBPS": q.video_kbps, "audioCaptureFPS": q.audio_fps, "audioSendFPS": q.audio_fps,
                "audioKBPS": q.audio_kbps, "rtt": q.rtt_ms, "packetLostRate": q.loss, "level": q.level(),
                "isHardwareEncode": false, "videoCodecID": q.video_codec_id,
                "totalSendBytes": q.video_bytes + q.audio_bytes, "audioSendBytes": q.audio_bytes,
                "videoSendBytes": q.video_bytes
            }]),
        )],
        MediaEvent::PlayerQuality {
            stream_id,
            quality: q,
        } => vec![ev(
            "playerQualityUpdate",
            json!([stream_id, {
                "videoRecvFPS": q.video_fps, "videoDejitterFPS": q.video_fps, "videoDecodeFPS": q.video_fps,
                "videoRenderFPS": q.video_fps, "videoKBPS": q.video_kbps, "videoBreakRate": 0,
                "audioRecvFPS": q.audio_fps, "audioDejitterFPS": q.audio_fps, "audioDecodeFPS": q.audio_fps,
                "audioRenderFPS": q.audio_fps, "audioKBPS": q.audio_kbps, "audioBreakRate": 0,
                "rtt": q.rtt_ms, "packetLostRate": q.loss, "peerToPeerDelay": q.rtt_ms,
                "peerToPeerPacketLostRate": q.loss, "level": q.level(), "delay": 0, "avTimestampDiff": 0,
                "isHardwareDecode": false, "videoCodecID": q.video_codec_id,
                "totalRecvBytes": q.video_bytes + q.audio_bytes, "audioRecvBytes": q.audio_bytes,
                "videoRecvBytes": q.video_bytes
            }]),
        )],
    }
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

fn ev(name: &str, args: Value) -> Value {
    json!({"e": name, "a": args})
}

pub fn to_js(event: EngineEvent) -> Vec<Value> {
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
fn calls(event: SessionEvent) -> Vec<Value> {
    match event {
        SessionEvent::Completed { op, code, value } => {
            let mut v = json!({"e": "$done", "op": op, "code": code.0});
            match value {
                OpValue::None => {}
                OpValue::Extended(s) => v["extendedData"] = json!(s),
                OpValue::MessageId(id) => v["messageID"] = json!(id),
                OpValue::BarrageId(id) => v["messageID"] = json!(id),
            }
            vec![v]
        }
        SessionEvent::ApiCalled { func, code, info } => {
            let mut out = Vec::with_capacity(2);
            if !code.is_success() {
                out.push(ev("debugError", json!([code.0, func, info])));
            }
            out.push(ev("apiCalledResult", json!([code.0, func, info])));
            out
        }
        // Routed to another group by `to_js`.
        _ => Vec::new(),
    }
}

/// A room's state, users, count, token, streams and extra info.
fn rooms(event: SessionEvent) -> Vec<Value> {
    match event {
        SessionEvent::RoomState {
            room_id,
            reason,
            code,
            extended,
        } => vec![
            ev(
                "roomStateChanged",
                json!([room_id, reason as u32, code.0, extended]),
            ),
            ev(
                "roomStateUpdate",
                json!([room_id, reason.state() as u32, code.0, extended]),
            ),
        ],
        SessionEvent::UserUpdate {
            room_id,
            update,
            users,
        } => vec![ev(
            "roomUserUpdate",
            json!([
                room_id,
                update.zego(),
                users.iter().map(user).collect::<Vec<_>>()
            ]),
        )],
        SessionEvent::OnlineCount { room_id, count } => {
            vec![ev("roomOnlineUserCountUpdate", json!([room_id, count]))]
        }
        SessionEvent::TokenWillExpire { room_id, remain_s } => {
            vec![ev("roomTokenWillExpire", json!([room_id, remain_s]))]
        }
        SessionEvent::StreamUpdate {
            room_id,
            update,
            streams,
            extended,
        } => vec![ev(
            "roomStreamUpdate",
            json!([
                room_id,
                update.zego(),
                streams.iter().map(stream).collect::<Vec<_>>(),
                extended
            ]),
        )],
        SessionEvent::StreamExtraInfo { room_id, streams } => vec![ev(
            "roomStreamExtraInfoUpdate",
            json!([room_id, streams.iter().map(stream).collect::<Vec<_>>()]),
        )],
        SessionEvent::RoomExtraInfo { room_id, infos } => vec![ev(
            "roomExtraInfoUpdate",
            json!([room_id, infos.iter().map(extra).collect::<Vec<_>>()]),
        )],
        // Routed to another group by `to_js`.
        _ => Vec::new(),
    }
}

/// Publisher and player states, and the remote devices' states.
fn streams(event: SessionEvent) -> Vec<Value> {
    match event {
        SessionEvent::PublisherState {
            stream_id,
            state,
            code,
            extended,
        } => vec![ev(
            "publisherStateUpdate",
            json!([stream_id.as_str(), state as u32, code.0, extended]),
        )],
        SessionEvent::PlayerState {
            stream_id,
            state,
            code,
            extended,
        } => vec![ev(
            "playerStateUpdate",
            json!([stream_id.as_str(), state as u32, code.0, extended]),
        )],
        SessionEvent::RemoteMicState { stream_id, state } => {
            vec![ev(
                "remoteMicStateUpdate",
                json!([stream_id.as_str(), state]),
            )]
        }
        SessionEvent::RemoteCameraState { stream_id, state } => {
            vec![ev(
                "remoteCameraStateUpdate",
                json!([stream_id.as_str(), state]),
            )]
        }
        // Routed to another group by `to_js`.
        _ => Vec::new(),
    }
}

/// Broadcast, barrage and custom command messages.
fn messages(event: SessionEvent) -> Vec<Value> {
    match event {
        SessionEvent::Broadcast { room_id, messages } => vec![ev(
            "IMRecvBroadcastMessage",
            json!([
                room_id,
                messages
                    .iter()
                    .map(|m| message(&m.message, json!(m.message_id), m.send_time_ms, &m.from))
                    .collect::<Vec<_>>()
            ]),
        )],
        SessionEvent::Barrage { room_id, messages } => vec![ev(
            "IMRecvBarrageMessage",
            json!([
                room_id,
                messages
                    .iter()
                    .map(|m| message(&m.message, json!(m.message_id), m.send_time_ms, &m.from))
                    .collect::<Vec<_>>()
            ]),
        )],
        SessionEvent::CustomCommand {
            room_id,
            from,
            command,
        } => vec![ev(
            "IMRecvCustomCommand",
            json!([room_id, user(&from), command]),
        )],
        // Routed to another group by `to_js`.
        _ => Vec::new(),
    }
}
