//! The edge: the only crate that speaks Socket.IO.
//!
//! It hosts socketioxide inside axum: tenants are the dynamic namespaces `/{tenant}`,
//! every handshake is decided by `policy` (through [`connect`]), client events are
//! checked by `policy` and carried out through the `state` store and the `bus`, and bus
//! deliveries are emitted to local sockets. It also serves `/v1/tickets`, `/healthz`,
//! `/readyz` and `/metrics`. It holds no state that cannot be rebuilt from the store and
//! the bus: the tenant cache and the per-socket state die with the process.
//!
//! It decides nothing itself: ticket expiry, admission, `refresh`, resume eligibility and
//! presence thresholds are `policy` functions it calls, and every code it sends is a
//! `policy::Code`. `clock` and `rooms` are leaf modules the others share; background
//! tasks run under a guard that [`Edge`] holds.

mod clock;
mod conn;
mod connect;
mod deliver;
mod events;
mod expiry;
mod gate;
mod http;
mod jwks;
mod limits;
mod recent;
mod record;
mod register;
mod resume;
mod rooms;
mod session;
mod slow;
mod tasks;
mod tenants;
mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bus::{AdapterState, Bus};
use socketioxide::handler::ConnectHandler;
use state::Store;
use telemetry::Metrics;

pub use conn::Conn;

/// The one adapter type of every edge: socketioxide's cross-node operators over NATS, or
/// its local adapter when [`AdapterState::local`] is given.
pub type Adapter = bus::NatsAdapter<socketioxide::adapter::Emitter>;
/// The edge's Socket.IO server.
pub type SocketIo = socketioxide::SocketIo<Adapter>;
pub(crate) type SocketRef = socketioxide::extract::SocketRef<Adapter>;
pub(crate) type AckSender = socketioxide::extract::AckSender<Adapter>;

/// How one edge node runs.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// This node's id in logs, metrics and the bus.
    pub node_id: String,
    /// Largest Engine.IO packet accepted, in bytes; tenants' `max_message_bytes` apply
    /// below it.
    pub max_payload_bytes: u64,
    /// How long a cached tenant (policy, keys, revocations) is used before it is read
    /// again when no change notice arrived.
    pub tenant_cache_ttl: Duration,
    /// Handshakes per second one client IP may start (burst of the same size); 0: no limit.
    pub handshake_rate_per_ip: u32,
    /// Handshakes per second one tenant may receive on this node; 0: no limit.
    pub handshake_rate_per_tenant: u32,
    /// Whether webhooks and subscribe hooks may go to loopback, private and link-local
    /// addresses. Off by default: tenants name the URLs, and must not reach the edges' own
    /// network through them.
    pub hooks_allow_private_networks: bool,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            node_id: "edge".into(),
            max_payload_bytes: 1024 * 1024,
            tenant_cache_ttl: Duration::from_secs(10),
            handshake_rate_per_ip: 200,
            handshake_rate_per_tenant: 5_000,
            hooks_allow_private_networks: false,
        }
    }
}

/// Shared by every handler of one edge, in three parts that change for different reasons:
/// what the edge was told (`cfg`), the systems it talks to (`ext`), and what this node
/// holds in memory (`local`).
pub(crate) struct Inner {
    pub cfg: EdgeConfig,
    pub ext: Ext,
    pub local: Local,
}

/// The systems the edge talks to: handles, shared with the rest of the process.
pub(crate) struct Ext {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub metrics: Arc<Metrics>,
    /// Asks tenants' subscribe hooks (SPEC-less; see README "Webhooks and hooks").
    pub subscribe_hooks: hooks::SubscribeHooks,
}

/// What this node holds in memory: caches, queues and buckets that die with the process
/// and are rebuilt from the store and the bus (edges are stateless), and the node's flags.
pub(crate) struct Local {
    pub tenants: tenants::TenantCache,
    pub expiry: expiry::ExpiryQueue,
    pub rooms: rooms::LocalRooms,
    /// The newest events of rooms this node receives, for resumes (see `recent`).
    pub recent: recent::Recent,
    pub stats: deliver::StatsBuffer,
    pub limits: limits::HandshakeLimits,
    pub draining: AtomicBool,
    /// Set when this node's store records fell behind its sockets (see `register`).
    pub reregister: AtomicBool,
}

/// Largest hook answer read, in bytes: an allow/deny answer is a few dozen.
const MAX_HOOK_ANSWER_BYTES: usize = 16 * 1024;

/// The transport for tenants' endpoints. Building a client only fails when no TLS
/// backend can start; hooks then fail closed (subscriptions they cover are refused,
/// webhooks are retried and dropped) instead of the edge failing.
fn hook_transport(allow_private: bool) -> Arc<dyn hooks::Transport> {
    let t = if allow_private {
        hooks::HttpTransport::new(MAX_HOOK_ANSWER_BYTES)
    } else {
        hooks::HttpTransport::public_only(MAX_HOOK_ANSWER_BYTES)
    };
    match t {
        Ok(t) => Arc::new(t),
        Err(e) => {
            tracing::error!(error = %e, "hook HTTP client unavailable: hooks fail closed");
            Arc::new(hooks::MemoryTransport::failing())
        }
    }
}

/// A running edge's handle: used to drain it and to read its Socket.IO server.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
    io: SocketIo,
    /// Stops the background tasks when the last clone of this handle is dropped.
    _tasks: Arc<tasks::TaskGuard>,
}

impl Edge {
    /// Builds the edge and its axum router. Background tasks (expiry, stats flush, ...) are
    /// spawned on the current Tokio runtime and run while this handle (or a clone) lives:
    /// keep it for as long as the router serves. `adapter` gives socketioxide's operators
    /// (`fetch_sockets`, `rooms`, `to(..).emit`, ...) their reach: every node over NATS
    /// (`NatsBus::adapter_state`), or this one ([`AdapterState::local`]).
    pub fn new(
        cfg: EdgeConfig,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        adapter: AdapterState,
        metrics: Arc<Metrics>,
    ) -> (Edge, axum::Router) {
        metrics.bus_history.set(i64::from(bus.has_history()));
        let allow_private = cfg.hooks_allow_private_networks;
        let inner = Arc::new(Inner {
            local: Local {
                tenants: tenants::TenantCache::new(store.clone(), cfg.tenant_cache_ttl),
                limits: limits::HandshakeLimits::new(
                    cfg.handshake_rate_per_ip,
                    cfg.handshake_rate_per_tenant,
                ),
                expiry: expiry::ExpiryQueue::default(),
                rooms: rooms::LocalRooms::default(),
                recent: recent::Recent::default(),
                stats: deliver::StatsBuffer::default(),
                draining: AtomicBool::new(false),
                reregister: AtomicBool::new(false),
            },
            cfg,
            ext: Ext {
                store,
                bus: bus.clone(),
                metrics: metrics.clone(),
                subscribe_hooks: hooks::SubscribeHooks::new(hook_transport(allow_private), metrics.clone()),
            },
        });
        let full_queues = adapter.full_queues();
        let (layer, io) = socketioxide::SocketIo::builder()
            .with_adapter::<Adapter>(adapter)
            .with_state(inner.clone())
            .max_payload(inner.cfg.max_payload_bytes)
            .ws_max_message_size(inner.cfg.max_payload_bytes as usize)
            .ws_max_frame_size(inner.cfg.max_payload_bytes as usize)
            .max_buffer_size(1024)
            // Client frames are small (events, acks): tungstenite reads larger ones in several
            // reads. Each socket allocates this buffer for its whole life (issue 12).
            .ws_read_buffer_size(256)
            .build_layer();
        // The pattern is a constant, so inserting it cannot fail.
        // Every namespace is answered with a SPEC code: `/{tenant}` is decided by policy;
        // anything else (the root, nested paths) is `unknown_tenant`.
        let patterns = [
            io.dyn_ns("/{tenant}", connect::on_connect.with(connect::authorize)),
            io.dyn_ns("/{tenant}/{*rest}", connect::never.with(connect::not_a_tenant)),
            io.dyn_ns("/{tenant}/", connect::never.with(connect::not_a_tenant)),
        ];
        for r in patterns {
            if let Err(e) = r {
                tracing::error!(error = %e, "registering a namespace pattern failed");
            }
        }
        // The root namespace exists at once; its adapter joins the cluster in the background.
        io.ns("/", connect::never.with(connect::not_a_tenant)).spawn();
        bus.attach(Arc::new(deliver::EdgeSink { inner: inner.clone(), io: io.clone() }));
        let tasks = tasks::TaskGuard::default();
        expiry::spawn(&tasks, inner.clone(), io.clone());
        slow::spawn(&tasks, inner.clone(), io.clone(), full_queues);
        register::spawn(&tasks, inner.clone(), io.clone());
        deliver::spawn_stats_flush(&tasks, inner.clone());
        // Every edge takes part in sending webhooks: the store hands each tenant's outbox
        // to one node at a time, so this costs the others one cheap check per tenant.
        let transport = hook_transport(inner.cfg.hooks_allow_private_networks);
        let webhooks = hooks::Webhooks::new(transport, metrics, hooks::WebhookOptions::default());
        tasks.spawn(hooks::pump(inner.ext.store.clone(), webhooks, hooks::PumpOptions::default()));
        // CORS wraps socketioxide's layer, which answers `/socket.io/` itself: inside it,
        // browsers' polling requests and their preflights would never get CORS answers.
        // `own_head` is outermost, so that socketioxide only ever sees request heads that
        // own their memory (see `http::own_head`).
        let router = http::router(inner.clone())
            .layer(layer)
            .layer(axum::middleware::from_fn_with_state(inner.clone(), http::cors))
            .layer(axum::middleware::map_request(http::own_head));
        (Edge { inner, io, _tasks: Arc::new(tasks) }, router)
    }

    /// Stops taking connections and answers `/readyz` with 503.
    pub fn start_draining(&self) {
        self.inner.local.draining.store(true, Ordering::SeqCst);
    }

    /// Ends every socket with `session_end {code: "draining"}`, in batches spread over
    /// `period`, so that clients reconnect elsewhere without a thundering herd.
    pub async fn drain(&self, period: Duration) {
        self.start_draining();
        let sockets: Vec<_> = self.io.nsps().into_iter().flat_map(|ns| ns.sockets()).collect();
        let batches = 10usize;
        let per = sockets.len().div_ceil(batches).max(1);
        for chunk in sockets.chunks(per) {
            for s in chunk {
                conn::end_session(&self.inner, s, policy::SessionEnd::Draining);
            }
            tokio::time::sleep(period / batches as u32).await;
        }
    }

    /// The Socket.IO server: its operators (`io.of("/tenant")?.fetch_sockets()`,
    /// `.rooms()`, `.to(room).emit(..)`, `.disconnect()`, ...) reach every node. The edge's
    /// own deliveries stay `.local()`: room messages travel the bus.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// Open sockets on this node.
    pub fn connections(&self) -> usize {
        self.io.nsps().into_iter().map(|ns| ns.sockets().len()).sum()
    }
}
