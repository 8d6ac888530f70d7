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
//! ```

use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// What one app may do.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
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
    /// Largest WebSocket message accepted, in bytes.
    pub max_message_bytes: usize,
    /// The SFU's UDP address; `None`: the signaling listener's IP (127.0.0.1 when that is
    /// unspecified) and a free port. It is the host candidate peers connect to.
    pub media_addr: Option<std::net::SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            apps: HashMap::new(),
            dev_default: true,
            online_count_interval: Duration::from_secs(30),
            outbound_queue: 1024,
            max_message_bytes: 64 * 1024,
            media_addr: None,
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
        for app in file.app {
            if let Some(sign) = &app.app_sign {
                if sign.len() != 64 || !sign.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!(
                        "app {}: app_sign must be 64 hex characters",
                        app.app_id
                    ));
                }
            }
            if app.app_id == 0 {
                return Err("app_id 0 is not valid".into());
            }
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
        let closed = ServerConfig::from_toml("[[app]]\napp_id = 1\n").unwrap();
        assert!(closed.app(2).is_none());
    }
}
