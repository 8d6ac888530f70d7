//! The server process's life as an operator sees it: `--log-format json` writes one JSON
//! object per line, the session events with their app, room and user; SIGTERM stops accepting,
//! closes every connection with WebSocket code 1012 (service restart: reconnect) and exits 0.

mod common;

use common::*;
use futures_util::StreamExt;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn sigterm_tells_clients_to_reconnect_and_the_log_is_json_lines() {
    let (mut child, line) = spawn_listening(
        Command::new(env!("CARGO_BIN_EXE_zrooms-server"))
            .args(["--port", "0", "--log-format", "json"])
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped()),
    );
    let url = line
        .strip_prefix("listening on ")
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let mut alice = connect_url(&url, 1, "").await.unwrap();
    assert_eq!(
        alice.login("lobby", "alice", true).await.0,
        ErrorCode::SUCCESS
    );
    assert_eq!(alice.publish("lobby", "cam-a").await, ErrorCode::SUCCESS);
    let mut bob = connect_url(&url, 1, "").await.unwrap();
    // A refused login is logged with its code: alice holds the stream ID, bob's is refused.
    assert_eq!(bob.login("lobby", "bob", true).await.0, ErrorCode::SUCCESS);
    assert_ne!(bob.publish("lobby", "cam-a").await, ErrorCode::SUCCESS);

    // SAFETY: kill only sends a signal to the child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    for client in [&mut alice, &mut bob] {
        let code = loop {
            match tokio::time::timeout(Duration::from_secs(10), client.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        };
        assert_eq!(code, Some(CloseCode::Restart));
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let port = url.rsplit(':').next().unwrap();
    let refused = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await;
    assert!(refused.is_err(), "still accepting after SIGTERM");

    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let event = |name: &str, user: &str| {
        lines
            .iter()
            .find(|l| l["event"] == name && l["user"] == user)
            .unwrap_or_else(|| panic!("no {name} of {user} in {log}"))
    };
    let login = event("login", "alice");
    assert_eq!(
        (&login["app"], &login["room"], &login["code"]),
        (&1.into(), &"lobby".into(), &0.into())
    );
    assert_eq!(login["level"], "INFO");
    assert_eq!(event("publish", "alice")["stream"], "cam-a");
    assert_eq!(event("publish", "bob")["code"], 1_003_028);
    // The shutdown's leave: reason 5, disconnected.
    assert_eq!(event("logout", "bob")["reason"], 5);
    assert!(lines.iter().any(|l| l["message"] == "draining"), "{log}");
}
