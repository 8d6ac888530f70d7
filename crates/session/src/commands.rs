//! API calls as the session receives them: raw values from the app, validated by the session.

/// ZEGO's `ZegoRoomConfig`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomConfig {
    pub max_member_count: u32,
    pub is_user_status_notify: bool,
    pub token: String,
}

/// The `roomID` of a `ZegoPublisherConfig` or `ZegoPlayerConfig`; `None` when the app passed no
/// config or a config without `roomID`.
pub type ConfigRoom = Option<String>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    LoginRoom {
        room_id: String,
        user_id: String,
        /// `None` when the app left `userName` out: the userID stands in for it.
        user_name: Option<String>,
        config: RoomConfig,
    },
    /// `None` leaves every room.
    LogoutRoom {
        room_id: Option<String>,
    },
    SwitchRoom {
        from: String,
        to: String,
        config: Option<RoomConfig>,
    },
    RenewToken {
        room_id: String,
        token: String,
    },
    SetRoomExtraInfo {
        room_id: String,
        key: String,
        value: String,
    },
    StartPublishing {
        stream_id: String,
        channel: u32,
        room_id: ConfigRoom,
    },
    StopPublishing {
        channel: u32,
    },
    SetStreamExtraInfo {
        extra_info: Option<String>,
        channel: u32,
    },
    StartPlaying {
        stream_id: String,
        room_id: ConfigRoom,
    },
    StopPlaying {
        stream_id: String,
    },
    SendBroadcast {
        room_id: String,
        message: String,
    },
    SendBarrage {
        room_id: String,
        message: String,
    },
    SendCustomCommand {
        room_id: String,
        command: String,
        to: Vec<String>,
    },
    MutePublishAudio {
        mute: bool,
        channel: u32,
    },
    MutePublishVideo {
        mute: bool,
        channel: u32,
    },
    /// Every channel's audio.
    MuteMicrophone {
        mute: bool,
    },
    EnableCamera {
        enable: bool,
        channel: u32,
    },
}

impl Command {
    /// ZEGO's name of the API, as `apiCalledResult` reports it.
    pub fn func_name(&self) -> &'static str {
        match self {
            Command::LoginRoom { .. } => "loginRoom",
            Command::LogoutRoom { .. } => "logoutRoom",
            Command::SwitchRoom { .. } => "switchRoom",
            Command::RenewToken { .. } => "renewToken",
            Command::SetRoomExtraInfo { .. } => "setRoomExtraInfo",
            Command::StartPublishing { .. } => "startPublishingStream",
            Command::StopPublishing { .. } => "stopPublishingStream",
            Command::SetStreamExtraInfo { .. } => "setStreamExtraInfo",
            Command::StartPlaying { .. } => "startPlayingStream",
            Command::StopPlaying { .. } => "stopPlayingStream",
            Command::SendBroadcast { .. } => "sendBroadcastMessage",
            Command::SendBarrage { .. } => "sendBarrageMessage",
            Command::SendCustomCommand { .. } => "sendCustomCommand",
            Command::MutePublishAudio { .. } => "mutePublishStreamAudio",
            Command::MutePublishVideo { .. } => "mutePublishStreamVideo",
            Command::MuteMicrophone { .. } => "muteMicrophone",
            Command::EnableCamera { .. } => "enableCamera",
        }
    }
}
