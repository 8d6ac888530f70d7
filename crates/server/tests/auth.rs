//! Who the server admits: appSign, token04 (both layouts) with its documented errors, room and
//! publish privileges, renewal and expiry. Tokens here come from the Rust generator; the
//! independent vectors (Node's crypto) are checked in `crates/token/tests/vectors.rs`, and the
//! JS generator end to end in `__test__/tokens.spec.mjs`.

mod common;
use common::*;
use std::time::Duration;
use zrooms_server::config::{ExpireAction, TokenLayout};
use zrooms_token::{generate, Claims, Layout, Privileges};

const SIGNED: u32 = 7; // appSign and secret; appSign alone is enough; CBC tokens opted in
const TOKEN_ONLY: u32 = 8; // require_token
const KEEP: u32 = 9; // secret; sessions outlive their token

fn config() -> ServerConfig {
    let mut c = ServerConfig {
        dev_default: false,
        ..ServerConfig::default()
    };
    let app = |app_id| AppConfig {
        app_sign: Some(SIGN.into()),
        server_secret: Some(SECRET.into()),
        ..AppConfig::dev(app_id)
    };
    c.apps.insert(
        SIGNED,
        AppConfig {
            token_layouts: vec![TokenLayout::Gcm, TokenLayout::Cbc],
            ..app(SIGNED)
        },
    );
    c.apps.insert(
        TOKEN_ONLY,
        AppConfig {
            require_token: true,
            ..app(TOKEN_ONLY)
        },
    );
    c.apps.insert(
        KEEP,
        AppConfig {
            app_sign: None,
            token_expire_action: ExpireAction::Keep,
            ..app(KEEP)
        },
    );
    c
}

fn token_with(
    app_id: u32,
    user_id: &str,
    ttl: i64,
    privileges: Option<&Privileges>,
    gcm: bool,
) -> String {
    let now = now_s();
    let claims = Claims {
        app_id,
        user_id: user_id.into(),
        nonce: 31337,
        ctime: now,
        expire: now + ttl,
        payload: privileges.map(Privileges::to_payload).unwrap_or_default(),
    };
    let layout = if gcm {
        Layout::Gcm { nonce: [3; 12] }
    } else {
        Layout::Cbc {
            iv: *b"q1w2e3r4t5y6u7i8",
        }
    };
    generate(&claims, SECRET.as_bytes(), layout).unwrap()
}

fn token(app_id: u32, user_id: &str, ttl: i64) -> String {
    token_with(app_id, user_id, ttl, None, true)
}

fn privileges(room_id: &str, login: bool, publish: bool, streams: Option<&[&str]>) -> Privileges {
    Privileges {
        room_id: room_id.into(),
        login,
        publish,
        stream_ids: streams.map(|s| s.iter().map(|x| x.to_string()).collect()),
    }
}

#[tokio::test]
async fn app_sign_and_app_id_are_checked_at_hello() {
    let s = server(config()).await;
    assert_eq!(
        connect_signed(&s, SIGNED, &SIGN.replace('0', "1"))
            .await
            .err(),
        Some(ErrorCode::ENGINE_APP_SIGN_INCORRECT)
    );
    assert_eq!(
        connect_signed(&s, 4242, "").await.err(),
        Some(ErrorCode::ENGINE_APP_ID_INCORRECT_OR_NOT_ONLINE)
    );
    // The right appSign is enough to log in where the app does not require tokens…
    let mut a = connect_signed(&s, SIGNED, SIGN).await.unwrap();
    assert_eq!(a.login_token("r", "a", "").await, ErrorCode::SUCCESS);
    // …and not where it does.
    let mut b = connect_signed(&s, TOKEN_ONLY, SIGN).await.unwrap();
    assert_eq!(b.login_token("r", "b", "").await, ErrorCode::ROOM_NO_TOKEN);
    assert_eq!(
        b.login_token("r", "b", &token(TOKEN_ONLY, "b", 600)).await,
        ErrorCode::SUCCESS
    );
    // No appSign at all: a token is mandatory (ZEGO 2.17+).
    let mut c = connect_signed(&s, SIGNED, "").await.unwrap();
    assert_eq!(c.login_token("r", "c", "").await, ErrorCode::ROOM_NO_TOKEN);
    s.shutdown().await;
}

#[tokio::test]
async fn both_layouts_admit_and_every_token_error_has_its_code() {
    let s = server(config()).await;
    let mut watcher = connect_signed(&s, SIGNED, SIGN).await.unwrap();
    assert_eq!(watcher.login_token("r", "w", "").await, ErrorCode::SUCCESS);
    let mut u = connect_signed(&s, SIGNED, "").await.unwrap();
    let other_secret = {
        let now = now_s();
        let claims = Claims {
            app_id: SIGNED,
            user_id: "u".into(),
            nonce: 1,
            ctime: now,
            expire: now + 600,
            payload: String::new(),
        };
        generate(
            &claims,
            b"ffffffffffffffffffffffffffffffff",
            Layout::Gcm { nonce: [0; 12] },
        )
        .unwrap()
    };
    let good = token(SIGNED, "u", 600);
    let cases: Vec<(&str, String, ErrorCode)> = vec![
        (
            "another secret",
            other_secret,
            ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED,
        ),
        (
            "another app",
            token(KEEP, "u", 600),
            ErrorCode::ROOM_TOKEN_APPID_ERROR,
        ),
        (
            "another user",
            token(SIGNED, "v", 600),
            ErrorCode::ROOM_TOKEN_USERID_ERROR,
        ),
        (
            "expired",
            token(SIGNED, "u", -5),
            ErrorCode::ROOM_TOKEN_EXPIRE_ERROR,
        ),
        (
            "version 03",
            format!("03{}", &good[2..]),
            ErrorCode::ROOM_TOKEN_VERSION_ERROR,
        ),
        // Anything that does not decrypt and parse as the claims: one answer (no oracle).
        (
            "not base64",
            "04%%%%".into(),
            ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED,
        ),
        (
            "truncated",
            good[..30].to_string(),
            ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED,
        ),
        (
            "for another room",
            token_with(
                SIGNED,
                "u",
                600,
                Some(&privileges("other", true, true, None)),
                true,
            ),
            ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED,
        ),
        (
            "login denied",
            token_with(
                SIGNED,
                "u",
                600,
                Some(&privileges("r", false, true, None)),
                false,
            ),
            ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED,
        ),
    ];
    for (what, t, code) in cases {
        assert_eq!(u.login_token("r", "u", &t).await, code, "{what}");
    }
    // Nothing changed: the watcher saw nobody come, and the connection still works.
    let seen = watcher.drain(Duration::from_millis(200)).await;
    assert!(
        !seen
            .iter()
            .any(|m| matches!(m, ServerMsg::UserUpdate { .. })),
        "{seen:?}"
    );
    for gcm in [false, true] {
        let room_id = if gcm { "r" } else { "r2" };
        let t = token_with(
            SIGNED,
            "u",
            600,
            Some(&privileges(room_id, true, true, None)),
            gcm,
        );
        assert_eq!(
            u.login_token(room_id, "u", &t).await,
            ErrorCode::SUCCESS,
            "gcm={gcm}"
        );
    }
    s.shutdown().await;
}

#[tokio::test]
async fn publish_privileges_and_renewal() {
    let s = server(config()).await;
    let mut u = connect_signed(&s, SIGNED, "").await.unwrap();
    let no_publish = token_with(
        SIGNED,
        "u",
        600,
        Some(&privileges("r1", true, false, None)),
        true,
    );
    let listed = token_with(
        SIGNED,
        "u",
        600,
        Some(&privileges("r2", true, true, Some(&["ok"]))),
        false,
    );
    assert_eq!(
        u.login_token("r1", "u", &no_publish).await,
        ErrorCode::SUCCESS
    );
    assert_eq!(u.login_token("r2", "u", &listed).await, ErrorCode::SUCCESS);
    assert_eq!(
        u.publish("r1", "ok").await,
        ErrorCode::PUBLISHER_ERROR_DISPATCH_AUTH_ERROR
    );
    assert_eq!(
        u.publish("r2", "other").await,
        ErrorCode::PUBLISHER_ERROR_DISPATCH_AUTH_ERROR
    );
    assert_eq!(u.publish("r2", "ok").await, ErrorCode::SUCCESS);

    let renew = |room_id: &str, token: String| Request::RenewToken {
        room_id: room(room_id),
        token,
    };
    // A renewed token that would not allow the stream being published is refused, and the old
    // one stays in force.
    let narrower = token_with(
        SIGNED,
        "u",
        600,
        Some(&privileges("r2", true, true, Some(&["x"]))),
        true,
    );
    assert_eq!(
        u.request(renew("r2", narrower)).await.0,
        ErrorCode::ROOM_RENEW_TOKEN_NO_PUBLISH_AUTH_ERROR
    );
    assert_eq!(
        u.request(renew("r2", token(SIGNED, "v", 600))).await.0,
        ErrorCode::ROOM_TOKEN_USERID_ERROR
    );
    assert_eq!(
        u.request(renew("r3", token(SIGNED, "u", 600))).await.0,
        ErrorCode::COMMON_NOT_LOGIN_ROOM
    );
    // Renewing r1 with publish rights lets r1 publish.
    let wider = token_with(
        SIGNED,
        "u",
        600,
        Some(&privileges("r1", true, true, None)),
        false,
    );
    assert_eq!(u.request(renew("r1", wider)).await.0, ErrorCode::SUCCESS);
    assert_eq!(u.publish("r1", "now-ok").await, ErrorCode::SUCCESS);
    s.shutdown().await;
}

#[tokio::test]
async fn an_expiring_token_warns_then_kicks_only_its_room() {
    let s = server(config()).await;
    let mut other = connect_signed(&s, SIGNED, SIGN).await.unwrap();
    assert_eq!(
        other.login_token("short", "o", "").await,
        ErrorCode::SUCCESS
    );
    let mut u = connect_signed(&s, SIGNED, "").await.unwrap();
    assert_eq!(
        u.login_token("long", "u", &token(SIGNED, "u", 600)).await,
        ErrorCode::SUCCESS
    );
    assert_eq!(
        u.login_token("short", "u", &token(SIGNED, "u", 2)).await,
        ErrorCode::SUCCESS
    );
    assert_eq!(u.publish("short", "su").await, ErrorCode::SUCCESS);
    // Less than 30 s left at login: the warning comes at once.
    let remain = u
        .push_where(|m| match m {
            ServerMsg::TokenWillExpire { room_id, remain_s } if room_id.as_str() == "short" => {
                Some(*remain_s)
            }
            _ => None,
        })
        .await;
    assert!(remain <= 2, "{remain}");
    let code = u
        .push_where(|m| match m {
            ServerMsg::Kicked { room_id, code } if room_id.as_str() == "short" => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::ROOM_TOKEN_EXPIRED_KICKED_OUT);
    // The others saw the stream and the user go, with the kick as the reason.
    let reason = other
        .push_where(|m| match m {
            ServerMsg::StreamUpdate { deleted, .. } if !deleted.is_empty() => Some(deleted[0].code),
            _ => None,
        })
        .await;
    assert_eq!(reason, DeleteReason::KICKED_OUT);
    // The other room is untouched: u still publishes there.
    assert_eq!(u.publish("long", "lu").await, ErrorCode::SUCCESS);
    assert_eq!(
        u.publish("short", "su2").await,
        ErrorCode::COMMON_NOT_LOGIN_ROOM
    );
    s.shutdown().await;
}

#[tokio::test]
async fn renewing_in_time_prevents_the_kick_and_keep_apps_only_stop_new_publishes() {
    let s = server(config()).await;
    let mut u = connect_signed(&s, SIGNED, "").await.unwrap();
    assert_eq!(
        u.login_token("r", "u", &token(SIGNED, "u", 2)).await,
        ErrorCode::SUCCESS
    );
    u.push_where(|m| matches!(m, ServerMsg::TokenWillExpire { .. }).then_some(()))
        .await;
    let (code, _) = u
        .request(Request::RenewToken {
            room_id: room("r"),
            token: token(SIGNED, "u", 600),
        })
        .await;
    assert_eq!(code, ErrorCode::SUCCESS);
    let later = u.drain(Duration::from_millis(3000)).await;
    assert!(
        !later.iter().any(|m| matches!(m, ServerMsg::Kicked { .. })),
        "{later:?}"
    );
    assert_eq!(u.publish("r", "s").await, ErrorCode::SUCCESS);

    let mut k = connect_signed(&s, KEEP, "").await.unwrap();
    assert_eq!(
        k.login_token("r", "k", &token(KEEP, "k", 1)).await,
        ErrorCode::SUCCESS
    );
    let later = k.drain(Duration::from_millis(2500)).await;
    assert!(later
        .iter()
        .any(|m| matches!(m, ServerMsg::TokenWillExpire { .. })));
    assert!(
        !later.iter().any(|m| matches!(m, ServerMsg::Kicked { .. })),
        "{later:?}"
    );
    // Still in the room (messages go through), but a new publish needs a valid token.
    let (code, _) = k
        .request(Request::Barrage {
            room_id: room("r"),
            message: "still here".into(),
        })
        .await;
    assert_eq!(code, ErrorCode::SUCCESS);
    assert_eq!(
        k.publish("r", "late").await,
        ErrorCode::PUBLISHER_ERROR_DISPATCH_AUTH_ERROR
    );
    s.shutdown().await;
}
