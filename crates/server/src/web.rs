//! The browser client (`web/`), served on the signaling port.
//!
//! A connection's request head is read before the WebSocket handshake: an upgrade goes on to
//! the signaling (the bytes read are replayed to the handshake through [`Prefixed`]), a plain
//! `GET` of one of the page's files is answered here and the connection closed. The files are
//! compiled into the binary, so a server started anywhere (the CLI, the Node package's
//! `startServer`) serves the same page. `GET /metrics` answers the server's counters to
//! clients on the loopback address only.
//!
//! The head is read, never peeked in a loop: a peer that sends half a head and waits costs a
//! task that sleeps until more bytes come (or the hello timeout), not a poll every few ms.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The largest request head read; bigger ones are refused.
const MAX_HEAD: usize = 8 * 1024;

/// The page's files: path, content type, body.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../../web/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../../web/index.html"),
    ),
    (
        "/zrooms.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/zrooms.js"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../../web/style.css"),
    ),
];

/// What a connection's first bytes ask for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// A WebSocket upgrade (or something the handshake should judge), with its `Origin`.
    Upgrade { origin: Option<String> },
    /// A plain request: method, path, and the head's length in bytes.
    Plain {
        method: String,
        path: String,
        len: usize,
    },
}

/// Reads until the request head is complete. Returns what it asks for and every byte read
/// (the head and anything the peer sent after it). `None`: the peer closed or sent no complete
/// head within [`MAX_HEAD`] bytes.
pub(crate) async fn read_head(stream: &mut TcpStream) -> Option<(Head, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
        if let Some(head) = parse_head(&buf) {
            return Some((head, buf));
        }
        if buf.len() >= MAX_HEAD {
            return None;
        }
    }
}

/// Parses a complete request head; `None` while it is incomplete.
pub(crate) fn parse_head(bytes: &[u8]) -> Option<Head> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(bytes.get(..end)?);
    let mut lines = text.split("\r\n");
    let mut request = lines.next().unwrap_or_default().split(' ');
    let method = request.next().unwrap_or_default().to_owned();
    let path = request.next().unwrap_or_default().to_owned();
    let mut upgrade = false;
    let mut origin = None;
    for l in lines {
        if let Some((name, value)) = l.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("upgrade")
                && value.trim().eq_ignore_ascii_case("websocket")
            {
                upgrade = true;
            } else if name.eq_ignore_ascii_case("origin") {
                origin = Some(value.trim().to_owned());
            }
        }
    }
    Some(if upgrade {
        Head::Upgrade { origin }
    } else {
        Head::Plain {
            method,
            path,
            len: end,
        }
    })
}

/// Whether a WebSocket upgrade from `origin` is admitted: any when `allowed` is empty, a
/// connection without an `Origin` (not a browser) always, else only a listed origin.
pub(crate) fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    match origin {
        _ if allowed.is_empty() => true,
        None => true,
        Some(o) => allowed.iter().any(|a| {
            a.trim_end_matches('/')
                .eq_ignore_ascii_case(o.trim_end_matches('/'))
        }),
    }
}

/// Refuses an upgrade whose origin is not allowed, and closes.
pub(crate) async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 18\r\nConnection: close\r\n\r\norigin not allowed",
        )
        .await;
    let _ = stream.shutdown().await;
}

/// A TCP stream whose first bytes (read while looking at the request head) are read again.
pub(crate) struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Prefixed {
    pub(crate) fn new(prefix: Vec<u8>, inner: TcpStream) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.prefix.get(this.pos..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.pos += n;
            if this.pos >= this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The response to a plain request: the file, 404, or 405 for anything but GET and HEAD.
pub(crate) fn respond(method: &str, path: &str) -> Vec<u8> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let (status, kind, body) = match FILES.iter().find(|(p, _, _)| *p == path) {
        _ if method != "GET" && method != "HEAD" => {
            ("405 Method Not Allowed", "text/plain", "GET only\n")
        }
        Some((_, kind, body)) => ("200 OK", *kind, *body),
        None => ("404 Not Found", "text/plain", "not found\n"),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Answers a plain request on `stream` (its head already read) and closes it. `metrics`: the
/// counters' text, when this peer may read them.
pub(crate) async fn serve_plain(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    metrics: Option<String>,
) {
    let response = match metrics {
        Some(text) if method == "GET" && path.split('?').next() == Some("/metrics") => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .into_bytes(),
        _ => respond(method, path),
    };
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_told_apart() {
        let ws = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(parse_head(ws), Some(Head::Upgrade { origin: None }));
        let browser = b"GET / HTTP/1.1\r\nOrigin: https://a.example\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(
            parse_head(browser),
            Some(Head::Upgrade {
                origin: Some("https://a.example".into())
            })
        );
        let allowed = vec!["https://a.example".to_string()];
        assert!(origin_allowed(Some("https://a.example"), &allowed));
        assert!(!origin_allowed(Some("https://evil.example"), &allowed));
        assert!(origin_allowed(None, &allowed), "SDKs send no Origin");
        assert!(origin_allowed(Some("https://evil.example"), &[]));
        let page = b"GET /app.js?v=1 HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            parse_head(page),
            Some(Head::Plain {
                method: "GET".into(),
                path: "/app.js?v=1".into(),
                len: page.len()
            })
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost"), None, "incomplete");
    }

    #[test]
    fn any_bytes_parse_or_wait_without_panicking() {
        // A small xorshift stream of heads: random bytes, random bytes ending a head, and
        // request lines cut anywhere.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = b"GET /index.html HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        for round in 0..20_000 {
            let len = (next() % 300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            match round % 3 {
                0 => bytes.extend_from_slice(b"\r\n\r\n"),
                1 => bytes = base[..(next() as usize % base.len())].to_vec(),
                _ => {}
            }
            if let Some(Head::Plain { method, path, len }) = parse_head(&bytes) {
                assert!(len <= bytes.len());
                let _ = respond(&method, &path);
            }
        }
    }

    /// A peer that sends half a head and waits costs no wake-ups: on virtual time, a second of
    /// waiting polls the read once or twice (a peek loop polled it every 5 ms, 200 times).
    #[tokio::test(start_paused = true)]
    async fn a_partial_head_waits_without_waking() {
        use std::future::Future;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgr")
            .await
            .unwrap();
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = {
            let polls = polls.clone();
            let mut read = Box::pin(read_head(&mut server));
            std::future::poll_fn(move |cx| {
                polls.fetch_add(1, Ordering::Relaxed);
                read.as_mut().poll(cx)
            })
        };
        tokio::select! {
            head = counted => panic!("a partial head was taken as complete: {head:?}"),
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let n = polls.load(Ordering::Relaxed);
        assert!(n <= 3, "polled {n} times while no byte came");
    }

    #[test]
    fn files_missing_paths_and_methods() {
        let ok = String::from_utf8(respond("GET", "/?room=a")).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(ok.contains("text/html"));
        assert!(ok.ends_with(include_str!("../../../web/index.html")));
        let head = String::from_utf8(respond("HEAD", "/zrooms.js")).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        assert!(String::from_utf8(respond("GET", "/../Cargo.toml"))
            .unwrap()
            .starts_with("HTTP/1.1 404"));
        assert!(String::from_utf8(respond("POST", "/"))
            .unwrap()
            .starts_with("HTTP/1.1 405"));
    }
}
