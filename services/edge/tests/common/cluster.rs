//! What the cross-node adapter tests share (`adapter.rs` over nats-server,
//! `adapter_memory.rs` over the in-memory transport): a Socket.IO client that answers
//! pings and acks, and the operators called on one node. Included by those two files
//! only (`#[path]`), so that the other test crates do not carry unused helpers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use edge::Edge;
use futures_util::SinkExt;
use serde_json::json;
use testkit::sio::{self, Endpoint, Packet};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::common::{TENANT, token};

pub const NS: &str = "/acme";

/// A test's node: whatever holds the edge.
pub trait HasEdge {
    fn edge(&self) -> &Edge;
}

/// A connected client. A background task answers pings, acknowledges every `ping` event
/// with `"pong-<name>"`, and hands the other frames over.
pub struct Client {
    frames: mpsc::UnboundedReceiver<String>,
    prefix: String,
}

pub async fn client(port: u16, name: &str, rooms: &[&str]) -> Client {
    let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}/{TENANT}")).expect("endpoint");
    let auth = loadtest::token::auth_json("token", &token(name), None);
    let (mut conn, _) = sio::connect(&ep, None, &auth, Duration::from_secs(10)).await.expect("connects");
    let prefix = conn.prefix.clone();
    for room in rooms {
        let id = conn.emit_with_ack("subscribe", &json!({ "room": room }).to_string()).await.expect("send");
        loop {
            let f = tokio::time::timeout(Duration::from_secs(10), conn.recv())
                .await
                .expect("ack in time")
                .expect("open");
            match sio::parse(&f, &prefix) {
                Packet::Ack { id: got, body } if got == id => {
                    assert!(body.contains("\"ok\":true"), "subscribe {room}: {body}");
                    break;
                }
                Packet::Ping => conn.pong().await.expect("pong"),
                _ => {}
            }
        }
    }
    let (tx, frames) = mpsc::unbounded_channel();
    let name = name.to_string();
    let p = prefix.clone();
    tokio::spawn(async move {
        while let Some(f) = conn.recv().await {
            match sio::parse(&f, &p) {
                Packet::Ping => {
                    let _ = conn.pong().await;
                    continue;
                }
                Packet::Event { ack: Some(id), name: "ping", .. } => {
                    let _ = conn.ws.send(Message::text(format!("43{p}{id}[\"pong-{name}\"]"))).await;
                }
                _ => {}
            }
            if tx.send(f).is_err() {
                break;
            }
        }
        let _ = tx.send("closed".into());
    });
    Client { frames, prefix }
}

impl Client {
    /// The next event called `name` (its frame), skipping others; `None` after `within`.
    pub async fn event(&mut self, name: &str, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let f = tokio::time::timeout_at(deadline, self.frames.recv()).await.ok()??;
            if let Packet::Event { name: n, .. } = sio::parse(&f, &self.prefix)
                && n == name
            {
                return Some(f);
            }
        }
    }

    /// Waits for the server's DISCONNECT of the namespace (or the connection's end).
    pub async fn disconnected(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Ok(Some(f)) if f == "closed" || sio::parse(&f, &self.prefix) == Packet::Disconnect => {
                    return true;
                }
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

pub fn ops(n: &impl HasEdge) -> socketioxide::operators::BroadcastOperators<edge::Adapter> {
    n.edge().io().of(NS).expect("the tenant namespace exists on this node")
}

/// Sockets of the tenant seen from `n`, across nodes, and how long the request took.
pub async fn fetch(n: &impl HasEdge) -> (Vec<socketioxide::socket::RemoteSocket<edge::Adapter>>, Duration) {
    let t = Instant::now();
    let s = ops(n).fetch_sockets().await.expect("fetch_sockets");
    (s, t.elapsed())
}

/// Asks `n` again (each ask is a full cross-node request) until it sees `count` sockets of
/// the tenant; fails after `within`.
pub async fn await_sockets(n: &impl HasEdge, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (s, _) = fetch(n).await;
        if s.len() == count {
            return;
        }
        assert!(Instant::now() < deadline, "{} sockets after {within:?}, expected {count}", s.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn nodes_of(sockets: &[socketioxide::socket::RemoteSocket<edge::Adapter>]) -> HashSet<String> {
    sockets.iter().map(|s| s.data().server_id.to_string()).collect()
}
