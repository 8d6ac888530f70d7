//! The engine: a tokio driver around the sans-IO [`Session`].
//!
//! [`Engine::start`] spawns one driver task and returns a handle plus the receiver of
//! [`EngineEvent`]s. The handle turns API calls into [`Command`]s with an [`OpId`]; the event
//! stream carries every outcome, including each call's completion, in one total order.
//!
//! Driver loop: drain `session.poll_output()` (connect, transmit, emit) until `Idle(deadline)`,
//! then `select!` over API calls, the connection attempt, inbound frames and the deadline, feed
//! the one that fired to the session with `now`, and drain again.

use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
pub use zrooms_session::{Command, OpId, OpValue, RoomConfig, SessionConfig, SessionEvent};
use zrooms_session::{Output, Session};

pub use zrooms_proto as proto;
pub use zrooms_session as session;

/// How long opening the signaling connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `ws://host:port` of the room server.
    pub server_url: String,
    pub session: SessionConfig,
}

/// Everything an engine reports, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    Session(SessionEvent),
}

enum Cmd {
    Api(OpId, Command),
    Destroy(oneshot::Sender<()>),
}

/// A handle to a running engine. Dropping it stops the driver as `destroy` would.
pub struct Engine {
    tx: mpsc::UnboundedSender<Cmd>,
    next_op: AtomicU64,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Connecting = Pin<Box<dyn Future<Output = Result<Ws, String>> + Send>>;

impl Engine {
    pub fn start(
        rt: &Handle,
        config: EngineConfig,
    ) -> (Engine, mpsc::UnboundedReceiver<EngineEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        rt.spawn(drive(config, rx, ev_tx));
        (
            Engine {
                tx,
                next_op: AtomicU64::new(1),
            },
            ev_rx,
        )
    }

    /// Submits an API call; its [`SessionEvent::Completed`] carries the returned id.
    pub fn call(&self, cmd: Command) -> OpId {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Cmd::Api(op, cmd));
        op
    }

    /// Leaves every room (telling the server) and stops the driver; no event follows.
    pub async fn destroy(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Cmd::Destroy(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

struct Driver {
    session: Session,
    url: String,
    events: mpsc::UnboundedSender<EngineEvent>,
    sink: Option<futures_util::stream::SplitSink<Ws, Message>>,
    source: Option<futures_util::stream::SplitStream<Ws>>,
    connecting: Option<Connecting>,
}

async fn drive(
    config: EngineConfig,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<EngineEvent>,
) {
    let mut d = Driver {
        session: Session::new(config.session),
        url: config.server_url,
        events,
        sink: None,
        source: None,
        connecting: None,
    };
    loop {
        let deadline = d.drain().await;
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Api(op, cmd)) => d.session.handle_command(Instant::now(), op, cmd),
                Some(Cmd::Destroy(ack)) => {
                    d.shutdown().await;
                    let _ = ack.send(());
                    return;
                }
                None => {
                    d.shutdown().await;
                    return;
                }
            },
            res = async { match d.connecting.as_mut() { Some(c) => c.await, None => std::future::pending().await } }, if d.connecting.is_some() => {
                d.connecting = None;
                match res {
                    Ok(ws) => {
                        let (sink, source) = ws.split();
                        d.sink = Some(sink);
                        d.source = Some(source);
                        d.session.handle_connected(Instant::now());
                    }
                    Err(e) => {
                        tracing::debug!("connect to {} failed: {e}", d.url);
                        d.session.handle_disconnected(Instant::now());
                    }
                }
            }
            msg = async { match d.source.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } }, if d.source.is_some() => {
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        match serde_json::from_str(text.as_str()) {
                            Ok(msg) => d.session.handle_server(Instant::now(), msg),
                            Err(e) => tracing::warn!("ignoring a server frame that does not parse: {e}"),
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => d.lost(),
                    Some(Ok(_)) => {}
                }
            }
            _ = sleep => d.session.handle_timeout(Instant::now()),
        }
    }
}

impl Driver {
    /// Carries out the session's outputs; returns its next deadline.
    async fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.session.poll_output() {
                Output::Connect => {
                    let url = self.url.clone();
                    self.connecting = Some(Box::pin(async move {
                        match tokio::time::timeout(
                            CONNECT_TIMEOUT,
                            tokio_tungstenite::connect_async(url),
                        )
                        .await
                        {
                            Ok(Ok((ws, _))) => Ok(ws),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("timed out".into()),
                        }
                    }));
                }
                Output::Transmit(frame) => {
                    let text = match serde_json::to_string(&frame) {
                        Ok(t) => t,
                        Err(_) => continue,
                    };
                    let sent = match &mut self.sink {
                        Some(sink) => sink.send(Message::text(text)).await.is_ok(),
                        None => false,
                    };
                    if !sent {
                        self.lost();
                    }
                }
                Output::Event(ev) => {
                    let _ = self.events.send(EngineEvent::Session(ev));
                }
                Output::Idle(deadline) => return deadline,
            }
        }
    }

    fn lost(&mut self) {
        self.sink = None;
        self.source = None;
        self.session.handle_disconnected(Instant::now());
    }

    /// Destroy: the session logs out of every room; those frames are flushed before closing.
    async fn shutdown(&mut self) {
        self.session.destroy();
        loop {
            match self.session.poll_output() {
                Output::Transmit(frame) => {
                    if let (Some(sink), Ok(text)) = (&mut self.sink, serde_json::to_string(&frame))
                    {
                        let _ = sink.send(Message::text(text)).await;
                    }
                }
                Output::Idle(_) => break,
                Output::Connect | Output::Event(_) => {}
            }
        }
        if let Some(mut sink) = self.sink.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        }
        self.source = None;
    }
}
