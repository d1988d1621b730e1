//! The NATS bus: several nodes, one service.
//!
//! # Subjects
//! - `sb.s.<tenant>.<room>`: where events are published, through JetStream. The stream
//!   `SB_ROOMS` stores them (the room history that resume reads) and gives each its
//!   sequence: the room offset.
//! - `sb.m.<tenant>.<room>`: where nodes receive. The stream republishes every stored
//!   event here, in sequence order, with `Nats-Sequence`; presence changes are published
//!   here directly. A node subscribes to a room's `sb.m` subject only while it has local
//!   subscribers of the room, so a message travels only to nodes that need it.
//! - `sb.ctl`: control messages, every node.
//! - `sb.hb`: heartbeats, every node, every second.
//!
//! Tenant ids are `[a-z0-9-]`; room names are escaped by [`escape_room`], so no user input
//! can become a wildcard (`*`, `>`) or a second token (`.`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use prost::Message as _;

use crate::pb;
use crate::{
    Bus, BusError, Control, ControlMeta, Message, Payload, Publish, Published, Replay, Sink, TraceContext,
    now_ms,
};

/// How to reach NATS, and how much history to keep.
#[derive(Clone)]
pub struct NatsConfig {
    pub url: String,
    pub node_id: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// An nkey seed (`SU…`).
    pub nkey_seed: Option<String>,
    pub require_tls: bool,
    /// A PEM file of CA certificates to trust for TLS.
    pub ca_file: Option<std::path::PathBuf>,
    /// How long the room history keeps messages.
    pub history_max_age: Duration,
    /// Most messages kept per room.
    pub history_max_per_room: i64,
    /// File storage survives a NATS restart; memory storage is faster.
    pub history_in_memory: bool,
    /// How long `connect` waits for the first connection before giving up.
    pub connect_timeout: Duration,
    /// Messages the client library buffers per subscription; beyond that it drops them
    /// (a slow consumer), and rooms read what was dropped back from the stream.
    pub subscription_capacity: usize,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.url)
            .field("node_id", &self.node_id)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("nkey_seed", &self.nkey_seed.as_ref().map(|_| "<redacted>"))
            .field("require_tls", &self.require_tls)
            .field("ca_file", &self.ca_file)
            .field("history_max_age", &self.history_max_age)
            .field("history_max_per_room", &self.history_max_per_room)
            .field("history_in_memory", &self.history_in_memory)
            .field("connect_timeout", &self.connect_timeout)
            .field("subscription_capacity", &self.subscription_capacity)
            .finish()
    }
}

impl NatsConfig {
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            node_id: node_id.into(),
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            require_tls: false,
            ca_file: None,
            history_max_age: Duration::from_secs(15 * 60),
            history_max_per_room: 10_000,
            history_in_memory: false,
            connect_timeout: Duration::from_secs(10),
            subscription_capacity: 64 * 1024,
        }
    }
}

pub const STREAM: &str = "SB_ROOMS";
const CONTROL: &str = "sb.ctl";
const HEARTBEAT: &str = "sb.hb";
/// A node not heard from for this long is forgotten.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(15);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long a room keeps trying to read missed events from a stream that does not answer.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(5);
/// The longest a publish waits for the stream's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Escapes a room name into one subject token: room characters other than `.` pass
/// through, every other byte becomes `%XX`.
pub fn escape_room(room: &str) -> String {
    let mut out = String::with_capacity(room.len());
    for b in room.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'@' | b'/' | b'=') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes a tenant id: ids are validated `[a-z0-9-]`, but the bus does not trust that.
fn escape_tenant(t: &str) -> String {
    escape_room(t)
}

fn subject(kind: &str, tenant: &str, room: &str) -> String {
    format!("sb.{kind}.{}.{}", escape_tenant(tenant), escape_room(room))
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// The NATS [`Bus`].
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    cfg: NatsConfig,
    sink: Arc<OnceLock<Arc<dyn Sink>>>,
    rooms: Mutex<HashMap<(String, String), tokio::task::JoinHandle<()>>>,
    nodes: Arc<Mutex<HashMap<String, Instant>>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Random per process: message ids (`<node>-<boot>-<n>`) must never repeat across
    /// restarts of a node, because the stream drops a publish whose `Nats-Msg-Id` it saw
    /// within its duplicate window (2 min) as a retry, and a restarted node counts from 1.
    boot: u32,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Counts (re)connections to NATS and slow-consumer drops: room tasks catch up from
    /// history after each.
    reconnects: tokio::sync::watch::Receiver<u64>,
    /// Whether the server has JetStream. Without it (the NATS Helm chart's default) the
    /// bus still fans out, carries presence and control messages, and tracks nodes; events
    /// go straight to the rooms' delivery subjects with offset 0 and no history is kept.
    history: bool,
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for (_, t) in self.rooms.lock().drain() {
            t.abort();
        }
    }
}

impl NatsBus {
    /// Connects, makes sure the room stream exists, and starts the control and heartbeat
    /// tasks. Reconnects by itself after an outage.
    pub async fn connect(cfg: NatsConfig) -> Result<NatsBus, BusError> {
        let (reconnect_tx, reconnects) = tokio::sync::watch::channel(0u64);
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("switchboard-{}", cfg.node_id))
            .connection_timeout(Duration::from_secs(3))
            .ping_interval(Duration::from_secs(5))
            .retry_on_initial_connect()
            .subscription_capacity(cfg.subscription_capacity.max(1))
            .reconnect_delay_callback(|attempt| Duration::from_millis((100 * attempt as u64).min(2_000)))
            .event_callback(move |e| {
                let tx = reconnect_tx.clone();
                async move {
                    // After a reconnection, or when the client library dropped messages
                    // of a subscription that was not read fast enough, rooms read what
                    // they missed back from the stream.
                    if matches!(e, async_nats::Event::Connected | async_nats::Event::SlowConsumer(_)) {
                        tx.send_modify(|n| *n += 1);
                    }
                    // A slow consumer is reported once per dropped message.
                    if matches!(e, async_nats::Event::SlowConsumer(_)) {
                        tracing::debug!(event = %e, "nats");
                    } else {
                        tracing::info!(event = %e, "nats");
                    }
                }
            });
        if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &cfg.token {
            opts = opts.token(t.clone());
        }
        if let Some(s) = &cfg.nkey_seed {
            opts = opts.nkey(s.clone());
        }
        if cfg.require_tls {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &cfg.ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        let client = opts.connect(&cfg.url).await.map_err(unavailable)?;
        // `retry_on_initial_connect` returns at once; wait for the first connection so
        // that a misconfigured URL is reported at start-up.
        let deadline = Instant::now() + cfg.connect_timeout;
        while client.connection_state() != async_nats::connection::State::Connected {
            if Instant::now() > deadline {
                return Err(BusError::Unavailable(format!("cannot reach NATS at {}", cfg.url)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut js = jetstream::new(client.clone());
        js.set_timeout(PUBLISH_TIMEOUT);
        let mut bus = NatsBus {
            client,
            js,
            cfg,
            sink: Arc::new(OnceLock::new()),
            rooms: Mutex::new(HashMap::new()),
            nodes: Arc::new(Mutex::new(HashMap::new())),
            next_id: std::sync::atomic::AtomicU64::new(1),
            boot: rand::random(),
            tasks: Vec::new(),
            reconnects,
            history: true,
        };
        bus.history = bus.jetstream_enabled().await?;
        if bus.history {
            bus.ensure_stream().await?;
        } else {
            tracing::warn!(
                url = bus.cfg.url,
                "NATS has no JetStream: room history is off, so resumes that need missed \
                 messages start fresh (recovered: false); run nats-server with -js to keep it"
            );
        }
        bus.start_tasks().await?;
        Ok(bus)
    }

    /// What socketioxide's cross-node adapter needs, over this bus's connection: one NATS
    /// connection per process.
    pub fn adapter_state(&self) -> crate::AdapterState {
        crate::AdapterState::nats(
            self.client.clone(),
            self.cfg.node_id.clone(),
            crate::AdapterConfig::default(),
        )
    }

    /// Asks the server whether this account has JetStream; an outage is an error, a plain
    /// server is `false`. A raw `$JS.API.INFO` request rather than async-nats's
    /// `query_account`, whose answer type does not decode every server version's reply.
    async fn jetstream_enabled(&self) -> Result<bool, BusError> {
        let req = self.client.request("$JS.API.INFO", Bytes::new());
        match tokio::time::timeout(PUBLISH_TIMEOUT, req).await {
            Err(_) => Err(BusError::Unavailable("NATS did not answer in time".into())),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(false),
            Ok(Err(e)) => Err(unavailable(e)),
            Ok(Ok(m)) => {
                let code = serde_json::from_slice::<serde_json::Value>(&m.payload)
                    .ok()
                    .and_then(|v| v.get("error")?.get("err_code")?.as_u64());
                // 10039: not enabled for the account; 10076: not enabled on the server.
                Ok(!matches!(code, Some(10039 | 10076)))
            }
        }
    }

    async fn ensure_stream(&self) -> Result<(), BusError> {
        let config = jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec!["sb.s.>".into()],
            max_age: self.cfg.history_max_age,
            max_messages_per_subject: self.cfg.history_max_per_room,
            storage: if self.cfg.history_in_memory {
                jetstream::stream::StorageType::Memory
            } else {
                jetstream::stream::StorageType::File
            },
            discard: jetstream::stream::DiscardPolicy::Old,
            allow_direct: true,
            republish: Some(jetstream::stream::Republish {
                source: "sb.s.>".into(),
                destination: "sb.m.>".into(),
                headers_only: false,
            }),
            ..Default::default()
        };
        let stream = self.js.get_or_create_stream(config.clone()).await.map_err(unavailable)?;
        // An existing stream keeps the limits it was created with: apply ours, so that a
        // changed `--history-seconds` or `--history-max-per-room` takes effect. (Storage
        // cannot be changed in place; a stream on the other kind stays as it is.)
        let have = &stream.cached_info().config;
        if have.max_age != config.max_age || have.max_messages_per_subject != config.max_messages_per_subject
        {
            tracing::info!(
                from_seconds = have.max_age.as_secs(),
                to_seconds = config.max_age.as_secs(),
                from_per_room = have.max_messages_per_subject,
                to_per_room = config.max_messages_per_subject,
                "updating the room history's limits"
            );
            let update = jetstream::stream::Config { storage: have.storage, ..config };
            if let Err(e) = self.js.update_stream(update).await {
                tracing::warn!(error = %e, "the room history's limits could not be updated; the stream's own apply");
            }
        }
        Ok(())
    }

    async fn start_tasks(&mut self) -> Result<(), BusError> {
        let mut ctl = self.client.subscribe(CONTROL).await.map_err(unavailable)?;
        let sink = self.sink.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(m) = ctl.next().await {
                let Some((c, meta)) = decode_control_with(&m.payload) else {
                    tracing::warn!("undecodable control message dropped");
                    continue;
                };
                if let Some(s) = sink.get() {
                    s.control_with(c, meta).await;
                }
            }
        }));

        let mut hb = self.client.subscribe(HEARTBEAT).await.map_err(unavailable)?;
        let nodes = self.nodes.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(m) = hb.next().await {
                let Ok(h) = pb::Heartbeat::decode(m.payload.as_ref()) else { continue };
                let mut n = nodes.lock();
                if h.leaving {
                    n.remove(&h.node);
                } else {
                    n.insert(h.node, Instant::now());
                }
            }
        }));

        let client = self.client.clone();
        let node = self.cfg.node_id.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                tick.tick().await;
                let h = pb::Heartbeat { node: node.clone(), ts: now_ms(), connections: 0, leaving: false };
                let _ = client.publish(HEARTBEAT, Bytes::from(h.encode_to_vec())).await;
            }
        }));
        self.round_trip().await
    }

    /// Returns once the server has processed everything this connection sent before:
    /// a message to our own inbox comes back only after the server handled the earlier
    /// SUBs. (`flush` only empties the local write buffer.)
    async fn round_trip(&self) -> Result<(), BusError> {
        let inbox = self.client.new_inbox();
        let mut sub = self.client.subscribe(inbox.clone()).await.map_err(unavailable)?;
        self.client.publish(inbox, Bytes::new()).await.map_err(unavailable)?;
        tokio::time::timeout(PUBLISH_TIMEOUT, sub.next())
            .await
            .map_err(|_| BusError::Unavailable("NATS did not answer in time".into()))?
            .ok_or_else(|| BusError::Unavailable("NATS connection closed".into()))?;
        Ok(())
    }

    fn encode_room(&self, p: &Publish, id: &str, ts: i64) -> pb::RoomMessage {
        let payload = match &p.payload {
            Payload::Event { event, data } => pb::room_message::Payload::Event(pb::Event {
                event: event.clone(),
                data_json: serde_json::to_vec(data).unwrap_or_default(),
            }),
            Payload::PresenceJoin { sub, meta } => {
                pb::room_message::Payload::PresenceJoin(presence(sub, meta))
            }
            Payload::PresenceLeave { sub, meta } => {
                pb::room_message::Payload::PresenceLeave(presence(sub, meta))
            }
        };
        pb::RoomMessage {
            tenant: p.tenant.clone(),
            room: p.room.clone(),
            payload: Some(payload),
            from: p.from.clone(),
            origin_node: self.cfg.node_id.clone(),
            origin_conn: p.origin_conn.clone().unwrap_or_default(),
            echo: p.echo,
            id: id.to_string(),
            ts,
            trace: p.trace.clone(),
        }
    }

    /// Publishes to the stream with the message id as `Nats-Msg-Id`: when an
    /// acknowledgement is lost (NATS frozen or restarting) and the publish is tried
    /// again, the stream stores the event once (within its duplicate window, 2 min).
    async fn js_publish(&self, subject: String, id: &str, body: Bytes) -> Result<u64, BusError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let ack = self.js.publish_with_headers(subject, headers, body).await.map_err(unavailable)?;
        let ack = tokio::time::timeout(PUBLISH_TIMEOUT, ack)
            .await
            .map_err(|_| BusError::Unavailable("publish not acknowledged in time".into()))?
            .map_err(unavailable)?;
        Ok(ack.sequence)
    }
}

/// Stored events of a room after `after` and before `before` (if given), oldest first,
/// at most `limit`. Retried while JetStream is not answering (it recovers its streams for
/// a while after a restart), for at most [`CATCH_UP_PATIENCE`]; what it could not read
/// is then reported, not hidden.
async fn catch_up(
    js: &jetstream::Context,
    stored: &str,
    after: u64,
    before: Option<u64>,
    node: &str,
    limit: usize,
    batch: usize,
) -> Vec<Message> {
    let deadline = Instant::now() + CATCH_UP_PATIENCE;
    let mut pause = Duration::from_millis(50);
    let mut out: Vec<Message> = Vec::new();
    let mut next = after + 1;
    loop {
        match catch_up_once(js, stored, &mut next, before, (node, limit, batch), &mut out).await {
            Ok(()) => break,
            Err(e) if Instant::now() + pause < deadline => {
                tracing::debug!(error = %e, "catching up on a room: retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    after = next - 1,
                    "catching up on a room failed: events after this offset may be missing here"
                );
                break;
            }
        }
    }
    if !out.is_empty() {
        tracing::info!(events = out.len(), "caught up on a room");
    }
    out
}

/// One pass of [`catch_up`]; `next` and `out` keep what was read, so that a retry
/// goes on where the failed pass stopped.
async fn catch_up_once(
    js: &jetstream::Context,
    stored: &str,
    next: &mut u64,
    before: Option<u64>,
    (node, limit, batch): (&str, usize, usize),
    out: &mut Vec<Message>,
) -> Result<(), String> {
    let stream = js.get_stream_no_info(STREAM).await.map_err(|e| e.to_string())?;
    read_range(&stream, stored, next, before, (node, limit, batch), out)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Events read one request each before [`read_range`] switches to a consumer: a live
/// gap is usually a handful of events, a resume often thousands.
const DIRECT_READS: usize = 16;
/// Events asked for per consumer fetch, unless the client library keeps fewer per
/// subscription (`NatsConfig::subscription_capacity`): a fetch's replies arrive on a
/// subscription, and what does not fit would be dropped.
const FETCH_BATCH: usize = 512;

/// Reads a room's stored events from `next` on, in order, until `before` (exclusive),
/// the end of the room or `limit` events in `out`. `true` when it stopped at the end
/// of the room (or at `before`), `false` at `limit`. `batch` is the most events one
/// fetch may bring.
///
/// The first few events come from direct gets. Past those it reads through a short-lived
/// pull consumer filtered on the room, hundreds of events per request: under a mass
/// resume (an edge killed, its clients all resuming elsewhere) one request per event
/// meant hundreds of thousands of round trips, and resumes that outlived the history.
async fn read_range<I: Clone + Send + Sync + 'static>(
    stream: &jetstream::stream::Stream<I>,
    subj: &str,
    next: &mut u64,
    before: Option<u64>,
    (node, limit, batch): (&str, usize, usize),
    out: &mut Vec<Message>,
) -> Result<bool, BusError> {
    use jetstream::stream::DirectGetErrorKind;
    let reached = |seq: u64| before.is_some_and(|b| seq >= b);
    let mut direct = 0;
    while direct < DIRECT_READS {
        if out.len() >= limit {
            return Ok(false);
        }
        if reached(*next) {
            return Ok(true);
        }
        match stream.direct_get_next_for_subject(subj, Some(*next)).await {
            Ok(m) => {
                if reached(m.sequence) {
                    return Ok(true);
                }
                *next = m.sequence + 1;
                match decode_room(&m.payload, m.sequence, node) {
                    Some(msg) => out.push(msg),
                    None => tracing::warn!(seq = m.sequence, "undecodable stored message skipped"),
                }
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(unavailable(e)),
        }
        direct += 1;
    }
    if out.len() >= limit {
        return Ok(false);
    }
    if reached(*next) {
        return Ok(true);
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: subj.to_string(),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: *next },
            ack_policy: jetstream::consumer::AckPolicy::None,
            memory_storage: true,
            num_replicas: 1,
            // A backstop: the consumer is deleted when done, but a node killed meanwhile
            // leaves it to the server to clean up.
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    let name = consumer.cached_info().name.clone();
    let result = fetch_all(&consumer, next, &reached, (node, limit, batch), out).await;
    let stream = stream.clone();
    tokio::spawn(async move {
        if let Err(e) = stream.delete_consumer(&name).await {
            tracing::debug!(error = %e, "history consumer not deleted; it expires by itself");
        }
    });
    result
}

/// The consumer half of [`read_range`].
async fn fetch_all(
    consumer: &jetstream::consumer::PullConsumer,
    next: &mut u64,
    reached: &impl Fn(u64) -> bool,
    (node, limit, batch): (&str, usize, usize),
    out: &mut Vec<Message>,
) -> Result<bool, BusError> {
    // The consumer numbers what it delivers 1, 2, …: a number skipped is an event lost on
    // the way (the subscription overflowed), and what follows it must not be used.
    let mut expected = 1;
    loop {
        let want = batch.clamp(1, FETCH_BATCH).min(limit - out.len());
        if want == 0 {
            return Ok(false);
        }
        let mut batch = consumer.fetch().max_messages(want).messages().await.map_err(unavailable)?;
        let mut got = 0;
        while let Some(m) = batch.next().await {
            let m = m.map_err(unavailable)?;
            let info = m.info().map_err(unavailable)?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if info.consumer_sequence != expected {
                return Err(BusError::Unavailable(
                    "events were lost while reading the room's history".into(),
                ));
            }
            expected += 1;
            if reached(seq) {
                return Ok(true);
            }
            got += 1;
            *next = seq + 1;
            match decode_room(&m.payload, seq, node) {
                Some(msg) => out.push(msg),
                None => tracing::warn!(seq, "undecodable stored message skipped"),
            }
            if pending == 0 {
                return Ok(true);
            }
            if out.len() >= limit {
                return Ok(false);
            }
        }
        // Nothing more was there to fetch.
        if got == 0 {
            return Ok(true);
        }
    }
}

/// The stream sequence and the room's previous sequence that the stream's republish
/// puts on a live event (`Nats-Sequence`, `Nats-Last-Sequence`); zeros when absent.
fn sequences(m: &async_nats::Message) -> (u64, u64) {
    let get = |name: &str| {
        m.headers.as_ref().and_then(|h| h.get(name)).and_then(|v| v.as_str().parse::<u64>().ok()).unwrap_or(0)
    };
    (get("Nats-Sequence"), get("Nats-Last-Sequence"))
}

fn presence(sub: &str, meta: &Option<serde_json::Value>) -> pb::Presence {
    pb::Presence {
        sub: sub.to_string(),
        meta_json: meta.as_ref().map(|m| serde_json::to_vec(m).unwrap_or_default()).unwrap_or_default(),
    }
}

fn meta_of(b: &[u8]) -> Option<serde_json::Value> {
    if b.is_empty() { None } else { serde_json::from_slice(b).ok() }
}

/// Decodes a delivered room message; `offset` comes from the republish header.
pub fn decode_room(body: &[u8], offset: u64, this_node: &str) -> Option<Message> {
    let m = pb::RoomMessage::decode(body).ok()?;
    let payload = match m.payload? {
        pb::room_message::Payload::Event(e) => {
            Payload::Event { event: e.event, data: serde_json::from_slice(&e.data_json).ok()? }
        }
        pb::room_message::Payload::PresenceJoin(p) => {
            Payload::PresenceJoin { meta: meta_of(&p.meta_json), sub: p.sub }
        }
        pb::room_message::Payload::PresenceLeave(p) => {
            Payload::PresenceLeave { meta: meta_of(&p.meta_json), sub: p.sub }
        }
    };
    // A connection id means something only on the node that owns it.
    let origin_conn = (m.origin_node == this_node && !m.origin_conn.is_empty()).then_some(m.origin_conn);
    Some(Message {
        tenant: m.tenant,
        room: m.room,
        payload,
        from: m.from,
        origin_conn,
        echo: m.echo,
        id: m.id,
        offset,
        ts: m.ts,
        trace: m.trace,
    })
}

fn encode_control(c: &Control, node: &str, trace: TraceContext) -> Vec<u8> {
    use pb::control::Kind;
    let kind = match c {
        Control::Revoked { tenant, revocation } => Kind::Revoked(pb::Revoked {
            tenant: tenant.clone(),
            revocation_json: serde_json::to_vec(revocation).unwrap_or_default(),
        }),
        Control::Kick { tenant, sub } => Kind::Kick(pb::Kick { tenant: tenant.clone(), sub: sub.clone() }),
        Control::TenantChanged { tenant } => {
            Kind::TenantChanged(pb::TenantChanged { tenant: tenant.clone() })
        }
        Control::TenantDeleted { tenant } => {
            Kind::TenantDeleted(pb::TenantDeleted { tenant: tenant.clone() })
        }
    };
    pb::Control { kind: Some(kind), origin_node: node.to_string(), trace, sent_ms: now_ms() }.encode_to_vec()
}

/// Decodes a control message; `None` for one this version does not understand.
pub fn decode_control(b: &[u8]) -> Option<Control> {
    decode_control_with(b).map(|(c, _)| c)
}

/// [`decode_control`] with what travelled along: the trace context and the send time.
pub fn decode_control_with(b: &[u8]) -> Option<(Control, ControlMeta)> {
    use pb::control::Kind;
    let m = pb::Control::decode(b).ok()?;
    let meta = ControlMeta { trace: m.trace, sent_ms: m.sent_ms };
    let c = match m.kind? {
        Kind::Revoked(r) => Control::Revoked {
            tenant: r.tenant,
            revocation: serde_json::from_slice(&r.revocation_json).ok()?,
        },
        Kind::Kick(k) => Control::Kick { tenant: k.tenant, sub: k.sub },
        Kind::TenantChanged(t) => Control::TenantChanged { tenant: t.tenant },
        Kind::TenantDeleted(t) => Control::TenantDeleted { tenant: t.tenant },
    };
    Some((c, meta))
}

#[async_trait]
impl Bus for NatsBus {
    fn attach(&self, sink: Arc<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    async fn publish(&self, p: Publish) -> Result<Published, BusError> {
        let n = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}-{:08x}-{n:x}", self.cfg.node_id, self.boot);
        let ts = now_ms();
        let body = Bytes::from(self.encode_room(&p, &id, ts).encode_to_vec());
        let offset = match &p.payload {
            // Without JetStream an event is published like a presence change: straight to
            // the nodes that receive the room, with no offset. The publisher is told only
            // if the connection is down (a plain publish is buffered, never acknowledged).
            Payload::Event { .. } if !self.history => {
                if self.client.connection_state() != async_nats::connection::State::Connected {
                    return Err(BusError::Unavailable("not connected to NATS".into()));
                }
                self.client.publish(subject("m", &p.tenant, &p.room), body).await.map_err(unavailable)?;
                0
            }
            Payload::Event { .. } => {
                let subj = subject("s", &p.tenant, &p.room);
                match self.js_publish(subj.clone(), &id, body.clone()).await {
                    Ok(seq) => seq,
                    Err(first) => {
                        // The stream may be gone (a NATS restart with memory storage, or
                        // an operator deleting it): make sure it exists and try once more.
                        tracing::debug!(error = %first, "publish failed; re-checking the stream");
                        self.ensure_stream().await?;
                        self.js_publish(subj, &id, body).await?
                    }
                }
            }
            _ => {
                self.client.publish(subject("m", &p.tenant, &p.room), body).await.map_err(unavailable)?;
                0
            }
        };
        Ok(Published { id, offset, ts })
    }

    async fn set_interest(&self, tenant: &str, room: &str, interested: bool) -> Result<(), BusError> {
        let key = (tenant.to_string(), room.to_string());
        if !interested {
            if let Some(t) = self.rooms.lock().remove(&key) {
                t.abort();
            }
            return Ok(());
        }
        if self.rooms.lock().contains_key(&key) {
            return Ok(());
        }
        let mut sub = self.client.subscribe(subject("m", tenant, room)).await.map_err(unavailable)?;
        // Events are delivered in offset order, each once. After a NATS outage the room
        // catches up from the stream, so that subscribers on this node miss nothing that
        // was published while this node was cut off.
        let mut last = self.last_offset(tenant, room).await?;
        let history = self.history;
        let sink = self.sink.clone();
        let node = self.cfg.node_id.clone();
        let js = self.js.clone();
        let stored = subject("s", tenant, room);
        let limit = self.cfg.history_max_per_room.max(1) as usize;
        let batch = self.cfg.subscription_capacity;
        let mut reconnected = self.reconnects.clone();
        reconnected.borrow_and_update();
        let task = tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    // A reconnection is handled before the messages that follow it.
                    biased;
                    r = reconnected.changed() => {
                        if r.is_err() {
                            break;
                        }
                        // Without history there is nothing to catch up from.
                        if !history {
                            continue;
                        }
                        // A stream that lost its messages (memory storage, NATS
                        // restarted) starts its sequence again: start over with it.
                        let reset = match js.get_stream(STREAM).await {
                            Ok(st) => st.cached_info().state.last_sequence < last,
                            Err(e) => matches!(
                                e.kind(),
                                jetstream::context::GetStreamErrorKind::JetStream(j)
                                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                            ),
                        };
                        if reset {
                            tracing::warn!("the room stream was reset; offsets start again");
                            last = 0;
                        }
                        catch_up(&js, &stored, last, None, &node, limit, batch).await
                    }
                    m = sub.next() => {
                        let Some(m) = m else { break };
                        let (offset, previous) = sequences(&m);
                        let Some(msg) = decode_room(&m.payload, offset, &node) else {
                            tracing::warn!("undecodable room message dropped");
                            continue;
                        };
                        // The stream says which event of the room came before this one.
                        // If this node has not delivered it, events went missing on the
                        // way (a reconnection, or the client library dropping messages
                        // for a slow subscription): read them from the stream first, so
                        // that local subscribers get every event, in order.
                        if history && previous > last {
                            let mut batch = catch_up(&js, &stored, last, Some(offset), &node, limit, batch).await;
                            batch.push(msg);
                            batch
                        } else {
                            vec![msg]
                        }
                    }
                };
                for msg in batch {
                    // Presence changes carry no offset; events at or below `last` were
                    // delivered already (by the stream or by a catch-up).
                    if msg.offset != 0 {
                        if msg.offset <= last {
                            continue;
                        }
                        last = msg.offset;
                    }
                    if let Some(s) = sink.get() {
                        s.deliver(Arc::new(msg)).await;
                    }
                }
            }
        });
        if let Some(old) = self.rooms.lock().insert(key, task) {
            old.abort();
        }
        // Once the server has the subscription, every later publish reaches this node.
        self.round_trip().await
    }

    async fn control_with(&self, c: Control, trace: TraceContext) -> Result<(), BusError> {
        let body = encode_control(&c, &self.cfg.node_id, trace);
        self.client.publish(CONTROL, Bytes::from(body)).await.map_err(unavailable)?;
        self.client.flush().await.map_err(unavailable)
    }

    async fn history(&self, tenant: &str, room: &str, after: u64, max: usize) -> Result<Replay, BusError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        use futures_util::TryStreamExt;
        if !self.history {
            return Ok(Replay { complete: false, messages: Vec::new(), last: 0 });
        }
        let subj = subject("s", tenant, room);
        let mut stream = self.js.get_stream(STREAM).await.map_err(unavailable)?;
        // An offset beyond the stream's end comes from before a reset of the stream (or
        // from nowhere): nothing can be promised about what followed it.
        let beyond_end = after > stream.cached_info().state.last_sequence;
        let mut messages = Vec::new();
        let mut next = after + 1;
        let exhausted = read_range(
            &stream,
            &subj,
            &mut next,
            None,
            (&self.cfg.node_id, max, self.cfg.subscription_capacity),
            &mut messages,
        )
        .await?;
        // Whether anything between `after` and what was read had been removed is checked
        // after the read, since retention may trim the room while it runs. Retention only
        // ever removes a room's oldest events (by age across the stream, by count within
        // the room), so if the event at `after` is still there now, everything read
        // followed it without a gap.
        let kept = after > 0
            && match stream.direct_get(after).await {
                Ok(m) => m.subject.as_str() == subj,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => false,
                Err(e) => return Err(unavailable(e)),
            };
        let whole = kept || {
            // Otherwise: nothing after `after` aged out, and the room never reached its
            // count limit.
            let info = stream.info().await.map_err(unavailable)?.clone();
            let first_global = info.state.first_sequence;
            let mut subjects = stream.info_with_subjects(&subj).await.map_err(unavailable)?;
            let mut count = 0u64;
            while let Some((_, n)) = subjects.try_next().await.map_err(unavailable)? {
                count += n as u64;
            }
            // The stream's own limit, which is what retention applies (another node may
            // have set it).
            let cap = info.config.max_messages_per_subject;
            after + 1 >= first_global && (cap <= 0 || (count as i64) < cap)
        };
        let last = match messages.last() {
            Some(m) if exhausted => m.offset,
            _ => self.last_offset(tenant, room).await?,
        };
        Ok(Replay {
            complete: !beyond_end && whole && (exhausted || last <= next.saturating_sub(1)),
            messages,
            last,
        })
    }

    async fn last_offset(&self, tenant: &str, room: &str) -> Result<u64, BusError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        if !self.history {
            return Ok(0);
        }
        let stream = self.js.get_stream_no_info(STREAM).await.map_err(unavailable)?;
        match stream.direct_get_last_for_subject(subject("s", tenant, room)).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(0),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn leave(&self) {
        let h = pb::Heartbeat { node: self.cfg.node_id.clone(), ts: now_ms(), connections: 0, leaving: true };
        let _ = self.client.publish(HEARTBEAT, Bytes::from(h.encode_to_vec())).await;
        let _ = self.client.flush().await;
    }

    /// Nodes heard from within [`NODE_TIMEOUT`], this one included once its first
    /// heartbeat came back.
    fn nodes(&self) -> Vec<String> {
        let mut n = self.nodes.lock();
        n.retain(|_, seen| seen.elapsed() < NODE_TIMEOUT);
        let mut v: Vec<String> = n.keys().cloned().collect();
        v.sort();
        v
    }

    fn has_history(&self) -> bool {
        self.history
    }

    async fn ping(&self) -> Result<(), BusError> {
        if self.client.connection_state() == async_nats::connection::State::Connected {
            Ok(())
        } else {
            Err(BusError::Unavailable("not connected to NATS".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_cannot_become_wildcards_or_tokens() {
        assert_eq!(escape_room("chat"), "chat");
        assert_eq!(escape_room("a.b"), "a%2Eb");
        assert_eq!(escape_room("*"), "%2A");
        assert_eq!(escape_room(">"), "%3E");
        assert_eq!(escape_room("a b"), "a%20b");
        assert_eq!(escape_room("100%"), "100%25");
        assert_eq!(escape_room("user:42@x/y=z_-"), "user:42@x/y=z_-");
        for r in ["a.b", "*", ">", "a b", "a.>", "x\ny", "é"] {
            let s = subject("m", "t", r);
            assert_eq!(s.split('.').count(), 4, "{r:?} → {s}");
            assert!(!s.split('.').any(|tok| tok == "*" || tok == ">"), "{s}");
            assert!(!s.contains(char::is_whitespace));
        }
        // Escaping is injective: different rooms, different subjects.
        assert_ne!(escape_room("a.b"), escape_room("a%2Eb"));
    }

    #[test]
    fn control_round_trip() {
        let r = policy::Revocation::new("r1".into(), policy::RevocationRule::Sub { sub: "u".into() }, 1, 60);
        for c in [
            Control::Revoked { tenant: "t".into(), revocation: r },
            Control::Kick { tenant: "t".into(), sub: "u".into() },
            Control::TenantChanged { tenant: "t".into() },
            Control::TenantDeleted { tenant: "t".into() },
        ] {
            assert_eq!(decode_control(&encode_control(&c, "n", TraceContext::new())), Some(c));
        }
        assert_eq!(decode_control(b"\xff\xff garbage"), None);
    }
}
