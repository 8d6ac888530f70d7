//! `zrooms-server`: the room server as a command-line program.
//!
//! ```text
//! zrooms-server [--host 127.0.0.1] [--port 9000] [--config apps.toml]
//! ```
//! Without `--config` it runs with the development default (any appID, multi-room on, no
//! token) and says so. It prints `listening on ws://HOST:PORT` once ready, and stops on
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use zrooms_server::{Server, ServerConfig};

fn usage() -> ! {
    eprintln!("usage: zrooms-server [--host ADDR] [--port PORT] [--config FILE]");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut host = "127.0.0.1".to_string();
    let mut port: u16 = 9000;
    let mut config_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--host" => host = args.next().unwrap_or_else(|| usage()),
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--config" => config_path = Some(args.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let config = match &config_path {
        Some(path) => {
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
                eprintln!("cannot read {path}: {e}");
                std::process::exit(1)
            });
            ServerConfig::from_toml(&text).unwrap_or_else(|e| {
                eprintln!("bad config {path}: {e}");
                std::process::exit(1)
            })
        }
        None => ServerConfig::default(),
    };
    if config.dev_default {
        eprintln!(
            "zrooms-server: development default is on: any appID is admitted with multi-room enabled and no token"
        );
    }
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(a) => a,
        Err(_) => usage(),
    };
    let server = Server::bind(addr, config).await.unwrap_or_else(|e| {
        eprintln!("cannot listen on {addr}: {e}");
        std::process::exit(1)
    });
    println!(
        "listening on {} (media udp {})",
        server.url(),
        server.media_addr()
    );
    shutdown_signal().await;
    server.shutdown().await;
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
