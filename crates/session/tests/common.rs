//! A harness that drives a `Session` on fake time and plays the server's part by hand.
#![allow(dead_code)]

use std::time::{Duration, Instant};
use zrooms_proto::wire::*;
use zrooms_proto::*;
use zrooms_session::*;

pub struct Harness {
    pub s: Session,
    pub now: Instant,
    pub sent: Vec<ClientFrame>,
    pub events: Vec<SessionEvent>,
    pub connects: usize,
    pub media: Vec<MediaCmd>,
    pub answers: Vec<Result<String, ErrorCode>>,
    pub deadline: Option<Instant>,
    pub disconnects: usize,
    pub media_resets: usize,
    next_op: OpId,
}

pub fn user(id: &str) -> User {
    User {
        user_id: UserId::new(id).unwrap(),
        user_name: UserName::new(id).unwrap(),
    }
}

pub fn stream(id: &str, owner: &str) -> StreamInfo {
    StreamInfo {
        stream_id: StreamId::new(id).unwrap(),
        user: user(owner),
        extra_info: String::new(),
    }
}

impl Harness {
    pub fn new(multi_room: bool) -> Self {
        Harness {
            s: Session::new(SessionConfig {
                multi_room,
                login_timeout: Duration::from_secs(30),
                ..SessionConfig::default()
            }),
            now: Instant::now(),
            sent: Vec::new(),
            events: Vec::new(),
            connects: 0,
            media: Vec::new(),
            answers: Vec::new(),
            deadline: None,
            disconnects: 0,
            media_resets: 0,
            next_op: 1,
        }
    }

    pub fn drain(&mut self) {
        loop {
            match self.s.poll_output() {
                Output::Connect => self.connects += 1,
                Output::Transmit(f) => self.sent.push(f),
                Output::Event(e) => self.events.push(e),
                Output::Media(m) => self.media.push(m),
                Output::MediaAnswer(a) => self.answers.push(a),
                Output::Disconnect => self.disconnects += 1,
                Output::MediaReset => self.media_resets += 1,
                Output::Idle(d) => {
                    self.deadline = d;
                    return;
                }
            }
        }
    }

    pub fn call(&mut self, cmd: Command) -> OpId {
        let op = self.next_op;
        self.next_op += 1;
        self.s.handle_command(self.now, op, cmd);
        self.drain();
        op
    }

    /// Opens the connection and answers the hello.
    pub fn connect(&mut self) {
        self.connect_as("1", false);
    }

    /// Opens the connection and answers the hello with server session `session_id`, resumed or
    /// not; returns the hello's `resume`.
    pub fn connect_as(&mut self, session_id: &str, resumed: bool) -> Option<Resume> {
        self.s.handle_connected(self.now);
        self.drain();
        let hello = self.sent.remove(0);
        let Request::Hello { resume, .. } = hello.req else {
            panic!("expected a hello, got {:?}", hello.req);
        };
        self.reply(
            hello.id,
            ErrorCode::SUCCESS,
            Some(ReplyBody::Hello {
                session_id: session_id.into(),
                server_version: "test".into(),
                resume_key: format!("key-{session_id}"),
                resumed,
            }),
        );
        resume
    }

    pub fn server(&mut self, msg: ServerMsg) {
        self.s.handle_server(self.now, msg);
        self.drain();
    }

    pub fn reply(&mut self, id: u64, code: ErrorCode, body: Option<ReplyBody>) {
        self.server(ServerMsg::Reply {
            id,
            code,
            message: String::new(),
            body,
        });
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.s.handle_timeout(self.now);
        self.drain();
    }

    pub fn take_sent(&mut self) -> Vec<ClientFrame> {
        std::mem::take(&mut self.sent)
    }

    pub fn take_events(&mut self) -> Vec<SessionEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn login_cmd(room: &str, uid: &str) -> Command {
        Command::LoginRoom {
            room_id: room.into(),
            user_id: uid.into(),
            user_name: None,
            config: RoomConfig {
                is_user_status_notify: true,
                ..RoomConfig::default()
            },
        }
    }

    /// Logs into `room` as `uid`, answering with `users` and `streams` already there.
    pub fn login_ok(
        &mut self,
        room: &str,
        uid: &str,
        users: Vec<User>,
        streams: Vec<StreamInfo>,
    ) -> OpId {
        let op = self.call(Self::login_cmd(room, uid));
        if self.connects > 0 && self.sent.is_empty() {
            self.connect();
        }
        let frame = self
            .take_sent()
            .into_iter()
            .find(|f| matches!(f.req, Request::Login { .. }))
            .unwrap();
        let count = users.len() as u32 + 1;
        self.reply(
            frame.id,
            ErrorCode::SUCCESS,
            Some(ReplyBody::Login {
                room_session_id: "42".into(),
                users,
                streams,
                extra_info: vec![],
                online_count: count,
            }),
        );
        op
    }

    pub fn completed(&self, op: OpId) -> Option<(ErrorCode, OpValue)> {
        self.events.iter().find_map(|e| match e {
            SessionEvent::Completed { op: o, code, value } if *o == op => {
                Some((*code, value.clone()))
            }
            _ => None,
        })
    }

    pub fn room_reasons(&self) -> Vec<(String, RoomReason, ErrorCode)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::RoomState {
                    room_id,
                    reason,
                    code,
                    ..
                } => Some((room_id.clone(), *reason, *code)),
                _ => None,
            })
            .collect()
    }
}
