//! `zrooms-loadgen`: signaling benchmarks against a real `zrooms-server` process.
//!
//! ```text
//! zrooms-loadgen [--server-bin PATH] [--login-rate 200] [--login-seconds 5]
//!                [--receivers 1000] [--messages 100] [--message-rate 10] [--out FILE]
//! ```
//!
//! It starts the server binary on 127.0.0.1:0 (or uses `--url`), then runs:
//! 1. **login**: new connections log into one room at `--login-rate` per second; the latency of
//!    each `login` request (sent → reply) is recorded.
//! 2. **fan-out**: `--receivers` clients sit in one room; senders (in turn, 2 msg/s each as ZEGO
//!    allows one user) send `--messages`
//!    broadcasts at `--message-rate` per second; the latency from send to each receipt is
//!    recorded.
//!
//! It reports p50/p95/p99, the server's CPU time and resident memory, and writes a Markdown
//! results file.

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zrooms_proto::wire::*;
use zrooms_proto::*;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Opts {
    server_bin: String,
    url: Option<String>,
    login_rate: u32,
    login_seconds: u32,
    receivers: u32,
    messages: u32,
    message_rate: u32,
    out: Option<String>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        server_bin: "target/release/zrooms-server".into(),
        url: None,
        login_rate: 200,
        login_seconds: 5,
        receivers: 1000,
        messages: 100,
        message_rate: 10,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or(format!("{a} needs a value"));
        let num = |s: String| s.parse::<u32>().map_err(|e| format!("{s}: {e}"));
        match a.as_str() {
            "--server-bin" => o.server_bin = v()?,
            "--url" => o.url = Some(v()?),
            "--login-rate" => o.login_rate = num(v()?)?,
            "--login-seconds" => o.login_seconds = num(v()?)?,
            "--receivers" => o.receivers = num(v()?)?,
            "--messages" => o.messages = num(v()?)?,
            "--message-rate" => o.message_rate = num(v()?)?,
            "--out" => o.out = Some(v()?),
            _ => return Err(format!("unknown option {a}")),
        }
    }
    if o.login_rate == 0 || o.message_rate == 0 {
        return Err("rates must be positive".into());
    }
    Ok(o)
}

struct Client {
    ws: Ws,
    next: u64,
}

impl Client {
    async fn connect(url: &str) -> Result<Client, String> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        let mut c = Client { ws, next: 1 };
        c.request(Request::Hello {
            version: PROTOCOL_VERSION,
            app_id: 1,
            app_sign: String::new(),
            sdk_version: "loadgen".into(),
            resume: None,
        })
        .await?;
        Ok(c)
    }

    async fn request(&mut self, req: Request) -> Result<Option<ReplyBody>, String> {
        let id = self.next;
        self.next += 1;
        let text = serde_json::to_string(&ClientFrame { id, req }).map_err(|e| e.to_string())?;
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(ServerMsg::Reply {
                        id: rid,
                        code,
                        body,
                    }) = serde_json::from_str(t.as_str())
                    {
                        if rid == id {
                            return if code.is_success() {
                                Ok(body)
                            } else {
                                Err(format!("error {code}"))
                            };
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err("connection closed".into()),
            }
        }
    }

    async fn login(&mut self, room: &str, uid: &str) -> Result<(), String> {
        self.request(Request::Login {
            room_id: RoomId::new(room).map_err(|e| e.to_string())?,
            user: User {
                user_id: UserId::new(uid).map_err(|e| e.to_string())?,
                user_name: UserName::new(uid).map_err(|e| e.to_string())?,
            },
            config: LoginConfig {
                multi_room: true,
                ..LoginConfig::default()
            },
        })
        .await
        .map(|_| ())
    }
}

/// Percentiles of a sample, in milliseconds.
fn pct(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

/// CPU seconds (user + system) and resident KiB of a process, from /proc.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(((utime + stime) / 100.0, rss))
}

fn start_server(bin: &str) -> Result<(Child, String), String> {
    let mut child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or(format!("unexpected server output: {line}"))?
        .to_string();
    Ok((child, url))
}

struct LoginResult {
    attempted: u32,
    failed: u32,
    lat: Vec<f64>,
}

async fn bench_login(url: &str, rate: u32, seconds: u32) -> LoginResult {
    let total = rate * seconds;
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let failed = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::new();
    let (keep_tx, mut keep_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..total {
        tick.tick().await;
        let url = url.to_string();
        let lat = lat.clone();
        let failed = failed.clone();
        let keep = keep_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = match Client::connect(&url).await {
                Ok(c) => c,
                Err(_) => {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            };
            let t0 = Instant::now();
            match c.login("bench-login", &format!("u{i}")).await {
                Ok(()) => lat.lock().await.push(t0.elapsed().as_secs_f64() * 1e3),
                Err(_) => {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            // Stay in the room so it grows as in a real rush of joins.
            let _ = keep.send(c);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    drop(keep_tx);
    let mut kept = Vec::new();
    while let Ok(c) = keep_rx.try_recv() {
        kept.push(c);
    }
    drop(kept);
    let lat = std::mem::take(&mut *lat.lock().await);
    LoginResult {
        attempted: total,
        failed: failed.load(std::sync::atomic::Ordering::Relaxed),
        lat,
    }
}

struct FanoutResult {
    expected: u64,
    received: u64,
    lat: Vec<f64>,
}

async fn bench_fanout(
    url: &str,
    receivers: u32,
    messages: u32,
    rate: u32,
) -> Result<FanoutResult, String> {
    let base = Instant::now();
    let mut readers = Vec::new();
    for i in 0..receivers {
        let mut c = Client::connect(url).await?;
        c.login("bench-fanout", &format!("r{i}")).await?;
        readers.push(c);
    }
    // ZEGO allows one user 2 broadcasts per second: enough senders to carry `rate`, in turn.
    let mut senders = Vec::new();
    for i in 0..rate.div_ceil(2).max(1) {
        let mut sender = Client::connect(url).await?;
        sender.login("bench-fanout", &format!("sender{i}")).await?;
        senders.push(sender);
    }
    let lat = Arc::new(Mutex::new(Vec::with_capacity(
        (receivers * messages) as usize,
    )));
    let mut handles = Vec::new();
    for mut c in readers {
        let lat = lat.clone();
        handles.push(tokio::spawn(async move {
            let mut got = 0u32;
            let mut mine = Vec::with_capacity(messages as usize);
            while got < messages {
                match tokio::time::timeout(Duration::from_secs(10), c.ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        if let Ok(ServerMsg::Broadcast { messages: list, .. }) =
                            serde_json::from_str(t.as_str())
                        {
                            let now = base.elapsed().as_secs_f64() * 1e3;
                            for m in list {
                                if let Ok(sent) = m.message.parse::<f64>() {
                                    mine.push(now - sent);
                                    got += 1;
                                }
                            }
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            lat.lock().await.extend(mine);
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for n in 0..messages {
        tick.tick().await;
        let sent = base.elapsed().as_secs_f64() * 1e3;
        let k = n as usize % senders.len();
        senders[k]
            .request(Request::Broadcast {
                room_id: RoomId::new("bench-fanout").map_err(|e| e.to_string())?,
                message: format!("{sent:.3}"),
            })
            .await?;
    }
    for h in handles {
        let _ = h.await;
    }
    let lat = std::mem::take(&mut *lat.lock().await);
    Ok(FanoutResult {
        expected: receivers as u64 * messages as u64,
        received: lat.len() as u64,
        lat,
    })
}

fn main() {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let (mut child, url) = match &opts.url {
        Some(u) => (None, u.clone()),
        None => match start_server(&opts.server_bin) {
            Ok((c, u)) => (Some(c), u),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
    };
    let pid = child.as_ref().map(|c| c.id());
    let usage = || pid.and_then(proc_usage);

    let before = usage();
    let login = rt.block_on(bench_login(&url, opts.login_rate, opts.login_seconds));
    let after_login = usage();
    let fanout = rt.block_on(bench_fanout(
        &url,
        opts.receivers,
        opts.messages,
        opts.message_rate,
    ));
    let after = usage();
    if let Some(c) = child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }

    let mut login_lat = login.lat;
    let mut report = String::new();
    report.push_str("# Signaling benchmark\n\n");
    report.push_str(&format!(
        "Command: `zrooms-loadgen --login-rate {} --login-seconds {} --receivers {} --messages {} --message-rate {}`\n\n",
        opts.login_rate, opts.login_seconds, opts.receivers, opts.messages, opts.message_rate
    ));
    report.push_str(&format!(
        "Machine: {} cores, loopback, release build; server is a separate `zrooms-server` process.\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    ));
    report.push_str(
        "| measurement | n | p50 ms | p95 ms | p99 ms | notes |\n|---|---|---|---|---|---|\n",
    );
    report.push_str(&format!(
        "| loginRoom → reply, {} logins/s into one room | {} | {:.2} | {:.2} | {:.2} | {} failed of {} |\n",
        opts.login_rate,
        login_lat.len(),
        pct(&mut login_lat, 50.0),
        pct(&mut login_lat, 95.0),
        pct(&mut login_lat, 99.0),
        login.failed,
        login.attempted
    ));
    match fanout {
        Ok(f) => {
            let mut lat = f.lat;
            report.push_str(&format!(
                "| broadcast send → receipt, 1 sender → {} receivers, {} msg/s | {} | {:.2} | {:.2} | {:.2} | {} of {} deliveries |\n",
                opts.receivers,
                opts.message_rate,
                lat.len(),
                pct(&mut lat, 50.0),
                pct(&mut lat, 95.0),
                pct(&mut lat, 99.0),
                f.received,
                f.expected
            ));
        }
        Err(e) => report.push_str(&format!(
            "| broadcast fan-out | 0 | – | – | – | failed: {e} |\n"
        )),
    }
    if let (Some((c0, _)), Some((c1, r1)), Some((c2, r2))) = (before, after_login, after) {
        report.push_str(&format!(
            "\nServer CPU: {:.2} s during the login phase, {:.2} s during fan-out; resident memory {} KiB after logins ({} users in the room), {} KiB at the end.\n",
            c1 - c0,
            c2 - c1,
            r1,
            opts.login_rate * opts.login_seconds,
            r2
        ));
    }
    print!("{report}");
    if let Some(path) = opts.out {
        if let Err(e) = std::fs::write(&path, &report) {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
}
