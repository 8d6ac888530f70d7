//! Validated identifiers. Each constructor applies ZEGO's rule once and returns ZEGO's code for
//! the first rule broken; after that the value is trusted everywhere.
//!
//! On the wire the ids deserialize through the same constructors, so a peer cannot smuggle an
//! id that the SDK itself would have refused.

use crate::ErrorCode;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Punctuation that ZEGO allows in userIDs and roomIDs besides ASCII letters and digits.
const ID_PUNCT: &str = "~!@#$%^&*()_+=-`;',.<>\\";

fn id_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || ID_PUNCT.contains(c)
}

struct Rule {
    /// Length limit in bytes: the id must be shorter than this.
    max_exclusive: usize,
    empty: ErrorCode,
    bad_char: ErrorCode,
    too_long: ErrorCode,
    allowed: fn(char) -> bool,
}

impl Rule {
    fn check(&self, s: &str) -> Result<(), ErrorCode> {
        if s.is_empty() {
            return Err(self.empty);
        }
        if s.len() >= self.max_exclusive {
            return Err(self.too_long);
        }
        if !s.chars().all(self.allowed) {
            return Err(self.bad_char);
        }
        Ok(())
    }
}

const ROOM_RULE: Rule = Rule {
    max_exclusive: 128,
    empty: ErrorCode::ROOM_ROOMID_NULL,
    bad_char: ErrorCode::ROOM_ROOMID_INVALID_CHARACTER,
    too_long: ErrorCode::ROOM_ROOMID_TOO_LONG,
    allowed: id_char_ok,
};

const USER_RULE: Rule = Rule {
    max_exclusive: 64,
    empty: ErrorCode::ROOM_USER_ID_NULL,
    bad_char: ErrorCode::ROOM_USER_ID_INVALID_CHARACTER,
    too_long: ErrorCode::ROOM_USER_ID_TOO_LONG,
    allowed: id_char_ok,
};

const USER_NAME_RULE: Rule = Rule {
    max_exclusive: 256,
    empty: ErrorCode::ROOM_USER_NAME_NULL,
    bad_char: ErrorCode::ROOM_USER_NAME_INVALID_CHARACTER,
    too_long: ErrorCode::ROOM_USER_NAME_TOO_LONG,
    allowed: |c| id_char_ok(c) || c == '/',
};

const STREAM_RULE: Rule = Rule {
    max_exclusive: 256,
    empty: ErrorCode::COMMON_STREAM_ID_NULL,
    bad_char: ErrorCode::COMMON_STREAM_ID_INVALID_CHARACTER,
    too_long: ErrorCode::COMMON_STREAM_ID_TOO_LONG,
    allowed: |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $rule:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `s`, returning ZEGO's code for the first rule it breaks.
            pub fn new(s: impl Into<String>) -> Result<Self, ErrorCode> {
                let s = s.into();
                $rule.check(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::new(s).map_err(InvalidId)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A roomID: 1..127 bytes of letters, digits and ZEGO's punctuation.
    RoomId, ROOM_RULE
);
id_type!(
    /// A userID: 1..63 bytes of letters, digits and ZEGO's punctuation.
    UserId, USER_RULE
);
id_type!(
    /// A userName: 1..255 bytes, the userID charset plus `/`.
    UserName, USER_NAME_RULE
);
id_type!(
    /// A streamID: 1..255 bytes of `[0-9A-Za-z_-]`, unique within an app.
    StreamId, STREAM_RULE
);

/// The error a failed id conversion carries through serde.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidId(pub ErrorCode);

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid id: error {}", self.0)
    }
}

/// A user as rooms see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct User {
    pub user_id: UserId,
    pub user_name: UserName,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_id_rules() {
        assert_eq!(RoomId::new(""), Err(ErrorCode::ROOM_ROOMID_NULL));
        assert_eq!(
            RoomId::new("a b"),
            Err(ErrorCode::ROOM_ROOMID_INVALID_CHARACTER)
        );
        assert_eq!(
            RoomId::new("a/b"),
            Err(ErrorCode::ROOM_ROOMID_INVALID_CHARACTER)
        );
        assert_eq!(
            RoomId::new("x".repeat(128)),
            Err(ErrorCode::ROOM_ROOMID_TOO_LONG)
        );
        assert!(RoomId::new("x".repeat(127)).is_ok());
        assert!(RoomId::new("room-1_~!@#$%^&*()+=`;',.<>\\").is_ok());
    }

    #[test]
    fn user_rules() {
        assert_eq!(UserId::new(""), Err(ErrorCode::ROOM_USER_ID_NULL));
        assert_eq!(
            UserId::new("é"),
            Err(ErrorCode::ROOM_USER_ID_INVALID_CHARACTER)
        );
        assert_eq!(
            UserId::new("u".repeat(64)),
            Err(ErrorCode::ROOM_USER_ID_TOO_LONG)
        );
        assert_eq!(UserName::new(""), Err(ErrorCode::ROOM_USER_NAME_NULL));
        assert!(UserName::new("a/b").is_ok());
        assert_eq!(
            UserName::new("a b"),
            Err(ErrorCode::ROOM_USER_NAME_INVALID_CHARACTER)
        );
        assert_eq!(
            UserName::new("n".repeat(256)),
            Err(ErrorCode::ROOM_USER_NAME_TOO_LONG)
        );
    }

    #[test]
    fn stream_rules() {
        assert_eq!(StreamId::new(""), Err(ErrorCode::COMMON_STREAM_ID_NULL));
        assert_eq!(
            StreamId::new("s.1"),
            Err(ErrorCode::COMMON_STREAM_ID_INVALID_CHARACTER)
        );
        assert_eq!(
            StreamId::new("s".repeat(256)),
            Err(ErrorCode::COMMON_STREAM_ID_TOO_LONG)
        );
        assert!(StreamId::new("stream_1-A").is_ok());
    }

    #[test]
    fn ids_validate_when_deserialized() {
        let bad: Result<RoomId, _> = serde_json::from_str("\"a b\"");
        assert!(bad.is_err());
        let good: RoomId = serde_json::from_str("\"room1\"").unwrap();
        assert_eq!(good.as_str(), "room1");
    }
}
