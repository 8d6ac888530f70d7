//! Sessions that outlive their connection.
//!
//! Every frame the server sends to a session goes through its outbound queue to a writer task,
//! which keeps it in a replay window until the engine acknowledges it (`ping.received`). When
//! the connection drops, the session parks for the app's grace period: its user stays in its
//! rooms, its streams stay published, frames keep collecting. An engine that reconnects within
//! the grace period says hello with `resume {session_id, key, received}`; its new socket is
//! handed to the parked session's task, the writer sends the hello's reply and then every frame
//! after `received`, and the session goes on as if nothing happened. Requests the engine sends
//! again (it cannot know which were processed) are recognized by their ids and skipped; their
//! replies were among the replayed frames.

use crate::state::lock;
use crate::Shared;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::SinkExt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use zrooms_proto::wire::Resume;

pub(crate) type WsSink = SplitSink<WebSocketStream<crate::web::WsIo>, Message>;
pub(crate) type WsSource = SplitStream<WebSocketStream<crate::web::WsIo>>;

/// The frames of one session not yet acknowledged, with their position in the session.
pub(crate) struct Replay {
    frames: VecDeque<Utf8Bytes>,
    /// Position of `frames[0]` among all frames of the session.
    start: u64,
    cap: usize,
    /// Bytes in `frames`, and at most how many.
    bytes: usize,
    max_bytes: usize,
    /// Whether frames are kept at all: only once the session has logged into a room. Before,
    /// a dropped connection ends the session (there is nothing to resume), so a connection that
    /// never logs in costs no window, however much it is answered.
    keeping: bool,
}

impl Replay {
    pub fn new(cap: usize, max_bytes: usize) -> Self {
        Replay {
            frames: VecDeque::new(),
            start: 0,
            cap: cap.max(1),
            bytes: 0,
            max_bytes,
            keeping: false,
        }
    }

    /// From now on frames are kept until acknowledged.
    pub fn keep(&mut self) {
        self.keeping = true;
    }

    fn push(&mut self, frame: Utf8Bytes) {
        if !self.keeping {
            self.start += 1;
            return;
        }
        self.bytes += frame.len();
        self.frames.push_back(frame);
        // The engine is far behind (in frames or in bytes): what it has not acknowledged is
        // forgotten, and a resume from before this point is no longer possible (the engine
        // logs in afresh). The newest frame always stays.
        while self.frames.len() > 1 && (self.frames.len() > self.cap || self.bytes > self.max_bytes)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) -> bool {
        match self.frames.pop_front() {
            Some(f) => {
                self.bytes -= f.len();
                self.start += 1;
                true
            }
            None => false,
        }
    }

    /// The engine has received the first `received` frames.
    pub fn ack(&mut self, received: u64) {
        while self.start < received && self.pop_front() {}
    }

    /// Bytes held for the engine now.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether an engine that received `received` frames can be given the rest.
    pub fn can_resume(&self, received: u64) -> bool {
        received >= self.start && received <= self.start + self.frames.len() as u64
    }

    fn since(&self, received: u64) -> Option<Vec<Utf8Bytes>> {
        if !self.can_resume(received) {
            return None;
        }
        let skip = usize::try_from(received - self.start).ok()?;
        Some(self.frames.iter().skip(skip).cloned().collect())
    }
}

/// A new socket for the writer: first `hello` (the resume's reply), then every frame after
/// `received`.
pub(crate) struct Attach {
    pub sink: WsSink,
    pub hello: Utf8Bytes,
    pub received: u64,
}

/// Drains a session's outbound queue into the replay window and, while a socket is attached,
/// into the socket. Ends when the queue's senders are all gone, closing the socket: with code
/// 1012 (service restart) when the server is shutting down (`shutdown` true), so the engine
/// knows to reconnect rather than that it was sent away.
pub(crate) async fn writer(
    mut rx: mpsc::Receiver<Utf8Bytes>,
    replay: Arc<Mutex<Replay>>,
    mut attach: mpsc::Receiver<Attach>,
    mut sink: Option<WsSink>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut attachable = true;
    loop {
        tokio::select! {
            biased;
            a = attach.recv(), if attachable => {
                let Some(a) = a else {
                    attachable = false;
                    continue;
                };
                if let Some(mut old) = sink.take() {
                    let _ = old.close().await;
                }
                let missed = lock(&replay).since(a.received);
                let mut s = a.sink;
                // The window moved past `received` since the handoff was accepted: close, and the
                // engine's next attempt starts a new session.
                let Some(missed) = missed else {
                    let _ = s.close().await;
                    continue;
                };
                let mut ok = s.send(Message::Text(a.hello)).await.is_ok();
                for f in missed {
                    if !ok {
                        break;
                    }
                    ok = s.send(Message::Text(f)).await.is_ok();
                }
                sink = ok.then_some(s);
            }
            f = rx.recv() => {
                let Some(f) = f else { break };
                lock(&replay).push(f.clone());
                tracing::trace!("send {:.120}", f.as_str());
                if let Some(s) = &mut sink {
                    if let Err(e) = s.send(Message::Text(f)).await {
                        tracing::debug!("send failed: {e}");
                        // The session's task sees the socket end on its side.
                        sink = None;
                    }
                }
            }
        }
    }
    if let Some(mut s) = sink {
        if *shutdown.borrow() {
            let restart = CloseFrame {
                code: CloseCode::Restart,
                reason: "server shutting down: reconnect".into(),
            };
            let _ = s.send(Message::Close(Some(restart))).await;
        }
        let _ = s.close().await;
    }
}

/// A reconnecting engine's socket, for the session it resumes.
pub(crate) struct Handoff {
    pub sink: WsSink,
    pub source: WsSource,
    /// The resume hello's request id.
    pub id: u64,
    pub received: u64,
}

/// What the registry knows of a live session.
pub(crate) struct Entry {
    pub key: String,
    pub app_id: u32,
    pub replay: Arc<Mutex<Replay>>,
    pub handoff: mpsc::Sender<Handoff>,
}

/// Hands a reconnecting socket to the session it names, if that session is alive, the key
/// matches and the frames it missed are still in the window. Gives the socket back otherwise.
pub(crate) fn handoff(
    shared: &Shared,
    app_id: u32,
    resume: &Resume,
    id: u64,
    sink: WsSink,
    source: WsSource,
) -> Result<(), (WsSink, WsSource)> {
    let sessions = lock(&shared.sessions);
    let Some(entry) = sessions
        .get(&resume.session_id)
        .filter(|e| !e.key.is_empty())
    else {
        return Err((sink, source));
    };
    let same_key = crate::ct_eq(entry.key.as_bytes(), resume.key.as_bytes());
    if !same_key || entry.app_id != app_id || !lock(&entry.replay).can_resume(resume.received) {
        return Err((sink, source));
    }
    entry
        .handoff
        .try_send(Handoff {
            sink,
            source,
            id,
            received: resume.received,
        })
        .map_err(|e| {
            let h = e.into_inner();
            (h.sink, h.source)
        })
}

/// A random resume key (128 bits, hex).
pub(crate) fn new_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: no key anyone could present (resume is then impossible).
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window() {
        let mut r = Replay::new(3, 1 << 20);
        r.keep();
        for i in 0..3 {
            r.push(Utf8Bytes::from(i.to_string()));
        }
        assert_eq!(
            r.since(1).unwrap(),
            vec![Utf8Bytes::from("1"), Utf8Bytes::from("2")]
        );
        assert!(
            r.since(4).is_none(),
            "cannot have received more than was sent"
        );
        r.push(Utf8Bytes::from("3"));
        assert!(!r.can_resume(0), "frame 0 fell out of the window");
        assert_eq!(r.since(4).unwrap().len(), 0);
        r.ack(3);
        assert_eq!(r.since(3).unwrap(), vec![Utf8Bytes::from("3")]);
        assert!(!r.can_resume(2));
    }

    #[test]
    fn replay_window_is_bounded_in_bytes() {
        let mut r = Replay::new(4096, 10_000);
        r.keep();
        let big = Utf8Bytes::from("x".repeat(3_000));
        for _ in 0..10 {
            r.push(big.clone());
        }
        assert!(r.held_bytes() <= 10_000, "{} bytes held", r.held_bytes());
        assert!(!r.can_resume(0), "the oldest frames were forgotten");
        assert!(r.can_resume(10 - 3), "the newest three frames are kept");
        // A single frame over the cap still goes through (the newest stays).
        r.push(Utf8Bytes::from("y".repeat(20_000)));
        assert!(r.can_resume(10));
        r.ack(11);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn nothing_is_kept_before_a_login() {
        let mut r = Replay::new(4096, 1 << 20);
        for _ in 0..100 {
            r.push(Utf8Bytes::from("x".repeat(1000)));
        }
        assert_eq!(r.held_bytes(), 0);
        assert!(r.can_resume(100) && !r.can_resume(99));
        r.keep();
        r.push(Utf8Bytes::from("y"));
        assert_eq!(r.since(100).unwrap(), vec![Utf8Bytes::from("y")]);
    }
}
