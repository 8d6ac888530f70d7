//! What the session tells the app, in ZEGO's terms.

use zrooms_proto::wire::{BarrageMessage, BroadcastMessage, RoomExtraInfo, StreamInfo, UpdateType};
use zrooms_proto::{ErrorCode, StreamId, User};

/// Identifies one API call; its [`SessionEvent::Completed`] carries the same id.
pub type OpId = u64;

/// ZEGO's `ZegoRoomStateChangedReason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomReason {
    Logining = 0,
    Logined = 1,
    LoginFailed = 2,
    Reconnecting = 3,
    Reconnected = 4,
    ReconnectFailed = 5,
    KickOut = 6,
    Logout = 7,
    LogoutFailed = 8,
}

/// ZEGO's `ZegoRoomState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomState {
    Disconnected = 0,
    Connecting = 1,
    Connected = 2,
}

impl RoomReason {
    /// The `ZegoRoomState` that `roomStateUpdate` reports for this reason.
    pub fn state(self) -> RoomState {
        match self {
            RoomReason::Logining | RoomReason::Reconnecting => RoomState::Connecting,
            RoomReason::Logined | RoomReason::Reconnected | RoomReason::LogoutFailed => {
                RoomState::Connected
            }
            RoomReason::LoginFailed
            | RoomReason::ReconnectFailed
            | RoomReason::KickOut
            | RoomReason::Logout => RoomState::Disconnected,
        }
    }
}

/// ZEGO's `ZegoPublisherState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublisherState {
    NoPublish = 0,
    PublishRequesting = 1,
    Publishing = 2,
}

/// ZEGO's `ZegoPlayerState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayerState {
    NoPlay = 0,
    PlayRequesting = 1,
    Playing = 2,
}

/// The value an API call resolves with, besides its code.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum OpValue {
    #[default]
    None,
    /// `extendedData` of login/logout results.
    Extended(String),
    /// Broadcast message id.
    MessageId(u64),
    /// Barrage message id.
    BarrageId(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// An API call finished: the promise it returned resolves now.
    Completed {
        op: OpId,
        code: ErrorCode,
        value: OpValue,
    },
    /// The synchronous outcome of an API call (`apiCalledResult`, and `debugError` when the code
    /// is not 0).
    ApiCalled {
        func: &'static str,
        code: ErrorCode,
        info: String,
    },
    RoomState {
        room_id: String,
        reason: RoomReason,
        code: ErrorCode,
        extended: String,
    },
    UserUpdate {
        room_id: String,
        update: UpdateType,
        users: Vec<User>,
    },
    OnlineCount {
        room_id: String,
        count: u32,
    },
    /// `roomTokenWillExpire`: the room's token expires in `remain_s` seconds.
    TokenWillExpire {
        room_id: String,
        remain_s: u32,
    },
    StreamUpdate {
        room_id: String,
        update: UpdateType,
        streams: Vec<StreamInfo>,
        extended: String,
    },
    StreamExtraInfo {
        room_id: String,
        streams: Vec<StreamInfo>,
    },
    RoomExtraInfo {
        room_id: String,
        infos: Vec<RoomExtraInfo>,
    },
    PublisherState {
        stream_id: StreamId,
        state: PublisherState,
        code: ErrorCode,
        extended: String,
    },
    PlayerState {
        stream_id: StreamId,
        state: PlayerState,
        code: ErrorCode,
        extended: String,
    },
    Broadcast {
        room_id: String,
        messages: Vec<BroadcastMessage>,
    },
    Barrage {
        room_id: String,
        messages: Vec<BarrageMessage>,
    },
    CustomCommand {
        room_id: String,
        from: User,
        command: String,
    },
    /// The publisher of a played stream changed its microphone state (`ZegoRemoteDeviceState`).
    RemoteMicState {
        stream_id: StreamId,
        state: u32,
    },
    /// Likewise its camera.
    RemoteCameraState {
        stream_id: StreamId,
        state: u32,
    },
}
