//! socketioxide's cross-node operators over NATS: a [`CoreAdapter`] so that
//! `io.of(ns).fetch_sockets()`, `.rooms()`, `.to(room).emit(..)`, `.broadcast_with_ack(..)`,
//! `.disconnect()`, `.join(..)` and `.leave(..)` see and reach the sockets of every node.
//!
//! This is not the path room messages travel: the edge publishes those through [`crate::Bus`]
//! (JetStream, with offsets for resume) and emits them with `.local()` broadcasts, which
//! never reach this adapter's network side.
//!
//! # Subjects
//! Per namespace, with the namespace path escaped into one token (`<ns>`) by the bus's
//! [`escape_room`], so that no namespace name can become a wildcard or an extra token:
//! - `sb.io.<ns>.req`: requests and heartbeats for every node that has the namespace;
//! - `sb.io.<ns>.req.<uid>`: requests for one node (a remote socket's node, or the
//!   answer to a new node's first heartbeat);
//! - `sb.io.<ns>.res.<uid>`: responses to the requests of node `<uid>`, with the request id
//!   in the `Sb-Req` header.
//!
//! `<uid>` is socketioxide's server id, the id its requests, responses and remote sockets
//! carry. A node subscribes to a namespace's subjects only while the namespace exists on it
//! (from the adapter's `init` to its `close`), so a node without a tenant receives none of
//! its traffic and is not waited for.
//!
//! # Wire format
//! socketioxide-core's `remote_packet` types (`RequestOut`/`RequestIn`, `Response`) as JSON,
//! the serde format the workspace already has. A message that does not decode is logged at
//! debug level and dropped.
//!
//! # Membership
//! Every node with the namespace sends a heartbeat on `sb.io.<ns>.req` every
//! [`AdapterConfig::heartbeat_every`] (500 ms) and announces itself with a first heartbeat
//! when the namespace appears, which the others answer at once: a new node is known within
//! a round trip. A node unheard for [`AdapterConfig::node_timeout`] (15 s) is forgotten; a
//! namespace closed cleanly says goodbye (a message with the `Sb-Bye` header) so the others
//! forget it at once. A request waits only for the nodes alive when it starts, returns as
//! soon as each has answered, and stops waiting for a node as soon as it is forgotten.
//!
//! Without a NATS client ([`AdapterState::local`]) the adapter is socketioxide's local
//! adapter, so the edge has one concrete adapter type with or without a network.
//!
//! # Transport
//! All IO goes through an [`AdapterTransport`] (publish, subscribe): [`NatsTransport`] in
//! production ([`AdapterState::nats`]), [`crate::transport::MemoryTransport`] in tests
//! ([`AdapterState::remote`] with a shared [`crate::transport::MemoryHub`]), so that what
//! crosses nodes is tested without a NATS server. This module owns subjects, headers, the
//! wire format and membership; the transport only moves bytes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use socketioxide_core::adapter::errors::{AdapterError, BroadcastError, SocketError};
use socketioxide_core::adapter::remote_packet::{
    RequestIn, RequestOut, RequestTypeIn, RequestTypeOut, Response, ResponseType, ResponseTypeId,
};
use socketioxide_core::adapter::request::RemoteRequestHandler;
use socketioxide_core::adapter::stream::{AckStream as CoreAckStream, ChanStream, ResponseHandlers};
use socketioxide_core::adapter::{
    BroadcastFlags, BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter, RemoteSocketData, Room,
    RoomParam, SocketEmitter, Spawnable,
};
use socketioxide_core::packet::Packet;
use socketioxide_core::{Sid, Uid};
use tokio::sync::mpsc;

use crate::nats::{NODE_TIMEOUT, escape_room};
use crate::transport::{AdapterTransport, Headers, MessageStream, NatsTransport, TransportError};

/// The header carrying the id of the request a response answers.
pub const REQUEST_HEADER: &str = "Sb-Req";
/// The header marking a node's goodbye for a namespace (its payload is the node's uid).
pub const BYE_HEADER: &str = "Sb-Bye";
/// How often a waiting request drops the nodes forgotten meanwhile.
const LIVENESS_CHECK: Duration = Duration::from_millis(200);
/// Responses (acks included) buffered per request before further ones are dropped: the
/// response loop of a namespace must never wait for one slow requester.
const ACK_BUFFER: usize = 4096;

/// How the adapter talks to the other nodes.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    /// The longest a request (rooms, fetch_sockets) waits for the other nodes; acks wait
    /// this long on top of their own timeout.
    pub request_timeout: Duration,
    /// How often a node says it is alive, per namespace it has.
    pub heartbeat_every: Duration,
    /// A node unheard for this long is forgotten.
    pub node_timeout: Duration,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            request_timeout: Duration::from_secs(5),
            heartbeat_every: Duration::from_millis(500),
            node_timeout: NODE_TIMEOUT,
        }
    }
}

/// What every namespace's adapter of one process shares: the transport (none for a single
/// node), this node's id for logs, and the timings.
#[derive(Clone, Default)]
pub struct AdapterState {
    remote: Option<RemoteState>,
    full: Arc<FullQueues>,
}

/// Sockets taken out of every room because a broadcast found their outgoing queue full.
///
/// Why: a socket that misses one event of a room and then receives the next would have a
/// gap it cannot see (its last offset is past the missed one). So the adapter takes it out
/// of all its rooms in the same broadcast that missed it, before the room's next event can
/// reach it, and hands it to the edge here, which ends its session with `slow_consumer`:
/// the client resumes from the last offset it really received and gets the rest replayed.
#[derive(Default)]
pub struct FullQueues {
    evicted: Mutex<Vec<(String, Sid)>>,
    notify: tokio::sync::Notify,
}

impl FullQueues {
    fn push(&self, ns: &str, sid: Sid) {
        self.evicted.lock().push((ns.to_string(), sid));
        self.notify.notify_one();
    }

    /// Waits for sockets evicted since the last call: `(namespace path, socket id)`.
    pub async fn next_batch(&self) -> Vec<(String, Sid)> {
        loop {
            let batch = std::mem::take(&mut *self.evicted.lock());
            if !batch.is_empty() {
                return batch;
            }
            self.notify.notified().await;
        }
    }
}

#[derive(Clone)]
struct RemoteState {
    transport: Arc<dyn AdapterTransport>,
    node_id: Arc<str>,
    cfg: AdapterConfig,
}

impl fmt::Debug for AdapterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.remote {
            None => f.write_str("AdapterState(local)"),
            Some(r) => f
                .debug_struct("AdapterState")
                .field("node_id", &r.node_id)
                .field("cfg", &r.cfg)
                .finish_non_exhaustive(),
        }
    }
}

impl AdapterState {
    /// One node: the adapter behaves exactly like socketioxide's local adapter.
    pub fn local() -> AdapterState {
        AdapterState::default()
    }

    /// Several nodes over this NATS connection.
    pub fn nats(client: async_nats::Client, node_id: impl Into<String>, cfg: AdapterConfig) -> AdapterState {
        AdapterState::remote(Arc::new(NatsTransport::new(client)), node_id, cfg)
    }

    /// Several nodes over any transport (a [`crate::transport::MemoryTransport`] in tests).
    pub fn remote(
        transport: Arc<dyn AdapterTransport>,
        node_id: impl Into<String>,
        cfg: AdapterConfig,
    ) -> AdapterState {
        let node_id: String = node_id.into();
        AdapterState {
            remote: Some(RemoteState { transport, node_id: node_id.into(), cfg }),
            full: Arc::default(),
        }
    }

    /// Where this process's adapters hand over sockets whose outgoing queue was full.
    pub fn full_queues(&self) -> Arc<FullQueues> {
        self.full.clone()
    }

    /// Whether the adapter reaches other nodes.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The same connection with other timings.
    pub fn with_config(mut self, cfg: AdapterConfig) -> AdapterState {
        if let Some(r) = &mut self.remote {
            r.cfg = cfg;
        }
        self
    }
}

/// Why the adapter could not reach the other nodes.
#[derive(Debug, thiserror::Error)]
pub enum NatsAdapterError {
    #[error("encoding an adapter message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("NATS: {0}")]
    Nats(String),
}

impl From<NatsAdapterError> for AdapterError {
    fn from(e: NatsAdapterError) -> AdapterError {
        AdapterError(Box::new(e))
    }
}

impl From<TransportError> for NatsAdapterError {
    fn from(e: TransportError) -> NatsAdapterError {
        NatsAdapterError::Nats(e.0)
    }
}

/// A namespace path as one subject token. The empty path (never a real namespace) gets
/// `%`, which no escaped name can be, so distinct names keep distinct subjects.
pub fn namespace_token(path: &str) -> String {
    if path.is_empty() { "%".to_string() } else { escape_room(path) }
}

/// The subject every node with the namespace listens to.
pub fn requests_subject(ns: &str) -> String {
    format!("sb.io.{}.req", namespace_token(ns))
}

/// The subject only node `uid` listens to, for requests.
pub fn node_requests_subject(ns: &str, uid: &str) -> String {
    format!("sb.io.{}.req.{}", namespace_token(ns), escape_room(uid))
}

/// The subject node `uid` receives its responses on.
pub fn responses_subject(ns: &str, uid: &str) -> String {
    format!("sb.io.{}.res.{}", namespace_token(ns), escape_room(uid))
}

/// The answer to `init`: joins the namespace to the cluster (subscribes its subjects, then
/// announces it). socketioxide spawns it for dynamic namespaces; for a static one, await
/// or spawn it.
#[must_use = "the namespace joins the cluster only once this ran: await or spawn it"]
pub struct InitRes(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Future for InitRes {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(f) => f.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl InitRes {
    /// Runs it in the background (socketioxide does this for dynamic namespaces).
    pub fn spawn(self) {
        Spawnable::spawn(self)
    }
}

impl Spawnable for InitRes {
    fn spawn(self) {
        if let Some(f) = self.0 {
            tokio::spawn(f);
        }
    }
}

/// The stream of acknowledgements of a broadcast, local and remote.
pub type AckStream<E> = CoreAckStream<E, ChanStream<Bytes>, Bytes>;

type Handlers = Arc<std::sync::Mutex<ResponseHandlers<Bytes>>>;

fn lock_handlers(h: &Handlers) -> std::sync::MutexGuard<'_, ResponseHandlers<Bytes>> {
    // A poisoned map is still a valid map: nothing panics while holding it half-updated.
    h.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes a request's response channel when the request ends, however it ends.
struct HandlerGuard {
    handlers: Handlers,
    id: Sid,
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        lock_handlers(&self.handlers).remove(&self.id);
    }
}

/// The network side of one namespace's adapter.
struct RemoteNs {
    transport: Arc<dyn AdapterTransport>,
    node_id: Arc<str>,
    cfg: AdapterConfig,
    uid: Uid,
    path: String,
    all: String,
    mine: String,
    responses: String,
    /// Live remote nodes (by uid) and when each was last heard.
    nodes: Mutex<HashMap<String, (Uid, Instant)>>,
    handlers: Handlers,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for RemoteNs {
    fn drop(&mut self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

impl RemoteNs {
    fn target(&self, opts: &BroadcastOptions) -> Option<Uid> {
        opts.server_id.filter(|s| *s != self.uid)
    }

    async fn send_req(&self, req: &RequestOut<'_>, target: Option<Uid>) -> Result<(), NatsAdapterError> {
        let body = serde_json::to_vec(req)?;
        let subject = match target {
            Some(t) => node_requests_subject(&self.path, &t.to_string()),
            None => self.all.clone(),
        };
        Ok(self.transport.publish(subject, Headers::new(), body.into()).await?)
    }

    /// Records a heartbeat; true if the node was not known.
    fn on_heartbeat(&self, origin: Uid) -> bool {
        self.nodes.lock().insert(origin.to_string(), (origin, Instant::now())).is_none()
    }

    fn forget(&self, uid: &str) {
        if self.nodes.lock().remove(uid).is_some() {
            tracing::debug!(ns = %self.path, node = uid, "a node left the namespace");
        }
    }

    /// The remote nodes heard from within the node timeout (the others are forgotten).
    fn alive(&self) -> Vec<String> {
        let timeout = self.cfg.node_timeout;
        let mut nodes = self.nodes.lock();
        nodes.retain(|_, (_, seen)| seen.elapsed() < timeout);
        nodes.keys().cloned().collect()
    }

    fn is_alive(&self, uid: &str) -> bool {
        self.nodes.lock().get(uid).is_some_and(|(_, seen)| seen.elapsed() < self.cfg.node_timeout)
    }

    /// Sends a request and collects one response of type `kind` from each node alive
    /// (or from `target`), until all answered, were forgotten, or the request timed out.
    async fn request<T: DeserializeOwned>(
        &self,
        req: RequestOut<'_>,
        target: Option<Uid>,
        kind: ResponseTypeId,
    ) -> Result<Vec<Response<T>>, NatsAdapterError> {
        let mut waiting: HashSet<String> = match target {
            Some(t) => HashSet::from([t.to_string()]),
            None => self.alive().into_iter().collect(),
        };
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, mut rx) = mpsc::channel(waiting.len() * 2 + 8);
        lock_handlers(&self.handlers).insert(req.id, tx);
        let _guard = HandlerGuard { handlers: self.handlers.clone(), id: req.id };
        self.send_req(&req, target).await?;
        let deadline = tokio::time::sleep(self.cfg.request_timeout);
        tokio::pin!(deadline);
        let mut check = tokio::time::interval(LIVENESS_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = Vec::new();
        while !waiting.is_empty() {
            tokio::select! {
                m = rx.recv() => {
                    let Some(body) = m else { break };
                    match serde_json::from_slice::<Response<T>>(&body) {
                        Ok(res) if ResponseTypeId::from(&res.r#type) == kind => {
                            if waiting.remove(&res.node_id.to_string()) {
                                out.push(res);
                            }
                        }
                        Ok(res) => tracing::debug!(node = %res.node_id, "unexpected response type dropped"),
                        Err(e) => tracing::debug!(error = %e, "undecodable adapter response dropped"),
                    }
                }
                _ = check.tick() => waiting.retain(|n| self.is_alive(n)),
                _ = &mut deadline => {
                    tracing::debug!(ns = %self.path, missing = waiting.len(), "adapter request timed out");
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// A socketioxide adapter whose operators reach every node over NATS.
pub struct NatsAdapter<E> {
    local: CoreLocalAdapter<E>,
    remote: Option<RemoteNs>,
    full: Arc<FullQueues>,
}

impl<E: SocketEmitter> NatsAdapter<E> {
    /// A broadcast to this node's sockets, encoded once. A socket whose queue is full is
    /// known by its id (`broadcast_reporting`, our patch to socketioxide-core, see
    /// vendor/PATCHES.md): it leaves every room at once and goes to [`FullQueues`] (see
    /// there). Volatile broadcasts may drop packets by definition and keep the shared path.
    fn broadcast_local(&self, packet: Packet, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        if opts.has_flag(BroadcastFlags::Volatile) {
            return self.local.broadcast(packet, opts).map_err(BroadcastError::from);
        }
        let failed = self.local.broadcast_reporting(packet, opts);
        if failed.is_empty() {
            return Ok(());
        }
        let mut errors = Vec::with_capacity(failed.len());
        for (sid, e) in failed {
            if matches!(e, SocketError::InternalChannelFull) {
                self.local.del_all(sid);
                self.full.push(self.local.path(), sid);
            }
            errors.push(e);
        }
        Err(BroadcastError::Socket(errors))
    }

    /// The network side, unless the options say the operation is for this node only.
    fn remote_for(&self, opts: &BroadcastOptions) -> Option<&RemoteNs> {
        self.remote.as_ref().filter(|r| !opts.is_local(r.uid))
    }

    async fn start(self: &Arc<Self>) -> Result<(), NatsAdapterError> {
        let Some(r) = &self.remote else { return Ok(()) };
        let all = r.transport.subscribe(r.all.clone()).await?;
        let mine = r.transport.subscribe(r.mine.clone()).await?;
        let responses = r.transport.subscribe(r.responses.clone()).await?;
        let weak = Arc::downgrade(self);
        let tasks = vec![
            tokio::spawn(request_loop(weak.clone(), all)),
            tokio::spawn(request_loop(weak.clone(), mine)),
            tokio::spawn(response_loop(weak.clone(), responses)),
            tokio::spawn(heartbeat_loop(weak, r.cfg.heartbeat_every)),
        ];
        r.tasks.lock().extend(tasks);
        r.send_req(&RequestOut::new_empty(r.uid, RequestTypeOut::InitHeartbeat), None).await?;
        tracing::debug!(ns = %r.path, node = %r.node_id, uid = %r.uid, "adapter joined the namespace");
        Ok(())
    }
}

async fn request_loop<E: SocketEmitter>(adapter: Weak<NatsAdapter<E>>, mut sub: MessageStream) {
    while let Some(m) = sub.next().await {
        let Some(this) = adapter.upgrade() else { break };
        let Some(r) = &this.remote else { break };
        if m.headers.get(BYE_HEADER).is_some() {
            match std::str::from_utf8(&m.payload) {
                Ok(uid) => r.forget(uid),
                Err(_) => tracing::debug!("undecodable goodbye dropped"),
            }
            continue;
        }
        match serde_json::from_slice::<RequestIn>(&m.payload) {
            Ok(req) => this.recv_req(req),
            Err(e) => tracing::debug!(ns = %r.path, error = %e, "undecodable adapter request dropped"),
        }
    }
}

async fn response_loop<E: SocketEmitter>(adapter: Weak<NatsAdapter<E>>, mut sub: MessageStream) {
    while let Some(m) = sub.next().await {
        let Some(this) = adapter.upgrade() else { break };
        let Some(r) = &this.remote else { break };
        let id = m.headers.get(REQUEST_HEADER).and_then(|v| Sid::from_str(v).ok());
        let Some(id) = id else {
            tracing::debug!(ns = %r.path, "adapter response without a request id dropped");
            continue;
        };
        let tx = lock_handlers(&r.handlers).get(&id).cloned();
        // A response to a request that ended (answered, timed out) has nobody to go to.
        if let Some(tx) = tx
            && tx.try_send(m.payload).is_err()
        {
            tracing::debug!(ns = %r.path, "adapter response dropped: its requester is gone or not reading");
        }
    }
}

async fn heartbeat_loop<E: SocketEmitter>(adapter: Weak<NatsAdapter<E>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and the first heartbeat was just sent by `start`.
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(this) = adapter.upgrade() else { break };
        let Some(r) = &this.remote else { break };
        if let Err(e) = r.send_req(&RequestOut::new_empty(r.uid, RequestTypeOut::Heartbeat), None).await {
            tracing::debug!(ns = %r.path, error = %e, "heartbeat not sent");
        }
    }
}

fn decode_ack<D: DeserializeOwned>(b: Bytes) -> Result<Response<D>, Box<dyn std::error::Error + Send>> {
    serde_json::from_slice(&b).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send>)
}

impl<E: SocketEmitter> CoreAdapter<E> for NatsAdapter<E> {
    type Error = NatsAdapterError;
    type State = AdapterState;
    type AckStream = AckStream<E>;
    type InitRes = InitRes;

    fn new(state: &AdapterState, local: CoreLocalAdapter<E>) -> Self {
        let remote = state.remote.as_ref().map(|s| {
            let uid = local.server_id();
            let path = local.path().to_string();
            let me = uid.to_string();
            RemoteNs {
                transport: s.transport.clone(),
                node_id: s.node_id.clone(),
                cfg: s.cfg.clone(),
                uid,
                all: requests_subject(&path),
                mine: node_requests_subject(&path, &me),
                responses: responses_subject(&path, &me),
                path,
                nodes: Mutex::new(HashMap::new()),
                handlers: Arc::new(std::sync::Mutex::new(HashMap::new())),
                tasks: Mutex::new(Vec::new()),
            }
        });
        NatsAdapter { local, remote, full: state.full.clone() }
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> InitRes {
        // The namespace takes sockets at once. Joining the cluster afterwards loses
        // nothing: the other nodes count this one only from its first heartbeat, which it
        // sends once subscribed. Waiting instead would let two first connections to a
        // dynamic namespace each create it, the second replacing the first with its socket.
        on_success();
        if self.remote.is_none() {
            return InitRes(None);
        }
        InitRes(Some(Box::pin(async move {
            // Without NATS the namespace still serves this node's sockets.
            if let Err(e) = self.start().await {
                tracing::warn!(ns = %self.local.path(), error = %e, "the adapter could not join the cluster");
            }
        })))
    }

    fn close(&self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        // socketioxide polls this future once (`now_or_never`) when a namespace is deleted,
        // so everything happens now and the goodbye is sent by its own task.
        if let Some(r) = &self.remote {
            for t in r.tasks.lock().drain(..) {
                t.abort();
            }
            r.nodes.lock().clear();
            let transport = r.transport.clone();
            let subject = r.all.clone();
            let uid = r.uid.to_string();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let mut h = Headers::new();
                    h.insert(BYE_HEADER, "1");
                    let _ = transport.publish(subject, h, uid.into()).await;
                });
            }
        }
        std::future::ready(Ok(()))
    }

    async fn server_count(&self) -> Result<u16, Self::Error> {
        let remote = self.remote.as_ref().map_or(0, |r| r.alive().len());
        Ok(u16::try_from(remote + 1).unwrap_or(u16::MAX))
    }

    async fn broadcast(&self, packet: Packet, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        if let Some(r) = self.remote_for(&opts) {
            let target = r.target(&opts);
            let req = RequestOut::new(r.uid, RequestTypeOut::Broadcast(&packet), &opts);
            r.send_req(&req, target).await.map_err(|e| BroadcastError::Adapter(e.into()))?;
            if target.is_some() {
                return Ok(());
            }
        }
        self.broadcast_local(packet, opts)
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<AckStream<E>, Self::Error> {
        let Some(r) = self.remote_for(&opts) else {
            let (local, _) = self.local.broadcast_with_ack(packet, opts, timeout);
            let (_, rx) = mpsc::channel(1);
            let handlers: Handlers = Arc::new(std::sync::Mutex::new(HashMap::new()));
            return Ok(CoreAckStream::new(
                local,
                ChanStream::new(rx),
                decode_ack::<E::AckError>,
                Duration::ZERO,
                0,
                Sid::new(),
                handlers,
            ));
        };
        let target = r.target(&opts);
        let servers = match target {
            Some(_) => 1,
            None => r.alive().len(),
        };
        let req = RequestOut::new(r.uid, RequestTypeOut::BroadcastWithAck(&packet), &opts)
            .with_ack_timeout(timeout);
        let id = req.id;
        let (tx, rx) = mpsc::channel(ACK_BUFFER);
        lock_handlers(&r.handlers).insert(id, tx);
        if let Err(e) = r.send_req(&req, target).await {
            lock_handlers(&r.handlers).remove(&id);
            return Err(e);
        }
        // A request for one remote socket acks nothing here: the local part matches nothing.
        let local_opts = if target.is_some() { BroadcastOptions::default() } else { opts };
        let (local, _) = self.local.broadcast_with_ack(packet, local_opts, timeout);
        let wait = timeout.unwrap_or_else(|| self.local.ack_timeout()) + r.cfg.request_timeout;
        Ok(CoreAckStream::new(
            local,
            ChanStream::new(rx),
            decode_ack::<E::AckError>,
            wait,
            u16::try_from(servers).unwrap_or(u16::MAX),
            id,
            r.handlers.clone(),
        ))
    }

    async fn add_sockets(&self, opts: BroadcastOptions, rooms: impl RoomParam) -> Result<(), Self::Error> {
        let rooms: Vec<Room> = rooms.into_room_iter().collect();
        if let Some(r) = self.remote_for(&opts) {
            let target = r.target(&opts);
            r.send_req(&RequestOut::new(r.uid, RequestTypeOut::AddSockets(&rooms), &opts), target).await?;
            if target.is_some() {
                return Ok(());
            }
        }
        self.local.add_sockets(opts, rooms);
        Ok(())
    }

    async fn del_sockets(&self, opts: BroadcastOptions, rooms: impl RoomParam) -> Result<(), Self::Error> {
        let rooms: Vec<Room> = rooms.into_room_iter().collect();
        if let Some(r) = self.remote_for(&opts) {
            let target = r.target(&opts);
            r.send_req(&RequestOut::new(r.uid, RequestTypeOut::DelSockets(&rooms), &opts), target).await?;
            if target.is_some() {
                return Ok(());
            }
        }
        self.local.del_sockets(opts, rooms);
        Ok(())
    }

    async fn disconnect_socket(&self, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        if let Some(r) = self.remote_for(&opts) {
            let target = r.target(&opts);
            let req = RequestOut::new(r.uid, RequestTypeOut::DisconnectSockets, &opts);
            r.send_req(&req, target).await.map_err(|e| BroadcastError::Adapter(e.into()))?;
            if target.is_some() {
                return Ok(());
            }
        }
        self.local.disconnect_socket(opts).map_err(BroadcastError::Socket)
    }

    async fn rooms(&self, opts: BroadcastOptions) -> Result<Vec<Room>, Self::Error> {
        let mut rooms = HashSet::new();
        if let Some(r) = self.remote_for(&opts) {
            let target = r.target(&opts);
            let req = RequestOut::new(r.uid, RequestTypeOut::AllRooms, &opts);
            for res in r.request::<()>(req, target, ResponseTypeId::AllRooms).await? {
                rooms.extend(res.into_rooms().unwrap_or_default());
            }
            if target.is_some() {
                return Ok(rooms.into_iter().collect());
            }
        }
        rooms.extend(self.local.rooms(opts));
        Ok(rooms.into_iter().collect())
    }

    async fn fetch_sockets(&self, opts: BroadcastOptions) -> Result<Vec<RemoteSocketData>, Self::Error> {
        let mut sockets = Vec::new();
        if let Some(r) = self.remote_for(&opts) {
            let target = r.target(&opts);
            let req = RequestOut::new(r.uid, RequestTypeOut::FetchSockets, &opts);
            for res in r.request::<RemoteSocketData>(req, target, ResponseTypeId::FetchSockets).await? {
                sockets.extend(res.into_fetch_sockets().unwrap_or_default());
            }
            if target.is_some() {
                return Ok(sockets);
            }
        }
        sockets.extend(self.local.fetch_sockets(opts));
        Ok(sockets)
    }

    fn get_local(&self) -> &CoreLocalAdapter<E> {
        &self.local
    }
}

impl<E> DefinedAdapter for NatsAdapter<E> {}

impl<E: SocketEmitter> RemoteRequestHandler<E> for NatsAdapter<E> {
    type Error = NatsAdapterError;

    fn local(&self) -> &CoreLocalAdapter<E> {
        &self.local
    }

    fn send_res<T: Serialize + fmt::Debug + Send + 'static>(
        &self,
        req_id: Sid,
        req_origin: Uid,
        res: Response<T>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let to = self
            .remote
            .as_ref()
            .map(|r| (r.transport.clone(), responses_subject(&r.path, &req_origin.to_string())));
        let body = serde_json::to_vec(&res);
        async move {
            let Some((transport, subject)) = to else { return Ok(()) };
            let mut h = Headers::new();
            h.insert(REQUEST_HEADER, req_id.to_string());
            Ok(transport.publish(subject, h, body?.into()).await?)
        }
    }

    fn recv_heartbeat(self: &Arc<Self>, req_type: RequestTypeIn, origin: Uid) {
        let Some(r) = &self.remote else { return };
        if r.on_heartbeat(origin) {
            tracing::debug!(ns = %r.path, node = %origin, "a node joined the namespace");
        }
        // A node announcing itself learns of this one at once, not at the next heartbeat.
        if matches!(req_type, RequestTypeIn::InitHeartbeat) {
            let this = self.clone();
            tokio::spawn(async move {
                let Some(r) = &this.remote else { return };
                let hb = RequestOut::new_empty(r.uid, RequestTypeOut::Heartbeat);
                if let Err(e) = r.send_req(&hb, Some(origin)).await {
                    tracing::debug!(ns = %r.path, error = %e, "answering a new node's heartbeat failed");
                }
            });
        }
    }
}

/// A response as this adapter sends it, for tests that speak the wire format.
pub fn encode_response<T: Serialize>(
    node: Uid,
    r#type: ResponseType<T>,
) -> Result<Vec<u8>, NatsAdapterError> {
    Ok(serde_json::to_vec(&Response { node_id: node, r#type })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_namespaces_stay_one_token() {
        for ns in ["/a.b", "/*", "/>", "/a b", "/a.>", "/x\ny", "/é", "", "a.*.>"] {
            for s in [requests_subject(ns), node_requests_subject(ns, "n.*"), responses_subject(ns, ">")] {
                let tokens: Vec<&str> = s.split('.').collect();
                assert!(tokens.len() == 4 || tokens.len() == 5, "{ns:?} → {s}");
                assert!(tokens.iter().all(|t| !t.is_empty() && *t != "*" && *t != ">"), "{s}");
                assert!(!s.contains(char::is_whitespace), "{s}");
            }
        }
        assert_eq!(requests_subject("/acme"), "sb.io./acme.req");
        assert_ne!(requests_subject(""), requests_subject("%"));
        assert_ne!(requests_subject("/a.b"), requests_subject("/a%2Eb"));
    }
}
