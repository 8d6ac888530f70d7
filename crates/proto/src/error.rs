//! ZEGO's numeric error codes.
//!
//! `ErrorCode` is a transparent `u32` so that codes the project does not name yet still travel
//! unchanged; the constants below are the ones this implementation returns. Names follow ZEGO's
//! `ZegoErrorCode` (see `shared/reference/error-codes.tsv`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A ZEGO error code; `0` is success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u32);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl ErrorCode {
            $($(#[$doc])* pub const $name: ErrorCode = ErrorCode($value);)*

            /// ZEGO's name for the code, when this crate names it.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// Success.
    SUCCESS = 0;
    /// The engine has not been created.
    COMMON_ENGINE_NOT_CREATE = 1000001;
    /// The call needs a room that is logged in.
    COMMON_NOT_LOGIN_ROOM = 1000002;
    /// streamID is 256 bytes or longer.
    COMMON_STREAM_ID_TOO_LONG = 1000014;
    /// streamID is empty.
    COMMON_STREAM_ID_NULL = 1000015;
    /// streamID has a character outside `[0-9A-Za-z_-]`.
    COMMON_STREAM_ID_INVALID_CHARACTER = 1000016;
    /// A parameter is out of range or of the wrong type.
    COMMON_ILLEGAL_PARAM = 1000017;
    /// A room-scoped setting was changed while a room is logged in.
    COMMON_SETTING_AFTER_LOGIN = 1000067;
    /// appID is 0.
    ENGINE_APP_ID_ZERO = 1001000;
    /// appSign is not 64 bytes.
    ENGINE_APP_SIGN_INVALID_LENGTH = 1001001;
    /// appSign has a character that is not hex.
    ENGINE_APP_SIGN_INVALID_CHARACTER = 1001002;
    /// The server does not know this appID.
    ENGINE_APP_ID_INCORRECT_OR_NOT_ONLINE = 1001004;
    /// The appSign does not match the app.
    ENGINE_APP_SIGN_INCORRECT = 1001005;
    /// `setRoomMode` was called after the engine was created.
    ENGINE_SET_ROOM_MODE_ERROR_TIME = 1001020;
    /// Single-room mode: already logged in (also the same room again).
    ROOM_COUNT_EXCEED = 1002001;
    /// The roomID is not a room this engine is logged into.
    ROOM_ROOMID_INCORRECT = 1002002;
    /// userID is empty.
    ROOM_USER_ID_NULL = 1002005;
    /// userID has an illegal character.
    ROOM_USER_ID_INVALID_CHARACTER = 1002006;
    /// userID is 64 bytes or longer.
    ROOM_USER_ID_TOO_LONG = 1002007;
    /// userName is empty.
    ROOM_USER_NAME_NULL = 1002008;
    /// userName has an illegal character.
    ROOM_USER_NAME_INVALID_CHARACTER = 1002009;
    /// userName is 256 bytes or longer.
    ROOM_USER_NAME_TOO_LONG = 1002010;
    /// roomID is empty.
    ROOM_ROOMID_NULL = 1002011;
    /// roomID has an illegal character.
    ROOM_ROOMID_INVALID_CHARACTER = 1002012;
    /// roomID is 128 bytes or longer.
    ROOM_ROOMID_TOO_LONG = 1002013;
    /// Room extra info key is empty.
    ROOM_ROOM_EXTRA_INFO_KEY_EMPTY = 1002014;
    /// Room extra info key is 128 bytes or longer.
    ROOM_ROOM_EXTRA_INFO_KEY_TOO_LONG = 1002015;
    /// Room extra info value is 128 bytes or longer.
    ROOM_ROOM_EXTRA_INFO_VALUE_TOO_LONG = 1002016;
    /// The room already holds a different extra info key.
    ROOM_ROOM_EXTRA_INFO_EXCEED_KEYS = 1002017;
    /// Multi-room: another userID or userName than the rooms already logged in.
    ROOM_MULTI_ROOM_USER_INFO_DIFFERENT = 1002018;
    /// `switchRoom` is not allowed in multi-room mode.
    ROOM_MULTI_ROOM_SWITCH_ROOM_INVALID = 1002019;
    /// Login failed: network.
    ROOM_ERROR_CONNECT_FAILED = 1002030;
    /// Login timed out.
    ROOM_ERROR_LOGIN_TIMEOUT = 1002031;
    /// Login authentication failed.
    ROOM_ERROR_AUTHENTICATION_FAILED = 1002033;
    /// The room is full.
    ROOM_ERROR_EXCEED_MAXIMUM_MEMBER = 1002034;
    /// Multi-room is not enabled for this app.
    ROOM_ERROR_MULTI_ROOM_NOT_SUPPORT = 1002036;
    /// More rooms at once than the app allows.
    ROOM_ERROR_EXCEED_MAXIMUM_ROOM_COUNT = 1002037;
    /// Kicked: the same userID logged into the room elsewhere.
    ROOM_KICKED_OUT = 1002050;
    /// The connection broke; retrying.
    ROOM_CONNECT_TEMPORARY_BROKEN = 1002051;
    /// Disconnected.
    ROOM_DISCONNECT = 1002052;
    /// Reconnection gave up.
    ROOM_RETRY_TIMEOUT = 1002053;
    /// Kicked by the business server.
    ROOM_MANUAL_KICKED_OUT = 1002055;
    /// The app calls room APIs too often.
    ROOM_ERROR_REQUEST_FREQUENCY_LIMIT = 1002071;
    /// One room's calls of this kind are too frequent (its configured rate).
    ROOM_ROOM_CALL_API_TOO_FREQUENT = 1002072;
    /// Room signalling calls too often.
    ROOM_ERROR_SIGNALLING_FREQUENCY_LIMIT = 1002073;
    /// Kicked because the room's token expired.
    ROOM_TOKEN_EXPIRED_KICKED_OUT = 1002056;
    /// The app needs a token (no appSign was given, or the app requires tokens) and none came.
    ROOM_NO_TOKEN = 1002067;
    /// The server cannot check the token.
    ROOM_TOKEN_INNER_ERROR = 1002074;
    /// The token is malformed or its payload is not the documented JSON.
    ROOM_TOKEN_FORMAT_ERROR = 1002075;
    /// The token is for another app.
    ROOM_TOKEN_APPID_ERROR = 1002076;
    /// The token is for another user.
    ROOM_TOKEN_USERID_ERROR = 1002077;
    /// The token has expired.
    ROOM_TOKEN_EXPIRE_ERROR = 1002078;
    /// Not a token04.
    ROOM_TOKEN_VERSION_ERROR = 1002079;
    /// The token's nonce is not an integer.
    ROOM_TOKEN_NONCETYPE_ERROR = 1002080;
    /// The renewed token does not allow a stream this user is publishing.
    ROOM_RENEW_TOKEN_NO_PUBLISH_AUTH_ERROR = 1002082;
    /// Internal room error.
    ROOM_INNER_ERROR = 1002099;
    /// The channel is already publishing another stream.
    PUBLISHER_BUSY_CHANNEL = 1003023;
    /// The server refuses this publish (the stream is not this engine's).
    PUBLISHER_FORBIDDEN = 1003025;
    /// The room's token does not allow publishing this stream.
    PUBLISHER_ERROR_DISPATCH_AUTH_ERROR = 1003072;
    /// The streamID is already published in this app.
    PUBLISHER_ERROR_REPETITIVE_PUBLISH_STREAM = 1003028;
    /// Stream extra info is null.
    PUBLISHER_EXTRA_INFO_NULL = 1003050;
    /// Stream extra info is 1024 bytes or longer.
    PUBLISHER_EXTRA_INFO_TOO_LONG = 1003051;
    /// Multi-room: publish without a config naming the room.
    PUBLISHER_ROOM_ID_REQUIRED = 1003070;
    /// Multi-room: publisher config with an empty roomID.
    PUBLISHER_ROOM_ID_EMPTY = 1003071;
    /// Internal publisher error.
    PUBLISHER_INNER_ERROR = 1003099;
    /// The stream to play does not exist.
    PLAYER_ERROR_STREAM_NOT_EXIST = 1004002;
    /// The server refuses this play (the engine does not play the stream).
    PLAYER_FORBIDDEN = 1004025;
    /// Multi-room: play without a config naming the room.
    PLAYER_ROOM_ID_REQUIRED = 1004070;
    /// The player cannot decode the stream's codec (its offer has none the publisher sends).
    PLAYER_VIDEO_DECODER_NOT_SUPPORTED = 1004080;
    /// Multi-room: player config with an empty roomID.
    PLAYER_ROOM_ID_EMPTY = 1004071;
    /// Internal player error.
    PLAYER_INNER_ERROR = 1004099;
    /// Message content is empty.
    IM_CONTENT_NULL = 1009001;
    /// Message content is longer than 1024 bytes.
    IM_CONTENT_TOO_LONG = 1009002;
    /// The message names a room this engine is not logged into.
    IM_INCONSISTENT_ROOM_ID = 1009005;
    /// Sending failed: network.
    IM_SEND_FAILED = 1009010;
    /// A custom-command target userID is empty.
    IM_USER_ID_EMPTY = 1009011;
    /// A custom-command target userID is too long.
    IM_USER_ID_TOO_LONG = 1009012;
    /// An input list is over its limit (custom-command recipients).
    IM_INPUT_PARAMS_LENGTH_LIMIT = 1009013;
    /// Broadcast messages sent too often.
    IM_BROADCAST_MESSAGE_QPS_OVERRATE = 1009015;
}

impl ErrorCode {
    pub fn is_success(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for ErrorCode {}

/// A result whose error is a ZEGO code.
pub type ZResult<T> = Result<T, ErrorCode>;
