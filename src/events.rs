//! The one place where engine events become JavaScript values: `{e: name, a: [positional
//! args]}` as ZEGO's uni-app/React Native listeners take them, or `{e: "$done", op, code, ...}`
//! for a call's completion.

use serde_json::{json, Value};
use zrooms_engine::proto::wire::{RoomExtraInfo, StreamInfo};
use zrooms_engine::proto::User;
use zrooms_engine::session::{OpValue, SessionEvent};
use zrooms_engine::EngineEvent;

fn user(u: &User) -> Value {
    json!({"userID": u.user_id.as_str(), "userName": u.user_name.as_str()})
}

fn stream(s: &StreamInfo) -> Value {
    json!({"user": user(&s.user), "streamID": s.stream_id.as_str(), "extraInfo": s.extra_info})
}

fn extra(i: &RoomExtraInfo) -> Value {
    json!({"key": i.key, "value": i.value, "updateUser": user(&i.update_user), "updateTime": i.update_time_ms})
}

fn ev(name: &str, args: Value) -> Value {
    json!({"e": name, "a": args})
}

pub fn to_js(event: EngineEvent) -> Vec<Value> {
    let EngineEvent::Session(event) = event;
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
            json!([room_id, update.zego(), users.iter().map(user).collect::<Vec<_>>()]),
        )],
        SessionEvent::OnlineCount { room_id, count } => {
            vec![ev("roomOnlineUserCountUpdate", json!([room_id, count]))]
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
        SessionEvent::Broadcast { room_id, messages } => vec![ev(
            "IMRecvBroadcastMessage",
            json!([
                room_id,
                messages
                    .iter()
                    .map(|m| json!({"message": m.message, "messageID": m.message_id, "sendTime": m.send_time_ms, "fromUser": user(&m.from)}))
                    .collect::<Vec<_>>()
            ]),
        )],
        SessionEvent::Barrage { room_id, messages } => vec![ev(
            "IMRecvBarrageMessage",
            json!([
                room_id,
                messages
                    .iter()
                    .map(|m| json!({"message": m.message, "messageID": m.message_id, "sendTime": m.send_time_ms, "fromUser": user(&m.from)}))
                    .collect::<Vec<_>>()
            ]),
        )],
        SessionEvent::CustomCommand {
            room_id,
            from,
            command,
        } => vec![ev("IMRecvCustomCommand", json!([room_id, user(&from), command]))],
    }
}
