//! What the server does and refuses, for operators: `GET /metrics` on the signaling port in
//! the OpenMetrics text format (Prometheus reads it), through `prometheus-client`.
//!
//! Counters and histograms are updated where things happen; gauges of the present (open
//! connections, sessions, rooms, members, streams, media peers and legs) are read from their
//! owners when scraped, so no second copy of that state is kept. Every name and what it
//! counts: `docs/operations.md` (Metrics).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

/// A label set of one fixed name and a value known at compile time.
type Label = [(&'static str, &'static str); 1];
/// Refused requests by ZEGO error code.
type CodeLabel = [(&'static str, u32); 1];

/// How long a request took the server, from its frame read to its reply queued (1 µs..~1 s).
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_001, 4.0, 11))
}

/// Loss fractions reported for media legs.
fn loss_histogram() -> Histogram {
    Histogram::new([0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
}

/// The present, read from its owners at each scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub connections_open: usize,
    pub connections_pending: usize,
    pub sessions: usize,
    pub apps: usize,
    pub rooms: usize,
    pub members: usize,
    pub streams: usize,
    pub players: usize,
    pub media_peers: usize,
    pub media_legs: usize,
}

/// The gauges a [`Snapshot`] fills.
#[derive(Default)]
struct Gauges {
    connections_open: Gauge,
    connections_pending: Gauge,
    sessions: Gauge,
    apps: Gauge,
    rooms: Gauge,
    members: Gauge,
    streams: Gauge,
    players: Gauge,
    media_peers: Gauge,
    media_legs: Gauge,
}

pub struct Metrics {
    registry: Registry,
    gauges: Gauges,
    /// Serializes scrapes: the gauges are set and encoded as one snapshot.
    scrape: Mutex<()>,
    /// Connections accepted (past the per-address and capacity checks).
    pub connections: Counter,
    /// Token logins refused because the token did not verify.
    pub auth_failures: Counter,
    /// Token logins refused unchecked: their address or app failed too often.
    pub auth_throttled: Counter,
    /// Connections closed at accept: too many from one address.
    pub refused_per_ip: Counter,
    /// Connections closed at accept: no descriptor to spare and nobody to shed.
    pub refused_capacity: Counter,
    /// WebSocket upgrades refused for their `Origin`.
    pub refused_origin: Counter,
    /// Connections that had not logged in, closed to make room (budget or descriptors).
    pub shed: Counter,
    /// Connections closed for not logging in within the login timeout.
    pub login_timeouts: Counter,
    /// Media offers refused because the SFU's queue was full.
    pub sfu_busy: Counter,
    /// Requests answered with an error, by ZEGO code (limits, rates, privileges, bad input).
    pub refusals: Family<CodeLabel, Counter>,
    /// Server time per request, by request type (`login`: login latency; `broadcast`,
    /// `barrage`, `custom_command`: the fan-out to every recipient's queue).
    pub requests: Family<Label, Histogram, fn() -> Histogram>,
    /// Media datagrams and bytes, `direction` in (from peers) or out (to peers).
    pub media_packets: Family<Label, Counter>,
    pub media_bytes: Family<Label, Counter>,
    /// Loss fractions in receivers' reports: `to_players` (RTCP from players about what the
    /// SFU sent), `from_publishers` (what the SFU lost of a publisher's packets).
    pub media_loss: Family<Label, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    // size: one registration per metric, each with its help text
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("zrooms");
        let g = Gauges::default();
        let gauges: [(&str, &str, &Gauge); 10] = [
            (
                "connections_open",
                "signaling connections open",
                &g.connections_open,
            ),
            (
                "connections_pending",
                "connections that have not logged into a room yet",
                &g.connections_pending,
            ),
            (
                "sessions",
                "engine sessions, connected or parked for a resume",
                &g.sessions,
            ),
            ("apps", "apps with state on this server", &g.apps),
            ("rooms", "rooms with at least one member", &g.rooms),
            ("room_members", "members of rooms, all rooms", &g.members),
            ("streams", "streams published", &g.streams),
            (
                "stream_players",
                "players of streams (signaling)",
                &g.players,
            ),
            ("media_peers", "media peer connections", &g.media_peers),
            (
                "media_legs",
                "tracks the SFU forwards to players",
                &g.media_legs,
            ),
        ];
        for (name, help, gauge) in gauges {
            r.register(name, help, gauge.clone());
        }
        let m = Metrics {
            registry: Registry::default(),
            gauges: Gauges::default(),
            scrape: Mutex::new(()),
            connections: Counter::default(),
            auth_failures: Counter::default(),
            auth_throttled: Counter::default(),
            refused_per_ip: Counter::default(),
            refused_capacity: Counter::default(),
            refused_origin: Counter::default(),
            shed: Counter::default(),
            login_timeouts: Counter::default(),
            sfu_busy: Counter::default(),
            refusals: Family::default(),
            requests: Family::new_with_constructor(request_histogram),
            media_packets: Family::default(),
            media_bytes: Family::default(),
            media_loss: Family::new_with_constructor(loss_histogram),
        };
        let counters: [(&str, &str, &Counter); 9] = [
            ("connections", "connections accepted", &m.connections),
            ("auth_failures", "token logins refused", &m.auth_failures),
            (
                "auth_throttled",
                "token logins refused unchecked (too many failures)",
                &m.auth_throttled,
            ),
            (
                "connections_refused_per_ip",
                "connections closed at accept: too many from one address",
                &m.refused_per_ip,
            ),
            (
                "connections_refused_capacity",
                "connections closed at accept: no descriptor to spare",
                &m.refused_capacity,
            ),
            (
                "connections_refused_origin",
                "WebSocket upgrades refused for their Origin",
                &m.refused_origin,
            ),
            (
                "connections_shed",
                "connections that had not logged in, closed to make room",
                &m.shed,
            ),
            (
                "login_timeouts",
                "connections closed for not logging in in time",
                &m.login_timeouts,
            ),
            (
                "sfu_offers_refused",
                "media offers refused: the SFU's queue was full",
                &m.sfu_busy,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "requests_refused",
            "requests answered with an error, by ZEGO error code",
            m.refusals.clone(),
        );
        r.register(
            "request_seconds",
            "server time per request, from its frame to its reply (fan-out included)",
            m.requests.clone(),
        );
        r.register(
            "media_packets",
            "media datagrams, in from peers and out to peers",
            m.media_packets.clone(),
        );
        r.register(
            "media_bytes",
            "media bytes, in from peers and out to peers",
            m.media_bytes.clone(),
        );
        r.register(
            "media_loss_ratio",
            "loss fractions reported for media legs",
            m.media_loss.clone(),
        );
        Metrics {
            registry: r,
            gauges: g,
            ..m
        }
    }

    /// A request refused with `code`.
    pub fn refused(&self, code: u32) {
        self.refusals.get_or_create(&[("code", code)]).inc();
    }

    /// A request of type `kind` took `seconds`.
    pub fn request(&self, kind: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&[("request", kind)])
            .observe(seconds);
    }

    /// The packet and byte counters of one direction ("in" or "out"), for a worker to hold.
    pub fn media_counters(&self, direction: &'static str) -> (Counter, Counter) {
        let label = [("direction", direction)];
        let packets = self.media_packets.get_or_create(&label).clone();
        let bytes = self.media_bytes.get_or_create(&label).clone();
        (packets, bytes)
    }

    /// A loss fraction reported for a leg, `direction` "to_players" or "from_publishers".
    pub fn loss(&self, direction: &'static str, fraction: f32) {
        let label = [("direction", direction)];
        let fraction = f64::from(fraction).clamp(0.0, 1.0);
        self.media_loss.get_or_create(&label).observe(fraction);
    }

    /// The OpenMetrics text of everything, with the gauges set from `now`.
    pub fn render(&self, now: Snapshot) -> String {
        let _one = crate::state::lock(&self.scrape);
        let g = &self.gauges;
        let set = |gauge: &Gauge, v: usize| {
            gauge.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&g.connections_open, now.connections_open);
        set(&g.connections_pending, now.connections_pending);
        set(&g.sessions, now.sessions);
        set(&g.apps, now.apps);
        set(&g.rooms, now.rooms);
        set(&g.members, now.members);
        set(&g.streams, now.streams);
        set(&g.players, now.players);
        set(&g.media_peers, now.media_peers);
        set(&g.media_legs, now.media_legs);
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, line_start: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line_start} missing from {text}"))
    }

    #[test]
    fn every_kind_renders_in_openmetrics_text() {
        let m = Metrics::new();
        m.auth_failures.inc();
        m.refused(1_002_034);
        m.refused(1_002_034);
        m.request("login", 0.000_3);
        let (packets, bytes) = m.media_counters("in");
        packets.inc_by(10);
        bytes.inc_by(1_000);
        m.loss("to_players", 0.02);
        let text = m.render(Snapshot {
            rooms: 3,
            members: 7,
            media_legs: 12,
            ..Snapshot::default()
        });
        assert_eq!(value(&text, "zrooms_auth_failures_total "), 1.0);
        assert_eq!(value(&text, "zrooms_connections_total "), 0.0);
        assert_eq!(
            value(&text, "zrooms_requests_refused_total{code=\"1002034\"} "),
            2.0
        );
        assert_eq!(value(&text, "zrooms_rooms "), 3.0);
        assert_eq!(value(&text, "zrooms_room_members "), 7.0);
        assert_eq!(value(&text, "zrooms_media_legs "), 12.0);
        assert_eq!(
            value(&text, "zrooms_request_seconds_count{request=\"login\"} "),
            1.0
        );
        assert_eq!(
            value(&text, "zrooms_media_packets_total{direction=\"in\"} "),
            10.0
        );
        assert_eq!(
            value(&text, "zrooms_media_bytes_total{direction=\"in\"} "),
            1000.0
        );
        assert_eq!(
            value(
                &text,
                "zrooms_media_loss_ratio_bucket{le=\"0.02\",direction=\"to_players\"} "
            ),
            1.0
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
