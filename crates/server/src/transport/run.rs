//! The session loop: one task per session waits for the next thing that concerns it (a frame,
//! silence past the heartbeat timeout, a resumed engine's socket, the end of the grace period,
//! a token timer, shedding, the login deadline, a stuck reader, shutdown) and hands it to the
//! [`Session`]. A separate writer task ([`resume::writer`]) drains the outbound queue into the
//! socket, so a slow reader only ever fills its own queue.

use super::Start;
use crate::clock::Now;
use crate::resume::{self, Attach, Handoff, Replay, WsSink, WsSource};
use crate::session::Session;
use crate::state::{encode, lock, Flag, Outbound};
use crate::Shared;
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use zrooms_proto::wire::ServerMsg;
use zrooms_proto::ErrorCode;

/// Why a session's connection is no longer read.
enum Lost {
    /// Broken, or silent past the heartbeat timeout: park if possible.
    Dropped,
    /// Ended on purpose (a close frame from the client, protocol violation, stuck reader,
    /// shutdown): the session ends.
    Ended,
}

/// What woke the session's task.
enum Wake {
    Frame(Option<Result<Message, WsError>>),
    Silent,
    Handoff(Handoff),
    GraceOver,
    TokenTimer,
    Shed,
    LoginTimeout,
    Stuck,
    Shutdown,
}

/// A session with its connection (or none while parked) and its timers.
struct Live {
    session: Session,
    start: Start,
    /// The socket's reading half; `None` while parked for a resume.
    source: Option<WsSource>,
    last_rx: Instant,
    /// Parked until then.
    grace_until: Option<Instant>,
    attach: mpsc::Sender<Attach>,
    handoffs: mpsc::Receiver<Handoff>,
    stuck: Arc<Flag>,
}

pub(super) async fn run(
    shared: Arc<Shared>,
    start: Start,
    sink: WsSink,
    source: WsSource,
    hello: &str,
    shutdown: &mut watch::Receiver<bool>,
) {
    let id = start.id;
    let (out, rx, stuck) = Outbound::new(id, shared.config.outbound_queue);
    let config = &shared.config;
    let replay = Replay::new(config.replay_window, config.replay_window_bytes);
    let replay = Arc::new(Mutex::new(replay));
    let (attach, attach_rx) = mpsc::channel::<Attach>(1);
    let (handoff_tx, handoffs) = mpsc::channel::<Handoff>(1);
    let closing = shutdown.clone();
    let writer = resume::writer(rx, replay.clone(), attach_rx, Some(sink), closing);
    let writer = tokio::spawn(writer);
    let mut session = Session::new(id, out, shared.clone(), start.ip);
    session.replay = Some(replay.clone());
    // A refused hello ends the connection at once (its reply is already queued).
    let hello_ok = session.on_text(hello, Now::system()) && session.app.is_some();
    let session_id = id.to_string();
    if let Some(app) = session.app.as_ref().filter(|_| hello_ok) {
        let entry = resume::Entry {
            key: session.resume_key.clone(),
            app_id: app.config.app_id,
            replay,
            handoff: handoff_tx,
        };
        lock(&shared.sessions).insert(session_id.clone(), entry);
    }
    let mut live = Live {
        session,
        start,
        source: Some(source),
        last_rx: Instant::now(),
        grace_until: None,
        attach,
        handoffs,
        stuck,
    };
    if hello_ok {
        live.serve(&shared, shutdown).await;
    }
    lock(&shared.sessions).remove(&session_id);
    let Live {
        session, attach, ..
    } = live;
    session.close();
    drop(attach);
    // Dropping the last sender (in close) ends the writer once it has flushed what is queued.
    let _ = writer.await;
}

impl Live {
    async fn serve(&mut self, shared: &Shared, shutdown: &mut watch::Receiver<bool>) {
        let grace = shared.config.reconnect_grace;
        loop {
            let wake = self.wait(shared, shutdown).await;
            match self.on_wake(wake, shared).await {
                None => {}
                Some(Lost::Dropped) if !grace.is_zero() && !self.session.rooms.is_empty() => {
                    // Keep the rooms and streams for the engine to come back.
                    self.source = None;
                    self.grace_until = Some(Instant::now() + grace);
                }
                Some(_) => return,
            }
        }
    }

    async fn wait(&mut self, shared: &Shared, shutdown: &mut watch::Receiver<bool>) -> Wake {
        let heartbeat = shared.config.heartbeat_timeout;
        let token_wait = self.session.token_deadline(Now::system());
        let token_deadline = token_wait.map(|d| Instant::now() + d);
        let pending = !self.session.logged_in_once;
        let connected = self.source.is_some();
        tokio::select! {
            msg = next(&mut self.source), if connected => Wake::Frame(msg),
            _ = tokio::time::sleep_until(self.last_rx + heartbeat), if connected => Wake::Silent,
            Some(h) = self.handoffs.recv() => Wake::Handoff(h),
            _ = sleep_until(self.grace_until) => Wake::GraceOver,
            _ = sleep_until(token_deadline) => Wake::TokenTimer,
            _ = self.start.shed.wait(), if pending => Wake::Shed,
            _ = tokio::time::sleep_until(self.start.login_deadline), if pending => Wake::LoginTimeout,
            _ = self.stuck.wait() => Wake::Stuck,
            _ = shutdown.changed() => Wake::Shutdown,
        }
    }

    async fn on_wake(&mut self, wake: Wake, shared: &Shared) -> Option<Lost> {
        let id = self.session.id;
        match wake {
            Wake::Frame(msg) => {
                self.last_rx = Instant::now();
                self.on_frame(msg, shared)
            }
            Wake::Silent => {
                tracing::debug!(conn = id, "no heartbeat: connection dead");
                Some(Lost::Dropped)
            }
            Wake::Handoff(h) => {
                tracing::debug!(conn = id, "session resumed on a new connection");
                self.resumed(h).await;
                None
            }
            Wake::GraceOver => {
                tracing::debug!(conn = id, "not resumed within the grace period");
                Some(Lost::Ended)
            }
            Wake::TokenTimer => {
                self.session.token_timer(Now::system());
                None
            }
            Wake::Shed => {
                tracing::debug!(conn = id, "shed: had not logged in, and room was needed");
                Some(Lost::Ended)
            }
            Wake::LoginTimeout => {
                tracing::debug!(conn = id, "no login in time: closed");
                shared.metrics.login_timeouts.inc();
                Some(Lost::Ended)
            }
            Wake::Stuck => {
                tracing::warn!(
                    conn = id,
                    "outbound queue full: closing a connection that does not read"
                );
                Some(Lost::Ended)
            }
            Wake::Shutdown => Some(Lost::Ended),
        }
    }

    fn on_frame(&mut self, msg: Option<Result<Message, WsError>>, shared: &Shared) -> Option<Lost> {
        let id = self.session.id;
        match msg {
            Some(Ok(Message::Text(text))) => {
                tracing::trace!(conn = id, "recv {:.120}", text.as_str());
                let started = std::time::Instant::now();
                self.session.last_request = None;
                let open = self.session.on_text(text.as_str(), Now::system());
                if let Some(kind) = self.session.last_request {
                    let took = started.elapsed().as_secs_f64();
                    shared.metrics.request(kind, took);
                }
                (!open).then_some(Lost::Ended)
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => None,
            // Binary frames are not part of the protocol.
            Some(Ok(Message::Binary(_))) => Some(Lost::Ended),
            // A close frame is a goodbye (a destroyed engine, a closed tab): the user leaves
            // every room now, and the writer answers the close at once. Only a link that dies
            // without one is kept for the grace period.
            Some(Ok(Message::Close(_))) => {
                tracing::debug!(conn = id, "closed by the client: leaving its rooms now");
                Some(Lost::Ended)
            }
            None => Some(Lost::Dropped),
            // The socket broke: the engine may come back.
            Some(Err(
                WsError::Io(_)
                | WsError::ConnectionClosed
                | WsError::AlreadyClosed
                | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            )) => Some(Lost::Dropped),
            // A frame over the size limit, bad framing or bad UTF-8: the connection cannot go
            // on (the socket is closed, so the engine sees it at once).
            Some(Err(e)) => {
                tracing::debug!(conn = id, "protocol violation: {e}");
                Some(Lost::Ended)
            }
        }
    }

    /// A reconnected engine's socket: the writer answers its hello and replays what it missed.
    async fn resumed(&mut self, h: Handoff) {
        let hello = encode(&ServerMsg::Reply {
            id: h.id,
            code: ErrorCode::SUCCESS,
            message: String::new(),
            body: Some(self.session.hello_body(true)),
        });
        self.source = Some(h.source);
        self.grace_until = None;
        self.last_rx = Instant::now();
        let attach = Attach {
            sink: h.sink,
            hello,
            received: h.received,
        };
        let _ = self.attach.send(attach).await;
    }
}

async fn next(source: &mut Option<WsSource>) -> Option<Result<Message, WsError>> {
    match source.as_mut() {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
