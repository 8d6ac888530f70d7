//! A client of the room server's wire protocol (the same frames the engine sends), and the
//! process helpers shared by the scenarios.

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zrooms_proto::wire::*;
use zrooms_proto::*;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    next: u64,
}

impl Client {
    /// Connects and says hello as app 1.
    pub async fn connect(url: &str) -> Result<Client, String> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        Client::hello(ws, 1).await
    }

    /// Connects from the local address `from` (a loopback address such as 127.0.0.2, to stand
    /// for another host) and says hello as `app_id`.
    pub async fn connect_from(
        url: &str,
        from: std::net::IpAddr,
        app_id: u32,
    ) -> Result<Client, String> {
        let addr: std::net::SocketAddr = url
            .trim_start_matches("ws://")
            .parse()
            .map_err(|e| format!("{url}: {e}"))?;
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(std::net::SocketAddr::new(from, 0))
            .map_err(|e| e.to_string())?;
        let tcp = socket.connect(addr).await.map_err(|e| e.to_string())?;
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
            .await
            .map_err(|e| e.to_string())?;
        Client::hello(ws, app_id).await
    }

    async fn hello(ws: Ws, app_id: u32) -> Result<Client, String> {
        let mut c = Client { ws, next: 1 };
        c.request(Request::Hello {
            version: PROTOCOL_VERSION,
            app_id,
            app_sign: String::new(),
            sdk_version: "loadgen".into(),
            resume: None,
        })
        .await?;
        Ok(c)
    }

    /// Sends a request and reads until its reply: its code (0 for success).
    pub async fn code(&mut self, req: Request) -> Result<u32, String> {
        self.exchange(req).await.map(|(code, _)| code.0)
    }

    /// A connection that has not said hello (the baseline's).
    pub fn from_ws(ws: Ws) -> Client {
        Client { ws, next: 1 }
    }

    /// The frame of a request, with the next id.
    pub fn frame(&mut self, req: Request) -> Result<(u64, String), String> {
        let id = self.next;
        self.next += 1;
        let text = serde_json::to_string(&ClientFrame { id, req }).map_err(|e| e.to_string())?;
        Ok((id, text))
    }

    /// Sends a request and reads until its reply (other frames are dropped): the body on
    /// success, the code as an error otherwise.
    pub async fn request(&mut self, req: Request) -> Result<Option<ReplyBody>, String> {
        match self.exchange(req).await? {
            (code, body) if code.is_success() => Ok(body),
            (code, _) => Err(format!("error {code}")),
        }
    }

    /// Sends a request and reads until its reply: its code and body.
    async fn exchange(&mut self, req: Request) -> Result<(ErrorCode, Option<ReplyBody>), String> {
        let (id, text) = self.frame(req)?;
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
                        ..
                    }) = serde_json::from_str(t.as_str())
                    {
                        if rid == id {
                            return Ok((code, body));
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err("connection closed".into()),
            }
        }
    }

    pub async fn login(&mut self, room: &str, uid: &str) -> Result<(), String> {
        self.request(Request::Login {
            room_id: room_id(room)?,
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

pub fn room_id(room: &str) -> Result<RoomId, String> {
    RoomId::new(room).map_err(|e| e.to_string())
}

pub fn stream_id(s: &str) -> Result<StreamId, String> {
    StreamId::new(s).map_err(|e| e.to_string())
}

/// Percentile `p` of a sample (sorts it).
pub fn pct(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

/// CPU seconds (user + system) and resident KiB of a process, from /proc.
pub fn proc_usage(pid: u32) -> Option<(f64, u64)> {
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

/// A server process under test: ours or a baseline. Killed when dropped.
pub struct Server {
    child: Child,
    /// What it printed after "listening on ": `ws://…` or `udp://…`.
    pub url: String,
    /// The SFU's UDP address, when it printed one (`(media udp ADDR)`).
    pub media: Option<std::net::SocketAddr>,
}

/// CPUs the servers under test run on (`taskset -c`), when set (`--server-cpus`).
pub static SERVER_CPUS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl Server {
    /// Starts `bin args…` and waits for its "listening on URL …" line.
    pub fn start(bin: &str, args: &[&str]) -> Result<Server, String> {
        // taskset (`--server-cpus`) and the cgroup (`--server-cpu-quota`) both exec the server.
        let (program, mut rest): (&str, Vec<&str>) = match SERVER_CPUS.get() {
            Some(cpus) => ("taskset", vec!["-c", cpus, bin]),
            None => (bin, vec![]),
        };
        rest.extend_from_slice(args);
        let mut command = crate::quota::wrap(program, &rest).unwrap_or_else(|| {
            let mut c = Command::new(program);
            c.args(&rest);
            c
        });
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let rest = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or(format!("unexpected output of {bin}: {line}"))?;
        let url = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let media = rest
            .split_once("media udp ")
            .and_then(|(_, a)| a.trim_end_matches(')').parse().ok());
        Ok(Server { child, url, media })
    }

    pub fn usage(&self) -> Option<(f64, u64)> {
        proc_usage(self.child.id())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU and memory of a process over a measured stretch.
pub struct Window {
    start: Option<(f64, u64)>,
    at: std::time::Instant,
}

impl Window {
    pub fn open(server: &Server) -> Window {
        Window {
            start: server.usage(),
            at: std::time::Instant::now(),
        }
    }

    /// (CPU seconds, wall seconds, resident KiB now).
    pub fn close(&self, server: &Server) -> (f64, f64, u64) {
        let wall = self.at.elapsed().as_secs_f64();
        match (self.start, server.usage()) {
            (Some((c0, _)), Some((c1, rss))) => (c1 - c0, wall, rss),
            _ => (f64::NAN, wall, 0),
        }
    }
}
