//! The browser client (`web/`), served on the signaling port.
//!
//! A connection's request head is peeked before the WebSocket handshake: an upgrade goes on to
//! the signaling, a plain `GET` of one of the page's files is answered here and the connection
//! closed. The files are compiled into the binary, so a server started anywhere (the CLI, the
//! Node package's `startServer`) serves the same page.

use tokio::io::AsyncWriteExt;
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
    /// A WebSocket upgrade (or something the handshake should judge).
    Upgrade,
    /// A plain request: method, path, and the head's length in bytes.
    Plain {
        method: String,
        path: String,
        len: usize,
    },
}

/// Reads what the request head asks for without consuming it. `None`: the peer closed or sent
/// no complete head within [`MAX_HEAD`] bytes.
pub(crate) async fn peek_head(stream: &TcpStream) -> Option<Head> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(head) = parse_head(buf.get(..n)?) {
            return Some(head);
        }
        if n == MAX_HEAD {
            return None;
        }
        if n == seen {
            // Nothing new yet: peek returns at once while the bytes are unchanged.
            stream.readable().await.ok()?;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        seen = n;
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
    let upgrade = lines.any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade")
                && value.trim().eq_ignore_ascii_case("websocket")
        })
    });
    Some(if upgrade {
        Head::Upgrade
    } else {
        Head::Plain {
            method,
            path,
            len: end,
        }
    })
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

/// Answers a plain request on `stream` (its head is `len` bytes) and closes it.
pub(crate) async fn serve_plain(mut stream: TcpStream, method: &str, path: &str, len: usize) {
    // Consume the head that was peeked, then answer.
    let mut head = vec![0u8; len];
    if tokio::io::AsyncReadExt::read_exact(&mut stream, &mut head)
        .await
        .is_err()
    {
        return;
    }
    let _ = stream.write_all(&respond(method, path)).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_told_apart() {
        let ws = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(parse_head(ws), Some(Head::Upgrade));
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
