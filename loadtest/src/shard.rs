//! A shard: a range of connection indices driven by one process, one tokio task per
//! connection. The coordinator runs a shard in-process or asks worker processes (the
//! `worker` subcommand) to run one each, so that a run can exceed one process's
//! open-file limit.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::now_us;
use crate::sio::{self, Conn, Endpoint, Packet};
use crate::stats::{HistData, SeqTracker, Sharded};
use crate::token::{Minter, auth_json};

/// The event name load messages are published under.
pub const EVENT: &str = "lt";

/// What each connection of a shard does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Connect once (through the concurrency limit), record the handshake, then hold the
    /// connection until told to stop, or close it at once.
    Storm,
    /// Connect, subscribe, receive until told to stop.
    Hold,
    /// Like `Hold`, but drop and reconnect after a random hold time, again and again.
    Cycle,
}

/// Reconnection behaviour of `Mode::Cycle`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Cycle {
    /// Mean of the exponentially distributed time a connection lives; 0: it never drops
    /// by itself (only the server ends it).
    pub mean_hold_ms: u64,
    /// Reconnect with `auth.resume` (SPEC 3.7) and count recovered sessions.
    pub resume: bool,
    /// Drop the TCP connection without a close handshake (a network drop).
    pub abrupt: bool,
}

/// Everything a shard needs; serialised to worker processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardJob {
    pub mode: Mode,
    pub urls: Vec<String>,
    /// The tenant key per endpoint (one: the same for all).
    pub secrets: Vec<String>,
    pub kid: Option<String>,
    pub sub_prefix: String,
    /// First connection index of this shard and how many it runs.
    pub start: u64,
    pub count: u64,
    /// Connections over all shards: decides whether to spread source addresses.
    pub total: u64,
    /// Rooms to subscribe to (0: none), named `{room_prefix}{i}`.
    pub rooms: u64,
    pub room_prefix: String,
    pub rooms_per_conn: u64,
    /// Track per-publisher sequences for loss, duplicates and reordering.
    pub track_seq: bool,
    /// Connections of this shard in their handshake at once.
    pub concurrency: usize,
    /// Connections per source address 127.0.0.x when `total` exceeds it.
    pub conns_per_ip: u64,
    /// Get a ticket over HTTP first and connect with `auth: {ticket}`.
    pub ticket: bool,
    pub timeout_ms: u64,
    /// Storm: keep the connections open until stopped.
    pub hold: bool,
    pub cycle: Option<Cycle>,
}

impl ShardJob {
    pub fn rooms_of(&self, idx: u64) -> impl Iterator<Item = u64> + '_ {
        let rpc = if self.rooms == 0 { 0 } else { self.rooms_per_conn.clamp(1, self.rooms) };
        (0..rpc).map(move |j| (idx * rpc + j) % self.rooms)
    }

    /// The source address of connection `idx`'s `attempt`-th connection, if it needs one.
    /// Reconnecting connections rotate over 64 addresses: the server closes first, so it
    /// holds the TIME_WAIT sockets, and a client reusing a port towards one of them can
    /// have its SYN answered with a stale ACK and retried a second later, a loopback
    /// artifact that more source addresses make rare.
    pub fn source_ip(&self, idx: u64, attempt: u64) -> Option<IpAddr> {
        let n = if self.mode == Mode::Cycle {
            (idx + attempt * 17) % 64 + 64 * (idx / self.conns_per_ip.max(1))
        } else if self.total <= self.conns_per_ip || self.conns_per_ip == 0 {
            return None;
        } else {
            idx / self.conns_per_ip
        };
        // 127.0.0.1 .. 127.0.0.254, then 127.0.1.1 ...: all of 127/8 is loopback on Linux.
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, (n / 254) as u8, (n % 254 + 1) as u8)))
    }
}

/// Live counters, polled for the progress bar and for the end of a drain.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub subscribed: AtomicU64,
    pub handshakes: AtomicU64,
    pub delivered: AtomicU64,
    pub unique: AtomicU64,
    pub ready: AtomicBool,
}

/// A copy of `Progress`, also what workers print to the coordinator.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Snap {
    pub done: u64,
    pub connected: u64,
    pub failed: u64,
    pub subscribed: u64,
    pub handshakes: u64,
    pub delivered: u64,
    pub unique: u64,
    pub ready: bool,
}

impl Progress {
    pub fn snap(&self) -> Snap {
        Snap {
            done: self.done.load(Relaxed),
            connected: self.connected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            subscribed: self.subscribed.load(Relaxed),
            handshakes: self.handshakes.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            unique: self.unique.load(Relaxed),
            ready: self.ready.load(Relaxed),
        }
    }
}

impl Snap {
    pub fn add(&mut self, o: &Snap) {
        self.done += o.done;
        self.connected += o.connected;
        self.failed += o.failed;
        self.subscribed += o.subscribed;
        self.handshakes += o.handshakes;
        self.delivered += o.delivered;
        self.unique += o.unique;
        self.ready &= o.ready;
    }
}

/// What a shard measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardResult {
    pub connected: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub handshakes: u64,
    pub handshake: HistData,
    pub ticket: HistData,
    pub delivery: HistData,
    pub room_unique: Vec<u64>,
    pub room_receivers: Vec<u64>,
    pub delivered: u64,
    pub dups: u64,
    pub reorders: u64,
    pub session_ends: BTreeMap<String, u64>,
    /// Connections the server closed without being asked.
    pub dropped: u64,
    pub cycles: u64,
    pub resumes: u64,
    pub recovered: u64,
    pub first_connect_us: u64,
    pub last_connect_us: u64,
    /// With sequence tracking: what the receivers saw of each publisher, grouped. Lets
    /// the coordinator tell acknowledged publishes that went missing (lost) from refused
    /// ones (told), which counts alone cannot.
    #[serde(default)]
    pub seen: Vec<Seen>,
}

/// `subscribers` receivers of `room` saw `publisher`'s sequences below `high` except
/// `holes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub room: u64,
    pub publisher: u64,
    pub high: u64,
    pub holes: Vec<u64>,
    pub subscribers: u64,
}

fn add_seen(all: &mut Vec<Seen>, s: Seen) {
    match all
        .iter_mut()
        .find(|o| o.room == s.room && o.publisher == s.publisher && o.high == s.high && o.holes == s.holes)
    {
        Some(o) => o.subscribers += s.subscribers,
        None => all.push(s),
    }
}

impl ShardResult {
    pub fn merge(&mut self, o: &ShardResult) {
        self.connected += o.connected;
        self.failed += o.failed;
        for (k, v) in &o.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        self.handshakes += o.handshakes;
        self.handshake.merge(&o.handshake);
        self.ticket.merge(&o.ticket);
        self.delivery.merge(&o.delivery);
        add_vec(&mut self.room_unique, &o.room_unique);
        add_vec(&mut self.room_receivers, &o.room_receivers);
        self.delivered += o.delivered;
        self.dups += o.dups;
        self.reorders += o.reorders;
        for (k, v) in &o.session_ends {
            *self.session_ends.entry(k.clone()).or_default() += v;
        }
        self.dropped += o.dropped;
        self.cycles += o.cycles;
        self.resumes += o.resumes;
        self.recovered += o.recovered;
        self.first_connect_us = match (self.first_connect_us, o.first_connect_us) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        self.last_connect_us = self.last_connect_us.max(o.last_connect_us);
        for x in &o.seen {
            add_seen(&mut self.seen, x.clone());
        }
    }
}

fn add_vec(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// State shared by the connection tasks of one shard.
pub struct Shared {
    pub progress: Progress,
    handshake: Sharded,
    ticket: Sharded,
    delivery: Sharded,
    room_unique: Vec<AtomicU64>,
    room_receivers: Vec<AtomicU64>,
    dups: AtomicU64,
    reorders: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    session_ends: Mutex<BTreeMap<String, u64>>,
    dropped: AtomicU64,
    cycles: AtomicU64,
    resumes: AtomicU64,
    recovered: AtomicU64,
    first_connect_us: AtomicU64,
    last_connect_us: AtomicU64,
    seen: Mutex<Vec<Seen>>,
    /// In-process runs may ask to hear about every `session_end`: (index, time, code).
    pub session_end_tx: Mutex<Option<mpsc::UnboundedSender<(u64, u64, String)>>>,
}

impl Shared {
    pub fn new(rooms: u64) -> Arc<Self> {
        Arc::new(Shared {
            progress: Progress::default(),
            handshake: Sharded::new(16),
            ticket: Sharded::new(16),
            delivery: Sharded::new(32),
            room_unique: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
            room_receivers: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
            dups: AtomicU64::new(0),
            reorders: AtomicU64::new(0),
            failures: Mutex::new(BTreeMap::new()),
            session_ends: Mutex::new(BTreeMap::new()),
            dropped: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            first_connect_us: AtomicU64::new(u64::MAX),
            last_connect_us: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
            session_end_tx: Mutex::new(None),
        })
    }

    fn fail(&self, code: String) {
        *self.failures.lock().entry(code).or_default() += 1;
    }

    pub fn result(&self) -> ShardResult {
        let p = self.progress.snap();
        let first = self.first_connect_us.load(Relaxed);
        ShardResult {
            connected: p.connected,
            failed: p.failed,
            failures: self.failures.lock().clone(),
            handshakes: p.handshakes,
            handshake: HistData::of(&self.handshake.merged()),
            ticket: HistData::of(&self.ticket.merged()),
            delivery: HistData::of(&self.delivery.merged()),
            room_unique: self.room_unique.iter().map(|a| a.load(Relaxed)).collect(),
            room_receivers: self.room_receivers.iter().map(|a| a.load(Relaxed)).collect(),
            delivered: p.delivered,
            dups: self.dups.load(Relaxed),
            reorders: self.reorders.load(Relaxed),
            session_ends: self.session_ends.lock().clone(),
            dropped: self.dropped.load(Relaxed),
            cycles: self.cycles.load(Relaxed),
            resumes: self.resumes.load(Relaxed),
            recovered: self.recovered.load(Relaxed),
            first_connect_us: if first == u64::MAX { 0 } else { first },
            last_connect_us: self.last_connect_us.load(Relaxed),
            seen: self.seen.lock().clone(),
        }
    }
}

struct Ctx {
    job: ShardJob,
    endpoints: Vec<Endpoint>,
    /// One per endpoint.
    minters: Vec<Minter>,
    sem: Semaphore,
    http: reqwest::Client,
    shared: Arc<Shared>,
    timeout: Duration,
}

/// Runs a shard until `stop` turns true (and, for a storm without hold, until every
/// connection has been made), then returns what it measured.
pub async fn run(
    job: ShardJob,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<ShardResult> {
    let endpoints = job.urls.iter().map(|u| Endpoint::parse(u)).collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!endpoints.is_empty(), "no --url given");
    let tenant = endpoints[0].tenant().to_string();
    let ctx = Arc::new(Ctx {
        minters: minters(&job.secrets, job.kid.as_deref(), &tenant, endpoints.len())?,
        sem: Semaphore::new(job.concurrency.max(1)),
        http: reqwest::Client::builder().pool_max_idle_per_host(job.concurrency.max(1)).build()?,
        timeout: Duration::from_millis(job.timeout_ms.max(100)),
        shared: shared.clone(),
        endpoints,
        job,
    });
    let mut set = JoinSet::new();
    for idx in ctx.job.start..ctx.job.start + ctx.job.count {
        let ctx = ctx.clone();
        let stop = stop.clone();
        match ctx.job.mode {
            Mode::Storm => set.spawn(storm_conn(idx, ctx, stop)),
            Mode::Hold | Mode::Cycle => set.spawn(hold_conn(idx, ctx, stop)),
        };
    }
    // Readiness: every connection has made (or failed) its first attempt.
    let readiness = {
        let shared = shared.clone();
        let count = ctx.job.count;
        tokio::spawn(async move {
            while shared.progress.done.load(Relaxed) < count {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            shared.progress.ready.store(true, Relaxed);
        })
    };
    while set.join_next().await.is_some() {}
    readiness.abort();
    shared.progress.ready.store(true, Relaxed);
    Ok(shared.result())
}

/// One minter per endpoint: a single secret serves them all, or one secret per endpoint
/// (independent nodes that each generated their own key).
pub fn minters(
    secrets: &[String],
    kid: Option<&str>,
    tenant: &str,
    endpoints: usize,
) -> anyhow::Result<Vec<Minter>> {
    anyhow::ensure!(
        secrets.len() == 1 || secrets.len() == endpoints,
        "give one --secret, or one per --url ({endpoints}), not {}",
        secrets.len()
    );
    Ok((0..endpoints).map(|i| Minter::new(&secrets[i % secrets.len()], kid, tenant, 24 * 3600)).collect())
}

fn sub_of(job: &ShardJob, idx: u64) -> String {
    format!("{}{idx}", job.sub_prefix)
}

/// Gets the credential for one attempt: a token, or a ticket fetched with one.
async fn credential(ctx: &Ctx, idx: u64, e: usize) -> Result<(&'static str, String), String> {
    let ep = &ctx.endpoints[e];
    let minter = &ctx.minters[e];
    let token = minter.mint(&sub_of(&ctx.job, idx)).map_err(|_| "mint_failed".to_string())?;
    if !ctx.job.ticket {
        return Ok(("token", token));
    }
    let t0 = now_us();
    match tokio::time::timeout(ctx.timeout, sio::fetch_ticket(&ctx.http, ep, &token)).await {
        Ok(Ok(t)) => {
            ctx.shared.ticket.record(idx, now_us() - t0);
            Ok(("ticket", t))
        }
        Ok(Err(_)) => Err("ticket_request_failed".into()),
        Err(_) => Err("ticket_timeout".into()),
    }
}

fn note_connected(ctx: &Ctx) {
    let t = now_us();
    ctx.shared.first_connect_us.fetch_min(t, Relaxed);
    ctx.shared.last_connect_us.fetch_max(t, Relaxed);
}

async fn storm_conn(idx: u64, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let e = (idx % ctx.endpoints.len() as u64) as usize;
    let ep = &ctx.endpoints[e];
    let p = &ctx.shared.progress;
    let conn = {
        let Ok(_permit) = ctx.sem.acquire().await else { return };
        let t0 = now_us();
        let r = match credential(&ctx, idx, e).await {
            Ok((field, cred)) => {
                sio::connect(ep, ctx.job.source_ip(idx, 0), &auth_json(field, &cred, None), ctx.timeout)
                    .await
                    .map_err(|f| f.code())
            }
            Err(code) => Err(code),
        };
        match r {
            Ok((conn, _)) => {
                ctx.shared.handshake.record(idx, now_us() - t0);
                p.connected.fetch_add(1, Relaxed);
                p.handshakes.fetch_add(1, Relaxed);
                note_connected(&ctx);
                Some(conn)
            }
            Err(code) => {
                ctx.shared.fail(code);
                p.failed.fetch_add(1, Relaxed);
                None
            }
        }
    };
    p.done.fetch_add(1, Relaxed);
    let Some(mut conn) = conn else { return };
    if !ctx.job.hold {
        conn.close().await;
        return;
    }
    let mut rx = Rx::new(&ctx.job, idx);
    loop {
        tokio::select! {
            t = conn.recv() => match t {
                None => {
                    ctx.shared.dropped.fetch_add(1, Relaxed);
                    return;
                }
                Some(t) => match rx.on_frame(&t, &conn.prefix, &ctx.shared, idx) {
                    Got::Ping => { let _ = conn.pong().await; }
                    Got::Gone => {
                        ctx.shared.dropped.fetch_add(1, Relaxed);
                        return;
                    }
                    _ => {}
                }
            },
            _ = stopped(&mut stop) => break,
        }
    }
    conn.close().await;
}

/// What a received frame meant to the connection.
enum Got {
    Nothing,
    Ping,
    Ack {
        id: u64,
        ok: bool,
        code: Option<String>,
    },
    /// The server ended the session (`session_end`, disconnect or close).
    Gone,
}

/// Per-connection receive state: sequence trackers and the last offset per room.
struct Rx {
    rooms: Vec<u64>,
    track: bool,
    /// (room slot, publisher) -> tracker; a handful of entries, searched linearly.
    trackers: Vec<(u64, u64, SeqTracker)>,
    offsets: Vec<Option<String>>,
    keep_offsets: bool,
}

impl Rx {
    fn new(job: &ShardJob, idx: u64) -> Self {
        let rooms: Vec<u64> = job.rooms_of(idx).collect();
        Rx {
            offsets: vec![None; rooms.len()],
            keep_offsets: job.cycle.is_some_and(|c| c.resume),
            rooms,
            track: job.track_seq,
            trackers: Vec::new(),
        }
    }

    fn on_frame(&mut self, text: &str, prefix: &str, shared: &Shared, idx: u64) -> Got {
        match sio::parse(text, prefix) {
            Packet::Ping => Got::Ping,
            Packet::Ack { id, body } => Got::Ack {
                id,
                ok: body.contains("\"ok\":true"),
                code: sio::str_field(body, "code").map(str::to_string),
            },
            Packet::Disconnect | Packet::Close => Got::Gone,
            Packet::Event { name: "session_end", rest, .. } => {
                let code = sio::str_field(rest, "code").unwrap_or("unknown").to_string();
                if let Some(tx) = &*shared.session_end_tx.lock() {
                    let _ = tx.send((idx, now_us(), code.clone()));
                }
                *shared.session_ends.lock().entry(code).or_default() += 1;
                Got::Nothing
            }
            Packet::Event { name: "session", .. } => Got::Nothing,
            Packet::Event { name: EVENT, rest, .. } => {
                self.on_delivery(rest, shared, idx);
                Got::Nothing
            }
            _ => Got::Nothing,
        }
    }

    fn on_delivery(&mut self, rest: &str, shared: &Shared, idx: u64) {
        let now = now_us();
        // `rest` is `,{data},{meta}]`; our data object is flat, so it ends at the first `}`.
        let data_end = rest.find('}').map_or(rest.len(), |i| i + 1);
        let data = &rest[..data_end];
        let p = &shared.progress;
        p.delivered.fetch_add(1, Relaxed);
        if let Some(t) = sio::num_field(data, "t") {
            shared.delivery.record(idx, now.saturating_sub(t));
        }
        let room = sio::num_field(data, "r").unwrap_or(0);
        let Some(slot) = self.rooms.iter().position(|&r| r == room) else { return };
        if let Some(o) = sio::str_field(&rest[data_end..], "offset").filter(|_| self.keep_offsets) {
            self.offsets[slot] = Some(o.to_string());
        }
        if !self.track {
            return;
        }
        let (Some(publisher), Some(seq)) = (sio::num_field(data, "p"), sio::num_field(data, "s")) else {
            return;
        };
        let i = match self.trackers.iter().position(|(r, q, _)| *r == slot as u64 && *q == publisher) {
            Some(i) => i,
            None => {
                self.trackers.push((slot as u64, publisher, SeqTracker::default()));
                self.trackers.len() - 1
            }
        };
        let t = &mut self.trackers[i].2;
        let before = t.unique;
        t.see(seq);
        if t.unique > before {
            p.unique.fetch_add(1, Relaxed);
        }
    }

    /// `{"session":…,"offsets":{room: offset}}` for `auth.resume`.
    fn resume_json(&self, job: &ShardJob, session: &str) -> String {
        let offsets: Vec<String> = self
            .rooms
            .iter()
            .zip(&self.offsets)
            .filter_map(|(r, o)| o.as_ref().map(|o| format!("\"{}{r}\":\"{o}\"", job.room_prefix)))
            .collect();
        format!("{{\"session\":\"{session}\",\"offsets\":{{{}}}}}", offsets.join(","))
    }

    fn finish(&self, shared: &Shared) {
        let mut seen = shared.seen.lock();
        for (slot, publisher, t) in &self.trackers {
            let (high, holes) = t.holes();
            let room = self.rooms[*slot as usize];
            add_seen(&mut seen, Seen { room, publisher: *publisher, high, holes, subscribers: 1 });
            shared.room_unique[room as usize].fetch_add(t.unique, Relaxed);
            shared.dups.fetch_add(t.dups, Relaxed);
            shared.reorders.fetch_add(t.reorders, Relaxed);
        }
    }
}

/// Subscribes to the connection's rooms; false if any subscription failed.
async fn subscribe(conn: &mut Conn, rx: &mut Rx, ctx: &Ctx, idx: u64) -> bool {
    let mut pending = Vec::new();
    for &r in &rx.rooms.clone() {
        match conn.emit_with_ack("subscribe", &format!("{{\"room\":\"{}{r}\"}}", ctx.job.room_prefix)).await {
            Ok(id) => pending.push(id),
            Err(_) => return false,
        }
    }
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    let mut ok = true;
    let prefix = conn.prefix.clone();
    while !pending.is_empty() {
        let t = match tokio::time::timeout_at(deadline, conn.recv()).await {
            Ok(Some(t)) => t,
            _ => {
                ctx.shared.fail("subscribe_timeout".into());
                return false;
            }
        };
        match rx.on_frame(&t, &prefix, &ctx.shared, idx) {
            Got::Ping => {
                let _ = conn.pong().await;
            }
            Got::Ack { id, ok: acked, code } => {
                pending.retain(|&p| p != id);
                if !acked {
                    ctx.shared.fail(format!("subscribe_{}", code.unwrap_or_else(|| "refused".into())));
                    ok = false;
                }
            }
            Got::Gone => return false,
            Got::Nothing => {}
        }
    }
    ok
}

async fn hold_conn(idx: u64, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let p = &ctx.shared.progress;
    let mut rx = Rx::new(&ctx.job, idx);
    let mut first = true;
    let mut session: Option<String> = None;
    let mut attempts = 0u64;
    loop {
        if *stop.borrow() {
            break;
        }
        let permit = ctx.sem.acquire().await;
        let t0 = now_us();
        // Reconnections go to the next endpoint: a session resumes on another node.
        let e = ((idx + attempts) % ctx.endpoints.len() as u64) as usize;
        let ep = &ctx.endpoints[e];
        let attempt = match credential(&ctx, idx, e).await {
            Ok((field, cred)) => {
                let resume = match (&session, ctx.job.cycle) {
                    (Some(s), Some(c)) if c.resume => Some(rx.resume_json(&ctx.job, s)),
                    _ => None,
                };
                let src = ctx.job.source_ip(idx, attempts);
                attempts += 1;
                sio::connect(ep, src, &auth_json(field, &cred, resume.as_deref()), ctx.timeout)
                    .await
                    .map_err(|f| f.code())
                    .map(|c| (c.0, resume.is_some()))
            }
            Err(code) => Err(code),
        };
        let (mut conn, resumed) = match attempt {
            Ok(c) => c,
            Err(code) => {
                drop(permit);
                ctx.shared.fail(code);
                if first {
                    p.failed.fetch_add(1, Relaxed);
                    p.done.fetch_add(1, Relaxed);
                    first = false;
                }
                if ctx.job.mode == Mode::Cycle {
                    // Back off a little and try again until stopped.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                        _ = stopped(&mut stop) => break,
                    }
                }
                break;
            }
        };
        ctx.shared.handshake.record(idx, now_us() - t0);
        p.handshakes.fetch_add(1, Relaxed);
        note_connected(&ctx);
        if resumed {
            ctx.shared.resumes.fetch_add(1, Relaxed);
            if conn.recovered {
                ctx.shared.recovered.fetch_add(1, Relaxed);
            }
        }
        let subscribed = conn.recovered || subscribe(&mut conn, &mut rx, &ctx, idx).await;
        drop(permit);
        if first {
            first = false;
            p.connected.fetch_add(1, Relaxed);
            if subscribed {
                p.subscribed.fetch_add(1, Relaxed);
                for &r in &rx.rooms {
                    ctx.shared.room_receivers[r as usize].fetch_add(1, Relaxed);
                }
            }
            p.done.fetch_add(1, Relaxed);
        }
        session = Some(conn.session_id.clone());
        let hold = ctx.job.cycle.filter(|c| c.mean_hold_ms > 0).map(|c| {
            let u: f64 = rand::rng().random_range(0.0001..1.0);
            Duration::from_micros((-u.ln() * c.mean_hold_ms as f64 * 1000.0) as u64)
        });
        let until = tokio::time::Instant::now() + hold.unwrap_or(Duration::from_secs(365 * 86400));
        let prefix = conn.prefix.clone();
        let outcome = loop {
            tokio::select! {
                t = conn.recv() => match t {
                    None => break End::Dropped,
                    Some(t) => match rx.on_frame(&t, &prefix, &ctx.shared, idx) {
                        Got::Ping => { let _ = conn.pong().await; }
                        Got::Gone => break End::Dropped,
                        _ => {}
                    }
                },
                _ = stopped(&mut stop) => break End::Stop,
                _ = tokio::time::sleep_until(until) => break End::Cycle,
            }
        };
        match outcome {
            End::Stop => {
                conn.close().await;
                break;
            }
            End::Dropped => {
                ctx.shared.dropped.fetch_add(1, Relaxed);
                if ctx.job.mode != Mode::Cycle {
                    break;
                }
            }
            End::Cycle => {
                ctx.shared.cycles.fetch_add(1, Relaxed);
                if ctx.job.cycle.is_some_and(|c| c.abrupt) {
                    drop(conn);
                } else {
                    conn.close().await;
                }
            }
        }
    }
    if first {
        p.done.fetch_add(1, Relaxed);
    }
    rx.finish(&ctx.shared);
}

/// Resolves once `stop` turns true (without holding the watch guard across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

enum End {
    Stop,
    Dropped,
    Cycle,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(total: u64) -> ShardJob {
        ShardJob {
            mode: Mode::Hold,
            urls: vec![],
            secrets: vec![],
            kid: None,
            sub_prefix: "u".into(),
            start: 0,
            count: total,
            total,
            rooms: 10,
            room_prefix: "r".into(),
            rooms_per_conn: 2,
            track_seq: true,
            concurrency: 1,
            conns_per_ip: 10_000,
            ticket: false,
            timeout_ms: 1000,
            hold: true,
            cycle: None,
        }
    }

    #[test]
    fn assigns_rooms_and_sources() {
        let j = job(5000);
        assert_eq!(j.rooms_of(0).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(j.rooms_of(6).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(j.source_ip(4999, 0), None);
        let mut j = job(50_000);
        assert_eq!(j.source_ip(0, 0), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))));
        assert_eq!(j.source_ip(10_000, 0), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
        assert_eq!(j.source_ip(49_999, 0), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5))));
        j.mode = Mode::Cycle;
        assert_eq!(j.source_ip(1, 1), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 19))));
        assert_eq!(j.source_ip(10_000, 0), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 81))));
    }
}
