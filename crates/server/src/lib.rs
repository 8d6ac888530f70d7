//! The zrooms room server: WebSocket signaling for ZEGO-style multi-room apps.
//!
//! [`Server::bind`] listens and returns a handle with the bound address and a graceful
//! [`Server::shutdown`]. The accept loop runs one task per connection ([`transport`]), which
//! drives that engine's [`session`]; shared state is per app ([`app`]) and per room ([`room`],
//! each room the only owner of its state, behind its own lock). A ticker pushes each room's
//! online count at the configured interval. Time is read where events enter and passed in
//! ([`clock`]).
//!
//! Media (the SFU) and token authentication are separate concerns that plug in beside the
//! signaling: see `docs/architecture.md`.

pub mod app;
pub mod clock;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod metrics;
mod resume;
pub mod room;
mod session;
pub mod sfu;
pub mod state;
#[cfg(test)]
mod testing;
pub mod tls;
mod transport;
mod udp;
mod web;

pub use config::{AppConfig, ServerConfig};

use app::App;

use state::{lock, Flag};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Connections open at once, at most (fewer when the descriptor limit is lower).
const MAX_CONNECTIONS: usize = 50_000;
/// Descriptors kept free of connections: the SFU's socket, the listener, logs and files, and
/// the moment between accepting a connection and shedding another.
const FD_RESERVE: usize = 256;

pub(crate) struct Shared {
    pub config: ServerConfig,
    pub sfu: sfu::SfuHandle,
    pub apps: Mutex<HashMap<u32, Arc<App>>>,
    pub next_conn: AtomicU64,
    pub next_session: AtomicU64,
    pub per_ip: limits::PerIp,
    /// Live sessions by id, for engines that resume them.
    pub sessions: Mutex<HashMap<String, resume::Entry>>,
    /// Connections that have not logged into a room yet, oldest first.
    pub pending: limits::Pending,
    /// Failed token logins per source address.
    pub auth_failures: limits::AuthFailures,
    pub metrics: Arc<metrics::Metrics>,
    /// Signaling connections open now.
    pub open: AtomicUsize,
    /// Set when the port speaks TLS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Shared {
    pub(crate) fn new(config: ServerConfig, sfu: sfu::SfuHandle) -> Arc<Self> {
        Arc::new(Shared::unshared(config, sfu))
    }

    fn unshared(config: ServerConfig, sfu: sfu::SfuHandle) -> Self {
        Shared {
            config,
            metrics: Arc::clone(&sfu.metrics),
            sfu,
            apps: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            per_ip: limits::PerIp::default(),
            sessions: Mutex::new(HashMap::new()),
            pending: limits::Pending::default(),
            auth_failures: limits::AuthFailures::default(),
            open: AtomicUsize::new(0),
            tls: None,
        }
    }

    /// The OpenMetrics text of the server's metrics, gauges read now.
    pub(crate) fn render_metrics(&self) -> String {
        let apps: Vec<Arc<App>> = lock(&self.apps).values().cloned().collect();
        let (media_peers, media_legs) = self.sfu.peers_and_legs();
        let mut now = metrics::Snapshot {
            connections_open: self.open.load(Ordering::Relaxed),
            connections_pending: self.pending.len(),
            sessions: lock(&self.sessions).len(),
            apps: apps.len(),
            media_peers,
            media_legs,
            ..Default::default()
        };
        for app in &apps {
            let c = app.counts();
            now.rooms += c.rooms;
            now.members += c.members;
            now.streams += c.streams;
            now.players += c.players;
        }
        self.metrics.render(now)
    }
}

/// Compares two secrets in time that depends on their lengths only.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How many connections this process can hold: the descriptor limit (raised to its hard
/// maximum) less [`FD_RESERVE`], and at most [`MAX_CONNECTIONS`].
fn connection_capacity() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    let fds = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return MAX_CONNECTIONS;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    let fds = usize::try_from(fds).unwrap_or(usize::MAX);
    fds.saturating_sub(FD_RESERVE).clamp(16, MAX_CONNECTIONS)
}

/// A running server.
#[must_use = "dropping the handle leaves the server running; call shutdown()"]
pub struct Server {
    addr: SocketAddr,
    media_addr: SocketAddr,
    tls: bool,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and starts serving on the current runtime.
    /// A certificate or key that cannot be read or used is an error before anything listens.
    pub async fn bind(addr: SocketAddr, config: ServerConfig) -> std::io::Result<Server> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(tls::acceptor(cert, key).map_err(std::io::Error::other)?)
            }
            _ => None,
        };
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let media_addr = config.media_addr.unwrap_or_else(|| {
            let ip = if addr.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                addr.ip()
            };
            SocketAddr::new(ip, 0)
        });
        let (sfu, mut sfu_tasks) =
            sfu::start(media_addr, config.media_advertise, config.media_workers).await?;
        let media_addr = sfu.addr;
        let (tx, rx) = watch::channel(false);
        let secure = tls.is_some();
        let mut shared = Shared::unshared(config, sfu);
        shared.tls = tls;
        let task = tokio::spawn(async move {
            run(listener, Arc::new(shared), rx).await;
            sfu_tasks.abort_all();
        });
        Ok(Server {
            addr,
            media_addr,
            tls: secure,
            shutdown: tx,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SFU's UDP address.
    pub fn media_addr(&self) -> SocketAddr {
        self.media_addr
    }

    /// The signaling URL engines connect to.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}", self.addr)
    }

    /// Closes every connection (their users leave their rooms) and stops listening.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Serves `listener` (signaling, with `shared`'s SFU for media) until `shutdown` turns true.
async fn run(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let capacity = connection_capacity();
    let mut tasks = JoinSet::new();
    tasks.spawn(online_counts(shared.clone(), shutdown.clone()));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ip = peer.ip();
                if !shared
                    .per_ip
                    .admit(ip, shared.config.max_connections_per_ip)
                {
                    shared.metrics.refused_per_ip.inc();
                    tracing::debug!(%ip, "too many connections from one address: refused");
                    continue;
                }
                // At capacity, a connection that has not logged in makes room for this one;
                // with none to shed, the new one is closed at once.
                if shared.open.load(Ordering::Relaxed) >= capacity {
                    if shared.pending.shed_oldest() {
                        shared.metrics.shed.inc();
                    } else {
                        shared.metrics.refused_capacity.inc();
                        shared.per_ip.release(ip);
                        continue;
                    }
                }
                shared.open.fetch_add(1, Ordering::Relaxed);
                shared.metrics.connections.inc();
                let _ = stream.set_nodelay(true);
                let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                let shed = Arc::new(Flag::default());
                let dropped =
                    shared
                        .pending
                        .add(id, shed.clone(), shared.config.max_pending_connections);
                for _ in 0..dropped {
                    shared.metrics.shed.inc();
                }
                let shared = shared.clone();
                let rx = shutdown.clone();
                tasks.spawn(async move {
                    transport::serve(stream, ip, id, shed, shared.clone(), rx).await;
                    shared.pending.remove(id);
                    shared.per_ip.release(ip);
                    shared.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: shed a connection that has not logged
                // in, and back off a moment instead of spinning.
                tracing::warn!("accept failed: {e}");
                if shared.pending.shed_oldest() {
                    shared.metrics.shed.inc();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // Reap finished connection tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    // No new connections from here on; the open ones are told to reconnect (each session sees
    // the shutdown and its writer closes with 1012) and get `drain_timeout` to go.
    drop(listener);
    let open = shared.open.load(Ordering::Relaxed);
    tracing::info!(connections = open, "draining");
    let drained = tokio::time::timeout(shared.config.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let left = shared.open.load(Ordering::Relaxed);
        tracing::warn!(connections = left, "drain timeout: closing the rest");
    }
}

/// Pushes `roomOnlineUserCountUpdate` to every member of every room, every interval.
async fn online_counts(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(shared.config.online_count_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let apps: Vec<Arc<App>> = lock(&shared.apps).values().cloned().collect();
        for app in apps {
            for room in app.rooms() {
                room.push_online_count();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_whole() {
        assert!(super::ct_eq(b"abcd", b"abcd"));
        assert!(!super::ct_eq(b"abcd", b"abce"));
        assert!(!super::ct_eq(b"abcd", b"abc"));
        assert!(super::ct_eq(b"", b""));
    }
}
