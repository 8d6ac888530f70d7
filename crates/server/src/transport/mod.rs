//! A connection from accept to close: TLS when configured, HTTP ([`crate::web`] answers plain
//! requests and the WebSocket upgrade), the hello, the hand-off of a resuming engine's
//! socket to its parked session ([`crate::resume`]), and the session loop ([`run`]).

mod run;

use crate::resume::{self, WsSink, WsSource};
use crate::state::{ConnId, Flag};
use crate::{web, Shared};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
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

/// TLS when the port has it, HTTP until a WebSocket upgrade, then the first text frame (the
/// hello), each within the hello timeout. Plain requests are answered and end here.
async fn open(
    stream: TcpStream,
    ip: IpAddr,
    shared: &Arc<Shared>,
) -> Option<(WsSink, WsSource, Utf8Bytes)> {
    // A peer that connects and then says nothing holds a task and a connection slot: it gets
    // `hello_timeout` for TLS, HTTP and the upgrade, and as long again for its hello.
    let hello_deadline = Instant::now() + shared.config.hello_timeout;
    let upgraded = match &shared.tls {
        Some(tls) => {
            let tls = match tokio::time::timeout_at(hello_deadline, tls.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return None;
                }
                Err(_) => return None,
            };
            web::serve(tls, ip, shared, hello_deadline).await?
        }
        None => web::serve(stream, ip, shared, hello_deadline).await?,
    };
    let ws = WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Server,
        Some(ws_config(shared)),
    )
    .await;
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
