//! `startServer()`: an embedded room server for examples and tests.

use crate::runtime;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;
use zrooms_server::{AppConfig, Server, ServerConfig};

#[napi(object)]
pub struct AppOptions {
    #[napi(js_name = "appID")]
    pub app_id: u32,
    pub app_sign: Option<String>,
    pub multi_room: Option<bool>,
    pub max_rooms_per_user: Option<u32>,
    pub max_members: Option<u32>,
}

#[napi(object)]
pub struct ServerOptions {
    pub host: Option<String>,
    pub port: Option<u32>,
    /// Apps the server knows; others are admitted only with `devDefault`.
    pub apps: Option<Vec<AppOptions>>,
    /// Admit unknown appIDs with multi-room on (default: true when `apps` is absent).
    pub dev_default: Option<bool>,
    pub online_count_interval_ms: Option<u32>,
}

/// A running embedded server.
#[napi]
pub struct EmbeddedServer {
    url: String,
    port: u32,
    server: Mutex<Option<Server>>,
}

#[napi]
impl EmbeddedServer {
    /// `ws://host:port`, for `setEngineConfig({advancedConfig: {server}})`.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.url.clone()
    }

    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Closes every connection and stops listening.
    #[napi]
    pub async fn close(&self) -> Result<()> {
        let server = self.server.lock().map(|mut s| s.take()).unwrap_or(None);
        if let Some(server) = server {
            runtime()
                .spawn(server.shutdown())
                .await
                .map_err(|e| Error::from_reason(e.to_string()))?;
        }
        Ok(())
    }
}

fn config_from(options: &ServerOptions) -> Result<ServerConfig> {
    let mut config = ServerConfig {
        dev_default: options.dev_default.unwrap_or(options.apps.is_none()),
        ..ServerConfig::default()
    };
    if let Some(ms) = options.online_count_interval_ms {
        config.online_count_interval = Duration::from_millis(ms.max(100) as u64);
    }
    for a in options.apps.iter().flatten() {
        let mut app = AppConfig::dev(a.app_id);
        app.app_sign = a.app_sign.clone();
        app.multi_room = a.multi_room.unwrap_or(true);
        if let Some(n) = a.max_rooms_per_user {
            app.max_rooms_per_user = n;
        }
        app.max_members = a.max_members.unwrap_or(0);
        config.apps.insert(a.app_id, app);
    }
    Ok(config)
}

/// Starts a room server in this process.
#[napi]
pub async fn start_server(options: Option<ServerOptions>) -> Result<EmbeddedServer> {
    let options = options.unwrap_or(ServerOptions {
        host: None,
        port: None,
        apps: None,
        dev_default: None,
        online_count_interval_ms: None,
    });
    let config = config_from(&options)?;
    let host: IpAddr = options
        .host
        .as_deref()
        .unwrap_or("127.0.0.1")
        .parse()
        .map_err(|_| Error::new(Status::InvalidArg, "host must be an IP address"))?;
    let port = u16::try_from(options.port.unwrap_or(0))
        .map_err(|_| Error::new(Status::InvalidArg, "port out of range"))?;
    let server = runtime()
        .spawn(Server::bind(SocketAddr::new(host, port), config))
        .await
        .map_err(|e| Error::from_reason(e.to_string()))?
        .map_err(|e| Error::from_reason(format!("cannot listen: {e}")))?;
    Ok(EmbeddedServer {
        url: server.url(),
        port: server.local_addr().port() as u32,
        server: Mutex::new(Some(server)),
    })
}
