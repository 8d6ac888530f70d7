//! Signaling scenarios, each run against the room server and against the WebSocket baseline.
//!
//! On the baseline a "login" is an echo round trip and a broadcast is a `B…` frame relayed to
//! every other connection: the least any server must do for the same traffic.

use crate::client::{pct, room_id, Client, Server, Window};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use zrooms_proto::wire::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Zrooms,
    Baseline,
}

/// A connection ready for the scenario: logged into `rooms` (room server) or registered with
/// one echo (baseline).
async fn join(target: Target, url: &str, uid: &str, rooms: &[String]) -> Result<Client, String> {
    match target {
        Target::Zrooms => {
            let mut c = Client::connect(url).await?;
            for r in rooms {
                c.login(r, uid).await?;
            }
            Ok(c)
        }
        Target::Baseline => {
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .map_err(|e| e.to_string())?;
            let mut c = Client::from_ws(ws);
            c.echo(uid).await?;
            Ok(c)
        }
    }
}

impl Client {
    /// Baseline round trip: sends `text` and waits for it to come back.
    pub async fn echo(&mut self, text: &str) -> Result<(), String> {
        self.ws
            .send(Message::text(format!("E{text}")))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().starts_with('E') => return Ok(()),
                Some(Ok(_)) => {}
                _ => return Err("connection closed".into()),
            }
        }
    }
}

/// `n` receivers `r0…` in `room`, joining at 180 a second (under ZEGO's 200 logins a second
/// per room).
async fn join_many(
    target: Target,
    url: &str,
    n: u32,
    room: &[String],
) -> Result<Vec<Client>, String> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / 180.0));
    // A stall is not made up with a burst: that would pass the room's 200 logins/s.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        tick.tick().await;
        out.push(join(target, url, &format!("r{i}"), room).await?);
    }
    Ok(out)
}

/// The send times (ms since `base`) carried by one received frame.
fn stamps(target: Target, text: &str) -> Vec<f64> {
    match target {
        Target::Zrooms => match serde_json::from_str(text) {
            Ok(ServerMsg::Broadcast { messages, .. }) => messages
                .iter()
                .filter_map(|m| m.message.parse().ok())
                .collect(),
            _ => Vec::new(),
        },
        Target::Baseline => text
            .strip_prefix('B')
            .and_then(|s| s.parse().ok())
            .into_iter()
            .collect(),
    }
}

pub struct Latency {
    pub n: usize,
    pub failed: u32,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub cpu_s: f64,
    pub wall_s: f64,
    pub rss_kib: u64,
}

fn summarize(mut lat: Vec<f64>, failed: u32, usage: (f64, f64, u64)) -> Latency {
    Latency {
        n: lat.len(),
        failed,
        p50: pct(&mut lat, 50.0),
        p95: pct(&mut lat, 95.0),
        p99: pct(&mut lat, 99.0),
        cpu_s: usage.0,
        wall_s: usage.1,
        rss_kib: usage.2,
    }
}

/// Starts `count` joins at `rate` a second, each `join(i, url)` giving its connection and the
/// latencies it measured; the connections stay open until all joins are done. Returns the
/// latencies, the failures, the server's usage over the joins (read `settle` after the last)
/// and the connections.
async fn paced_joins<F, Fut>(
    server: &Server,
    count: u32,
    rate: u32,
    settle: Duration,
    join: F,
) -> (Vec<f64>, u32, (f64, f64, u64), Vec<Client>)
where
    F: Fn(u32, String) -> Fut,
    Fut: std::future::Future<Output = Result<(Client, Vec<f64>), String>> + Send + 'static,
{
    let lat = Arc::new(Mutex::new(Vec::with_capacity(count as usize)));
    let failed = Arc::new(AtomicU32::new(0));
    let (keep_tx, mut keep_rx) = mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let window = Window::open(server);
    let mut tasks = Vec::new();
    for i in 0..count {
        tick.tick().await;
        let (lat, failed, keep) = (lat.clone(), failed.clone(), keep_tx.clone());
        let fut = join(i, server.url.clone());
        tasks.push(tokio::spawn(async move {
            match fut.await {
                Ok((c, took)) => {
                    if let Ok(mut l) = lat.lock() {
                        l.extend(took);
                    }
                    let _ = keep.send(c);
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(settle).await;
    let usage = window.close(server);
    drop(keep_tx);
    let mut kept = Vec::new();
    while let Ok(c) = keep_rx.try_recv() {
        kept.push(c);
    }
    let lat = lat
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    (lat, failed.load(Ordering::Relaxed), usage, kept)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `rate` new users a second for `seconds` join one room; each join's latency (login request
/// to reply; an echo on the baseline) after the connection is open. They stay connected.
pub async fn login(target: Target, server: &Server, rate: u32, seconds: u32) -> Latency {
    let (lat, failed, usage, _kept) = paced_joins(
        server,
        rate * seconds,
        rate,
        Duration::ZERO,
        move |i, url| async move {
            match target {
                Target::Zrooms => {
                    let mut c = Client::connect(&url).await?;
                    let t0 = Instant::now();
                    c.login("bench-login", &format!("u{i}")).await?;
                    Ok((c, vec![ms(t0.elapsed())]))
                }
                Target::Baseline => {
                    let (ws, _) = tokio_tungstenite::connect_async(&url)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut c = Client::from_ws(ws);
                    let t0 = Instant::now();
                    c.echo(&format!("u{i}")).await?;
                    Ok((c, vec![ms(t0.elapsed())]))
                }
            }
        },
    )
    .await;
    summarize(lat, failed, usage)
}

/// `receivers` users in one room; `messages` broadcasts at `rate` a second (on the room server
/// from enough senders that none passes ZEGO's 2 a second per user); latency from send to each
/// receipt.
pub async fn fanout(
    target: Target,
    server: &Server,
    receivers: u32,
    messages: u32,
    rate: u32,
) -> Result<Latency, String> {
    let room = vec!["bench-fanout".to_string()];
    let base = Instant::now();
    let readers = join_many(target, &server.url, receivers, &room).await?;
    let n_senders = match target {
        Target::Zrooms => rate.div_ceil(2).max(1),
        Target::Baseline => 1,
    };
    let mut senders = Vec::new();
    for i in 0..n_senders {
        senders.push(join(target, &server.url, &format!("s{i}"), &room).await?);
    }
    let window = Window::open(server);
    let handles = spawn_readers(target, readers, messages, base);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    // At ZEGO's limit already: a stall must not be made up with a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0..messages {
        tick.tick().await;
        let sent = base.elapsed().as_secs_f64() * 1e3;
        let k = n as usize % senders.len();
        send_broadcast(target, &mut senders[k], format!("{sent:.3}"), true).await?;
    }
    let mut lat = Vec::new();
    for h in handles {
        if let Ok((mine, _)) = h.await {
            lat.extend(mine);
        }
    }
    let usage = window.close(server);
    let missing = (receivers as usize * messages as usize).saturating_sub(lat.len()) as u32;
    Ok(summarize(lat, missing, usage))
}

/// Each reader collects `messages` stamps (or stops after 10 s of silence): (latencies, time
/// of its last receipt since `base`).
fn spawn_readers(
    target: Target,
    readers: Vec<Client>,
    messages: u32,
    base: Instant,
) -> Vec<tokio::task::JoinHandle<(Vec<f64>, f64)>> {
    readers
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut mine = Vec::with_capacity(messages as usize);
                let mut last = 0.0;
                while mine.len() < messages as usize {
                    match tokio::time::timeout(Duration::from_secs(10), c.ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            let now = base.elapsed().as_secs_f64() * 1e3;
                            for s in stamps(target, t.as_str()) {
                                mine.push(now - s);
                                last = now;
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
                (mine, last)
            })
        })
        .collect()
}

async fn send_broadcast(
    target: Target,
    sender: &mut Client,
    stamp: String,
    wait_reply: bool,
) -> Result<(), String> {
    match target {
        Target::Zrooms => {
            let req = Request::Broadcast {
                room_id: room_id("bench-fanout")?,
                message: stamp,
            };
            if wait_reply {
                sender.request(req).await.map(|_| ())
            } else {
                let (_, text) = sender.frame(req)?;
                sender
                    .ws
                    .feed(Message::text(text))
                    .await
                    .map_err(|e| e.to_string())
            }
        }
        Target::Baseline => {
            let frame = Message::text(format!("B{stamp}"));
            let r = if wait_reply {
                sender.ws.send(frame).await
            } else {
                sender.ws.feed(frame).await
            };
            r.map_err(|e| e.to_string())
        }
    }
}

pub struct Throughput {
    pub deliveries: u64,
    pub expected: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub cpu_s: f64,
    pub rss_kib: u64,
}

/// `receivers` users in one room; one sender writes `messages` broadcasts back to back, as fast
/// as its connection takes them (the room server runs with its rate limits lifted); deliveries a
/// second from the first send to the last receipt.
pub async fn throughput(
    target: Target,
    server: &Server,
    receivers: u32,
    messages: u32,
) -> Result<Throughput, String> {
    let room = vec!["bench-fanout".to_string()];
    let base = Instant::now();
    let readers = join_many(target, &server.url, receivers, &room).await?;
    let mut sender = join(target, &server.url, "blaster", &room).await?;
    let window = Window::open(server);
    let handles = spawn_readers(target, readers, messages, base);
    let first = base.elapsed().as_secs_f64() * 1e3;
    for _ in 0..messages {
        let sent = base.elapsed().as_secs_f64() * 1e3;
        send_broadcast(target, &mut sender, format!("{sent:.3}"), false).await?;
    }
    sender.ws.flush().await.map_err(|e| e.to_string())?;
    // The sender's own replies are read (and dropped) so its socket does not fill up.
    let drain = tokio::spawn(async move {
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_secs(5), sender.ws.next()).await
        {}
    });
    let mut deliveries = 0u64;
    let mut last: f64 = first;
    for h in handles {
        if let Ok((mine, t)) = h.await {
            deliveries += mine.len() as u64;
            last = last.max(t);
        }
    }
    let (cpu_s, _, rss_kib) = window.close(server);
    drain.abort();
    let seconds = ((last - first) / 1e3).max(1e-3);
    Ok(Throughput {
        deliveries,
        expected: receivers as u64 * messages as u64,
        seconds,
        per_second: deliveries as f64 / seconds,
        cpu_s,
        rss_kib,
    })
}

pub struct Users {
    pub lat: Latency,
    pub users: u32,
    pub rooms: u32,
    pub memberships: u32,
}

/// `users` connections, each logged into 2 of `rooms` rooms (users spread evenly), joining at
/// `rate` users a second; the server's resident memory once all are in (and 2 s settled).
pub async fn users(target: Target, server: &Server, users: u32, rooms: u32, rate: u32) -> Users {
    let settle = Duration::from_secs(2);
    let (lat, failed, usage, _kept) = paced_joins(server, users, rate, settle, move |i, url| {
        // Two different rooms for every user, every room with about 2 × users / rooms members.
        let a = i % rooms;
        let b = (i / rooms + a + 1) % rooms;
        let my_rooms = [format!("room-{a}"), format!("room-{b}")];
        async move {
            let uid = format!("user{i}");
            match target {
                Target::Zrooms => {
                    let mut c = Client::connect(&url).await?;
                    let mut took = Vec::new();
                    for r in &my_rooms {
                        let t0 = Instant::now();
                        c.login(r, &uid).await?;
                        took.push(ms(t0.elapsed()));
                    }
                    Ok((c, took))
                }
                Target::Baseline => {
                    Ok((join(Target::Baseline, &url, &uid, &[]).await?, Vec::new()))
                }
            }
        }
    })
    .await;
    let memberships = match target {
        Target::Zrooms => lat.len() as u32,
        Target::Baseline => 0,
    };
    Users {
        lat: summarize(lat, failed, usage),
        users,
        rooms,
        memberships,
    }
}
