//! `events.rs` checked against `index.d.ts`.

use super::*;
use zrooms_engine::proto::wire::UpdateType;
use zrooms_engine::proto::{ErrorCode, StreamId, UserId, UserName};
use zrooms_engine::session::{PlayerState, PublisherState, RoomReason};
use zrooms_engine::Quality;

/// Listener name → parameter names, from `ZegoEventListener` in index.d.ts.
fn declared() -> Vec<(String, Vec<String>)> {
    let dts = include_str!("../../index.d.ts");
    let start = dts
        .find("export interface ZegoEventListener {")
        .expect("ZegoEventListener in index.d.ts");
    let body = &dts[start..];
    let body = &body[..body.find("\n}").expect("end of ZegoEventListener")];
    body.lines()
        .filter_map(|line| {
            let (name, rest) = line.trim().split_once(": (")?;
            let params = rest.split_once(") =>")?.0;
            let names = params
                .split(", ")
                .filter(|p| !p.is_empty())
                .map(|p| p.split(':').next().unwrap_or("").trim().to_string())
                .collect();
            Some((name.to_string(), names))
        })
        .collect()
}

fn user_() -> User {
    User {
        user_id: UserId::new("u").unwrap(),
        user_name: UserName::new("n").unwrap(),
    }
}

/// One of every session and media event the engine emits. The match in `covered` has no
/// wildcard: a new event kind does not compile until it has a sample here.
fn samples() -> Vec<EngineEvent> {
    let sid = || StreamId::new("s").unwrap();
    let info = StreamInfo {
        stream_id: sid(),
        user: user_(),
        extra_info: String::new(),
    };
    let q = Quality {
        video_fps: 0.0,
        audio_fps: 0.0,
        video_kbps: 0.0,
        audio_kbps: 0.0,
        rtt_ms: 0.0,
        loss: 0.0,
        video_bytes: 0,
        audio_bytes: 0,
        video_codec_id: 0,
    };
    let room = || "r".to_string();
    let session = vec![
        SessionEvent::ApiCalled {
            func: "f",
            code: ErrorCode(1000001),
            info: String::new(),
        },
        SessionEvent::RoomState {
            room_id: room(),
            reason: RoomReason::Logined,
            code: ErrorCode(0),
            extended: "{}".into(),
        },
        SessionEvent::UserUpdate {
            room_id: room(),
            update: UpdateType::Add,
            users: vec![user_()],
        },
        SessionEvent::OnlineCount {
            room_id: room(),
            count: 1,
        },
        SessionEvent::TokenWillExpire {
            room_id: room(),
            remain_s: 30,
        },
        SessionEvent::StreamUpdate {
            room_id: room(),
            update: UpdateType::Add,
            streams: vec![info.clone()],
            extended: "{}".into(),
        },
        SessionEvent::StreamExtraInfo {
            room_id: room(),
            streams: vec![info],
        },
        SessionEvent::RoomExtraInfo {
            room_id: room(),
            infos: vec![RoomExtraInfo {
                key: "k".into(),
                value: "v".into(),
                update_user: user_(),
                update_time_ms: 1,
            }],
        },
        SessionEvent::PublisherState {
            stream_id: sid(),
            state: PublisherState::Publishing,
            code: ErrorCode(0),
            extended: "{}".into(),
        },
        SessionEvent::PlayerState {
            stream_id: sid(),
            state: PlayerState::Playing,
            code: ErrorCode(0),
            extended: "{}".into(),
        },
        SessionEvent::Broadcast {
            room_id: room(),
            messages: Vec::new(),
        },
        SessionEvent::Barrage {
            room_id: room(),
            messages: Vec::new(),
        },
        SessionEvent::CustomCommand {
            room_id: room(),
            from: user_(),
            command: "c".into(),
        },
        SessionEvent::RemoteMicState {
            stream_id: sid(),
            state: 0,
        },
        SessionEvent::RemoteCameraState {
            stream_id: sid(),
            state: 0,
        },
    ];
    let s = || "s".to_string();
    let media = vec![
        MediaEvent::PublisherCapturedVideoFirstFrame { channel: 0 },
        MediaEvent::PublisherCapturedAudioFirstFrame,
        MediaEvent::PublisherRenderVideoFirstFrame { channel: 0 },
        MediaEvent::PublisherVideoSizeChanged {
            channel: 0,
            width: 2,
            height: 2,
        },
        MediaEvent::PlayerRecvVideoFirstFrame { stream_id: s() },
        MediaEvent::PlayerRecvAudioFirstFrame { stream_id: s() },
        MediaEvent::PlayerRenderVideoFirstFrame { stream_id: s() },
        MediaEvent::PlayerVideoSizeChanged {
            stream_id: s(),
            width: 2,
            height: 2,
        },
        MediaEvent::LocalDeviceException {
            exception: 1,
            device_type: 2,
            device_id: String::new(),
        },
        MediaEvent::PublisherQuality {
            stream_id: s(),
            quality: q.clone(),
        },
        MediaEvent::PlayerQuality {
            stream_id: s(),
            quality: q,
        },
    ];
    for e in &session {
        covered_session(e);
    }
    for e in &media {
        covered_media(e);
    }
    let mut all: Vec<EngineEvent> = session.into_iter().map(EngineEvent::Session).collect();
    all.extend(media.into_iter().map(EngineEvent::Media));
    all
}

fn covered_session(e: &SessionEvent) {
    match e {
        SessionEvent::Completed { .. }
        | SessionEvent::ApiCalled { .. }
        | SessionEvent::RoomState { .. }
        | SessionEvent::UserUpdate { .. }
        | SessionEvent::OnlineCount { .. }
        | SessionEvent::TokenWillExpire { .. }
        | SessionEvent::StreamUpdate { .. }
        | SessionEvent::StreamExtraInfo { .. }
        | SessionEvent::RoomExtraInfo { .. }
        | SessionEvent::PublisherState { .. }
        | SessionEvent::PlayerState { .. }
        | SessionEvent::Broadcast { .. }
        | SessionEvent::Barrage { .. }
        | SessionEvent::CustomCommand { .. }
        | SessionEvent::RemoteMicState { .. }
        | SessionEvent::RemoteCameraState { .. } => {}
    }
}

fn covered_media(e: &MediaEvent) {
    match e {
        MediaEvent::PublisherCapturedVideoFirstFrame { .. }
        | MediaEvent::PublisherCapturedAudioFirstFrame
        | MediaEvent::PublisherRenderVideoFirstFrame { .. }
        | MediaEvent::PublisherVideoSizeChanged { .. }
        | MediaEvent::PlayerRecvVideoFirstFrame { .. }
        | MediaEvent::PlayerRecvAudioFirstFrame { .. }
        | MediaEvent::PlayerRenderVideoFirstFrame { .. }
        | MediaEvent::PlayerVideoSizeChanged { .. }
        | MediaEvent::LocalDeviceException { .. }
        | MediaEvent::PublisherQuality { .. }
        | MediaEvent::PlayerQuality { .. } => {}
    }
}

/// Listeners the facade (index.js) emits itself, not the engine.
const FROM_THE_FACADE: [&str; 2] = ["capturedSoundLevelUpdate", "remoteSoundLevelUpdate"];

#[test]
fn every_event_matches_the_typings() {
    let declared = declared();
    assert!(declared.len() > 25, "parsed {} listeners", declared.len());
    let mut emitted = std::collections::BTreeSet::new();
    for event in samples() {
        for js in to_js(event) {
            let JsEvent::Event { name, args } = js else {
                continue;
            };
            let params: Vec<&str> = args.iter().map(|(n, _)| *n).collect();
            let typed = declared
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{name} is not declared in ZegoEventListener"));
            assert_eq!(params, typed.1, "parameters of {name}");
            emitted.insert(name);
        }
    }
    for (name, _) in &declared {
        assert!(
            emitted.contains(name.as_str()) || FROM_THE_FACADE.contains(&name.as_str()),
            "{name} is declared but never emitted"
        );
    }
}

#[test]
fn events_become_positional_arrays() {
    let v = ev(
        "roomOnlineUserCountUpdate",
        [("roomID", json!("r")), ("count", json!(3))],
    )
    .into_value();
    assert_eq!(v, json!({"e": "roomOnlineUserCountUpdate", "a": ["r", 3]}));
}
