//! `zrooms-server`: the room server as a command-line program (`zrooms-server --help`).
//!
//! Where to listen comes from, first to last: the flag (`--host`, `--port`), the environment
//! (`ZROOMS_HOST`, `ZROOMS_PORT`), the config file (`host`, `port`), the default
//! (127.0.0.1:9000); TLS likewise (`--tls-cert`/`--tls-key`, `ZROOMS_TLS_CERT`/`_KEY`,
//! `tls_cert`/`tls_key`; both or neither, checked before anything listens) and the log format
//! (`--log-format`, `ZROOMS_LOG_FORMAT`, `log_format`). On SIGTERM or Ctrl-C it stops
//! accepting, closes every connection with WebSocket code 1012 (service restart: engines
//! reconnect by themselves) and waits up to `drain_timeout_ms` for them to close. The config file is `--config` or `ZROOMS_CONFIG`; without one the server
//! runs with the development default (any appID, multi-room on, no token) and says so. Every
//! top-level key of the config file can also come from `ZROOMS_<KEY>`, over the file
//! (`config/env.rs`). It
//! prints `listening on ws://HOST:PORT (media udp ADDR)` once ready and stops on Ctrl-C or
//! SIGTERM. Exit codes: 0 done, 2 a usage error (a bad flag or value), 1 anything else (an
//! unreadable or invalid config, an address that cannot be bound); nothing is started before
//! the config is whole.

use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use zrooms_server::config::{from_toml_env, LogFormat};
use zrooms_server::{Server, ServerConfig};

/// The zrooms room server: signaling over WebSocket, media through its SFU.
#[derive(Parser, Debug)]
#[command(name = "zrooms-server", version)]
struct Cli {
    /// IP address to listen on for signaling (the SFU's media too, unless the config says
    /// otherwise) [default: config `host`, else 127.0.0.1]
    #[arg(long, env = "ZROOMS_HOST", value_name = "ADDR")]
    host: Option<IpAddr>,
    /// TCP port for signaling; 0 picks a free one [default: config `port`, else 9000]
    #[arg(long, env = "ZROOMS_PORT")]
    port: Option<u16>,
    /// The config file (TOML: apps, limits, media; docs/operations.md)
    #[arg(long, env = "ZROOMS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// PEM certificate chain: the port then serves https:// and wss:// only (with --tls-key)
    /// [default: config `tls_cert`]
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [default: config `tls_key`]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log format: `text`, or `json` (one object per line: the session events with app, room
    /// and user, and every warning) [default: config `log_format`, else text]
    #[arg(long, env = "ZROOMS_LOG_FORMAT", value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Read and check the configuration, print what it resolves to, and exit (0: valid,
    /// 1: not)
    #[arg(long)]
    check_config: bool,
}

fn fail(message: String) -> ! {
    eprintln!("zrooms-server: {message}");
    std::process::exit(1)
}

/// The config and the listening address the command line, environment and file resolve to.
fn resolve(cli: &Cli) -> Result<(ServerConfig, SocketAddr), String> {
    let vars = std::env::vars();
    let config = match &cli.config {
        Some(path) => {
            let shown = path.display();
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
            from_toml_env(Some(&text), vars).map_err(|e| format!("bad config {shown}: {e}"))?
        }
        None => from_toml_env(None, vars).map_err(|e| format!("bad config: {e}"))?,
    };
    let host = match (cli.host, &config.host) {
        (Some(h), _) => h,
        (None, Some(h)) => h
            .parse()
            .map_err(|e| format!("bad config: host {h:?}: {e}"))?,
        (None, None) => IpAddr::from([127, 0, 0, 1]),
    };
    let port = cli.port.or(config.port).unwrap_or(9000);
    let mut config = config;
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        (config.tls_cert, config.tls_key) = (Some(cert.clone()), Some(key.clone()));
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        zrooms_server::tls::acceptor(cert, key)?;
    }
    match cli.log_format.as_deref() {
        Some("json") => config.log_format = LogFormat::Json,
        Some(_) => config.log_format = LogFormat::Text,
        None => {}
    }
    Ok((config, SocketAddr::new(host, port)))
}

#[tokio::main]
async fn main() {
    // Usage errors exit with 2, --help and --version with 0 (clap's own).
    let cli = Cli::parse();
    let (config, addr) = resolve(&cli).unwrap_or_else(|e| fail(e));
    init_log(config.log_format);
    if cli.check_config {
        println!(
            "config ok: listen {addr}{}; media udp {}; {} app(s) configured; development default {}; media workers {}",
            if config.tls_cert.is_some() { " (TLS)" } else { "" },
            config
                .media_addr
                .map_or_else(|| format!("{} (a free port)", addr.ip()), |a| a.to_string()),
            config.apps.len(),
            if config.dev_default { "on" } else { "off" },
            match config.media_workers {
                0 => "one per core".to_string(),
                n => n.to_string(),
            }
        );
        return;
    }
    if config.dev_default {
        tracing::warn!(
            "development default is on: any appID is admitted with multi-room enabled and no token"
        );
    }
    let server = Server::bind(addr, config)
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {addr}: {e}")));
    println!(
        "listening on {} (media udp {})",
        server.url(),
        server.media_addr()
    );
    shutdown_signal().await;
    tracing::info!("shutting down: connections are told to reconnect");
    server.shutdown().await;
}

/// The log on stderr: `RUST_LOG` when set, else warnings and the session events
/// (`zrooms::session` at info), as text or JSON lines.
fn init_log(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,zrooms::session=info,zrooms_server=info")
    });
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => log.json().flatten_event(true).init(),
        LogFormat::Text => log.init(),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
