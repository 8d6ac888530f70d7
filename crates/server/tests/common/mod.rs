//! Raw protocol clients for the server tests: real WebSockets to a server on 127.0.0.1:0.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
pub use zrooms_proto::wire::*;
pub use zrooms_proto::*;
pub use zrooms_server::{AppConfig, Server, ServerConfig};

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub next: u64,
    /// Pushes received while waiting for a reply.
    pub pushes: Vec<ServerMsg>,
    /// Frames of the session received (what a resume presents).
    pub received: u64,
    /// The hello's session id and resume key.
    pub session: (String, String),
}

pub fn user(id: &str) -> User {
    User {
        user_id: UserId::new(id).unwrap(),
        user_name: UserName::new(id).unwrap(),
    }
}

pub fn room(id: &str) -> RoomId {
    RoomId::new(id).unwrap()
}

pub fn sid(id: &str) -> StreamId {
    StreamId::new(id).unwrap()
}

impl Client {
    pub async fn connect(server: &Server, app_id: u32) -> Client {
        connect_signed(server, app_id, "")
            .await
            .expect("hello refused")
    }

    pub async fn recv(&mut self) -> Option<ServerMsg> {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    self.received += 1;
                    return Some(serde_json::from_str(t.as_str()).unwrap());
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("no frame within 5 s"),
            }
        }
    }

    /// The link dies without a goodbye (no close frame; the TCP connection ends): the server
    /// keeps the session for the grace period.
    pub async fn drop_link(&mut self) {
        use tokio::io::AsyncWriteExt;
        if let MaybeTlsStream::Plain(tcp) = self.ws.get_mut() {
            let _ = tcp.shutdown().await;
        }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).await.unwrap();
    }

    pub async fn request(&mut self, req: Request) -> (ErrorCode, Option<ReplyBody>) {
        let id = self.next;
        self.next += 1;
        let text = serde_json::to_string(&ClientFrame { id, req }).unwrap();
        self.send_raw(&text).await;
        loop {
            match self
                .recv()
                .await
                .expect("connection closed while waiting for a reply")
            {
                ServerMsg::Reply {
                    id: rid,
                    code,
                    body,
                    ..
                } if rid == id => return (code, body),
                other => self.pushes.push(other),
            }
        }
    }

    pub async fn login(
        &mut self,
        room_id: &str,
        uid: &str,
        multi_room: bool,
    ) -> (ErrorCode, Option<ReplyBody>) {
        self.request(Request::Login {
            room_id: room(room_id),
            user: user(uid),
            config: LoginConfig {
                user_status_notify: true,
                multi_room,
                ..LoginConfig::default()
            },
        })
        .await
    }

    /// The next push, from those already received or the socket.
    pub async fn push(&mut self) -> ServerMsg {
        if !self.pushes.is_empty() {
            return self.pushes.remove(0);
        }
        self.recv().await.expect("closed")
    }

    /// The next push that `pick` accepts, skipping others.
    pub async fn push_where<T>(&mut self, mut pick: impl FnMut(&ServerMsg) -> Option<T>) -> T {
        loop {
            let m = self.push().await;
            if let Some(v) = pick(&m) {
                return v;
            }
        }
    }
}

pub async fn server(config: ServerConfig) -> Server {
    Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .unwrap()
}

/// A config whose app 1 has every rate limit far above what a test sends, for tests about
/// something else than limits.
pub fn unlimited() -> ServerConfig {
    let mut config = ServerConfig::default();
    let mut app = AppConfig::dev(1);
    let l = &mut app.limits;
    for rate in [
        &mut l.broadcast_per_room,
        &mut l.broadcast_per_user,
        &mut l.barrage_per_room,
        &mut l.custom_command_single,
        &mut l.custom_command_multi,
        &mut l.logins_per_room,
        &mut l.room_extra_info_per_room,
        &mut l.requests_per_connection,
    ] {
        *rate = 1e9;
    }
    config.apps.insert(1, app);
    config
}

pub const SIGN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
pub const SECRET: &str = "0123456789abcdefABCDEF0123456789";

/// Opens a connection and says hello with `app_sign`; the hello's code when refused.
pub async fn connect_signed(
    server: &Server,
    app_id: u32,
    app_sign: &str,
) -> Result<Client, ErrorCode> {
    connect_url(&server.url(), app_id, app_sign).await
}

/// [`connect_signed`] to a server at `url` (a server process, say).
pub async fn connect_url(url: &str, app_id: u32, app_sign: &str) -> Result<Client, ErrorCode> {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut c = Client::raw(ws);
    let (code, body) = c
        .request(Request::Hello {
            version: PROTOCOL_VERSION,
            app_id,
            app_sign: app_sign.into(),
            sdk_version: "test".into(),
            resume: None,
        })
        .await;
    if let Some(ReplyBody::Hello {
        session_id,
        resume_key,
        ..
    }) = body
    {
        c.session = (session_id, resume_key);
    }
    if code == ErrorCode::SUCCESS {
        Ok(c)
    } else {
        Err(code)
    }
}

impl Client {
    pub fn raw(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client {
            ws,
            next: 1,
            pushes: Vec::new(),
            received: 0,
            session: (String::new(), String::new()),
        }
    }

    /// Continues this client's session on a new connection: whether the server resumed it.
    /// Request ids go on from where they were; `received` is presented and kept.
    pub async fn reconnect(&mut self, server: &Server, app_id: u32) -> bool {
        let (ws, _) = tokio_tungstenite::connect_async(server.url())
            .await
            .unwrap();
        self.ws = ws;
        self.pushes.clear();
        let id = self.next;
        self.next += 1;
        let hello = ClientFrame {
            id,
            req: Request::Hello {
                version: PROTOCOL_VERSION,
                app_id,
                app_sign: String::new(),
                sdk_version: "test".into(),
                resume: Some(Resume {
                    session_id: self.session.0.clone(),
                    key: self.session.1.clone(),
                    received: self.received,
                }),
            },
        };
        self.send_raw(&serde_json::to_string(&hello).unwrap()).await;
        let before = self.received;
        match self.recv().await {
            Some(ServerMsg::Reply {
                id: rid,
                code,
                message: _,
                body:
                    Some(ReplyBody::Hello {
                        session_id,
                        resume_key,
                        resumed,
                        ..
                    }),
            }) if rid == id && code == ErrorCode::SUCCESS => {
                if resumed {
                    // The resume's reply is not one of the session's frames.
                    self.received = before;
                } else {
                    // A new session: its frames count from its hello's reply.
                    self.received = 1;
                }
                self.session = (session_id, resume_key);
                resumed
            }
            other => panic!("hello: {other:?}"),
        }
    }
}

impl Client {
    /// Logs into `room_id` as `uid` (multi-room) with `token`.
    pub async fn login_token(&mut self, room_id: &str, uid: &str, token: &str) -> ErrorCode {
        self.request(Request::Login {
            room_id: room(room_id),
            user: user(uid),
            config: LoginConfig {
                user_status_notify: true,
                multi_room: true,
                token: token.into(),
                ..LoginConfig::default()
            },
        })
        .await
        .0
    }

    pub async fn publish(&mut self, room_id: &str, stream: &str) -> ErrorCode {
        self.request(Request::Publish {
            room_id: room(room_id),
            stream_id: sid(stream),
            extra_info: String::new(),
        })
        .await
        .0
    }

    /// Pushes already here or arriving within `wait`, without blocking longer.
    pub async fn drain(&mut self, wait: Duration) -> Vec<ServerMsg> {
        let mut got = std::mem::take(&mut self.pushes);
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(t) = m {
                self.received += 1;
                got.push(serde_json::from_str(t.as_str()).unwrap());
            }
        }
        got
    }
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Client {
    /// Sends every request at once, then waits for all their replies: the codes in request
    /// order, and the seconds from the first send to the last reply.
    pub async fn burst(&mut self, reqs: Vec<Request>) -> (Vec<ErrorCode>, f64) {
        let start = std::time::Instant::now();
        let first = self.next;
        let n = reqs.len();
        for req in reqs {
            let id = self.next;
            self.next += 1;
            let text = serde_json::to_string(&ClientFrame { id, req }).unwrap();
            self.send_raw(&text).await;
        }
        let mut codes = vec![None; n];
        while codes.iter().any(Option::is_none) {
            match self.recv().await.expect("closed during a burst") {
                ServerMsg::Reply { id, code, .. } if id >= first && id < first + n as u64 => {
                    codes[(id - first) as usize] = Some(code);
                }
                other => self.pushes.push(other),
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        (codes.into_iter().map(Option::unwrap).collect(), elapsed)
    }
}

/// Checks a burst against a token bucket of `rate` per second: the first `rate` pass, then no
/// more than the refill over `elapsed` allows, and the rest are refused with `code`.
pub fn assert_rate(codes: &[ErrorCode], elapsed: f64, rate: f64, code: ErrorCode) {
    let ok = codes.iter().filter(|c| **c == ErrorCode::SUCCESS).count();
    let refused = codes.iter().filter(|c| **c == code).count();
    assert_eq!(ok + refused, codes.len(), "unexpected codes: {codes:?}");
    let burst = rate as usize;
    assert!(
        codes[..burst].iter().all(|c| *c == ErrorCode::SUCCESS),
        "the first {burst} must pass: {codes:?}"
    );
    let most = burst + (rate * elapsed).ceil() as usize;
    assert!(ok <= most, "{ok} passed in {elapsed:.3} s at {rate}/s");
    assert!(refused > 0, "nothing refused in {elapsed:.3} s at {rate}/s");
}

/// Starts `cmd` (the server binary) with its stdout piped and returns the process with the
/// first line it printed (`listening on …`).
pub fn spawn_listening(cmd: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zrooms-server starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("a line");
    (child, line)
}
