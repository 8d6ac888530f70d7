//! Who a session is: its hello (app and appSign), the authority each room was logged into with
//! (token or appSign), token renewal, and the warnings and kicks as tokens run out.

use super::{Answer, Res, Session};
use crate::app::App;
use crate::clock::Now;
use crate::config::ExpireAction;
use crate::state::lock;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zrooms_proto::wire::{DeleteReason, ReplyBody, ServerMsg, PROTOCOL_VERSION};
use zrooms_proto::{ErrorCode, RoomId, UserId};
use zrooms_token::Privileges;

/// `roomTokenWillExpire` goes out this long before a room's token expires (ZEGO: 30 s).
const TOKEN_WARNING_S: i64 = 30;
/// A token timer is never set further out than this (it is computed again when it fires).
const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);

/// The authority a room was logged into with.
pub(crate) struct Grant {
    privileges: Privileges,
    /// Unix seconds; `None` for appSign or open apps.
    expire_s: Option<i64>,
    /// `TokenWillExpire` was sent for this token.
    warned: bool,
}

impl Grant {
    fn unlimited() -> Self {
        Grant {
            privileges: Privileges::ALL,
            expire_s: None,
            warned: false,
        }
    }

    /// Whether this grant lets the user publish `stream` at `now_s`: the token must allow it
    /// and must not have expired (an app that keeps sessions past expiry still needs a valid
    /// token for new publishes).
    pub fn may_publish(&self, stream: &str, now_s: i64) -> bool {
        self.privileges.may_publish(stream) && self.expire_s.is_none_or(|e| e > now_s)
    }
}

impl Session {
    pub(super) fn hello(&mut self, version: u32, app_id: u32, app_sign: &str) -> Res<ReplyBody> {
        if self.app.is_some() || version != PROTOCOL_VERSION {
            return Err(ErrorCode::COMMON_ILLEGAL_PARAM);
        }
        let config = self
            .shared
            .config
            .app(app_id)
            .ok_or(ErrorCode::ENGINE_APP_ID_INCORRECT_OR_NOT_ONLINE)?;
        // No appSign is allowed (ZEGO 2.17+): the logins then need tokens.
        if let Some(sign) = &config.app_sign {
            if !app_sign.is_empty() {
                let given = app_sign.to_ascii_lowercase();
                if !crate::ct_eq(sign.to_ascii_lowercase().as_bytes(), given.as_bytes()) {
                    return Err(ErrorCode::ENGINE_APP_SIGN_INCORRECT);
                }
                self.signed = true;
            }
        }
        let app = {
            let mut apps = lock(&self.shared.apps);
            apps.entry(app_id)
                .or_insert_with(|| Arc::new(App::new(config)))
                .clone()
        };
        self.app = Some(app);
        Ok(self.hello_body(false))
    }

    pub(crate) fn hello_body(&self, resumed: bool) -> ReplyBody {
        ReplyBody::Hello {
            session_id: self.id.to_string(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            resume_key: self.resume_key.clone(),
            resumed,
        }
    }

    /// Who may log into `room_id`: an open app (no appSign, no secret) admits anyone; an engine
    /// that presented the appSign needs no token unless the app requires one; otherwise the
    /// token must verify with the app's secret and its privileges must allow this room.
    pub(super) fn authorize(
        &self,
        app: &App,
        user_id: &UserId,
        room_id: &RoomId,
        token: &str,
        now: Now,
    ) -> Res<Grant> {
        let policy = &app.config;
        let open = policy.app_sign.is_none() && policy.server_secret.is_none();
        let by_sign = open || (self.signed && !policy.require_token);
        if token.is_empty() {
            return by_sign
                .then(Grant::unlimited)
                .ok_or(ErrorCode::ROOM_NO_TOKEN);
        }
        let Some(secret) = &policy.server_secret else {
            // A token nobody here can check: what the appSign allows, or nothing.
            return by_sign
                .then(Grant::unlimited)
                .ok_or(ErrorCode::ROOM_TOKEN_INNER_ERROR);
        };
        // Failed tokens are throttled per address and per app: past the budget a token is not
        // even looked at, and the answer is the same as for a bad one.
        if !self.may_try_token(app, now.at) {
            self.shared.metrics.auth_throttled.inc();
            return Err(ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED);
        }
        let check = policy.token_check();
        let uid = user_id.as_str();
        let verified = zrooms_token::verify(
            token,
            secret.as_bytes(),
            policy.app_id,
            uid,
            now.unix_s(),
            check,
        )
        .map_err(|e| {
            self.token_failed(app, now.at, &e);
            ErrorCode(e.code())
        })?;
        let privileges = if policy.privilege_check {
            verified.privileges
        } else {
            Privileges::ALL
        };
        let other_room = !privileges.room_id.is_empty() && privileges.room_id != room_id.as_str();
        if other_room || !privileges.login {
            return Err(ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED);
        }
        Ok(Grant {
            privileges,
            expire_s: Some(verified.claims.expire),
            warned: false,
        })
    }

    /// Whether this address and this app still have failed-token budget.
    fn may_try_token(&self, app: &App, now: Instant) -> bool {
        let ip_rate = self.shared.config.auth_failures_per_ip;
        self.shared.auth_failures.allowed(self.ip, ip_rate, now)
            && lock(&app.auth_failures).ready(app.config.auth_failures_per_app, now)
    }

    fn token_failed(&self, app: &App, now: Instant, e: &zrooms_token::TokenError) {
        let ip_rate = self.shared.config.auth_failures_per_ip;
        self.shared.auth_failures.failed(self.ip, ip_rate, now);
        lock(&app.auth_failures).take(app.config.auth_failures_per_app, now);
        self.shared.metrics.auth_failures.inc();
        let app_id = app.config.app_id;
        tracing::info!(app = app_id, ip = %self.ip, reason = ?e, "token refused");
    }

    /// A new token for a logged-in room. Refused (and the old one kept) when it does not verify,
    /// or when it would not allow a stream this user is publishing there (1002082).
    pub(super) fn renew_token(
        &mut self,
        app: &Arc<App>,
        room_id: RoomId,
        token: &str,
        now: Now,
    ) -> Res<Answer> {
        let room = self.member_room_checked(&room_id)?;
        let user = self.user()?;
        let grant = self.authorize(app, &user.user_id, &room_id, token, now)?;
        let conn = self.id;
        let denied = room.read(|core| {
            core.streams_of(conn)
                .any(|s| !grant.privileges.may_publish(s.as_str()))
        });
        if denied {
            return Err(ErrorCode::ROOM_RENEW_TOKEN_NO_PUBLISH_AUTH_ERROR);
        }
        self.grants.insert(room_id, grant);
        Ok(Answer::Reply(None))
    }

    /// When the session must next look at its tokens (a warning or an expiry), as a wait from
    /// `now`.
    pub(crate) fn token_deadline(&self, now: Now) -> Option<Duration> {
        let kick = self
            .app
            .as_ref()
            .is_some_and(|a| a.config.token_expire_action == ExpireAction::Kick);
        let next_s = self
            .grants
            .values()
            .filter_map(|g| {
                let expire = g.expire_s?;
                if !g.warned {
                    Some(expire - TOKEN_WARNING_S)
                } else {
                    kick.then_some(expire)
                }
            })
            .min()?;
        let wait_ms = next_s
            .saturating_mul(1000)
            .saturating_sub(now.unix_ms as i64)
            .max(0) as u64;
        Some(Duration::from_millis(wait_ms).min(MAX_TIMER))
    }

    /// Sends due `TokenWillExpire` warnings, and kicks out of rooms whose token expired (when
    /// the app chose to).
    pub(crate) fn token_timer(&mut self, now: Now) {
        let Some(app) = self.app.clone() else {
            return;
        };
        self.forget_kicked_rooms();
        let now_s = now.unix_s();
        let kick = app.config.token_expire_action == ExpireAction::Kick;
        let mut expired = Vec::new();
        for (room_id, g) in &mut self.grants {
            let Some(expire) = g.expire_s else {
                continue;
            };
            if !g.warned && now_s >= expire - TOKEN_WARNING_S {
                g.warned = true;
                self.out.send_msg(&ServerMsg::TokenWillExpire {
                    room_id: room_id.clone(),
                    remain_s: (expire - now_s).max(0) as u32,
                });
            }
            if now_s >= expire && kick {
                expired.push(room_id.clone());
            }
        }
        for room_id in expired {
            tracing::debug!(conn = self.id, room = %room_id, "token expired: kicked out");
            self.out.send_msg(&ServerMsg::Kicked {
                room_id: room_id.clone(),
                code: ErrorCode::ROOM_TOKEN_EXPIRED_KICKED_OUT,
            });
            self.leave(&app, &room_id, DeleteReason::KICKED_OUT);
        }
    }
}
