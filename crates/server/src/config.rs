//! The app registry: which apps the server admits and what each may do.
//!
//! Read from a TOML file:
//!
//! ```toml
//! dev_default = false          # admit unknown appIDs with multi-room on and no token
//! online_count_interval_ms = 30000
//!
//! [[app]]
//! app_id = 1234
//! app_sign = "…64 hex…"        # optional; when set, a hello must carry it
//! multi_room = true
//! max_rooms_per_user = 5
//! max_members = 0              # 0 = unlimited
//! server_secret = "…32 chars…"  # optional; token04 verification (docs/tokens.md)
//! require_token = false        # true: a token is needed even with the right appSign
//! privilege_check = true       # apply a token's room and publish privileges
//! token_expire_action = "kick" # or "keep": what happens to a session whose token expired
//! token_layouts = ["gcm"]      # add "cbc" only for generators that make nothing else (weaker)
//! max_token_lifetime_s = 604800 # a token may expire at most this far ahead (7 days)
//! max_streams_per_user = 4     # streams one session publishes at once (ZEGO: 4 channels)
//! max_streams_per_room = 500   # streams published in one room at once
//! auth_failures_per_app = 50   # failed token logins per second, all sources together
//!
//! [app.limits]                 # ZEGO's limits, per app (docs/limits.md); these are defaults
//! broadcast_per_room = 10      # messages per second
//! broadcast_per_user = 2
//! custom_command_recipients = 100
//! ```
//!
//! Server-wide: `max_connections_per_ip` (128; 0 = unlimited), `max_pending_connections`
//! (connections that have not logged into a room yet, 1024; beyond it the oldest is shed),
//! `login_timeout_ms` (a connection must log into a room within this time, 30000),
//! `auth_failures_per_ip` (failed token logins per second from one address, 1),
//! `max_frame_bytes` (256 KiB), `outbound_queue` (frames waiting for one slow reader before it is
//! closed, 1024), `hello_timeout_ms` (handshake and hello, each, 5000), `heartbeat_timeout_ms`
//! (30000), `reconnect_grace_ms` (30000; 0 = none), `replay_window` (frames, 4096),
//! `replay_window_bytes` (1 MiB), `allowed_origins` (browser origins admitted; empty = any),
//! `tls_cert`/`tls_key` (PEM files: the port speaks TLS), `metrics_token` (a bearer token that
//! lets other addresses than loopback read `/metrics`), `log_format` (`text` or `json`),
//! `drain_timeout_ms` (on SIGTERM, how long connections get to close, 10000).
//! Every limit, its default and why: `docs/security.md` and `docs/limits.md`.

mod env;
pub use env::from_toml_env;

use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use zrooms_proto::wire::{
    MAX_MESSAGE_BYTES, MAX_ROOM_EXTRA_INFO_BYTES, MAX_STREAM_EXTRA_INFO_BYTES,
};

/// What one app may do.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub app_id: u32,
    /// When set, engines must present this appSign (64 hex characters).
    #[serde(default)]
    pub app_sign: Option<String>,
    /// ZEGO's multi-room feature; off by default as at ZEGO.
    #[serde(default)]
    pub multi_room: bool,
    #[serde(default = "default_max_rooms")]
    pub max_rooms_per_user: u32,
    /// Members per room; 0 = unlimited.
    #[serde(default)]
    pub max_members: u32,
    /// The app's 32-character ServerSecret: when set, token04s are verified with it.
    #[serde(default)]
    pub server_secret: Option<String>,
    /// A token is needed to log in even when the engine presented the right appSign.
    #[serde(default)]
    pub require_token: bool,
    /// Apply a token's privilege payload (room, login and publish privileges, stream list).
    #[serde(default = "yes")]
    pub privilege_check: bool,
    /// What happens when a room's token expires.
    #[serde(default)]
    pub token_expire_action: ExpireAction,
    /// The token layouts this app accepts. GCM only by default: the CBC layout has no
    /// authentication (see `docs/security.md`), so it is an explicit opt-in.
    #[serde(default = "default_layouts")]
    pub token_layouts: Vec<TokenLayout>,
    /// A token may expire at most this many seconds after it is presented (1002078 beyond).
    #[serde(default = "default_token_lifetime")]
    pub max_token_lifetime_s: i64,
    /// Streams one session (engine) publishes at once, all its rooms together (1003025 beyond).
    #[serde(default = "default_streams_per_user")]
    pub max_streams_per_user: u32,
    /// Streams published in one room at once (1003025 beyond): bounds a room's snapshot.
    #[serde(default = "default_streams_per_room")]
    pub max_streams_per_room: u32,
    /// Failed token logins per second for the whole app, all sources together; beyond it token
    /// logins are refused unchecked (1002033) until the bucket refills.
    #[serde(default = "default_auth_failures_per_app")]
    pub auth_failures_per_app: f64,
    #[serde(default)]
    pub limits: Limits,
}

/// A token04 layout an app accepts.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenLayout {
    Gcm,
    Cbc,
}

impl AppConfig {
    /// Whether this app's settings are usable; the reason when not.
    pub fn check(&self) -> Result<(), String> {
        if let Some(sign) = &self.app_sign {
            if sign.len() != 64 || !sign.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "app {}: app_sign must be 64 hex characters",
                    self.app_id
                ));
            }
        }
        if let Some(secret) = &self.server_secret {
            if secret.len() != zrooms_token::SECRET_LEN || !secret.is_ascii() {
                return Err(format!(
                    "app {}: server_secret must be 32 ASCII characters",
                    self.app_id
                ));
            }
        }
        if self.require_token && self.server_secret.is_none() {
            return Err(format!(
                "app {}: require_token needs a server_secret",
                self.app_id
            ));
        }
        let l = &self.limits;
        let rates = [
            l.broadcast_per_room,
            l.broadcast_per_user,
            l.barrage_per_room,
            l.custom_command_single,
            l.custom_command_multi,
            l.logins_per_room,
            l.room_extra_info_per_room,
            l.requests_per_connection,
        ];
        if rates.iter().any(|r| !r.is_finite() || *r <= 0.0) {
            return Err(format!("app {}: limits must be positive", self.app_id));
        }
        if self.token_layouts.is_empty() {
            return Err(format!(
                "app {}: token_layouts must name gcm, cbc or both",
                self.app_id
            ));
        }
        if self.max_token_lifetime_s <= 0
            || !self.auth_failures_per_app.is_finite()
            || self.auth_failures_per_app <= 0.0
        {
            return Err(format!(
                "app {}: max_token_lifetime_s and auth_failures_per_app must be positive",
                self.app_id
            ));
        }
        if self.app_id == 0 {
            return Err("app_id 0 is not valid".into());
        }
        Ok(())
    }

    /// What the token verifier accepts for this app.
    pub fn token_check(&self) -> zrooms_token::Check {
        zrooms_token::Check {
            layouts: zrooms_token::Layouts {
                cbc: self.token_layouts.contains(&TokenLayout::Cbc),
                gcm: self.token_layouts.contains(&TokenLayout::Gcm),
            },
            max_lifetime_s: self.max_token_lifetime_s,
        }
    }
}

fn default_layouts() -> Vec<TokenLayout> {
    vec![TokenLayout::Gcm]
}

fn default_token_lifetime() -> i64 {
    7 * 24 * 3600
}

fn default_streams_per_user() -> u32 {
    4
}

fn default_streams_per_room() -> u32 {
    500
}

fn default_auth_failures_per_app() -> f64 {
    50.0
}

/// What the server does when a logged-in room's token expires (ZEGO lets the app choose).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExpireAction {
    /// Remove the user from the room with 1002056.
    #[default]
    Kick,
    /// Keep the session; only new logins and publishes need a valid token.
    Keep,
}

/// Rates are per second, sizes in bytes; ZEGO's published limits are the defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Broadcast messages per room (1009015 beyond).
    pub broadcast_per_room: f64,
    /// Broadcast messages per user in one room (1009015 beyond).
    pub broadcast_per_user: f64,
    /// Barrage messages per room (1002072 beyond).
    pub barrage_per_room: f64,
    /// Custom commands from one user to a single user (1002072 beyond).
    pub custom_command_single: f64,
    /// Custom commands from one user to several users or everyone (1002072 beyond).
    pub custom_command_multi: f64,
    /// Logins per room, all users together (1002072 beyond).
    pub logins_per_room: f64,
    /// setRoomExtraInfo calls per room (1002072 beyond).
    pub room_extra_info_per_room: f64,
    /// Requests of any kind per connection (1002073 beyond): a flood guard above every other rate.
    pub requests_per_connection: f64,
    /// Message bodies (broadcast, barrage, custom command): at most this many bytes.
    pub message_bytes: usize,
    /// Stream extra info: shorter than this.
    pub stream_extra_info_bytes: usize,
    /// Room extra info key and value: shorter than this.
    pub room_extra_info_bytes: usize,
    /// Recipients named in one custom command (1009013 beyond).
    pub custom_command_recipients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            broadcast_per_room: 10.0,
            broadcast_per_user: 2.0,
            barrage_per_room: 20.0,
            custom_command_single: 200.0,
            custom_command_multi: 10.0,
            logins_per_room: 200.0,
            room_extra_info_per_room: 10.0,
            requests_per_connection: 1000.0,
            message_bytes: MAX_MESSAGE_BYTES,
            stream_extra_info_bytes: MAX_STREAM_EXTRA_INFO_BYTES,
            room_extra_info_bytes: MAX_ROOM_EXTRA_INFO_BYTES,
            custom_command_recipients: 100,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_max_rooms() -> u32 {
    5
}

impl AppConfig {
    /// The development default: any appID, multi-room on, no appSign check.
    pub fn dev(app_id: u32) -> Self {
        AppConfig {
            app_id,
            app_sign: None,
            multi_room: true,
            max_rooms_per_user: default_max_rooms(),
            max_members: 0,
            server_secret: None,
            require_token: false,
            privilege_check: true,
            token_expire_action: ExpireAction::Kick,
            token_layouts: default_layouts(),
            max_token_lifetime_s: default_token_lifetime(),
            max_streams_per_user: default_streams_per_user(),
            max_streams_per_room: default_streams_per_room(),
            auth_failures_per_app: default_auth_failures_per_app(),
            limits: Limits::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub apps: HashMap<u32, AppConfig>,
    /// Admit appIDs that are not listed, as [`AppConfig::dev`].
    pub dev_default: bool,
    /// How often every member gets `roomOnlineUserCountUpdate` (ZEGO: 30 s).
    pub online_count_interval: Duration,
    /// Frames waiting for one connection before it counts as stuck and is closed.
    pub outbound_queue: usize,
    /// Largest WebSocket message (and frame) accepted, in bytes; larger closes the connection.
    pub max_message_bytes: usize,
    /// Open connections from one IP address; 0 = unlimited. Beyond it a new connection is
    /// closed at once.
    pub max_connections_per_ip: u32,
    /// Connections that have not logged into any room yet, server-wide; 0 = unlimited. A new one
    /// beyond it sheds the oldest such connection.
    pub max_pending_connections: usize,
    /// A connection that has not logged into a room this long after it was accepted is closed.
    pub login_timeout: Duration,
    /// Failed token logins per second from one IP address (a burst of 10 first); beyond it token
    /// logins from that address are refused unchecked (1002033) until the bucket refills.
    pub auth_failures_per_ip: f64,
    /// Browser origins whose WebSocket connections are admitted (`Origin` header, e.g.
    /// `https://app.example.com`); empty: any. Connections without an `Origin` (SDKs) are
    /// always admitted.
    pub allowed_origins: Vec<String>,
    /// A connection must finish the WebSocket handshake and say hello within this time.
    pub hello_timeout: Duration,
    /// A connection that sends nothing (not even its heartbeat) for this long is dead.
    pub heartbeat_timeout: Duration,
    /// How long a session whose connection dropped keeps its rooms and streams for the engine
    /// to resume it; zero ends sessions with their connection.
    pub reconnect_grace: Duration,
    /// Frames kept per session until the engine acknowledges them, for resuming.
    pub replay_window: usize,
    /// Bytes those frames may hold; past it the oldest are forgotten and the session can no
    /// longer be resumed from before them (the engine logs in afresh).
    pub replay_window_bytes: usize,
    /// The SFU's UDP address; `None`: the signaling listener's IP (127.0.0.1 when that is
    /// unspecified) and a free port. It is the host candidate peers connect to.
    pub media_addr: Option<std::net::SocketAddr>,
    /// The address peers are told to send media to, when it is not `media_addr` (a NAT's or a
    /// relay's public address, or a test's impairment proxy).
    pub media_advertise: Option<std::net::SocketAddr>,
    /// SFU forwarding workers, each with its own socket on the one media port; 0: one per
    /// available core (docs/scale.md).
    pub media_workers: usize,
    /// Where the signaling listener binds (`host`, `port` in the file); `--host`/`--port` and
    /// `ZROOMS_HOST`/`ZROOMS_PORT` win over these (docs/operations.md).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// PEM certificate chain and private key: with both, the signaling port speaks TLS only
    /// (`https://`, `wss://`); `--tls-cert`/`--tls-key` win over these (docs/operations.md).
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Lets clients other than loopback read `/metrics` with `Authorization: Bearer <token>`;
    /// unset, only loopback clients may.
    pub metrics_token: Option<String>,
    /// How the log is written (`log_format` in the file; `--log-format` and
    /// `ZROOMS_LOG_FORMAT` win).
    pub log_format: LogFormat,
    /// On shutdown (SIGTERM), how long connections get to close after being told to
    /// reconnect elsewhere, before the process ends anyway.
    pub drain_timeout: Duration,
}

/// The log's format: text for people, or one JSON object per line for collectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            apps: HashMap::new(),
            dev_default: true,
            online_count_interval: Duration::from_secs(30),
            outbound_queue: 1024,
            max_message_bytes: 256 * 1024,
            max_connections_per_ip: 128,
            max_pending_connections: 1024,
            login_timeout: Duration::from_secs(30),
            auth_failures_per_ip: 1.0,
            allowed_origins: Vec::new(),
            hello_timeout: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(30),
            reconnect_grace: Duration::from_secs(30),
            replay_window: 4096,
            replay_window_bytes: 1 << 20,
            media_addr: None,
            media_advertise: None,
            media_workers: 0,
            host: None,
            port: None,
            tls_cert: None,
            tls_key: None,
            metrics_token: None,
            log_format: LogFormat::Text,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    dev_default: bool,
    #[serde(default)]
    online_count_interval_ms: Option<u64>,
    #[serde(default)]
    max_connections_per_ip: Option<u32>,
    #[serde(default)]
    max_pending_connections: Option<usize>,
    #[serde(default)]
    login_timeout_ms: Option<u64>,
    #[serde(default)]
    auth_failures_per_ip: Option<f64>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    replay_window_bytes: Option<usize>,
    #[serde(default)]
    max_frame_bytes: Option<usize>,
    #[serde(default)]
    outbound_queue: Option<usize>,
    #[serde(default)]
    hello_timeout_ms: Option<u64>,
    #[serde(default)]
    media_addr: Option<std::net::SocketAddr>,
    #[serde(default)]
    media_advertise: Option<std::net::SocketAddr>,
    #[serde(default)]
    media_workers: usize,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    tls_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    tls_key: Option<std::path::PathBuf>,
    #[serde(default)]
    metrics_token: Option<String>,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default)]
    drain_timeout_ms: Option<u64>,
    #[serde(default)]
    heartbeat_timeout_ms: Option<u64>,
    #[serde(default)]
    reconnect_grace_ms: Option<u64>,
    #[serde(default)]
    replay_window: Option<usize>,
    #[serde(default)]
    app: Vec<AppConfig>,
}

impl ServerConfig {
    /// Parses a TOML config file's text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut config = ServerConfig {
            dev_default: file.dev_default,
            ..ServerConfig::default()
        };
        if let Some(ms) = file.online_count_interval_ms {
            config.online_count_interval = Duration::from_millis(ms.max(100));
        }
        if let Some(n) = file.max_connections_per_ip {
            config.max_connections_per_ip = n;
        }
        if let Some(n) = file.max_pending_connections {
            config.max_pending_connections = n;
        }
        if let Some(ms) = file.login_timeout_ms {
            config.login_timeout = Duration::from_millis(ms.max(1000));
        }
        if let Some(r) = file.auth_failures_per_ip {
            if !r.is_finite() || r <= 0.0 {
                return Err("auth_failures_per_ip must be positive".into());
            }
            config.auth_failures_per_ip = r;
        }
        config.allowed_origins = file.allowed_origins;
        if let Some(n) = file.replay_window_bytes {
            config.replay_window_bytes = n.max(64 * 1024);
        }
        if let Some(n) = file.max_frame_bytes {
            // Big enough for a media offer with a few dozen tracks (about 1.2 KB an m-line).
            config.max_message_bytes = n.max(16 * 1024);
        }
        if file
            .media_addr
            .is_some_and(|a| a.ip().is_unspecified() && file.media_advertise.is_none())
        {
            return Err(
                "media_addr on every interface (0.0.0.0 or ::) needs media_advertise, the address clients send media to".into(),
            );
        }
        config.media_addr = file.media_addr;
        config.media_advertise = file.media_advertise;
        config.media_workers = file.media_workers;
        (config.host, config.port) = (file.host, file.port);
        if file.tls_cert.is_some() != file.tls_key.is_some() {
            return Err("tls_cert and tls_key go together: set both or neither".into());
        }
        (config.tls_cert, config.tls_key) = (file.tls_cert, file.tls_key);
        if let Some(t) = &file.metrics_token {
            if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("metrics_token: at least 16 characters, no spaces".into());
            }
        }
        config.metrics_token = file.metrics_token;
        config.log_format = file.log_format;
        if let Some(ms) = file.drain_timeout_ms {
            config.drain_timeout = Duration::from_millis(ms.min(600_000));
        }
        if let Some(ms) = file.hello_timeout_ms {
            config.hello_timeout = Duration::from_millis(ms.max(100));
        }
        if let Some(ms) = file.heartbeat_timeout_ms {
            config.heartbeat_timeout = Duration::from_millis(ms.max(100));
        }
        if let Some(ms) = file.reconnect_grace_ms {
            config.reconnect_grace = Duration::from_millis(ms);
        }
        if let Some(n) = file.replay_window {
            config.replay_window = n.max(16);
        }
        if let Some(n) = file.outbound_queue {
            config.outbound_queue = n.max(16);
        }
        for app in file.app {
            app.check()?;
            config.apps.insert(app.app_id, app);
        }
        Ok(config)
    }

    /// The policy for `app_id`, if the server admits it.
    pub fn app(&self, app_id: u32) -> Option<AppConfig> {
        match self.apps.get(&app_id) {
            Some(app) => Some(app.clone()),
            None if self.dev_default && app_id != 0 => Some(AppConfig::dev(app_id)),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apps_and_defaults() {
        let c = ServerConfig::from_toml(
            "dev_default = true\n[[app]]\napp_id = 7\nmulti_room = false\n[[app]]\napp_id = 8\nmulti_room = true\nmax_rooms_per_user = 2\n",
        )
        .unwrap();
        assert!(!c.app(7).unwrap().multi_room);
        assert_eq!(c.app(8).unwrap().max_rooms_per_user, 2);
        assert_eq!(c.app(9).unwrap(), AppConfig::dev(9));
        assert_eq!(c.app(7).unwrap().max_rooms_per_user, 5);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(ServerConfig::from_toml("[[app]]\napp_id = 1\napp_sign = \"xyz\"\n").is_err());
        assert!(ServerConfig::from_toml("bogus = 1\n").is_err());
        assert!(
            ServerConfig::from_toml("[[app]]\napp_id = 1\nserver_secret = \"short\"\n").is_err()
        );
        assert!(ServerConfig::from_toml(
            "[[app]]\napp_id = 1\n[app.limits]\nbroadcast_per_room = 0\n"
        )
        .is_err());
        assert!(ServerConfig::from_toml("[[app]]\napp_id = 1\n[app.limits]\nbogus = 1\n").is_err());
        assert!(ServerConfig::from_toml("media_addr = \"0.0.0.0:40000\"\n").is_err());
        let pinned = "media_addr = \"0.0.0.0:40000\"\nmedia_advertise = \"203.0.113.7:40000\"\n";
        assert_eq!(
            ServerConfig::from_toml(pinned).unwrap().media_addr,
            Some("0.0.0.0:40000".parse().unwrap())
        );
        let closed = ServerConfig::from_toml("[[app]]\napp_id = 1\n").unwrap();
        assert!(closed.app(2).is_none());
    }
}
