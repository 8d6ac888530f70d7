//! ZEGO's token04, written from the published format (see `docs/tokens.md`).
//!
//! `token = "04" + base64(expire: i64 BE, u16 BE len + field1, u16 BE len + field2 [, mode: u8])`
//! where, with the app's 32-character server secret as an AES-256 key (its ASCII bytes):
//!
//! - no mode byte: field1 is a 16-byte IV and field2 is AES-CBC/PKCS#7 of the JSON claims;
//! - mode byte 1: field1 is a 12-byte nonce and field2 is AES-GCM (ciphertext ‖ 16-byte tag).
//!
//! The claims are `{"app_id", "user_id", "nonce", "ctime", "expire", "payload"}`; `payload` is a
//! string, empty or itself JSON carrying room privileges. [`verify`] checks a token for a login;
//! [`generate`] makes one (the server's tests and the CLI use it; app servers may too).
//!
//! Every input here comes from a peer: nothing panics, whatever the bytes.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

/// The only version this crate reads and writes.
pub const VERSION: &str = "04";
/// Server secrets are exactly this many ASCII characters.
pub const SECRET_LEN: usize = 32;
/// Longest token accepted before any decoding (a generous bound on a privilege payload).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

const MODE_GCM: u8 = 1;

/// Why a token was refused. The variants are for the server's own log; what a peer is told is
/// [`TokenError::code`], and every token that does not decrypt and parse as the documented
/// claims gets one and the same code (1002033), whatever went wrong inside: a distinct answer
/// for "the CBC padding was wrong" and "the padding was right but the plaintext was not JSON"
/// is a padding oracle that forges tokens without the secret (see `docs/security.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not a "04" token (1002079): decided on the text alone, before any decoding.
    Version,
    /// Bad base64, truncated or inconsistent layout (1002033).
    Format,
    /// A layout this app does not accept (1002033).
    Layout,
    /// It does not decrypt with this app's secret (bad tag, bad padding) (1002033).
    Decrypt,
    /// It decrypted to something that is not the documented claims: not JSON, a field missing
    /// or of the wrong type, the header's expiry not the claims', a payload that is not
    /// privilege JSON (1002033).
    Claims,
    /// The privileges refuse the login (another room, login denied) (1002033).
    Authentication,
    /// Another app's token (1002076).
    AppId,
    /// Another user's token (1002077).
    UserId,
    /// `expire` is not in the future, or further away than the app allows (1002078).
    Expired,
    /// The server cannot check tokens for this app (no secret configured) (1002074).
    Inner,
}

impl TokenError {
    /// ZEGO's error code for this refusal: the one a peer sees.
    pub fn code(self) -> u32 {
        match self {
            TokenError::Inner => 1002074,
            TokenError::AppId => 1002076,
            TokenError::UserId => 1002077,
            TokenError::Expired => 1002078,
            TokenError::Version => 1002079,
            TokenError::Format
            | TokenError::Layout
            | TokenError::Decrypt
            | TokenError::Claims
            | TokenError::Authentication => 1002033,
        }
    }
}

/// Which of the two layouts a verifier accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layouts {
    /// AES-CBC without authentication: malleable, and an oracle away from forgery if any
    /// failure after decryption answers differently. Only by an app's explicit choice.
    pub cbc: bool,
    /// AES-GCM: authenticated (the default).
    pub gcm: bool,
}

impl Layouts {
    pub const GCM: Layouts = Layouts {
        cbc: false,
        gcm: true,
    };
    pub const BOTH: Layouts = Layouts {
        cbc: true,
        gcm: true,
    };
}

/// The two published layouts, with the random bytes the caller chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// AES-CBC with a 16-byte IV (Go, C++, Python, Java, .NET and the older Node generator use
    /// 16 characters of `[0-9a-z]`).
    Cbc { iv: [u8; 16] },
    /// AES-GCM with a 12-byte nonce and a trailing mode byte (the current Node generator).
    Gcm { nonce: [u8; 12] },
}

/// The decrypted claims of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub app_id: u32,
    pub user_id: String,
    pub nonce: i64,
    pub ctime: i64,
    pub expire: i64,
    pub payload: String,
}

/// The room privileges a token's payload grants. A token without a payload grants everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Privileges {
    /// Empty: any room.
    pub room_id: String,
    pub login: bool,
    pub publish: bool,
    /// `None` (null or `[]` in the payload): any stream; otherwise only these may be published.
    pub stream_ids: Option<Vec<String>>,
}

impl Privileges {
    pub const ALL: Privileges = Privileges {
        room_id: String::new(),
        login: true,
        publish: true,
        stream_ids: None,
    };

    /// Whether these privileges let the holder publish `stream_id`.
    pub fn may_publish(&self, stream_id: &str) -> bool {
        self.publish
            && self
                .stream_ids
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|s| s == stream_id))
    }

    /// The payload string a generator puts in the claims for these privileges.
    pub fn to_payload(&self) -> String {
        let streams = match &self.stream_ids {
            None => Value::Null,
            Some(ids) => Value::Array(ids.iter().cloned().map(Value::String).collect()),
        };
        let mut privilege = Map::new();
        privilege.insert("1".into(), Value::from(u8::from(self.login)));
        privilege.insert("2".into(), Value::from(u8::from(self.publish)));
        let mut root = Map::new();
        root.insert("room_id".into(), Value::String(self.room_id.clone()));
        root.insert("privilege".into(), Value::Object(privilege));
        root.insert("stream_id_list".into(), streams);
        Value::Object(root).to_string()
    }
}

/// What a verified token allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub claims: Claims,
    pub privileges: Privileges,
}

/// Decodes and decrypts a token in one of the `accepted` layouts, with no check of what it
/// claims beyond its shape.
pub fn decode(token: &str, secret: &[u8], accepted: Layouts) -> Result<Claims, TokenError> {
    if secret.len() != SECRET_LEN {
        return Err(TokenError::Inner);
    }
    let body = token.strip_prefix(VERSION).ok_or(TokenError::Version)?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Format);
    }
    let bytes = STANDARD.decode(body).map_err(|_| TokenError::Format)?;
    let mut r = Reader(&bytes);
    let expire = i64::from_be_bytes(r.take(8)?.try_into().map_err(|_| TokenError::Format)?);
    let field1 = r.field()?;
    let field2 = r.field()?;
    let claims = match r.0 {
        [] if accepted.cbc => {
            let iv: [u8; 16] = field1.try_into().map_err(|_| TokenError::Format)?;
            cbc_claims(secret, &iv, field2)?
        }
        [MODE_GCM] if accepted.gcm => {
            if field1.len() != 12 {
                return Err(TokenError::Format);
            }
            let plain = Aes256Gcm::new_from_slice(secret)
                .map_err(|_| TokenError::Inner)?
                .decrypt(Nonce::from_slice(field1), field2)
                .map_err(|_| TokenError::Decrypt)?;
            parse_claims(&plain)?
        }
        [] | [MODE_GCM] => return Err(TokenError::Layout),
        _ => return Err(TokenError::Format),
    };
    if claims.expire != expire {
        return Err(TokenError::Claims);
    }
    Ok(claims)
}

/// The claims of an AES-256-CBC ciphertext with PKCS#7 padding. The padding is checked without
/// an early exit and the plaintext is parsed whether or not it was right, so a wrong padding and
/// a right padding over garbage take the same path and give the same error (the caller answers
/// both with 1002033).
fn cbc_claims(secret: &[u8], iv: &[u8; 16], data: &[u8]) -> Result<Claims, TokenError> {
    use aes::cipher::block_padding::NoPadding;
    if data.is_empty() || !data.len().is_multiple_of(16) {
        return Err(TokenError::Format);
    }
    let mut plain = cbc::Decryptor::<aes::Aes256>::new_from_slices(secret, iv)
        .map_err(|_| TokenError::Inner)?
        .decrypt_padded_vec_mut::<NoPadding>(data)
        .map_err(|_| TokenError::Format)?;
    let n = plain.last().copied().unwrap_or(0);
    let mut bad = u8::from(n == 0 || n > 16);
    let tail = plain.len().saturating_sub(16);
    for (i, b) in plain.iter().enumerate().skip(tail) {
        // Inside the padding (the last n bytes), every byte must be n.
        let inside = u8::from(plain.len() - i <= usize::from(n));
        bad |= inside & u8::from(*b != n);
    }
    let keep = if bad == 0 {
        plain.len() - usize::from(n)
    } else {
        plain.len()
    };
    plain.truncate(keep);
    // Parsed either way (see above); a bad padding fails after the parse, as garbage does.
    match (bad, parse_claims(&plain)) {
        (0, Ok(claims)) => Ok(claims),
        _ => Err(TokenError::Decrypt),
    }
}

/// Verifies a token presented by `user_id` of `app_id` at unix time `now_s`: it must be in an
/// `accepted` layout, decrypt with `secret`, name this app and user, not have expired, expire
/// at most `max_lifetime_s` from now, and carry a readable payload. Room privileges are
/// returned, not applied: the caller checks them against the room.
pub fn verify(
    token: &str,
    secret: &[u8],
    app_id: u32,
    user_id: &str,
    now_s: i64,
    check: Check,
) -> Result<Verified, TokenError> {
    let claims = decode(token, secret, check.layouts)?;
    let privileges = parse_privileges(&claims.payload).map_err(|_| TokenError::Claims)?;
    if claims.app_id != app_id {
        return Err(TokenError::AppId);
    }
    if claims.user_id != user_id {
        return Err(TokenError::UserId);
    }
    if claims.expire <= now_s || claims.expire.saturating_sub(now_s) > check.max_lifetime_s {
        return Err(TokenError::Expired);
    }
    Ok(Verified { claims, privileges })
}

/// What [`verify`] accepts besides the secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    pub layouts: Layouts,
    /// A token may expire at most this many seconds after it is presented.
    pub max_lifetime_s: i64,
}

impl Check {
    /// Both layouts and any lifetime: for tools and tests that read any valid token.
    pub const ANY: Check = Check {
        layouts: Layouts::BOTH,
        max_lifetime_s: i64::MAX,
    };
}

/// Makes a token. `nonce` is the claims' random int32 and `layout` carries the cipher's random
/// bytes: the caller supplies both so tests are reproducible.
pub fn generate(claims: &Claims, secret: &[u8], layout: Layout) -> Result<String, TokenError> {
    if secret.len() != SECRET_LEN {
        return Err(TokenError::Inner);
    }
    let mut json = Map::new();
    json.insert("app_id".into(), Value::from(claims.app_id));
    json.insert("user_id".into(), Value::String(claims.user_id.clone()));
    json.insert("nonce".into(), Value::from(claims.nonce));
    json.insert("ctime".into(), Value::from(claims.ctime));
    json.insert("expire".into(), Value::from(claims.expire));
    json.insert("payload".into(), Value::String(claims.payload.clone()));
    let plain = Value::Object(json).to_string().into_bytes();
    let mut out = claims.expire.to_be_bytes().to_vec();
    let (field1, field2, mode): (Vec<u8>, Vec<u8>, Option<u8>) = match layout {
        Layout::Cbc { iv } => {
            let ct = cbc::Encryptor::<aes::Aes256>::new_from_slices(secret, &iv)
                .map_err(|_| TokenError::Inner)?
                .encrypt_padded_vec_mut::<Pkcs7>(&plain);
            (iv.to_vec(), ct, None)
        }
        Layout::Gcm { nonce } => {
            let ct = Aes256Gcm::new_from_slice(secret)
                .map_err(|_| TokenError::Inner)?
                .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
                .map_err(|_| TokenError::Inner)?;
            (nonce.to_vec(), ct, Some(MODE_GCM))
        }
    };
    for field in [&field1, &field2] {
        let len = u16::try_from(field.len()).map_err(|_| TokenError::Format)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field);
    }
    out.extend(mode);
    Ok(format!("{VERSION}{}", STANDARD.encode(out)))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.0.len() < n {
            return Err(TokenError::Format);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<&'a [u8], TokenError> {
        let len = self.take(2)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        self.take(len)
    }
}

fn parse_claims(plain: &[u8]) -> Result<Claims, TokenError> {
    let Ok(Value::Object(json)) = serde_json::from_slice::<Value>(plain) else {
        return Err(TokenError::Claims);
    };
    let app_id = json
        .get("app_id")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(TokenError::Claims)?;
    let user_id = json
        .get("user_id")
        .and_then(Value::as_str)
        .ok_or(TokenError::Claims)?
        .to_owned();
    let nonce = json
        .get("nonce")
        .and_then(Value::as_i64)
        .ok_or(TokenError::Claims)?;
    let int = |key: &str| {
        json.get(key)
            .and_then(Value::as_i64)
            .ok_or(TokenError::Claims)
    };
    let ctime = int("ctime")?;
    let expire = int("expire")?;
    let payload = match json.get("payload") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(TokenError::Claims),
    };
    Ok(Claims {
        app_id,
        user_id,
        nonce,
        ctime,
        expire,
        payload,
    })
}

/// Reads a payload: empty grants everything; otherwise `{"room_id", "privilege": {"1": 0|1,
/// "2": 0|1}, "stream_id_list": null | [..]}`, where a missing key grants what it would govern.
pub fn parse_privileges(payload: &str) -> Result<Privileges, TokenError> {
    if payload.is_empty() {
        return Ok(Privileges::ALL);
    }
    let Ok(Value::Object(json)) = serde_json::from_str::<Value>(payload) else {
        return Err(TokenError::Format);
    };
    let room_id = match json.get("room_id") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(TokenError::Format),
    };
    let (login, publish) = match json.get("privilege") {
        None | Some(Value::Null) => (true, true),
        Some(Value::Object(p)) => {
            let flag = |key: &str| match p.get(key) {
                None => Ok(true),
                Some(v) => match v.as_u64() {
                    Some(0) => Ok(false),
                    Some(1) => Ok(true),
                    _ => Err(TokenError::Format),
                },
            };
            (flag("1")?, flag("2")?)
        }
        Some(_) => return Err(TokenError::Format),
    };
    let stream_ids = match json.get("stream_id_list") {
        None | Some(Value::Null) => None,
        Some(Value::Array(ids)) if ids.is_empty() => None,
        Some(Value::Array(ids)) => Some(
            ids.iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or(TokenError::Format))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(TokenError::Format),
    };
    Ok(Privileges {
        room_id,
        login,
        publish,
        stream_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    fn claims(expire: i64) -> Claims {
        Claims {
            app_id: 1234,
            user_id: "alice".into(),
            nonce: -42,
            ctime: expire - 3600,
            expire,
            payload: String::new(),
        }
    }

    #[test]
    fn round_trips_both_layouts() {
        for layout in [
            Layout::Cbc {
                iv: *b"abcdefghij012345",
            },
            Layout::Gcm { nonce: [7; 12] },
        ] {
            let t = generate(&claims(2_000_000_000), SECRET, layout).unwrap();
            let v = verify(&t, SECRET, 1234, "alice", 1_900_000_000, Check::ANY).unwrap();
            assert_eq!(v.claims, claims(2_000_000_000));
            assert_eq!(v.privileges, Privileges::ALL);
        }
    }

    fn check(
        t: &str,
        secret: &[u8],
        app_id: u32,
        user: &str,
        now: i64,
    ) -> Result<Verified, TokenError> {
        verify(t, secret, app_id, user, now, Check::ANY)
    }

    #[test]
    fn each_refusal_has_its_code() {
        let gcm = Layout::Gcm { nonce: [1; 12] };
        let t = generate(&claims(2_000_000_000), SECRET, gcm).unwrap();
        let now = 1_900_000_000;
        let other = b"ffffffffffffffffffffffffffffffff";
        assert_eq!(
            check(&t, other, 1234, "alice", now),
            Err(TokenError::Decrypt)
        );
        assert_eq!(check(&t, SECRET, 99, "alice", now), Err(TokenError::AppId));
        assert_eq!(check(&t, SECRET, 1234, "bob", now), Err(TokenError::UserId));
        assert_eq!(
            check(&t, SECRET, 1234, "alice", 2_000_000_000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check(&t[2..], SECRET, 1234, "alice", now),
            Err(TokenError::Version)
        );
        assert_eq!(
            check("04!!", SECRET, 1234, "alice", now),
            Err(TokenError::Format)
        );
        assert_eq!(
            check(&t, b"short", 1234, "alice", now),
            Err(TokenError::Inner)
        );
        // Truncated anywhere: refused, never a panic.
        let raw = STANDARD.decode(&t[2..]).unwrap();
        for n in 0..raw.len() {
            let cut = format!("04{}", STANDARD.encode(&raw[..n]));
            assert!(check(&cut, SECRET, 1234, "alice", now).is_err());
        }
    }

    #[test]
    fn layouts_and_lifetime_are_the_apps_choice() {
        let now = 1_900_000_000;
        let cbc = generate(&claims(now + 600), SECRET, Layout::Cbc { iv: [b'k'; 16] }).unwrap();
        let gcm = generate(&claims(now + 600), SECRET, Layout::Gcm { nonce: [2; 12] }).unwrap();
        let strict = Check {
            layouts: Layouts::GCM,
            max_lifetime_s: 3600,
        };
        assert_eq!(
            verify(&cbc, SECRET, 1234, "alice", now, strict),
            Err(TokenError::Layout)
        );
        assert_eq!(TokenError::Layout.code(), 1002033);
        assert!(verify(&gcm, SECRET, 1234, "alice", now, strict).is_ok());
        let far = generate(&claims(i64::MAX), SECRET, Layout::Gcm { nonce: [2; 12] }).unwrap();
        assert_eq!(
            verify(&far, SECRET, 1234, "alice", now, strict),
            Err(TokenError::Expired)
        );
    }

    /// The attack of a padding oracle, run against the verifier: a CBC token's last block is
    /// kept and the block before it (the "IV" of the last block) is varied byte by byte. Every
    /// answer must be the same code, whether or not the padding came out right.
    #[test]
    fn cbc_padding_is_no_oracle() {
        let now = 1_900_000_000;
        let t = generate(&claims(now + 600), SECRET, Layout::Cbc { iv: [b'z'; 16] }).unwrap();
        let raw = STANDARD.decode(&t[2..]).unwrap();
        // expire(8) | len(2) | iv(16) | len(2) | ciphertext
        let ct = raw[28..].to_vec();
        let last = &ct[ct.len() - 16..];
        let mut codes = std::collections::BTreeSet::new();
        let mut padding_right = 0;
        for guess in 0..=255u8 {
            for pos in [15usize, 14] {
                let mut iv = [0u8; 16];
                iv[pos] = guess;
                let mut forged = raw[..8].to_vec();
                forged.extend_from_slice(&16u16.to_be_bytes());
                forged.extend_from_slice(&iv);
                forged.extend_from_slice(&16u16.to_be_bytes());
                forged.extend_from_slice(last);
                let token = format!("04{}", STANDARD.encode(&forged));
                let got = check(&token, SECRET, 1234, "alice", now);
                let e = got.expect_err("a forged block never verifies");
                codes.insert(e.code());
                // Count the guesses whose padding was right, to show the set held both kinds.
                let mut plain = last.to_vec();
                cbc::Decryptor::<aes::Aes256>::new_from_slices(SECRET, &iv)
                    .unwrap()
                    .decrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut plain)
                    .unwrap();
                if plain[15] == 1 || (plain[15] == 2 && plain[14] == 2) {
                    padding_right += 1;
                }
            }
        }
        assert!(padding_right >= 1, "no guess had a right padding");
        assert_eq!(codes.into_iter().collect::<Vec<_>>(), vec![1002033]);
    }

    #[test]
    fn privileges_from_payload() {
        let p =
            parse_privileges(r#"{"room_id":"r1","privilege":{"1":1,"2":0},"stream_id_list":null}"#)
                .unwrap();
        assert_eq!(p.room_id, "r1");
        assert!(p.login && !p.publish && !p.may_publish("s"));
        let p =
            parse_privileges(r#"{"room_id":"","privilege":{"1":1,"2":1},"stream_id_list":["a"]}"#)
                .unwrap();
        assert!(p.may_publish("a") && !p.may_publish("b"));
        assert_eq!(parse_privileges(&p.to_payload()).unwrap(), p);
        assert_eq!(parse_privileges("{").unwrap_err(), TokenError::Format);
        assert_eq!(
            parse_privileges(r#"{"privilege":{"1":"yes"}}"#).unwrap_err(),
            TokenError::Format
        );
    }
}
