//! Several forwarding workers: what they tell each other.
//!
//! Each worker owns the peers placed on it ([`worker_of`]: by connection) and a socket of its
//! own bound to the one media port (`SO_REUSEPORT`), so clients see a single address however
//! many workers there are. The kernel hands each client's datagrams (its 4-tuple) to one of
//! the sockets; a worker that receives a datagram for a peer another worker owns passes it on
//! ([`Hop::Datagram`]). A published packet reaches the players on the publisher's worker
//! directly and every other worker that has players of the stream once ([`Hop::Rtp`], the
//! payload shared, not copied); a keyframe request for a publisher elsewhere is passed to the
//! others ([`Hop::Keyframe`]).
//!
//! What a worker needs to know of the others travels as [`Control`] messages: which workers
//! have players of which (app, stream, kind) ([`Control::Interest`], sent when the set of
//! keys with players on a worker changes) and which worker learned which client address
//! ([`Control::Addr`], bounded by each peer's address cap). ICE ufrags are shared in one map
//! consulted only for STUN from an address no worker has claimed yet.
//!
//! Queues: each worker reads relayed packets from a bounded queue of [`HOP_QUEUE`], handed-over
//! datagrams and keyframe requests from another of the same size (so a client's handshake and
//! media never wait behind a backlog of relayed packets), and control messages
//! from one of [`CONTROL_QUEUE`]. A hop that finds its queue full is dropped and counted (a
//! packet lost on the way: the player's NACK or keyframe request recovers as from network
//! loss), so a stalled worker never holds the others. Control messages are bounded by the
//! commands that cause them; one that finds the queue full is dropped and logged, like a
//! command (a missed interest leaves one worker's players without a remote stream until the
//! next route change; a missed address leaves that address's media dropped at the receiving
//! worker while its STUN still reaches the owner).

use super::forward::stun_local_ufrag;
use super::peers::{RouteKey, Sfu};
use crate::state::ConnId;
use std::collections::HashMap;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, Pt};
use str0m::rtp::{ExtensionValues, Ssrc};
use tokio::sync::mpsc;
use zrooms_proto::StreamId;

/// Most workers one SFU runs (one bit each in an interest mask).
pub const MAX_WORKERS: usize = 64;
/// Hops waiting for one worker; beyond it the newest is dropped.
pub const HOP_QUEUE: usize = 8192;
/// Control messages waiting for one worker.
pub const CONTROL_QUEUE: usize = 65_536;

/// The worker that owns a connection's peer.
pub fn worker_of(conn: ConnId, workers: usize) -> usize {
    (conn % workers.max(1) as u64) as usize
}

/// A published packet as every player leg needs it, shared between workers.
pub(super) struct Relay {
    pub key: RouteKey,
    pub origin: ConnId,
    pub ssrc: Ssrc,
    pub pt: Pt,
    pub params: PayloadParams,
    pub seq: u64,
    pub ts: u32,
    pub at: Instant,
    pub marker: bool,
    pub ext_vals: ExtensionValues,
    pub payload: Arc<[u8]>,
}

/// Work one worker hands another.
pub(super) enum Hop {
    /// A datagram that arrived on this worker's socket (`at`) for a peer the receiver owns.
    Datagram {
        source: SocketAddr,
        data: Vec<u8>,
        at: Instant,
    },
    /// A published packet for the receiver's players of its stream.
    Rtp(Arc<Relay>),
    /// A player wants a keyframe of (app, stream): the receiver asks its publisher, if it
    /// has it.
    Keyframe(u32, StreamId, KeyframeRequestKind),
}

/// What one worker tells the others about itself.
#[derive(Clone, Debug)]
pub(super) enum Control {
    /// Worker `from` now has (`on`) or no longer has players of `key`.
    Interest {
        from: usize,
        key: RouteKey,
        on: bool,
    },
    /// Worker `from` owns (`on`) or forgot the peer that sends from `addr`.
    Addr {
        from: usize,
        addr: SocketAddr,
        on: bool,
    },
}

/// One worker's view of the others: their queues and the shared ufrag index.
#[derive(Clone)]
pub(super) struct Mesh {
    pub me: usize,
    hops: Arc<[mpsc::Sender<Hop>]>,
    /// Datagrams and keyframe requests: never behind a backlog of relayed packets.
    urgent: Arc<[mpsc::Sender<Hop>]>,
    controls: Arc<[mpsc::Sender<Control>]>,
    /// Each peer's local ICE ufrag → the worker that owns it.
    ufrags: Arc<Mutex<HashMap<String, usize>>>,
    dropped: Arc<AtomicU64>,
}

/// The receiving ends of one worker's queues.
pub(super) struct Inbox {
    pub hops: mpsc::Receiver<Hop>,
    pub urgent: mpsc::Receiver<Hop>,
    pub controls: mpsc::Receiver<Control>,
}

impl Hop {
    /// When what it carries reached the SFU: its age is how far behind the receiver is.
    pub fn at(&self) -> Option<Instant> {
        match self {
            Hop::Datagram { at, .. } => Some(*at),
            Hop::Rtp(relay) => Some(relay.at),
            Hop::Keyframe(..) => None,
        }
    }
}

impl Mesh {
    /// The meshes and inboxes of `n` workers, index `i` for worker `i`.
    pub fn new(n: usize) -> Vec<(Mesh, Inbox)> {
        let (hop_tx, hop_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(HOP_QUEUE)).unzip();
        let (urg_tx, urg_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(HOP_QUEUE)).unzip();
        let (ctl_tx, ctl_rx): (Vec<_>, Vec<_>) =
            (0..n).map(|_| mpsc::channel(CONTROL_QUEUE)).unzip();
        let hops: Arc<[_]> = hop_tx.into();
        let urgent: Arc<[_]> = urg_tx.into();
        let controls: Arc<[_]> = ctl_tx.into();
        let ufrags = Arc::default();
        let dropped = Arc::default();
        hop_rx
            .into_iter()
            .zip(urg_rx)
            .zip(ctl_rx)
            .enumerate()
            .map(|(me, ((hops_rx, urgent_rx), controls_rx))| {
                let mesh = Mesh {
                    me,
                    hops: Arc::clone(&hops),
                    urgent: Arc::clone(&urgent),
                    controls: Arc::clone(&controls),
                    ufrags: Arc::clone(&ufrags),
                    dropped: Arc::clone(&dropped),
                };
                let inbox = Inbox {
                    hops: hops_rx,
                    urgent: urgent_rx,
                    controls: controls_rx,
                };
                (mesh, inbox)
            })
            .collect()
    }

    pub fn workers(&self) -> usize {
        self.hops.len()
    }

    /// Hands `hop` to worker `to`; dropped and counted when its queue is full (logged at the
    /// 1st, 2nd, 4th, 8th… drop).
    pub fn hop(&self, to: usize, hop: Hop) {
        let queues = match hop {
            Hop::Rtp(_) => &self.hops,
            Hop::Datagram { .. } | Hop::Keyframe(..) => &self.urgent,
        };
        if let Some(tx) = queues.get(to) {
            if tx.try_send(hop).is_err() {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        worker = to,
                        dropped = n,
                        "SFU worker queue full: hop dropped"
                    );
                }
            }
        }
    }

    /// Tells every other worker.
    pub fn tell(&self, msg: Control) {
        for (i, tx) in self.controls.iter().enumerate() {
            if i != self.me && tx.try_send(msg.clone()).is_err() {
                tracing::warn!(worker = i, "SFU control queue full: message dropped");
            }
        }
    }

    /// Every other worker.
    pub fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.workers()).filter(move |i| *i != self.me)
    }

    pub fn set_ufrag(&self, ufrag: &str, owner: Option<usize>) {
        let mut map = crate::state::lock(&self.ufrags);
        match owner {
            Some(w) => map.insert(ufrag.to_owned(), w),
            None => map.remove(ufrag),
        };
    }

    pub fn ufrag_owner(&self, ufrag: &str) -> Option<usize> {
        crate::state::lock(&self.ufrags).get(ufrag).copied()
    }
}

/// The worker side of the SFU core: what it does with what other workers send and tell.
impl Sfu {
    /// Work another worker handed over.
    pub fn hop(&mut self, hop: Hop, now: Instant) {
        match hop {
            Hop::Datagram { source, data, .. } => self.receive(source, &data, now, false),
            Hop::Rtp(relay) => self.deliver(&relay),
            Hop::Keyframe(app, stream, kind) => {
                self.request_keyframe(app, &stream, kind, now, false)
            }
        }
    }

    /// What another worker says about itself.
    pub fn control(&mut self, msg: Control) {
        match msg {
            Control::Interest { from, key, on } => {
                let bit = 1u64 << (from % 64);
                let mask = self.interest.entry(key.clone()).or_default();
                if on {
                    *mask |= bit;
                } else {
                    *mask &= !bit;
                    if *mask == 0 {
                        self.interest.remove(&key);
                    }
                }
            }
            Control::Addr { from, addr, on } => {
                if on {
                    self.remote_addrs.insert(addr, from);
                } else if self.remote_addrs.get(&addr) == Some(&from) {
                    self.remote_addrs.remove(&addr);
                }
            }
        }
    }

    /// Tells the other workers which keys this one now has players of (after the routes
    /// changed). Nothing without other workers.
    pub(super) fn announce(&mut self) {
        let Some(mesh) = &self.mesh else {
            return;
        };
        let routes = self
            .routes
            .take()
            .unwrap_or_else(|| super::forward::routes(&self.peers));
        let now: HashSet<RouteKey> = routes.keys().cloned().collect();
        for key in now.difference(&self.announced) {
            let (from, key, on) = (mesh.me, key.clone(), true);
            mesh.tell(Control::Interest { from, key, on });
        }
        for key in self.announced.difference(&now) {
            let (from, key, on) = (mesh.me, key.clone(), false);
            mesh.tell(Control::Interest { from, key, on });
        }
        self.announced = now;
        self.routes = Some(routes);
    }

    /// Passes a datagram that no peer of this worker knows to the worker that owns its
    /// sender's peer: by the address another worker claimed, or for STUN by the ufrag it
    /// names. True when passed on.
    pub(super) fn pass_on(&mut self, source: SocketAddr, data: &[u8], at: Instant) -> bool {
        let Some(mesh) = &self.mesh else {
            return false;
        };
        let owner = self.remote_addrs.get(&source).copied().or_else(|| {
            let ufrag = stun_local_ufrag(data)?;
            if self.by_ufrag.contains_key(ufrag) {
                return None;
            }
            mesh.ufrag_owner(ufrag)
        });
        match owner {
            Some(w) if w != mesh.me => {
                let data = data.to_vec();
                mesh.hop(w, Hop::Datagram { source, data, at });
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
