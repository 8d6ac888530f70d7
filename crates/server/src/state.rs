//! What the server's state is built from: connection ids, each connection's bounded outbound
//! queue, one-way flags, and the lock helper.
//!
//! The state itself: [`crate::app`] (an app's rooms and stream registry) and [`crate::room`]
//! (one room). No lock is held across an `.await`; frames are handed to connections with
//! `try_send`, never waited on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use zrooms_proto::wire::ServerMsg;

pub type ConnId = u64;

/// Locks a mutex, ignoring poisoning: the state under it stays consistent because nothing
/// panics while holding it, and a server must not die because one task did.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sending half of one connection's outbound queue.
#[derive(Clone, Debug)]
pub struct Outbound {
    pub conn: ConnId,
    tx: mpsc::Sender<Utf8Bytes>,
    stuck: Arc<Flag>,
}

/// A one-way flag a task can wait for (a stuck reader, a connection to shed).
#[derive(Debug, Default)]
pub struct Flag {
    flag: AtomicBool,
    notify: Notify,
}

impl Flag {
    pub fn raise(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub fn is_raised(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.flag.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Outbound {
    pub fn new(conn: ConnId, capacity: usize) -> (Self, mpsc::Receiver<Utf8Bytes>, Arc<Flag>) {
        let (tx, rx) = mpsc::channel(capacity);
        let stuck = Arc::new(Flag::default());
        (
            Outbound {
                conn,
                tx,
                stuck: stuck.clone(),
            },
            rx,
            stuck,
        )
    }

    /// Queues a frame. A connection whose queue is full is not keeping up: it is marked stuck
    /// and its task closes it, so it can never slow down the others.
    pub fn send(&self, frame: Utf8Bytes) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(frame) {
            self.stuck.raise();
        }
    }

    pub fn send_msg(&self, msg: &ServerMsg) {
        self.send(encode(msg));
    }
}

/// Serializes a server frame once; the result is shared by every recipient.
pub fn encode(msg: &ServerMsg) -> Utf8Bytes {
    match serde_json::to_string(msg) {
        Ok(s) => Utf8Bytes::from(s),
        // Serializing our own types cannot fail; an empty object is a harmless fallback.
        Err(_) => Utf8Bytes::from_static("{}"),
    }
}
