//! A connection from accept to close: the request head (plain HTTP is answered by
//! [`crate::web`]), the WebSocket handshake, the hello, the hand-off of a resuming engine's
//! socket to its parked session ([`crate::resume`]), and the session loop ([`run`]).

mod run;

use crate::metrics::Metrics;
use crate::resume::{self, WsSink, WsSource};
use crate::state::{ConnId, Flag};
use crate::{web, Shared};
use futures_util::StreamExt;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use zrooms_proto::wire::{ClientFrame, Request, Resume};

/// What a new session starts from.
struct Start {
    id: ConnId,
    ip: IpAddr,
    /// Raised to close the connection while it has not logged in (budget or descriptors).
    shed: Arc<Flag>,
    /// A connection that has not logged into a room by then is closed.
    login_deadline: Instant,
}

pub(crate) async fn serve(
    stream: TcpStream,
    ip: IpAddr,
    id: ConnId,
    shed: Arc<Flag>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let accepted = Instant::now();
    // Until its hello is answered a connection may be shed at any await (nothing is registered
    // for it yet); after, the session loop watches the flag until the first login.
    let opened = tokio::select! {
        o = open(stream, ip, &shared) => o,
        _ = shed.wait() => None,
    };
    let Some((sink, source, first)) = opened else {
        return;
    };
    let (sink, source) = match resume_hello(first.as_str()) {
        Some((hello_id, app_id, resume)) => {
            match resume::handoff(&shared, app_id, &resume, hello_id, sink, source) {
                Ok(()) => return,
                // Not resumable: the hello starts a new session.
                Err(socket) => socket,
            }
        }
        None => (sink, source),
    };
    let start = Start {
        id,
        ip,
        shed,
        login_deadline: accepted + shared.config.login_timeout,
    };
    run::run(shared, start, sink, source, first.as_str(), &mut shutdown).await;
}

/// The request head, the WebSocket handshake and the first text frame (the hello), each within
/// the hello timeout. Plain requests are answered and end here.
async fn open(
    mut stream: TcpStream,
    ip: IpAddr,
    shared: &Shared,
) -> Option<(WsSink, WsSource, Utf8Bytes)> {
    // A peer that connects and then says nothing holds a task and a connection slot: it gets
    // `hello_timeout` for the handshake, and as long again for its hello.
    let hello_deadline = Instant::now() + shared.config.hello_timeout;
    // The same port serves the browser client's files (web.rs); only upgrades go on.
    let read = tokio::time::timeout_at(hello_deadline, web::read_head(&mut stream)).await;
    let prefix = match read {
        Ok(Some((web::Head::Upgrade { origin }, bytes))) => {
            if !web::origin_allowed(origin.as_deref(), &shared.config.allowed_origins) {
                Metrics::inc(&shared.metrics.refused_origin);
                tracing::debug!(?origin, "origin not allowed: refused");
                web::refuse(stream).await;
                return None;
            }
            bytes
        }
        Ok(Some((web::Head::Plain { method, path, .. }, _))) => {
            let metrics = ip.is_loopback().then(|| shared.render_metrics());
            let plain = web::serve_plain(stream, &method, &path, metrics);
            let _ = tokio::time::timeout_at(hello_deadline, plain).await;
            return None;
        }
        Ok(None) | Err(_) => return None,
    };
    let handshake = tokio_tungstenite::accept_async_with_config(
        web::Prefixed::new(prefix, stream),
        Some(ws_config(shared)),
    );
    let ws = match tokio::time::timeout_at(hello_deadline, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!("handshake failed: {e}");
            return None;
        }
        Err(_) => {
            tracing::debug!("no handshake in time: closed");
            return None;
        }
    };
    let hello_deadline = Instant::now() + shared.config.hello_timeout;
    let (sink, mut source) = ws.split();
    // The first frame is the hello. One that resumes a parked session hands the socket over.
    loop {
        match tokio::time::timeout_at(hello_deadline, source.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some((sink, source, text)),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
            _ => return None,
        }
    }
}

/// Small buffers: tungstenite's defaults (128 KiB to read, 128 KiB gathered before a write)
/// cost about 130 KB of resident memory a connection, 1.3 GB for 10,000 users
/// (bench/RESULTS.md); ours are messages of a few hundred bytes, written at once.
fn ws_config(shared: &Shared) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(shared.config.max_message_bytes))
        .max_frame_size(Some(shared.config.max_message_bytes))
}

/// The request id, app and resume of a hello that asks to resume.
fn resume_hello(text: &str) -> Option<(u64, u32, Resume)> {
    let frame: ClientFrame = serde_json::from_str(text).ok()?;
    match frame.req {
        Request::Hello {
            app_id,
            resume: Some(resume),
            ..
        } => Some((frame.id, app_id, resume)),
        _ => None,
    }
}
