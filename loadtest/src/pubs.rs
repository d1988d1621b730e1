//! Publishers: connections that send `publish` events at a fixed total rate, spread over
//! rooms, each message carrying its publisher, room, sequence and send time:
//! `{"p":<publisher>,"r":<room>,"s":<sequence in that room>,"t":<µs since epoch>,"x":"<padding>"}`.
//! They run in the coordinator, so the publish counts are known exactly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::clock::now_us;
use crate::sio::{self, Conn, Endpoint, Packet};
use crate::stats::{HistData, Sharded};
use crate::token::{Minter, auth_json};

#[derive(Clone)]
pub struct PubPlan {
    pub endpoints: Vec<Endpoint>,
    /// One per endpoint.
    pub minters: Vec<Minter>,
    pub sub_prefix: String,
    pub publishers: u64,
    /// Messages per second over all publishers.
    pub rate: f64,
    pub rooms: u64,
    pub room_prefix: String,
    pub payload_bytes: usize,
    pub event: String,
    pub timeout: Duration,
    /// Added to the publisher number in messages (`p`), so that two kinds of publishers
    /// into one room (the admin API's lanes and sockets) keep separate sequences.
    pub id_base: u64,
}

/// (room, publisher) → (messages sent: sequences 0..sent, the sequences acknowledged).
pub type Ledger = HashMap<(u64, u64), (u64, Vec<u64>)>;

pub struct PubStats {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub room_acked: Vec<AtomicU64>,
    pub errors: Mutex<BTreeMap<String, u64>>,
    pub ack: Sharded,
    ledger: Mutex<Ledger>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PubResult {
    pub sent: u64,
    pub acked: u64,
    pub room_acked: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    pub ack: HistData,
    /// Per (room, publisher): messages sent (sequences 0..sent) and those acknowledged.
    #[serde(skip)]
    pub ledger: Ledger,
}

impl PubStats {
    pub fn new(rooms: u64) -> Arc<Self> {
        Arc::new(PubStats {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            room_acked: (0..rooms.max(1)).map(|_| AtomicU64::new(0)).collect(),
            errors: Mutex::new(BTreeMap::new()),
            ack: Sharded::new(4),
            ledger: Mutex::new(HashMap::new()),
        })
    }

    fn sent(&self, room: u64, publisher: u64) {
        self.sent.fetch_add(1, Relaxed);
        self.ledger.lock().entry((room, publisher)).or_default().0 += 1;
    }

    fn acked(&self, room: u64, publisher: u64, seq: u64, lane: u64, took_us: u64) {
        self.acked.fetch_add(1, Relaxed);
        self.room_acked[room as usize].fetch_add(1, Relaxed);
        self.ack.record(lane, took_us);
        self.ledger.lock().entry((room, publisher)).or_default().1.push(seq);
    }

    pub fn result(&self) -> PubResult {
        PubResult {
            sent: self.sent.load(Relaxed),
            acked: self.acked.load(Relaxed),
            room_acked: self.room_acked.iter().map(|a| a.load(Relaxed)).collect(),
            errors: self.errors.lock().clone(),
            ack: HistData::of(&self.ack.merged()),
            ledger: self.ledger.lock().clone(),
        }
    }

    fn error(&self, code: &str) {
        *self.errors.lock().entry(code.to_string()).or_default() += 1;
    }
}

/// Connects the publishers (before the measured window starts).
pub async fn connect(plan: &PubPlan) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::new();
    for k in 0..plan.publishers {
        let ep = &plan.endpoints[(k % plan.endpoints.len() as u64) as usize];
        let minter = &plan.minters[(k % plan.minters.len() as u64) as usize];
        let token = minter.mint(&format!("{}{k}", plan.sub_prefix))?;
        let (c, _) = sio::connect(ep, None, &auth_json("token", &token, None), plan.timeout)
            .await
            .map_err(|e| anyhow::anyhow!("publisher {k} could not connect: {e}"))?;
        conns.push(c);
    }
    Ok(conns)
}

/// Runs publisher `k` until `end`, then waits (bounded) for its outstanding acks.
pub async fn run(
    k: u64,
    mut conn: Conn,
    plan: Arc<PubPlan>,
    stats: Arc<PubStats>,
    start: Instant,
    end: Instant,
) {
    let interval = Duration::from_secs_f64(plan.publishers as f64 / plan.rate.max(0.001));
    let first = start + interval.mul_f64(k as f64 / plan.publishers as f64);
    let rooms = plan.rooms.max(1);
    let mut seq = vec![0u64; rooms as usize];
    let pad = "x".repeat(plan.payload_bytes.saturating_sub(80));
    // Ack id → (room, sequence, send time).
    let mut pending: HashMap<u64, (u64, u64, u64)> = HashMap::new();
    let me = plan.id_base + k;
    let mut j: u64 = 0;
    let prefix = conn.prefix.clone();
    let mut next = first;
    loop {
        let publishing = next < end;
        if !publishing && pending.is_empty() {
            break;
        }
        let wake = if publishing { next } else { end + Duration::from_secs(5) };
        tokio::select! {
            t = conn.recv() => {
                let Some(t) = t else {
                    stats.error("publisher_disconnected");
                    return;
                };
                match sio::parse(&t, &prefix) {
                    Packet::Ping => { let _ = conn.pong().await; }
                    Packet::Ack { id, body } => {
                        if let Some((room, s, sent)) = pending.remove(&id) {
                            if body.contains("\"ok\":true") {
                                stats.acked(room, me, s, id, now_us() - sent);
                            } else {
                                stats.error(sio::str_field(body, "code").unwrap_or("refused"));
                            }
                        }
                    }
                    Packet::Disconnect | Packet::Close => {
                        stats.error("publisher_disconnected");
                        return;
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if !publishing {
                    for _ in pending.drain() {
                        stats.error("ack_timeout");
                    }
                    break;
                }
                let g = j * plan.publishers + k;
                let room = g % rooms;
                let s = seq[room as usize];
                seq[room as usize] += 1;
                let t = now_us();
                let payload = format!(
                    "{{\"room\":\"{}{room}\",\"event\":\"{}\",\"data\":{{\"p\":{me},\"r\":{room},\"s\":{s},\"t\":{t},\"x\":\"{pad}\"}}}}",
                    plan.room_prefix, plan.event
                );
                match conn.emit_with_ack("publish", &payload).await {
                    Ok(id) => {
                        pending.insert(id, (room, s, t));
                        stats.sent(room, me);
                    }
                    Err(_) => {
                        stats.error("publisher_send_failed");
                        return;
                    }
                }
                j += 1;
                next = first + interval.mul_f64(j as f64);
            }
        }
    }
    conn.close().await;
}

/// `server-publish`: lanes that POST `{admin}/tenants/{t}/rooms/{room}/messages`, one
/// request in flight each. Lane `k` is publisher `k` of room 0: it sends its next request
/// only after the previous one was answered, so its sequence numbers stay in order.
pub struct HttpPlan {
    pub http: reqwest::Client,
    /// The room's messages URL.
    pub url: String,
    pub token: String,
    pub event: String,
    pub lanes: u64,
    /// Total requests per second over all lanes; `None`: as fast as answers come.
    pub rate: Option<f64>,
    pub payload_bytes: usize,
}

/// Runs lane `k` until `end`; 202 answers count as acked into room 0.
pub async fn run_http(k: u64, plan: Arc<HttpPlan>, stats: Arc<PubStats>, start: Instant, end: Instant) {
    let interval = plan.rate.map(|r| Duration::from_secs_f64(plan.lanes as f64 / r.max(0.001)));
    let first = start + interval.map_or(Duration::ZERO, |i| i.mul_f64(k as f64 / plan.lanes as f64));
    let pad = "x".repeat(plan.payload_bytes.saturating_sub(80));
    tokio::time::sleep_until(first).await;
    let mut s: u64 = 0;
    loop {
        if let Some(i) = interval {
            let next = first + i.mul_f64(s as f64);
            if next >= end {
                break;
            }
            tokio::time::sleep_until(next).await;
        } else if Instant::now() >= end {
            break;
        }
        let t = now_us();
        let body = format!(
            "{{\"event\":\"{}\",\"data\":{{\"p\":{k},\"r\":0,\"s\":{s},\"t\":{t},\"x\":\"{pad}\"}}}}",
            plan.event
        );
        let seq = s;
        s += 1;
        stats.sent(0, k);
        let r = plan
            .http
            .post(&plan.url)
            .bearer_auth(&plan.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match r {
            Ok(r) => {
                let status = r.status();
                // Read the body so that the connection goes back to the pool.
                let ok = r.bytes().await.is_ok();
                if status == reqwest::StatusCode::ACCEPTED && ok {
                    stats.acked(0, k, seq, k, now_us().saturating_sub(t));
                } else {
                    stats.error(&format!("http_{}", status.as_u16()));
                }
            }
            Err(e) if e.is_timeout() => stats.error("request_timeout"),
            Err(_) => stats.error("request_failed"),
        }
    }
}
