//! Client events (SPEC 3.5). Each handler takes its turn (see [`Ordered`]), asks `policy`
//! whether the socket may do it, does it through the store and the bus, and always
//! answers the ack: `{ok: true, ...}` or `{ok: false, error: {code, message}}`.

use std::sync::Arc;

use crate::{AckSender, SocketRef};
use bus::{Payload, Publish};
use policy::{EventError, Right};
use serde_json::{Value, json};
use socketioxide::extract::{State, TryData};
use tracing::Instrument;

use crate::Inner;
use crate::clock::now_s;
use crate::conn::{Conn, Ordered};
use crate::rooms::presence_room;

pub fn register(s: &SocketRef) {
    s.on("subscribe", on_subscribe);
    s.on("unsubscribe", on_unsubscribe);
    s.on("publish", on_publish);
    s.on("presence", on_presence);
    s.on("refresh", on_refresh);
    s.on_fallback(on_unknown);
}

/// The span of one client event: tenant, room, outcome code; never the payload.
fn event_span(
    inner: &Inner,
    event: &'static str,
    conn: &Conn,
    d: &Result<Value, impl std::fmt::Debug>,
) -> tracing::Span {
    let room = d
        .as_ref()
        .ok()
        .and_then(|v| v.get("room"))
        .and_then(Value::as_str)
        .filter(|r| policy::validate_room(r));
    let span = tracing::info_span!(
        "event",
        otel.name = event,
        tenant = conn.tenant.as_str(),
        room = room.unwrap_or(""),
        node = inner.cfg.node_id.as_str(),
        code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if let Some(id) = telemetry::otel::trace_id(&span) {
        span.record("trace_id", id);
    }
    span
}

fn answer(inner: &Inner, conn: &Conn, event: &str, ack: AckSender, r: Result<Value, EventError>) {
    answer_with(inner, conn, event, ack, r, None);
}

/// [`answer`], with `message` instead of the code's own when refused (the tenant's reason
/// from its subscribe hook).
fn answer_with(
    inner: &Inner,
    conn: &Conn,
    event: &str,
    ack: AckSender,
    r: Result<Value, EventError>,
    message: Option<String>,
) {
    tracing::Span::current().record("code", r.as_ref().err().map_or("ok", |e| e.code()));
    let body = match r {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("ok".into(), Value::Bool(true));
            }
            v
        }
        Err(e) => {
            inner
                .ext
                .metrics
                .event_errors
                .get_or_create(&vec![
                    ("tenant", telemetry::tenant_label(&conn.tenant)),
                    ("event", event.to_string()),
                    ("code", e.code().to_string()),
                ])
                .inc();
            let message = message.unwrap_or_else(|| e.to_string());
            json!({"ok": false, "error": {"code": e.code(), "message": message}})
        }
    };
    // A client that sent no ack callback gets nothing; that is its choice.
    let _ = ack.send(&body);
}

/// The `room` field of a payload, validated.
fn room_of(d: &Result<Value, impl std::fmt::Debug>) -> Result<&str, EventError> {
    let r =
        d.as_ref().ok().and_then(|v| v.get("room")).and_then(Value::as_str).ok_or(EventError::InvalidRoom)?;
    if policy::validate_room(r) { Ok(r) } else { Err(EventError::InvalidRoom) }
}

fn allowed(conn: &Conn, room: &str, right: Right) -> Result<(), EventError> {
    if conn.identity.read().caps.allows(room, right) { Ok(()) } else { Err(EventError::Forbidden) }
}

async fn on_subscribe(
    s: SocketRef,
    State(inner): State<Arc<Inner>>,
    TryData(d): TryData<Value>,
    ack: AckSender,
    o: Ordered,
) {
    let Some((conn, _turn)) = o.open_turn().await else { return };
    let span = event_span(&inner, "subscribe", &conn, &d);
    async {
        let mut why = None;
        let r = subscribe(&inner, &s, &conn, &d, &mut why).await;
        answer_with(&inner, &conn, "subscribe", ack, r, why);
    }
    .instrument(span)
    .await;
}

async fn subscribe(
    inner: &Arc<Inner>,
    s: &SocketRef,
    conn: &Arc<Conn>,
    d: &Result<Value, impl std::fmt::Debug>,
    why: &mut Option<String>,
) -> Result<Value, EventError> {
    let room = room_of(d)?;
    allowed(conn, room, Right::Subscribe)?;
    if conn.rooms.lock().contains_key(room) {
        return Ok(json!({}));
    }
    ask_hook(inner, conn, room, why).await?;
    // Where this subscription's history starts, read before joining so that every event
    // delivered live has a later offset.
    let since = match inner.ext.bus.last_offset(&conn.tenant, room).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(tenant = conn.tenant, error = %e, "subscribe: bus unavailable");
            return Err(EventError::Unavailable);
        }
    };
    join_room(inner, s, conn, room, since, false).await?;
    crate::resume::save_session(inner, conn, false).await;
    Ok(json!({}))
}

/// Asks the tenant's subscribe hook when its patterns cover `room`. Refused (the tenant's
/// reason in `why`) or no valid answer (fail-closed): `forbidden`.
async fn ask_hook(
    inner: &Inner,
    conn: &Conn,
    room: &str,
    why: &mut Option<String>,
) -> Result<(), EventError> {
    let ctx = inner.local.tenants.get(&conn.tenant).await.map_err(|_| EventError::Unavailable)?;
    let Some(hook) =
        ctx.as_ref().and_then(|c| c.tenant.policy.subscribe_hook.as_ref()).filter(|h| h.covers(room))
    else {
        return Ok(());
    };
    let (sub, meta) = {
        let id = conn.identity.read();
        (id.sub.clone(), id.meta.clone())
    };
    let req = hooks::SubscribeRequest {
        tenant: &conn.tenant,
        sub: &sub,
        room,
        meta: meta.as_ref(),
        connection_id: &conn.id,
    };
    match inner.ext.subscribe_hooks.check(hook, req).await {
        hooks::Decision::Allow => Ok(()),
        hooks::Decision::Deny(reason) => {
            *why = Some(reason);
            Err(EventError::Forbidden)
        }
    }
}

/// Subscribes the socket to `room`: local rooms, bus interest, store subscription and
/// presence, and a `presence:join` when it is the user's first connection there. With
/// `gated`, live events wait in the socket's replay buffer until its history is replayed.
pub async fn join_room(
    inner: &Arc<Inner>,
    s: &SocketRef,
    conn: &Arc<Conn>,
    room: &str,
    since: u64,
    gated: bool,
) -> Result<(), EventError> {
    if conn.rooms.lock().insert(room.to_string(), since).is_some() {
        return Ok(());
    }
    let (sub, meta, watches) = {
        let id = conn.identity.read();
        (id.sub.clone(), id.meta.clone(), id.caps.allows(room, Right::Presence))
    };
    if inner.local.rooms.join(&conn.tenant, room) {
        inner.ext.metrics.rooms.get_or_create(&telemetry::tenant(&conn.tenant)).inc();
        if let Err(e) = inner.ext.bus.set_interest(&conn.tenant, room, true).await {
            tracing::warn!(tenant = conn.tenant, error = %e, "bus interest failed");
        }
    }
    if gated {
        // The gate goes up before the room is joined, so no live event slips past it.
        crate::resume::begin(conn, s, room);
    }
    s.join(room.to_string());
    if watches {
        s.join(presence_room(room));
    }
    let store = async {
        inner.ext.store.room_subscribe(&conn.tenant, room, &conn.id).await?;
        inner.ext.store.presence_join(&conn.tenant, room, &sub, &conn.id, meta.clone()).await
    };
    match store.await {
        Ok(change) => {
            let policy_max = inner
                .local
                .tenants
                .get(&conn.tenant)
                .await
                .ok()
                .flatten()
                .map(|c| c.tenant.policy.presence_events_max_members);
            if policy::presence_event(
                policy::PresenceChange::Join,
                change.user_changed,
                change.members,
                policy_max,
            ) {
                let p = Publish {
                    tenant: conn.tenant.clone(),
                    room: room.to_string(),
                    payload: Payload::PresenceJoin { sub, meta },
                    from: None,
                    origin_conn: None,
                    echo: true,
                    trace: telemetry::otel::current_context(),
                };
                let _ = inner.ext.bus.publish(p).await;
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(tenant = conn.tenant, error = %e, "subscribe: store failed");
            // Undo the local half so that a retry starts clean.
            conn.rooms.lock().remove(room);
            leave_local(inner, s, conn, room).await;
            Err(EventError::Unavailable)
        }
    }
}

async fn leave_local(inner: &Arc<Inner>, s: &SocketRef, conn: &Conn, room: &str) {
    s.leave(room.to_string());
    s.leave(presence_room(room));
    crate::resume::abandon(conn, s, room);
    if inner.local.rooms.leave(&conn.tenant, room) {
        inner.ext.metrics.rooms.get_or_create(&telemetry::tenant(&conn.tenant)).dec();
        inner.local.recent.forget(&conn.tenant, room);
        if let Err(e) = inner.ext.bus.set_interest(&conn.tenant, room, false).await {
            tracing::warn!(tenant = conn.tenant, error = %e, "bus interest failed");
        }
    }
}

/// Leaves a room the socket had subscribed to: local rooms, store presence, and a
/// `presence:leave` when it was the user's last connection there.
pub async fn leave_room(inner: &Arc<Inner>, s: &SocketRef, conn: &Conn, room: &str) {
    leave_local(inner, s, conn, room).await;
    let (sub, meta) = {
        let id = conn.identity.read();
        (id.sub.clone(), id.meta.clone())
    };
    let _ = inner.ext.store.room_unsubscribe(&conn.tenant, room, &conn.id).await;
    match inner.ext.store.presence_leave(&conn.tenant, room, &sub, &conn.id).await {
        // Only a user's last connection leaving can be announced: the tenant is not read
        // for the others.
        Ok(change) if change.user_changed => {
            let max = inner
                .local
                .tenants
                .get(&conn.tenant)
                .await
                .ok()
                .flatten()
                .map(|c| c.tenant.policy.presence_events_max_members);
            if policy::presence_event(policy::PresenceChange::Leave, change.user_changed, change.members, max)
            {
                let p = Publish {
                    tenant: conn.tenant.clone(),
                    room: room.to_string(),
                    payload: Payload::PresenceLeave { sub, meta },
                    from: None,
                    origin_conn: None,
                    echo: true,
                    trace: telemetry::otel::current_context(),
                };
                let _ = inner.ext.bus.publish(p).await;
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(tenant = conn.tenant, error = %e, "presence leave failed"),
    }
}

async fn on_unsubscribe(
    s: SocketRef,
    State(inner): State<Arc<Inner>>,
    TryData(d): TryData<Value>,
    ack: AckSender,
    o: Ordered,
) {
    let Some((conn, _turn)) = o.open_turn().await else { return };
    let r = async {
        let room = room_of(&d)?;
        let was = conn.rooms.lock().remove(room).is_some();
        if was {
            leave_room(&inner, &s, &conn, room).await;
            crate::resume::save_session(&inner, &conn, false).await;
        }
        Ok(json!({}))
    }
    .await;
    answer(&inner, &conn, "unsubscribe", ack, r);
}

/// Counts serialised bytes without building them.
struct Counter(usize);
impl std::io::Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn on_publish(State(inner): State<Arc<Inner>>, TryData(d): TryData<Value>, ack: AckSender, o: Ordered) {
    let Some((conn, _turn)) = o.open_turn().await else { return };
    let span = event_span(&inner, "publish", &conn, &d);
    async {
        let r = publish(&inner, &conn, d).await;
        answer(&inner, &conn, "publish", ack, r);
    }
    .instrument(span)
    .await;
}

async fn publish(
    inner: &Arc<Inner>,
    conn: &Conn,
    d: Result<Value, impl std::fmt::Debug>,
) -> Result<Value, EventError> {
    let room = room_of(&d)?.to_string();
    let Ok(Value::Object(mut body)) = d else { return Err(EventError::InvalidRoom) };
    let event = match body.get("event") {
        Some(Value::String(e)) if policy::validate_event(e) => e.clone(),
        _ => return Err(EventError::InvalidEvent),
    };
    allowed(conn, &room, Right::Publish)?;
    let ctx = inner
        .local
        .tenants
        .get(&conn.tenant)
        .await
        .map_err(|_| EventError::Unavailable)?
        .ok_or(EventError::Unavailable)?;
    let pol = &ctx.tenant.policy;
    let data = body.remove("data").unwrap_or(Value::Null);
    let mut size = Counter(0);
    if serde_json::to_writer(&mut size, &data).is_err() || size.0 > pol.max_message_bytes {
        return Err(EventError::PayloadTooLarge);
    }
    if !conn.bucket.lock().try_take(pol.publish_rate_per_second, crate::clock::now_ms() as u64) {
        return Err(EventError::RateLimited);
    }
    let echo = body.get("echo").and_then(Value::as_bool).unwrap_or(false);
    let from = conn.identity.read().sub.clone();
    let p = Publish {
        tenant: conn.tenant.clone(),
        room,
        payload: Payload::Event { event, data },
        from: Some(from),
        origin_conn: Some(conn.id.clone()),
        echo,
        // Deliveries on every node join this publish's trace.
        trace: telemetry::otel::current_context(),
    };
    let out = inner.ext.bus.publish(p).await.map_err(|_| EventError::Unavailable)?;
    inner.ext.metrics.messages_in.get_or_create(&telemetry::tenant(&conn.tenant)).inc();
    inner.local.stats.add(&conn.tenant, |s| s.messages_in += 1);
    Ok(json!({"id": out.id, "offset": out.offset.to_string()}))
}

async fn on_presence(
    State(inner): State<Arc<Inner>>,
    TryData(d): TryData<Value>,
    ack: AckSender,
    o: Ordered,
) {
    let Some((conn, _turn)) = o.open_turn().await else { return };
    let r = async {
        let room = room_of(&d)?;
        allowed(&conn, room, Right::Presence)?;
        let members =
            inner.ext.store.presence(&conn.tenant, room).await.map_err(|_| EventError::Unavailable)?;
        Ok(json!({"members": members}))
    }
    .await;
    answer(&inner, &conn, "presence", ack, r);
}

async fn on_refresh(State(inner): State<Arc<Inner>>, TryData(d): TryData<Value>, ack: AckSender, o: Ordered) {
    let Some((conn, _turn)) = o.open_turn().await else { return };
    let r = async {
        let token = d
            .as_ref()
            .ok()
            .and_then(|v| v.get("token"))
            .and_then(Value::as_str)
            .ok_or(EventError::InvalidToken)?;
        let ctx = inner
            .local
            .tenants
            .get(&conn.tenant)
            .await
            .map_err(|_| EventError::Unavailable)?
            .ok_or(EventError::Unavailable)?;
        let current = conn.identity.read().clone();
        let fresh = policy::refresh(
            &current,
            token,
            &conn.tenant,
            &ctx.ring,
            &ctx.tenant.policy,
            &ctx.revocations,
            now_s(),
        )?;
        let exp = fresh.exp;
        let old = {
            let mut id = conn.identity.write();
            let old = id.exp;
            *id = fresh;
            old
        };
        let ns = format!("/{}", conn.tenant);
        inner.local.expiry.cancel(old, &ns, conn.sid);
        inner.local.expiry.schedule(exp, &ns, conn.sid);
        Ok(json!({"exp": exp}))
    }
    .await;
    answer(&inner, &conn, "refresh", ack, r);
}

/// Unknown events get an error ack (when they asked for one) and change nothing.
async fn on_unknown(State(inner): State<Arc<Inner>>, ack: AckSender, o: Ordered) {
    let Some((conn, _turn)) = o.open_turn().await else { return };
    answer(&inner, &conn, "unknown", ack, Err(EventError::InvalidEvent));
}
