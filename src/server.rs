//! `startServer()`: an embedded room server for examples and tests.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, Once};
use std::time::Duration;
use zrooms_server::config::TokenLayout;
use zrooms_server::{AppConfig, Server, ServerConfig};

#[napi(object)]
pub struct AppOptions {
    #[napi(js_name = "appID")]
    pub app_id: u32,
    pub app_sign: Option<String>,
    pub multi_room: Option<bool>,
    pub max_rooms_per_user: Option<u32>,
    pub max_members: Option<u32>,
    /// The app's 32-character ServerSecret: token04s are verified with it.
    pub server_secret: Option<String>,
    /// A token is needed to log in even with the right appSign.
    pub require_token: Option<bool>,
    /// Token layouts accepted: `['gcm']` (default) or with `'cbc'` (weaker; see docs/security.md).
    pub token_layouts: Option<Vec<String>>,
    /// Streams one engine may publish at once (default 4).
    pub max_streams_per_user: Option<u32>,
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
    /// Open connections from one IP address (default 128; 0 = unlimited).
    pub max_connections_per_ip: Option<u32>,
    /// Browser origins admitted (default: any).
    pub allowed_origins: Option<Vec<String>>,
    /// PEM certificate chain and key files: the port serves `https://` and `wss://` only.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
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
    /// `ws://host:port` (`wss://` with TLS), for `setEngineConfig({advancedConfig: {server}})`.
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
            server.shutdown().await;
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
    if let Some(n) = options.max_connections_per_ip {
        config.max_connections_per_ip = n;
    }
    if let Some(origins) = &options.allowed_origins {
        config.allowed_origins = origins.clone();
    }
    match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => {
            config.tls_cert = Some(cert.into());
            config.tls_key = Some(key.into());
        }
        (None, None) => {}
        _ => {
            let both = "tlsCert and tlsKey go together";
            return Err(Error::new(Status::InvalidArg, both));
        }
    }
    for a in options.apps.iter().flatten() {
        let mut app = AppConfig::dev(a.app_id);
        app.app_sign = a.app_sign.clone().filter(|s| !s.is_empty());
        app.multi_room = a.multi_room.unwrap_or(true);
        if let Some(n) = a.max_rooms_per_user {
            app.max_rooms_per_user = n;
        }
        app.max_members = a.max_members.unwrap_or(0);
        app.server_secret = a.server_secret.clone();
        app.require_token = a.require_token.unwrap_or(false);
        if let Some(n) = a.max_streams_per_user {
            app.max_streams_per_user = n;
        }
        if let Some(layouts) = &a.token_layouts {
            app.token_layouts = layouts
                .iter()
                .map(|l| match l.as_str() {
                    "gcm" => Ok(TokenLayout::Gcm),
                    "cbc" => Ok(TokenLayout::Cbc),
                    _ => Err(Error::new(
                        Status::InvalidArg,
                        "tokenLayouts: 'gcm' and/or 'cbc'",
                    )),
                })
                .collect::<Result<_>>()?;
        }
        app.check().map_err(|e| Error::new(Status::InvalidArg, e))?;
        config.apps.insert(a.app_id, app);
    }
    if config.dev_default {
        // Said once per process, on stderr: an embedded server with no app registry admits
        // anyone, and whoever embeds it should know.
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            eprintln!(
                "zrooms startServer: development mode: any appID is admitted with multi-room on and no token; pass {{apps: [...]}} to require appSign or tokens"
            );
        });
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
        max_connections_per_ip: None,
        allowed_origins: None,
        tls_cert: None,
        tls_key: None,
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
    let server = Server::bind(SocketAddr::new(host, port), config)
        .await
        .map_err(|e| Error::from_reason(format!("cannot listen: {e}")))?;
    Ok(EmbeddedServer {
        url: server.url(),
        port: server.local_addr().port() as u32,
        server: Mutex::new(Some(server)),
    })
}
