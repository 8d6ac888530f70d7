//! The HTTP side of the signaling port over real loopback sockets: [`serve`] on one end, raw
//! requests written on the other, answers read until the server closes or answers.

use super::*;
use crate::config::ServerConfig;
use crate::sfu::SfuHandle;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn shared(tune: impl FnOnce(&mut ServerConfig)) -> Arc<Shared> {
    let (sfu, _commands) = SfuHandle::detached(SocketAddr::from(([127, 0, 0, 1], 9)));
    let mut config = ServerConfig::default();
    tune(&mut config);
    Shared::new(config, sfu)
}

/// A connected pair; the server end is served as from `ip`. The task's result: whether the
/// connection was upgraded.
async fn connect(
    shared: &Arc<Shared>,
    ip: IpAddr,
) -> (TcpStream, tokio::task::JoinHandle<Option<Upgraded>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let shared = Arc::clone(shared);
    let deadline = Instant::now() + shared.config.hello_timeout;
    let task = tokio::spawn(async move { serve(server, ip, &shared, deadline).await });
    (client, task)
}

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));

/// Sends one request with `Connection: close` and reads the whole answer.
async fn exchange(shared: &Arc<Shared>, ip: IpAddr, request: &str) -> String {
    let (mut client, task) = connect(shared, ip).await;
    let request = request.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    client.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    assert!(task.await.unwrap().is_none(), "a plain request upgraded");
    answer
}

#[tokio::test]
async fn files_health_missing_paths_and_methods() {
    let s = shared(|_| {});
    let page = exchange(&s, REMOTE, "GET /?room=a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("text/html") && page.contains("no-store"));
    assert!(page.ends_with(include_str!("../../../../web/index.html")));
    let head = exchange(&s, REMOTE, "HEAD /zrooms.js HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
    let health = exchange(&s, REMOTE, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\n\r\nok\n"));
    let up = "GET /../Cargo.toml HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(exchange(&s, REMOTE, up).await.starts_with("HTTP/1.1 404"));
    let post = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    assert!(exchange(&s, REMOTE, post).await.starts_with("HTTP/1.1 405"));
    let junk = exchange(&s, REMOTE, "\u{1}\u{2} nonsense\r\n\r\n").await;
    assert!(
        junk.is_empty() || junk.starts_with("HTTP/1.1 400"),
        "{junk}"
    );
}

#[tokio::test]
async fn metrics_for_loopback_and_token_holders_only() {
    let s = shared(|c| c.metrics_token = Some("s3cret-token".into()));
    let get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let local = exchange(&s, LOOPBACK, get).await;
    assert!(local.starts_with("HTTP/1.1 200 OK\r\n"), "{local}");
    assert!(local.contains("application/openmetrics-text"));
    assert!(local.contains("\nzrooms_connections_open ") && local.ends_with("# EOF\n"));
    assert!(exchange(&s, REMOTE, get).await.starts_with("HTTP/1.1 404"));
    let wrong = "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n";
    assert!(exchange(&s, REMOTE, wrong)
        .await
        .starts_with("HTTP/1.1 404"));
    let right = "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\n\r\n";
    assert!(exchange(&s, REMOTE, right)
        .await
        .starts_with("HTTP/1.1 200 OK\r\n"));
    let untokened = shared(|_| {});
    let right_elsewhere = exchange(&untokened, REMOTE, right).await;
    assert!(right_elsewhere.starts_with("HTTP/1.1 404"), "no token set");
}

/// Two requests on one connection are both answered (the page's files over keep-alive).
#[tokio::test]
async fn keep_alive_answers_several_requests() {
    let s = shared(|_| {});
    let (mut client, task) = connect(&s, REMOTE).await;
    client
        .write_all(b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\nGET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{answer}");
    assert!(answer.ends_with(include_str!("../../../../web/app.js")));
    assert!(task.await.unwrap().is_none());
}

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test]
async fn upgrades_are_checked_and_admitted() {
    let s = shared(|c| c.allowed_origins = vec!["https://a.example".into()]);
    let evil = format!("{UPGRADE}Origin: https://evil.example\r\n\r\n");
    assert!(exchange(&s, REMOTE, &evil)
        .await
        .starts_with("HTTP/1.1 403"));
    let old = UPGRADE.replace("Version: 13", "Version: 8") + "\r\n";
    assert!(exchange(&s, REMOTE, &old).await.starts_with("HTTP/1.1 400"));
    let keyless = UPGRADE.replace("Sec-WebSocket-Key", "X-Key") + "\r\n";
    assert!(exchange(&s, REMOTE, &keyless)
        .await
        .starts_with("HTTP/1.1 400"));
    // Admitted (a listed origin; an SDK sends none): 101 with RFC 6455's sample accept key,
    // and the connection comes back upgraded with the bytes after the head intact.
    for origin in ["Origin: https://a.example\r\n", ""] {
        let (mut client, task) = connect(&s, REMOTE).await;
        let request = format!("{UPGRADE}{origin}\r\nafter");
        client.write_all(request.as_bytes()).await.unwrap();
        let mut upgraded = TokioIo::new(task.await.unwrap().expect("upgraded"));
        let mut head = vec![0u8; 256];
        let n = client.read(&mut head).await.unwrap();
        let head = String::from_utf8_lossy(&head[..n]);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        let mut after = [0u8; 5];
        upgraded.read_exact(&mut after).await.unwrap();
        assert_eq!(&after, b"after");
    }
    assert_eq!(
        s.render_metrics()
            .lines()
            .find(|l| l.starts_with("zrooms_connections_refused_origin_total "))
            .unwrap(),
        "zrooms_connections_refused_origin_total 1"
    );
}

/// A peer that sends half a head and waits is closed at the hello timeout.
#[tokio::test]
async fn a_partial_head_is_closed_at_the_deadline() {
    let s = shared(|c| c.hello_timeout = Duration::from_millis(200));
    let (mut client, task) = connect(&s, REMOTE).await;
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgr")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest).await;
    assert!(task.await.unwrap().is_none());
}

#[test]
fn origins() {
    let allowed = vec!["https://a.example".to_string()];
    assert!(origin_allowed(Some("https://a.example/"), &allowed));
    assert!(!origin_allowed(Some("https://evil.example"), &allowed));
    assert!(origin_allowed(None, &allowed), "SDKs send no Origin");
    assert!(origin_allowed(Some("https://evil.example"), &[]));
}
