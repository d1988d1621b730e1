//! The fan-out seam: how a room message and a control message reach every node that
//! needs it.
//!
//! [`Bus`] is the trait the edge and the admin API publish through; [`Sink`] is how a node
//! receives. [`LocalBus`] is the single-process implementation (`switchboard dev`, one
//! node). The NATS implementation of the same trait makes several nodes one service. This
//! crate assigns message ids and per-room offsets; it does not know Socket.IO, and it
//! decides nothing about who may publish (that is `policy`, applied by the edge).

pub mod adapter;
mod local;
mod nats;
pub mod transport;

/// The wire schemas generated from `proto/switchboard/bus/v1/bus.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!("proto/switchboard.bus.v1.rs");
}

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use adapter::{AdapterConfig, AdapterState, FullQueues, NatsAdapter};
pub use local::LocalBus;
pub use nats::{
    NODE_TIMEOUT, NatsBus, NatsConfig, STREAM, decode_control, decode_control_with, decode_room, escape_room,
};
pub use transport::{AdapterTransport, MemoryHub, MemoryTransport, NatsTransport};

/// What travels to a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// A published event, delivered as `(data, meta)`.
    Event { event: String, data: serde_json::Value },
    /// A user's first connection joined the room.
    PresenceJoin { sub: String, meta: Option<serde_json::Value> },
    /// A user's last connection left the room.
    PresenceLeave { sub: String, meta: Option<serde_json::Value> },
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub tenant: String,
    pub room: String,
    pub payload: Payload,
    /// The publisher's `sub`; `None` from the admin API.
    pub from: Option<String>,
    /// The publishing connection, excluded from delivery unless `echo`.
    pub origin_conn: Option<String>,
    pub echo: bool,
    /// The publish's W3C trace context, so that deliveries on every node join its trace.
    pub trace: TraceContext,
}

/// W3C trace context fields (`traceparent`, `tracestate`) carried by bus messages; empty
/// when the sender records no trace. The bus carries it and never reads it.
pub type TraceContext = std::collections::BTreeMap<String, String>;

/// What travels with a control message besides the message itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlMeta {
    /// The trace context of the request that caused it.
    pub trace: TraceContext,
    /// Unix milliseconds when it was sent (0 when unknown).
    pub sent_ms: i64,
}

/// A message as delivered, with the id and offset the bus gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub tenant: String,
    pub room: String,
    pub payload: Payload,
    pub from: Option<String>,
    pub origin_conn: Option<String>,
    pub echo: bool,
    pub id: String,
    /// Grows by one per event published to the room; presence messages carry the last
    /// event's offset and do not advance it.
    pub offset: u64,
    /// Unix milliseconds.
    pub ts: i64,
    /// The publish's trace context.
    #[serde(default)]
    pub trace: TraceContext,
}

/// The id and offset a publish was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: String,
    pub offset: u64,
    pub ts: i64,
}

/// Messages of a room after an offset, from the bus's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// True only when the bus can guarantee that no event of the room after the asked
    /// offset is missing from `messages`. A resume that cannot be complete must say
    /// `recovered: false`, never leave a silent gap.
    pub complete: bool,
    /// The room's newest offset when the history was read (0: none yet).
    pub last: u64,
}

/// Messages that change what nodes do, acted on by every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Control {
    /// End matching live sessions with `token_revoked`.
    Revoked { tenant: String, revocation: policy::Revocation },
    /// End every session of `sub` with `kicked`.
    Kick { tenant: String, sub: String },
    /// The tenant's policy or keys changed: drop cached copies.
    TenantChanged { tenant: String },
    /// The tenant is gone: end its sessions with `tenant_deleted`.
    TenantDeleted { tenant: String },
}

/// Why the bus could not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

impl BusError {
    /// The SPEC code.
    pub fn kind(&self) -> policy::Code {
        policy::Code::Unavailable
    }

    /// [`BusError::kind`] as its string.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// A node's receiving end.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Delivers a room message to this node's subscribers. Called in offset order per room.
    async fn deliver(&self, msg: Arc<Message>);
    /// Acts on a control message.
    async fn control(&self, msg: Control);
    /// Acts on a control message that came with a trace context and a send time.
    async fn control_with(&self, msg: Control, _meta: ControlMeta) {
        self.control(msg).await
    }
}

/// The fan-out.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Connects this node's receiving end; messages arrive only after this.
    fn attach(&self, sink: Arc<dyn Sink>);
    /// Publishes to a room; returns once the bus has taken the message, with its id and
    /// offset.
    async fn publish(&self, p: Publish) -> Result<Published, BusError>;
    /// Says whether this node has local members of a room, so that it receives the room's
    /// messages only while it does.
    async fn set_interest(&self, tenant: &str, room: &str, interested: bool) -> Result<(), BusError>;
    /// Sends a control message to every node, this one included.
    async fn control(&self, c: Control) -> Result<(), BusError> {
        self.control_with(c, TraceContext::new()).await
    }
    /// [`Bus::control`] with the trace context of the request that caused it.
    async fn control_with(&self, c: Control, trace: TraceContext) -> Result<(), BusError>;
    /// Whether the bus is reachable (for `/readyz`).
    async fn ping(&self) -> Result<(), BusError>;
    /// Events of a room with an offset above `after`, at most `max` of them.
    async fn history(&self, tenant: &str, room: &str, after: u64, max: usize) -> Result<Replay, BusError>;
    /// The room's newest offset (0 when it has none): where a new subscriber's history
    /// starts.
    async fn last_offset(&self, tenant: &str, room: &str) -> Result<u64, BusError>;
    /// Tells the other nodes this one is leaving (after a drain), so they forget it now
    /// rather than after a heartbeat timeout.
    async fn leave(&self) {}
    /// Nodes currently known to the bus, this one included (one node without a network).
    fn nodes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether the bus keeps room history (offsets, resume on another node). A plain NATS
    /// server without JetStream keeps none: events carry offset 0, and a resume that would
    /// need history answers `recovered: false`.
    fn has_history(&self) -> bool {
        true
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
