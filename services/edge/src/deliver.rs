//! The receiving end: bus deliveries emitted to local sockets, control messages acted on,
//! and the bookkeeping both need.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::SocketIo;
use crate::SocketRef;
use async_trait::async_trait;
use bus::{Control, ControlMeta, Message, Payload, Sink};
use parking_lot::Mutex;
use policy::SessionEnd;
use serde_json::json;
use state::StatsDelta;
use tracing::Instrument;

use crate::Inner;
use crate::conn::{conn_of, end_session};
use crate::rooms::presence_room;
use crate::tasks::TaskGuard;

/// Per-tenant counters, added to the store once a second rather than per message.
#[derive(Default)]
pub struct StatsBuffer {
    map: Mutex<HashMap<String, StatsDelta>>,
}

impl StatsBuffer {
    pub fn add(&self, tenant: &str, f: impl FnOnce(&mut StatsDelta)) {
        let mut m = self.map.lock();
        match m.get_mut(tenant) {
            Some(d) => f(d),
            None => f(m.entry(tenant.to_string()).or_default()),
        }
    }

    fn take(&self) -> HashMap<String, StatsDelta> {
        std::mem::take(&mut *self.map.lock())
    }
}

pub fn spawn_stats_flush(tasks: &TaskGuard, inner: Arc<Inner>) {
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for (tenant, d) in inner.local.stats.take() {
                if let Err(e) = inner.ext.store.add_stats(&tenant, d).await {
                    tracing::debug!(tenant, error = %e, "stats flush failed; counts dropped");
                }
            }
        }
    });
}

/// The `meta` argument of a delivered event (SPEC 3.6).
pub fn event_meta(msg: &Message) -> serde_json::Value {
    json!({
        "room": msg.room,
        "id": msg.id,
        "offset": msg.offset.to_string(),
        "from": msg.from,
        "ts": msg.ts,
    })
}

/// The edge's [`Sink`].
pub struct EdgeSink {
    pub inner: Arc<Inner>,
    pub io: SocketIo,
}

fn ns(tenant: &str) -> String {
    format!("/{tenant}")
}

#[async_trait]
impl Sink for EdgeSink {
    async fn deliver(&self, msg: Arc<Message>) {
        if msg.trace.is_empty() {
            return self.fan_out(msg).await;
        }
        // The fan-out on this node, a child of the publish on whichever node it was.
        let span = tracing::info_span!(
            "deliver",
            kind = if matches!(msg.payload, Payload::Event { .. }) { "event" } else { "presence" },
            tenant = msg.tenant.as_str(),
            room = msg.room.as_str(),
            node = self.inner.cfg.node_id.as_str(),
            recipients = tracing::field::Empty,
        );
        telemetry::otel::set_remote_parent(&span, &msg.trace);
        self.fan_out(msg).instrument(span).await
    }

    async fn control(&self, c: Control) {
        self.control_with(c, ControlMeta::default()).await
    }

    async fn control_with(&self, c: Control, meta: ControlMeta) {
        let kind = match &c {
            Control::Revoked { .. } => "revoked",
            Control::Kick { .. } => "kick",
            Control::TenantChanged { .. } => "tenant_changed",
            Control::TenantDeleted { .. } => "tenant_deleted",
        };
        let span = tracing::info_span!("control", otel.name = kind, node = self.inner.cfg.node_id.as_str());
        telemetry::otel::set_remote_parent(&span, &meta.trace);
        self.act(c).instrument(span).await;
        if meta.sent_ms > 0 {
            let secs = (crate::clock::now_ms() - meta.sent_ms).max(0) as f64 / 1000.0;
            self.inner
                .ext
                .metrics
                .control_seconds
                .get_or_create(&telemetry::label("kind", kind))
                .observe(secs);
        }
    }
}

impl EdgeSink {
    async fn fan_out(&self, msg: Arc<Message>) {
        self.inner.ext.metrics.bus_received.get_or_create(&telemetry::tenant(&msg.tenant)).inc();
        let since_publish = || (crate::clock::now_ms() - msg.ts).max(0) as f64 / 1000.0;
        self.inner.ext.metrics.bus_lag_seconds.observe(since_publish());
        let Some(op) = self.io.of(ns(&msg.tenant)) else { return };
        match &msg.payload {
            Payload::Event { event, data } => {
                let meta = event_meta(&msg);
                let gate = crate::resume::gate_room(&msg.room);
                let local = self.inner.local.rooms.count(&msg.tenant, &msg.room);
                if local == 0 {
                    return;
                }
                self.inner.local.recent.record(&msg);
                // The publisher's own socket, when it is here and did not ask for echo:
                // broadcasting from it excludes it.
                let sender = (!msg.echo)
                    .then(|| msg.origin_conn.as_deref())
                    .flatten()
                    .and_then(|id| id.parse().ok())
                    .and_then(|sid| op.get_socket(sid));
                // Excluding the publisher removes a delivery only if it is a member:
                // publishing needs no subscription.
                let member =
                    sender.as_ref().and_then(conn_of).is_some_and(|c| c.rooms.lock().contains_key(&msg.room));
                let expected = u64::from(local.saturating_sub(u32::from(member)));
                let delivered = match &sender {
                    Some(s) => {
                        s.to(msg.room.clone()).except(gate.clone()).local().emit(event, &(data, &meta)).await
                    }
                    None => {
                        op.to(msg.room.clone()).except(gate.clone()).local().emit(event, &(data, &meta)).await
                    }
                };
                // Sockets still replaying this room's history get the event through their
                // gate, which orders it after the history (see `resume`).
                let gated = self.io.of(ns(&msg.tenant)).map(|o| o.within(gate).sockets()).unwrap_or_default();
                for s in gated {
                    if let Some(c) = conn_of(&s) {
                        crate::resume::offer(&self.inner, &c, &s, &msg);
                    }
                }
                let n = match delivered {
                    Ok(()) => expected,
                    // Sockets whose queue is full miss this event: counted, and logged at
                    // debug because under overload it happens for every message. The
                    // adapter has taken them out of their rooms already and `slow` ends
                    // their sessions with `slow_consumer`, so they resume without a gap.
                    Err(socketioxide::BroadcastError::Socket(errors)) => {
                        let dropped = errors.len() as u64;
                        let label = telemetry::tenant(&msg.tenant);
                        self.inner.ext.metrics.deliveries_dropped.get_or_create(&label).inc_by(dropped);
                        tracing::debug!(
                            tenant = msg.tenant,
                            dropped,
                            "deliveries dropped: full socket queues"
                        );
                        expected.saturating_sub(dropped)
                    }
                    Err(e) => {
                        tracing::warn!(tenant = msg.tenant, error = %e, "delivery failed");
                        return;
                    }
                };
                self.inner.ext.metrics.messages_out.get_or_create(&telemetry::tenant(&msg.tenant)).inc_by(n);
                self.inner.ext.metrics.delivery_seconds.observe(
                    since_publish(),
                    telemetry::exemplar(&tracing::Span::current()),
                    None,
                );
                tracing::Span::current().record("recipients", n);
                self.inner.local.stats.add(&msg.tenant, |s| s.messages_out += n);
            }
            Payload::PresenceJoin { sub, meta } | Payload::PresenceLeave { sub, meta } => {
                let event = if matches!(msg.payload, Payload::PresenceJoin { .. }) {
                    "presence:join"
                } else {
                    "presence:leave"
                };
                let body = json!({"room": msg.room, "sub": sub, "meta": meta});
                let _ = op.to(presence_room(&msg.room)).local().emit(event, &body).await;
            }
        }
    }

    async fn act(&self, c: Control) {
        match c {
            Control::Revoked { tenant, revocation } => {
                self.inner.local.tenants.invalidate(&tenant);
                for s in self.sockets(&tenant) {
                    let hit = conn_of(&s).is_some_and(|c| {
                        policy::is_revoked(std::slice::from_ref(&revocation), &c.identity.read())
                    });
                    if hit {
                        end_session(&self.inner, &s, SessionEnd::TokenRevoked);
                    }
                }
            }
            // Kicks are rare, so they scan the tenant's sockets (as revocations do) rather
            // than every socket joining a per-user room: such a room cost ~0.45 KiB per
            // idle socket, since most users hold one connection.
            Control::Kick { tenant, sub } => {
                for s in self.sockets(&tenant) {
                    if conn_of(&s).is_some_and(|c| c.identity.read().sub == sub) {
                        end_session(&self.inner, &s, SessionEnd::Kicked);
                    }
                }
            }
            Control::TenantChanged { tenant } => {
                self.inner.local.tenants.invalidate(&tenant);
                // A changed hook (URL, patterns, secret) answers afresh.
                self.inner.ext.subscribe_hooks.forget(&tenant);
            }
            Control::TenantDeleted { tenant } => {
                self.inner.local.tenants.invalidate(&tenant);
                for s in self.sockets(&tenant) {
                    end_session(&self.inner, &s, SessionEnd::TenantDeleted);
                }
            }
        }
    }

    fn sockets(&self, tenant: &str) -> Vec<SocketRef> {
        self.io.of(ns(tenant)).map(|op| op.sockets()).unwrap_or_default()
    }
}
