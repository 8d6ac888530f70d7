//! Counters of what the server refused and why, for operators: served as Prometheus text at
//! `GET /metrics` on the signaling port (see `docs/security.md`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    /// Token logins refused because the token did not verify.
    pub auth_failures: AtomicU64,
    /// Token logins refused unchecked: their address or app failed too often.
    pub auth_throttled: AtomicU64,
    /// Connections closed at accept: too many from one address.
    pub refused_per_ip: AtomicU64,
    /// Connections closed at accept: no descriptor to spare and nobody to shed.
    pub refused_capacity: AtomicU64,
    /// WebSocket upgrades refused for their `Origin`.
    pub refused_origin: AtomicU64,
    /// Connections that had not logged in, closed to make room (budget or descriptors).
    pub shed: AtomicU64,
    /// Connections closed for not logging in within the login timeout.
    pub login_timeouts: AtomicU64,
    /// Media offers refused because the SFU's queue was full.
    pub sfu_busy: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self, open_connections: usize, pending: usize) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 8] = [
            (
                "zrooms_auth_failures_total",
                "token logins refused",
                &self.auth_failures,
            ),
            (
                "zrooms_auth_throttled_total",
                "token logins refused unchecked (too many failures)",
                &self.auth_throttled,
            ),
            (
                "zrooms_connections_refused_per_ip_total",
                "connections closed at accept: too many from one address",
                &self.refused_per_ip,
            ),
            (
                "zrooms_connections_refused_capacity_total",
                "connections closed at accept: no descriptor to spare",
                &self.refused_capacity,
            ),
            (
                "zrooms_connections_refused_origin_total",
                "WebSocket upgrades refused for their Origin",
                &self.refused_origin,
            ),
            (
                "zrooms_connections_shed_total",
                "connections that had not logged in, closed to make room",
                &self.shed,
            ),
            (
                "zrooms_login_timeouts_total",
                "connections closed for not logging in in time",
                &self.login_timeouts,
            ),
            (
                "zrooms_sfu_offers_refused_total",
                "media offers refused: the SFU's queue was full",
                &self.sfu_busy,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", c.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP zrooms_connections_open signaling connections open\n# TYPE zrooms_connections_open gauge\nzrooms_connections_open {open_connections}"
        );
        let _ = writeln!(
            out,
            "# HELP zrooms_connections_pending connections that have not logged into a room yet\n# TYPE zrooms_connections_pending gauge\nzrooms_connections_pending {pending}"
        );
        out
    }
}
