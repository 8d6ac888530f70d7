//! Config keys from the environment: `ZROOMS_<KEY>` sets the config file's top-level `key`
//! (`ZROOMS_MEDIA_WORKERS=4` is `media_workers = 4`), over what the file says. The value is
//! read as a TOML value (a number, a boolean, an array, a quoted string) and, failing that, as
//! a bare string (`ZROOMS_MEDIA_ADVERTISE=203.0.113.7:40000`). The apps (`[[app]]`) come from
//! the file only; `ZROOMS_HOST`, `ZROOMS_PORT`, `ZROOMS_LOG_FORMAT` and `ZROOMS_CONFIG` are the
//! command line's.
//! Only the keys in [`KEYS`] are taken: other `ZROOMS_…` variables belong to the SDK and the
//! tests (`ZROOMS_LOG`, `ZROOMS_CHROMIUM`, …) and are left alone, so a misspelt key is
//! ignored, not refused; `--check-config` shows what the settings came to.

use super::ServerConfig;

/// The config file's top-level keys that the environment may set.
pub const KEYS: [&str; 21] = [
    "dev_default",
    "online_count_interval_ms",
    "max_connections_per_ip",
    "max_pending_connections",
    "login_timeout_ms",
    "auth_failures_per_ip",
    "allowed_origins",
    "replay_window_bytes",
    "max_frame_bytes",
    "outbound_queue",
    "hello_timeout_ms",
    "media_addr",
    "media_advertise",
    "media_workers",
    "heartbeat_timeout_ms",
    "reconnect_grace_ms",
    "replay_window",
    "tls_cert",
    "tls_key",
    "metrics_token",
    "drain_timeout_ms",
];

/// The config from a file's `text` (`None`: no file, the development default) with the
/// `ZROOMS_…` variables among `vars` laid over it.
pub fn from_toml_env(
    text: Option<&str>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<ServerConfig, String> {
    let mut table: toml::Table = match text {
        Some(t) => toml::from_str(t).map_err(|e| e.to_string())?,
        // No file: what running without one means, before the variables.
        None => toml::from_str("dev_default = true").map_err(|e| e.to_string())?,
    };
    let mut from_env = Vec::new();
    for (name, raw) in vars {
        let Some(key) = name.strip_prefix("ZROOMS_") else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        if !KEYS.contains(&key.as_str()) {
            continue;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        from_env.push(format!("{key} (from {name})"));
        table.insert(key, value);
    }
    let text = toml::to_string(&table).map_err(|e| e.to_string())?;
    ServerConfig::from_toml(&text).map_err(|e| match from_env.is_empty() {
        true => e,
        false => format!("{e}; set from the environment: {}", from_env.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn variables_override_the_file_key_by_key() {
        let file = "media_workers = 2\nreconnect_grace_ms = 1000\n[[app]]\napp_id = 7\n";
        let c = from_toml_env(
            Some(file),
            vars(&[
                ("ZROOMS_MEDIA_WORKERS", "5"),
                ("ZROOMS_MEDIA_ADVERTISE", "203.0.113.7:40000"),
                ("ZROOMS_ALLOWED_ORIGINS", r#"["https://a.example"]"#),
                ("ZROOMS_PORT", "1"),
                ("ZROOMS_LOG", "trace"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.media_workers, 5);
        assert_eq!(c.reconnect_grace, std::time::Duration::from_secs(1));
        assert_eq!(
            c.media_advertise,
            Some("203.0.113.7:40000".parse().unwrap())
        );
        assert_eq!(c.allowed_origins, vec!["https://a.example".to_string()]);
        assert_eq!(c.port, None, "ZROOMS_PORT is the command line's");
        assert!(c.apps.contains_key(&7) && !c.dev_default);
    }

    #[test]
    fn without_a_file_the_development_default_holds() {
        let c = from_toml_env(None, vars(&[("ZROOMS_MEDIA_WORKERS", "3")])).unwrap();
        assert!(c.dev_default);
        assert_eq!(c.media_workers, 3);
        assert!(from_toml_env(None, vars(&[])).unwrap().dev_default);
    }

    #[test]
    fn an_ill_typed_variable_is_an_error_that_names_it_and_others_are_left_alone() {
        let e = from_toml_env(Some(""), vars(&[("ZROOMS_MEDIA_WORKERS", "many")])).unwrap_err();
        assert!(e.contains("ZROOMS_MEDIA_WORKERS"), "{e}");
        let sdk = vars(&[
            ("ZROOMS_CHROMIUM", "/usr/bin/chromium"),
            ("ZROOMS_APP", "x"),
        ]);
        assert!(from_toml_env(Some(""), sdk).is_ok());
    }

    /// [`KEYS`] is the file's key list less the command line's and the apps: serde names the
    /// fields it expects when it meets an unknown one.
    #[test]
    fn the_key_list_is_the_files() {
        let e = ServerConfig::from_toml("no_such_key = 1").unwrap_err();
        let mut fields: Vec<&str> = e
            .split('`')
            .skip(3)
            .step_by(2)
            .filter(|f| !["host", "port", "log_format", "app"].contains(f))
            .collect();
        fields.sort_unstable();
        let mut keys = KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(fields, keys, "{e}");
    }
}
