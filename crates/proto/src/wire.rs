//! Signaling frames. One WebSocket per engine carries every room of that engine: each request
//! names its room and carries an `id` that the reply echoes. The server pushes per-room events.
//!
//! JSON text frames, internally tagged by `type`. Ids deserialize through their validating
//! constructors, so a frame that parses is already well-formed.

use crate::{ErrorCode, RoomId, StreamId, User, UserId};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; the server refuses other versions in the hello.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message body (broadcast, barrage, custom command), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Stream extra info must be shorter than this, in bytes.
pub const MAX_STREAM_EXTRA_INFO_BYTES: usize = 1024;
/// Room extra info keys and values must be shorter than this, in bytes.
pub const MAX_ROOM_EXTRA_INFO_BYTES: usize = 128;

/// A request from an engine. `id` is chosen by the engine and echoed in the [`ServerMsg::Reply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    pub id: u64,
    #[serde(flatten)]
    pub req: Request,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// First frame of a connection. With `resume`, the engine asks to continue a session whose
    /// connection dropped (see [`Resume`]).
    Hello {
        version: u32,
        app_id: u32,
        #[serde(default)]
        app_sign: String,
        #[serde(default)]
        sdk_version: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<Resume>,
    },
    Login {
        room_id: RoomId,
        user: User,
        #[serde(default)]
        config: LoginConfig,
    },
    Logout {
        room_id: RoomId,
    },
    RenewToken {
        room_id: RoomId,
        token: String,
    },
    SetRoomExtraInfo {
        room_id: RoomId,
        key: String,
        value: String,
    },
    Publish {
        room_id: RoomId,
        stream_id: StreamId,
        #[serde(default)]
        extra_info: String,
    },
    Unpublish {
        room_id: RoomId,
        stream_id: StreamId,
    },
    SetStreamExtraInfo {
        room_id: RoomId,
        stream_id: StreamId,
        extra_info: String,
    },
    Play {
        room_id: RoomId,
        stream_id: StreamId,
    },
    Unplay {
        room_id: RoomId,
        stream_id: StreamId,
    },
    Broadcast {
        room_id: RoomId,
        message: String,
    },
    Barrage {
        room_id: RoomId,
        message: String,
    },
    /// `to` empty means everyone else in the room.
    CustomCommand {
        room_id: RoomId,
        command: String,
        #[serde(default)]
        to: Vec<UserId>,
    },
    /// The publisher's microphone and camera state for `stream_id`, as ZEGO's
    /// `ZegoRemoteDeviceState` values (0 open, 9 disabled, 10 muted); relayed to its players.
    SetStreamState {
        room_id: RoomId,
        stream_id: StreamId,
        audio: u32,
        video: u32,
    },
    /// An SDP offer for the engine's one peer connection, with the role of each m-line. The
    /// engine is always the offerer; the server answers. `fresh`: the offer comes from a new
    /// peer connection that replaces the connection's current one (the engine rebuilds its
    /// peer to shed the m-lines of stopped streams, or after dropping an idle one).
    MediaOffer {
        sdp: String,
        tracks: Vec<TrackSpec>,
        #[serde(default, skip_serializing_if = "is_false")]
        fresh: bool,
    },
    /// Heartbeat. `received` acknowledges the frames of this session received so far (every
    /// frame after the hello's reply, across connections), so the server can forget them.
    Ping {
        #[serde(default)]
        received: u64,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What an engine presents to continue a session after its connection dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The `session_id` of the hello's reply.
    pub session_id: String,
    /// The `resume_key` of the hello's reply.
    pub key: String,
    /// Frames of the session received so far; the server replays those after them.
    pub received: u64,
}

/// What one m-line of an engine's peer connection carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackSpec {
    /// The m-line's `a=mid`.
    pub mid: String,
    pub stream_id: StreamId,
    pub kind: TrackKind,
    /// `send`: the engine publishes `stream_id` on it; `recv`: it plays `stream_id`.
    pub direction: TrackDirection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackDirection {
    Send,
    Recv,
}

impl Request {
    /// The request's type, as its `type` field names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Login { .. } => "login",
            Request::Logout { .. } => "logout",
            Request::RenewToken { .. } => "renew_token",
            Request::SetRoomExtraInfo { .. } => "set_room_extra_info",
            Request::Publish { .. } => "publish",
            Request::Unpublish { .. } => "unpublish",
            Request::SetStreamExtraInfo { .. } => "set_stream_extra_info",
            Request::Play { .. } => "play",
            Request::Unplay { .. } => "unplay",
            Request::Broadcast { .. } => "broadcast",
            Request::Barrage { .. } => "barrage",
            Request::CustomCommand { .. } => "custom_command",
            Request::SetStreamState { .. } => "set_stream_state",
            Request::MediaOffer { .. } => "media_offer",
            Request::Ping { .. } => "ping",
        }
    }

    /// The room a request is about, if any.
    pub fn room_id(&self) -> Option<&RoomId> {
        match self {
            Request::Hello { .. } | Request::Ping { .. } | Request::MediaOffer { .. } => None,
            Request::Login { room_id, .. }
            | Request::Logout { room_id }
            | Request::RenewToken { room_id, .. }
            | Request::SetRoomExtraInfo { room_id, .. }
            | Request::Publish { room_id, .. }
            | Request::Unpublish { room_id, .. }
            | Request::SetStreamExtraInfo { room_id, .. }
            | Request::Play { room_id, .. }
            | Request::Unplay { room_id, .. }
            | Request::Broadcast { room_id, .. }
            | Request::Barrage { room_id, .. }
            | Request::CustomCommand { room_id, .. }
            | Request::SetStreamState { room_id, .. } => Some(room_id),
        }
    }
}

/// ZEGO's `ZegoRoomConfig`, plus the mode the engine runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginConfig {
    #[serde(default)]
    pub max_member_count: u32,
    #[serde(default)]
    pub user_status_notify: bool,
    #[serde(default)]
    pub token: String,
    /// The engine was set to `ZegoRoomMode.MultiRoom`.
    #[serde(default)]
    pub multi_room: bool,
}

/// ZEGO's `ZegoUpdateType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateType {
    Add,
    Delete,
}

impl UpdateType {
    /// ZEGO's numeric value.
    pub fn zego(self) -> u32 {
        match self {
            UpdateType::Add => 0,
            UpdateType::Delete => 1,
        }
    }
}

/// Why a stream left a room: the `code` in `stream_delete_reason` of ZEGO's `extendedData`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeleteReason(pub u32);

impl DeleteReason {
    pub const STOPPED: DeleteReason = DeleteReason(1);
    pub const HEARTBEAT_TIMEOUT: DeleteReason = DeleteReason(2);
    pub const REPEATED_LOGIN: DeleteReason = DeleteReason(3);
    pub const KICKED_OUT: DeleteReason = DeleteReason(4);
    pub const DISCONNECTED: DeleteReason = DeleteReason(5);
    pub const REMOVED_BY_SERVER: DeleteReason = DeleteReason(6);
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub stream_id: StreamId,
    pub user: User,
    #[serde(default)]
    pub extra_info: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDelete {
    pub stream_id: StreamId,
    pub code: DeleteReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomExtraInfo {
    pub key: String,
    pub value: String,
    pub update_user: User,
    pub update_time_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastMessage {
    pub message: String,
    pub message_id: u64,
    pub send_time_ms: u64,
    pub from: User,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarrageMessage {
    pub message: String,
    pub message_id: String,
    pub send_time_ms: u64,
    pub from: User,
}

/// A frame from the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The answer to the request with the same `id`; `code` 0 is success.
    Reply {
        id: u64,
        code: ErrorCode,
        /// Why a request was refused, in words, where the code alone does not say it (a media
        /// offer's SDP); empty (and left out) otherwise.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<ReplyBody>,
    },
    UserUpdate {
        room_id: RoomId,
        update: UpdateType,
        users: Vec<User>,
    },
    StreamUpdate {
        room_id: RoomId,
        update: UpdateType,
        streams: Vec<StreamInfo>,
        /// One entry per deleted stream.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deleted: Vec<StreamDelete>,
    },
    StreamExtraInfo {
        room_id: RoomId,
        streams: Vec<StreamInfo>,
    },
    RoomExtraInfo {
        room_id: RoomId,
        infos: Vec<RoomExtraInfo>,
    },
    Broadcast {
        room_id: RoomId,
        messages: Vec<BroadcastMessage>,
    },
    Barrage {
        room_id: RoomId,
        messages: Vec<BarrageMessage>,
    },
    CustomCommand {
        room_id: RoomId,
        from: User,
        command: String,
    },
    OnlineCount {
        room_id: RoomId,
        count: u32,
    },
    /// The room's token expires in `remain_s` seconds (sent 30 s before): renew it.
    TokenWillExpire {
        room_id: RoomId,
        remain_s: u32,
    },
    /// The server removed this engine's user from the room.
    Kicked {
        room_id: RoomId,
        code: ErrorCode,
    },
    /// A stream this engine plays (through `room_id`) is now published.
    StreamAvailable {
        room_id: RoomId,
        stream_id: StreamId,
    },
    /// The publisher's device state of a stream this engine plays (through `room_id`).
    StreamState {
        room_id: RoomId,
        stream_id: StreamId,
        audio: u32,
        video: u32,
    },
    /// A stream this engine plays cannot reach it: the publisher's codec is not among those the
    /// player's offer accepted (`code` 1004080). Nothing of it is forwarded; the engine stops
    /// playing it.
    PlayFailed {
        stream_id: StreamId,
        kind: TrackKind,
        code: ErrorCode,
    },
    /// A stream this engine plays stopped being published.
    StreamUnavailable {
        room_id: RoomId,
        stream_id: StreamId,
        reason: DeleteReason,
    },
}

/// What a successful reply carries, by request kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplyBody {
    Hello {
        session_id: String,
        server_version: String,
        /// Presented with `session_id` to resume this session on a new connection.
        #[serde(default)]
        resume_key: String,
        /// The session of the hello's `resume` continues: rooms, streams and requests as they
        /// were, missed frames replayed next. False: a new session (log into the rooms again).
        #[serde(default)]
        resumed: bool,
    },
    Login {
        room_session_id: String,
        users: Vec<User>,
        streams: Vec<StreamInfo>,
        extra_info: Vec<RoomExtraInfo>,
        online_count: u32,
    },
    Broadcast {
        message_id: u64,
    },
    Barrage {
        message_id: String,
    },
    Play {
        available: bool,
    },
    MediaAnswer {
        sdp: String,
    },
}
