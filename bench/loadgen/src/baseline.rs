//! The baselines, run as separate processes by `zrooms-loadgen --serve …` so their CPU and memory
//! are measured the way the room server's are.
//!
//! - `ws-baseline`: the least a WebSocket broadcast server can do with the same stack
//!   (tokio, tokio-tungstenite with the room server's buffer sizes, one task per connection with
//!   a queue to its socket): a text frame
//!   starting with `B` goes to every other connection; any other frame is echoed to its sender.
//!   No rooms, no users, no JSON.
//! - `udp-baseline`: a raw UDP forwarder on one socket and one task, like the SFU: a datagram
//!   `SUB` registers its sender as a receiver; any other datagram is copied to every receiver.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Peers = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Utf8Bytes>>>>;

pub async fn serve_ws() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on ws://{}", listener.local_addr()?);
    let peers: Peers = Arc::default();
    let mut next = 0u64;
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        next += 1;
        tokio::spawn(connection(tcp, next, peers.clone()));
    }
}

async fn connection(tcp: tokio::net::TcpStream, id: u64, peers: Peers) {
    // The room server's buffer sizes, so the comparison is of the work, not of the settings.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
    if let Ok(mut p) = peers.lock() {
        p.insert(id, tx.clone());
    }
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text)).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(msg)) = source.next().await {
        let Message::Text(text) = msg else {
            continue;
        };
        if text.as_str().starts_with('B') {
            let targets: Vec<_> = match peers.lock() {
                Ok(p) => p
                    .iter()
                    .filter(|(k, _)| **k != id)
                    .map(|(_, t)| t.clone())
                    .collect(),
                Err(_) => Vec::new(),
            };
            for t in targets {
                let _ = t.send(text.clone());
            }
        } else {
            let _ = tx.send(text);
        }
    }
    if let Ok(mut p) = peers.lock() {
        p.remove(&id);
    }
    drop(tx);
    let _ = writer.await;
}

pub async fn serve_udp() -> std::io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    // The SFU's buffer sizes, so the two compare work, not settings.
    crate::media::set_buffers(&socket);
    println!("listening on udp://{}", socket.local_addr()?);
    let mut receivers: Vec<SocketAddr> = Vec::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        let data = buf.get(..n).unwrap_or_default();
        if data == b"SUB" {
            if !receivers.contains(&from) {
                receivers.push(from);
            }
            continue;
        }
        for r in &receivers {
            if *r != from {
                let _ = socket.send_to(data, r).await;
            }
        }
    }
}
