//! Wire types shared by the engine and the room server, and nothing else.
//!
//! * [`ErrorCode`]: ZEGO's numeric error codes, the only error currency that crosses the wire
//!   and reaches JavaScript.
//! * [`ids`]: validated identifiers (`RoomId`, `UserId`, `UserName`, `StreamId`) that enforce
//!   ZEGO's length and character rules once, at the edge.
//! * [`wire`]: the signaling frames, tagged serde enums with a protocol version in the hello.
//!   Golden fixtures under `tests/fixtures` pin the JSON format so that a change is deliberate.
//! * [`media`] (feature `media`): the codecs every peer connection offers or answers with.

pub mod error;
pub mod ids;
#[cfg(feature = "media")]
pub mod media;
pub mod wire;

pub use error::ErrorCode;
pub use ids::{RoomId, StreamId, User, UserId, UserName};
