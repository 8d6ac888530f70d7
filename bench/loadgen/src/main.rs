//! `zrooms-loadgen`: load scenarios against a real `zrooms-server` process, each run in the same
//! invocation against a baseline process built on the same stack, so every figure also comes as
//! a ratio to the baseline.
//!
//! ```text
//! zrooms-loadgen [SCENARIO ...] [--server-bin PATH] [--out FILE]
//!   login       --login-rate 200 --login-seconds 5      joins into one room: latency
//!   fanout      --receivers 1000 --messages 100 --message-rate 10
//!                                                       broadcast send → receipt latency
//!   throughput  --receivers 1000 --burst 500            broadcasts back to back: deliveries/s
//!   users       --users 10000 --rooms 1000 --join-rate 1000
//!                                                       each user in 2 rooms: memory, latency
//!   sfu         --topologies 1x200,30x30 --seconds 10   str0m publishers → players: CPU, loss
//!               --workers 1,0                           the server's SFU workers per run (0: its
//!                                                       default, one per core)
//!               --server-cpus 0-1                       run the server under `taskset -c`
//!               --server-cpu-quota 0.35                 and/or with this many cores' time
//!                                                       (a cgroup; root; see quota.rs)
//! ```
//! With no scenario, all run. Baselines: `ws-baseline` (a minimal tokio-tungstenite broadcast
//! server) for the signaling scenarios and `udp-baseline` (a raw UDP forwarder) for `sfu`; both
//! are this binary started with `--serve NAME` (see `baseline.rs`).

mod attack;
mod baseline;
mod client;
mod media;
mod quota;
mod signaling;

use client::Server;
use signaling::{Latency, Target};

struct Opts {
    scenarios: Vec<String>,
    server_bin: String,
    login_rate: u32,
    login_seconds: u32,
    receivers: u32,
    messages: u32,
    message_rate: u32,
    burst: u32,
    users: u32,
    rooms: u32,
    join_rate: u32,
    topologies: Vec<(u32, u32)>,
    /// `sfu`: the server's `media_workers` of each run (0: one per core).
    workers: Vec<usize>,
    seconds: u32,
    out: Option<String>,
    /// `security`: the server binary from before the hardening, and the attacks to run.
    before_bin: Option<String>,
    attacks: Vec<String>,
}

const ALL: [&str; 5] = ["login", "fanout", "throughput", "users", "sfu"];

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        scenarios: Vec::new(),
        server_bin: "target/release/zrooms-server".into(),
        login_rate: 200,
        login_seconds: 5,
        receivers: 1000,
        messages: 100,
        message_rate: 10,
        burst: 500,
        users: 10_000,
        rooms: 1_000,
        join_rate: 1_000,
        topologies: vec![(1, 200), (30, 30)],
        workers: vec![1, 0],
        seconds: 10,
        out: None,
        before_bin: None,
        attacks: attack::ATTACKS.iter().map(|a| a.to_string()).collect(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if ALL.contains(&a.as_str()) || a == "security" {
            o.scenarios.push(a.clone());
            continue;
        }
        let mut v = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |s: String| s.parse::<u32>().map_err(|e| format!("{s}: {e}"));
        match a.as_str() {
            "--server-bin" => o.server_bin = v()?,
            "--login-rate" => o.login_rate = num(v()?)?,
            "--login-seconds" => o.login_seconds = num(v()?)?,
            "--receivers" => o.receivers = num(v()?)?,
            "--messages" => o.messages = num(v()?)?,
            "--message-rate" => o.message_rate = num(v()?)?,
            "--burst" => o.burst = num(v()?)?,
            "--users" => o.users = num(v()?)?,
            "--rooms" => o.rooms = num(v()?)?,
            "--join-rate" => o.join_rate = num(v()?)?,
            "--seconds" => o.seconds = num(v()?)?,
            "--topologies" => {
                o.topologies = v()?
                    .split(',')
                    .map(|t| {
                        let (p, n) = t.split_once('x').ok_or(format!("topology {t}: PxN"))?;
                        Ok((num(p.into())?, num(n.into())?))
                    })
                    .collect::<Result<_, String>>()?
            }
            "--workers" => {
                o.workers = v()?
                    .split(',')
                    .map(|w| w.parse::<usize>().map_err(|e| format!("{w}: {e}")))
                    .collect::<Result<_, String>>()?
            }
            "--server-cpus" => {
                let cpus = v()?;
                client::SERVER_CPUS
                    .set(cpus)
                    .map_err(|_| "--server-cpus given twice")?;
            }
            "--server-cpu-quota" => {
                let cores = v()?;
                quota::set(cores.parse().map_err(|e| format!("{cores}: {e}"))?)?;
            }
            "--out" => o.out = Some(v()?),
            "--before-bin" => o.before_bin = Some(v()?),
            "--attacks" => o.attacks = v()?.split(',').map(str::to_string).collect(),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if o.login_rate == 0 || o.message_rate == 0 || o.join_rate == 0 || o.rooms < 2 || o.seconds < 1
    {
        return Err("rates must be positive, --rooms at least 2, --seconds at least 1".into());
    }
    if o.scenarios.is_empty() {
        o.scenarios = ALL.iter().map(|s| s.to_string()).collect();
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
    if let [flag, name] = args.as_slice() {
        if flag == "--serve" {
            let r = match name.as_str() {
                "ws-baseline" => rt.block_on(baseline::serve_ws()),
                "udp-baseline" => rt.block_on(baseline::serve_udp()),
                _ => Err(std::io::Error::other(format!("no baseline {name}"))),
            };
            if let Err(e) = r {
                eprintln!("{e}");
                std::process::exit(1);
            }
            return;
        }
    }
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            quota::remove();
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let result = rt.block_on(run(&opts));
    quota::remove();
    match result {
        Ok(report) => {
            print!("{report}");
            if let Some(path) = &opts.out {
                if let Err(e) = std::fs::write(path, &report) {
                    eprintln!("cannot write {path}: {e}");
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// A fresh room server (with an optional config text) and a fresh baseline for one scenario.
fn servers(opts: &Opts, config: Option<&str>, baseline: &str) -> Result<(Server, Server), String> {
    let mut args = vec!["--host", "127.0.0.1", "--port", "0"];
    let path = std::env::temp_dir().join(format!("zrooms-loadgen-{}.toml", std::process::id()));
    let path_s = path.to_string_lossy().to_string();
    // Every simulated user connects from 127.0.0.1: the per-address connection cap and the
    // budget of connections not logged in yet (safe defaults for a public host) are lifted.
    let text = match config {
        Some(text) => format!("{ONE_ADDRESS}{text}"),
        None => format!("dev_default = true\n{ONE_ADDRESS}"),
    };
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    args.extend(["--config", path_s.as_str()]);
    let ours = Server::start(&opts.server_bin, &args)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let base = Server::start(&exe.to_string_lossy(), &["--serve", baseline])?;
    Ok((ours, base))
}

/// Server-wide settings of every run: the load comes from one address.
const ONE_ADDRESS: &str = "max_connections_per_ip = 0\nmax_pending_connections = 0\n";

/// The room server with ZEGO's broadcast limits lifted, for the throughput scenario.
const UNLIMITED: &str = "[[app]]\napp_id = 1\nmulti_room = true\n[app.limits]\nbroadcast_per_room = 1000000\nbroadcast_per_user = 1000000\nrequests_per_connection = 1000000\n";

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

fn latency_rows(out: &mut String, what: &str, z: &Latency, b: &Latency) {
    for (name, zv, bv) in [
        ("p50", z.p50, b.p50),
        ("p95", z.p95, b.p95),
        ("p99", z.p99, b.p99),
    ] {
        out.push_str(&format!(
            "| {what} {name} (ms) | {zv:.2} | {bv:.2} | {} | n = {} / {}, failed {} / {} |\n",
            ratio(zv, bv),
            z.n,
            b.n,
            z.failed,
            b.failed
        ));
    }
    out.push_str(&format!(
        "| {what}: server CPU (s) | {:.2} | {:.2} | {} | over {:.1} s / {:.1} s |\n",
        z.cpu_s,
        b.cpu_s,
        ratio(z.cpu_s, b.cpu_s),
        z.wall_s,
        b.wall_s
    ));
    out.push_str(&format!(
        "| {what}: server resident memory (MiB) | {:.1} | {:.1} | {} | at the end |\n",
        z.rss_kib as f64 / 1024.0,
        b.rss_kib as f64 / 1024.0,
        ratio(z.rss_kib as f64, b.rss_kib as f64)
    ));
}

async fn run(o: &Opts) -> Result<String, String> {
    let mut out = String::new();
    out.push_str("| scenario | zrooms | baseline | ratio | notes |\n|---|---|---|---|---|\n");
    for s in &o.scenarios {
        eprintln!("== {s}");
        match s.as_str() {
            "login" => {
                let (z, b) = servers(o, None, "ws-baseline")?;
                let zl = signaling::login(Target::Zrooms, &z, o.login_rate, o.login_seconds).await;
                let bl =
                    signaling::login(Target::Baseline, &b, o.login_rate, o.login_seconds).await;
                let what = format!("login, {} joins/s into one room", o.login_rate);
                latency_rows(&mut out, &what, &zl, &bl);
            }
            "fanout" => {
                let (z, b) = servers(o, None, "ws-baseline")?;
                let run =
                    |t, srv| signaling::fanout(t, srv, o.receivers, o.messages, o.message_rate);
                let zl = run(Target::Zrooms, &z).await?;
                let bl = run(Target::Baseline, &b).await?;
                let what = format!(
                    "fan-out to {} in one room, {} msg/s",
                    o.receivers, o.message_rate
                );
                latency_rows(&mut out, &what, &zl, &bl);
            }
            "throughput" => throughput_rows(o, &mut out).await?,
            "users" => users_rows(o, &mut out).await?,
            "sfu" => sfu_rows(o, &mut out).await?,
            "security" => security(o, &mut out).await?,
            _ => {}
        }
    }
    Ok(out)
}

/// Broadcasts back to back to many receivers: deliveries a second, and memory.
async fn throughput_rows(o: &Opts, out: &mut String) -> Result<(), String> {
    let (z, b) = servers(o, Some(UNLIMITED), "ws-baseline")?;
    let zt = signaling::throughput(Target::Zrooms, &z, o.receivers, o.burst).await?;
    let bt = signaling::throughput(Target::Baseline, &b, o.receivers, o.burst).await?;
    out.push_str(&format!(
            "| broadcast throughput, {} back to back to {} (deliveries/s) | {:.0} | {:.0} | {} | {} / {} and {} / {} delivered in {:.2} s / {:.2} s; server CPU {:.2} s / {:.2} s |\n",
            o.burst, o.receivers, zt.per_second, bt.per_second,
            ratio(zt.per_second, bt.per_second),
            zt.deliveries, zt.expected, bt.deliveries, bt.expected,
            zt.seconds, bt.seconds, zt.cpu_s, bt.cpu_s
        ));
    out.push_str(&format!(
        "| throughput: server resident memory (MiB) | {:.1} | {:.1} | {} | at the end |\n",
        zt.rss_kib as f64 / 1024.0,
        bt.rss_kib as f64 / 1024.0,
        ratio(zt.rss_kib as f64, bt.rss_kib as f64)
    ));
    Ok(())
}

/// Many users in many rooms: memory and login latency.
async fn users_rows(o: &Opts, out: &mut String) -> Result<(), String> {
    let (z, b) = servers(o, None, "ws-baseline")?;
    let zu = signaling::users(Target::Zrooms, &z, o.users, o.rooms, o.join_rate).await;
    let bu = signaling::users(Target::Baseline, &b, o.users, o.rooms, o.join_rate).await;
    out.push_str(&format!(
            "| {} users in {} rooms, 2 rooms each: server resident memory (MiB) | {:.1} | {:.1} | {} | {} memberships; connections failed {} / {} |\n",
            zu.users, zu.rooms,
            zu.lat.rss_kib as f64 / 1024.0,
            bu.lat.rss_kib as f64 / 1024.0,
            ratio(zu.lat.rss_kib as f64, bu.lat.rss_kib as f64),
            zu.memberships, zu.lat.failed, bu.lat.failed
        ));
    out.push_str(&format!(
            "| the same: login p50 / p99 (ms) | {:.2} / {:.2} | – | – | {} logins at {} users/s; server CPU {:.1} s over {:.1} s (baseline {:.1} s) |\n",
            zu.lat.p50, zu.lat.p99, zu.lat.n, o.join_rate,
            zu.lat.cpu_s, zu.lat.wall_s, bu.lat.cpu_s
        ));
    Ok(())
}

/// Each media topology through the SFU and through the UDP forwarder.
async fn sfu_rows(o: &Opts, out: &mut String) -> Result<(), String> {
    for &(p, n) in &o.topologies {
        let mut base = None;
        for &w in &o.workers {
            eprintln!("   {p} publishers x {n} players, {w} workers (0: one per core)");
            let config = format!("dev_default = true\nmedia_workers = {w}\n");
            let (z, b) = servers(o, Some(&config), "udp-baseline")?;
            let zm = media::sfu(&z, p, n, o.seconds).await?;
            drop(z);
            if base.is_none() {
                base = Some(media::udp_baseline(&b, p, n, o.seconds).await?);
            }
            let Some(bm) = &base else {
                continue;
            };
            let mut label = match w {
                0 => format!("media {p} x {n}, workers = cores"),
                w => format!(
                    "media {p} x {n}, {w} worker{}",
                    if w == 1 { "" } else { "s" }
                ),
            };
            if let Some(cores) = quota::cores() {
                label.push_str(&format!(", server quota {cores} cores"));
            }
            sfu_result_rows(out, &label, &zm, bm);
        }
    }
    Ok(())
}

fn sfu_result_rows(
    out: &mut String,
    label: &str,
    zm: &media::MediaResult,
    bm: &media::MediaResult,
) {
    out.push_str(&format!(
        "| {label} (640x360@15 + audio): server CPU (cores) | {:.2} | {:.2} | {} | {} legs; load generator itself {:.2} / {:.2} cores |\n",
        zm.cores, bm.cores, ratio(zm.cores, bm.cores), zm.legs,
        zm.loadgen_cores, bm.loadgen_cores
    ));
    out.push_str(&format!(
        "| {label}: server memory, per leg (KiB) | {:.1} | {:.1} | – | {:.1} MiB in all / {:.1} MiB |\n",
        zm.rss_kib as f64 / zm.legs.max(1) as f64, bm.rss_kib as f64 / bm.legs.max(1) as f64,
        zm.rss_kib as f64 / 1024.0, bm.rss_kib as f64 / 1024.0
    ));
    out.push_str(&format!(
        "| {label}: video frames lost | {:.2} % | {:.2} % | – | {} / {} and {} / {} received; {} players failed to set up |\n",
        zm.video_loss() * 100.0, bm.video_loss() * 100.0,
        zm.received_video, zm.expected_video, bm.received_video, bm.expected_video,
        zm.setup_failed
    ));
    out.push_str(&format!(
        "| {label}: video frame latency p50 / p99 (ms) | {:.1} / {:.1} | {:.1} / {:.1} | – | publisher's write to the player's last packet; max {:.0} / {:.0} ms |\n",
        zm.latency_ms.0, zm.latency_ms.1, bm.latency_ms.0, bm.latency_ms.1,
        zm.latency_ms.2, bm.latency_ms.2
    ));
    let (zf, bf) = (zm.fps_spread(), bm.fps_spread());
    out.push_str(&format!(
        "| {label}: delivered fps per stream over players, min / p10 / p50 | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | – | of 15 sent; players at 100 % video loss: {} / {} |\n",
        zf.0, zf.1, zf.2, bf.0, bf.1, bf.2, zm.dead_players(), bm.dead_players()
    ));
    out.push_str(&format!(
        "| {label}: audio frames lost | {:.2} % | {:.2} % | – | {} / {} and {} / {} received; worst player {:.2} % / {:.2} % |\n",
        zm.audio_loss() * 100.0, bm.audio_loss() * 100.0,
        zm.received_audio, zm.expected_audio, bm.received_audio, bm.expected_audio,
        zm.worst_audio_loss() * 100.0, bm.worst_audio_loss() * 100.0
    ));
}

/// Each attack against the binary from before the hardening (`--before-bin`) and this one.
async fn security(o: &Opts, out: &mut String) -> Result<(), String> {
    let before = o
        .before_bin
        .as_deref()
        .ok_or("security needs --before-bin (a zrooms-server built before the hardening)")?;
    out.push_str("\n| attack | measure | before | after |\n|---|---|---|---|\n");
    for a in &o.attacks {
        eprintln!("   {a}");
        let b = attack::run(before, a, o.seconds).await?;
        let z = attack::run(&o.server_bin, a, o.seconds).await?;
        let lost = |r: &attack::Outcome| {
            format!(
                "{:.1} % ({} of {})",
                100.0 * (1.0 - r.video_received as f64 / r.video_sent.max(1) as f64),
                r.video_sent.saturating_sub(r.video_received),
                r.video_sent
            )
        };
        let rows: [(&str, String, String); 6] = [
            (
                "what the attacker got",
                b.attacker.clone(),
                z.attacker.clone(),
            ),
            (
                "user's broadcast round trip p99 (ms); lost",
                format!("{:.1}; {}", b.broadcast_p99_ms, b.broadcasts_lost),
                format!("{:.1}; {}", z.broadcast_p99_ms, z.broadcasts_lost),
            ),
            (
                "new user's connect + login p99 (ms); failed",
                format!("{:.1}; {}", b.join_p99_ms, b.joins_failed),
                format!("{:.1}; {}", z.join_p99_ms, z.joins_failed),
            ),
            (
                "640x360 stream: video frames lost at its player",
                lost(&b),
                lost(&z),
            ),
            (
                "server peak resident memory (MiB)",
                format!("{:.0}", b.peak_rss_kib as f64 / 1024.0),
                format!("{:.0}", z.peak_rss_kib as f64 / 1024.0),
            ),
            (
                "server CPU (cores)",
                format!("{:.2}", b.cores),
                format!("{:.2}", z.cores),
            ),
        ];
        for (what, bv, zv) in rows {
            out.push_str(&format!("| {a} | {what} | {bv} | {zv} |\n"));
        }
    }
    Ok(())
}
