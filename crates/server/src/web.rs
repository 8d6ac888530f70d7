//! HTTP on the signaling port, through hyper: the browser client (`web/`), `GET /healthz`,
//! `GET /metrics`, and the WebSocket upgrade that starts a signaling session.
//!
//! A connection (plain TCP, or TLS when the server has a certificate) is served as HTTP/1.1
//! until a request asks to upgrade to a WebSocket: the upgrade is answered here (origin
//! checked, `101 Switching Protocols`) and the upgraded connection returned to the transport,
//! which runs the WebSocket protocol on it. Plain requests are answered and the connection
//! may carry more (keep-alive) until the hello deadline, after which it is closed: an HTTP
//! connection costs a slot no longer than a WebSocket that never says hello.
//!
//! The page's files are compiled into the binary, so a server started anywhere (the CLI, the
//! Node package's `startServer`) serves the same page. `/metrics` answers loopback clients,
//! and others that present `Authorization: Bearer <metrics_token>` when one is configured;
//! anyone else gets a 404, as for a path that does not exist.

use crate::{ct_eq, Shared};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The largest request head read (hyper's smallest read buffer); bigger ones are refused.
const MAX_HEAD: usize = 8 * 1024;

/// The connection a WebSocket runs on once upgraded.
pub(crate) type WsIo = TokioIo<Upgraded>;

type Body = Full<Bytes>;

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

/// Where a connection's upgrade is left by the request that asked for it.
type Slot = Arc<Mutex<Option<OnUpgrade>>>;

/// Serves HTTP on `io` until a request upgrades it to a WebSocket (the upgraded connection is
/// returned) or the connection ends, fails or reaches `deadline` (`None`).
pub(crate) async fn serve<I>(
    io: I,
    ip: IpAddr,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> Option<Upgraded>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = Slot::default();
    let service = {
        let (shared, slot) = (Arc::clone(shared), Arc::clone(&slot));
        service_fn(move |mut req: Request<Incoming>| {
            let response = answer(&mut req, ip, &shared, &slot);
            std::future::ready(Ok::<_, Infallible>(response))
        })
    };
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.config.hello_timeout)
        .max_buf_size(MAX_HEAD);
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    match tokio::time::timeout_at(deadline, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!("http: {e}");
            return None;
        }
        Err(_) => return None,
    }
    let upgrade = crate::state::lock(&slot).take()?;
    match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(upgraded)) => Some(upgraded),
        _ => None,
    }
}

/// The response to one request; an admitted WebSocket upgrade leaves its future in `slot`.
fn answer(req: &mut Request<Incoming>, ip: IpAddr, shared: &Shared, slot: &Slot) -> Response<Body> {
    if wants_websocket(req.headers()) {
        return upgrade(req, shared, slot);
    }
    let path = req.uri().path();
    let (get, head) = (req.method() == Method::GET, req.method() == Method::HEAD);
    match path {
        "/healthz" if get || head => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/metrics" if get && may_read_metrics(ip, req.headers(), shared) => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.render_metrics(),
        ),
        _ if !get && !head => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ),
        _ => match FILES.iter().find(|(p, _, _)| *p == path) {
            Some((_, kind, body)) => text(StatusCode::OK, kind, (*body).to_owned()),
            None => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        },
    }
}

/// Whether `/metrics` is answered: loopback clients, and the holders of the metrics token.
fn may_read_metrics(ip: IpAddr, headers: &HeaderMap, shared: &Shared) -> bool {
    if ip.is_loopback() {
        return true;
    }
    let Some(token) = shared.config.metrics_token.as_deref() else {
        return false;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| ct_eq(given.trim().as_bytes(), token.as_bytes()))
}

/// A response with a body and the headers every answer carries.
fn text(status: StatusCode, kind: &str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(kind) = HeaderValue::from_str(kind) {
        h.insert(header::CONTENT_TYPE, kind);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Whether a header's comma-separated tokens include `token` (any case).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn wants_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

/// Answers a WebSocket upgrade (RFC 6455 §4.2): refused for its origin (403) or a malformed
/// handshake (400), else `101` with the accept key, the upgrade future left in `slot`.
fn upgrade(req: &mut Request<Incoming>, shared: &Shared, slot: &Slot) -> Response<Body> {
    let headers = req.headers();
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if !origin_allowed(origin, &shared.config.allowed_origins) {
        shared.metrics.refused_origin.inc();
        tracing::debug!(?origin, "origin not allowed: refused");
        return text(
            StatusCode::FORBIDDEN,
            "text/plain",
            "origin not allowed".into(),
        );
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    let version = headers.get(header::SEC_WEBSOCKET_VERSION);
    let well_formed = req.method() == Method::GET
        && has_token(headers, header::CONNECTION, "upgrade")
        && version.is_some_and(|v| v == "13")
        && key.is_some_and(|k| k.len() == 24);
    let Some(key) = key.filter(|_| well_formed) else {
        let mut r = text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "bad WebSocket handshake\n".into(),
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    };
    let accept = derive_accept_key(key.as_bytes());
    *crate::state::lock(slot) = Some(hyper::upgrade::on(req));
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    r
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

#[cfg(test)]
mod tests;
