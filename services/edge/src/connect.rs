//! The handshake: `authorize` (the connect middleware) asks `policy` for a decision and
//! refuses with a SPEC 3.4 code; `on_connect` sets the socket up once accepted.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::SocketIo;
use crate::SocketRef;
use policy::{Credential, HandshakeRequest, Identity, Refusal};
use serde_json::Value;
use socketioxide::extract::{State, TryData};
use socketioxide::socket::DisconnectReason;
use state::{ConnRecord, random_token};
use tracing::Instrument;

use crate::conn::{Conn, conn_of};
use crate::{Inner, events};

fn header(s: &SocketRef, name: http::HeaderName) -> Option<&str> {
    s.req_parts().headers.get(name).and_then(|v| v.to_str().ok())
}

/// The tenant id a namespace path names.
pub fn tenant_of(ns: &str) -> &str {
    ns.strip_prefix('/').unwrap_or(ns)
}

/// The connect middleware of namespaces that cannot name a tenant.
pub async fn not_a_tenant(
    s: SocketRef,
    io: SocketIo,
    State(inner): State<Arc<Inner>>,
) -> Result<(), Refusal> {
    inner
        .ext
        .metrics
        .handshakes
        .get_or_create(&telemetry::tenant_code("", Refusal::UnknownTenant.code()))
        .inc();
    if s.ns() != "/" {
        io.delete_ns(s.ns());
    }
    Err(Refusal::UnknownTenant)
}

/// The connect handler of namespaces whose middleware always refuses.
pub async fn never(_s: SocketRef) {}

/// The connect middleware: every handshake passes through here and only here.
pub async fn authorize(
    s: SocketRef,
    io: SocketIo,
    TryData(auth): TryData<Value>,
    State(inner): State<Arc<Inner>>,
) -> Result<(), Refusal> {
    let tenant = tenant_of(s.ns()).to_string();
    let mut known = false;
    let started = std::time::Instant::now();
    // The handshake's span: tenant, credential source and outcome code, never the
    // credential. The tenant is recorded only once known to exist (below).
    let span = tracing::info_span!(
        "handshake",
        node = inner.cfg.node_id.as_str(),
        tenant = tracing::field::Empty,
        source = tracing::field::Empty,
        code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if let Some(id) = telemetry::otel::trace_id(&span) {
        span.record("trace_id", id);
    }
    let result = decide(&s, &tenant, auth.ok(), &inner, &mut known).instrument(span.clone()).await;
    if known {
        span.record("tenant", tenant.as_str());
    }
    let outcome = match &result {
        Ok(id) => {
            span.record("source", id.source.as_str());
            span.record("code", "accepted");
            "accepted"
        }
        Err(r) => {
            span.record("code", r.code());
            "refused"
        }
    };
    inner.ext.metrics.handshake_seconds.get_or_create(&telemetry::label("outcome", outcome)).observe(
        started.elapsed().as_secs_f64(),
        telemetry::exemplar(&span),
        None,
    );
    let _entered = span.enter();
    match &result {
        Ok(identity) => {
            // Handlers are registered here, before socketioxide sends the CONNECT ack: a
            // client may send events the moment it has the ack, and socketioxide drops
            // events that arrive before their handler exists.
            s.on_disconnect(on_disconnect);
            events::register(&s);
            inner.ext.metrics.handshakes.get_or_create(&telemetry::tenant_code(&tenant, "accepted")).inc();
            tracing::debug!(
                tenant,
                sub = identity.sub,
                source = identity.source.as_str(),
                "handshake accepted"
            );
        }
        Err(r) => {
            // Only tenants that exist get a label: any other name is the client's
            // choice and must not create metric series.
            let label = if known { tenant.as_str() } else { "" };
            inner.ext.metrics.handshakes.get_or_create(&telemetry::tenant_code(label, r.code())).inc();
            if known {
                inner.local.stats.add(&tenant, |d| d.handshakes_refused += 1);
            } else if *r == Refusal::UnknownTenant && io.of(s.ns()).is_none_or(|ns| ns.sockets().is_empty()) {
                // socketioxide keeps a namespace for every path a client asked for;
                // forget made-up ones so that they cannot pile up. Only a tenant known
                // not to exist, with no socket left: deleting a namespace closes its
                // sockets without a word, and a refusal for another reason (draining,
                // the store unreachable) says nothing about the tenant.
                io.delete_ns(s.ns());
            }
            let query = s.req_parts().uri.query().map(telemetry::redact_query).unwrap_or_default();
            tracing::info!(tenant = label, code = r.code(), query, "handshake refused");
        }
    }
    result.map(|_| ())
}

async fn decide(
    s: &SocketRef,
    tenant: &str,
    auth: Option<Value>,
    inner: &Arc<Inner>,
    known: &mut bool,
) -> Result<Identity, Refusal> {
    if inner.local.draining.load(Ordering::SeqCst) {
        return Err(Refusal::Unavailable);
    }
    if !policy::validate_tenant_id(tenant) {
        return Err(Refusal::UnknownTenant);
    }
    let parts = s.req_parts();
    let now_ms = crate::clock::now_ms() as u64;
    if let Some(ip) =
        parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
        && !inner.local.limits.per_ip.allow(&ip, now_ms)
    {
        return Err(Refusal::RateLimited);
    }
    // Tenant limits apply only to tenants that exist, so made-up names cannot fill the map.
    let ctx = inner
        .local
        .tenants
        .get(tenant)
        .await
        .map_err(|_| Refusal::Unavailable)?
        .ok_or(Refusal::UnknownTenant)?;
    *known = true;
    if !inner.local.limits.per_tenant.allow(&tenant.to_string(), now_ms) {
        return Err(Refusal::RateLimited);
    }
    let cookies: Vec<&str> =
        parts.headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    let cookie = cookies.join("; ");
    let req = HandshakeRequest {
        auth: auth.as_ref(),
        authorization: header(s, http::header::AUTHORIZATION),
        cookie: (!cookie.is_empty()).then_some(cookie.as_str()),
        origin: header(s, http::header::ORIGIN),
        query: parts.uri.query(),
    };
    let decided = std::time::Instant::now();
    policy::check_origin(&ctx.tenant.policy, req.origin)?;
    let now = crate::clock::now_s();
    let credential = policy::find_credential(&ctx.tenant.policy, &req)?;
    // A JWKS tenant may have rotated in a key this edge has not seen yet.
    let ctx = match &credential {
        Credential::Token { token, .. } if !ctx.jwks_urls.is_empty() => inner
            .local
            .tenants
            .get_for_kid(tenant, policy::token_kid(token).as_deref())
            .await
            .map_err(|_| Refusal::Unavailable)?
            .ok_or(Refusal::UnknownTenant)?,
        _ => ctx,
    };
    let pol = &ctx.tenant.policy;
    let identity = match credential {
        Credential::Token { source, token } => {
            let id = policy::verify_token(&token, tenant, &ctx.ring, pol, source, now);
            inner.ext.metrics.policy_seconds.observe(decided.elapsed().as_secs_f64());
            id?
        }
        Credential::Ticket(t) => {
            policy::check_ticket(&t)?;
            let g = inner.ext.store.take_ticket(tenant, &t).await.map_err(|_| Refusal::Unavailable)?;
            policy::ticket_identity(g, now)?
        }
    };
    policy::check_revocations(&ctx.revocations, &identity)?;
    let record = ConnRecord {
        id: s.id.to_string(),
        sub: identity.sub.clone(),
        node: inner.cfg.node_id.clone(),
        transport: format!("{:?}", s.transport_type()).to_lowercase(),
        connected_at: crate::clock::now_ms(),
    };
    let count = match inner
        .ext
        .store
        .open_connection(tenant, record, pol.max_connections, pol.max_connections_per_user)
        .await
    {
        Ok(a) => policy::Count::Counted(a),
        Err(e) => {
            tracing::warn!(tenant, error = %e, "connection not registered: store unavailable; limits not enforced");
            policy::Count::Unreachable
        }
    };
    if policy::admit(count)? == policy::Admitted::Unregistered {
        // Written once the store is back, so that listings and limits count it.
        crate::register::request(inner);
    }
    let conn = Conn::new(
        tenant.to_string(),
        s.id,
        random_token(16),
        identity.clone(),
        crate::clock::now_ms() as u64,
        pol.publish_rate_per_second,
    );
    *conn.resume.lock() = auth.as_ref().and_then(crate::resume::Resume::parse);
    s.extensions.insert(Arc::new(conn));
    Ok(identity)
}

/// Runs once the socket is connected: registers the event handlers and tells the client
/// its session.
pub async fn on_connect(s: SocketRef, State(inner): State<Arc<Inner>>) {
    let Some(conn) = conn_of(&s) else {
        // Cannot happen: `authorize` inserted it. Refuse to run a socket without state.
        let _ = s.disconnect();
        return;
    };
    let exp = conn.identity.read().exp;
    inner.local.expiry.schedule(exp, s.ns(), s.id);
    inner.ext.metrics.connections.get_or_create(&telemetry::tenant(&conn.tenant)).inc();
    // The connect handler holds the socket's first turn: events the client sent right
    // after the ack wait until the session is set up (or resumed).
    let (conn, _turn) = conn.first_turn().turn().await;
    crate::resume::start(&inner, &s, &conn).await;
}

async fn on_disconnect(s: SocketRef, State(inner): State<Arc<Inner>>, _reason: DisconnectReason) {
    let Some(conn) = conn_of(&s) else { return };
    // From now on events are refused, and the cleanup waits for the events already
    // queued, so that none of them re-adds a room after it (no ghosts in presence).
    conn.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    let (conn, _turn) = conn.next_turn().turn().await;
    inner.ext.metrics.connections.get_or_create(&telemetry::tenant(&conn.tenant)).dec();
    let exp = conn.identity.read().exp;
    inner.local.expiry.cancel(exp, s.ns(), s.id);
    // The session outlives the socket by the tenant's recovery window, with its rooms.
    crate::resume::save_session(&inner, &conn, true).await;
    let rooms: Vec<String> = conn.rooms.lock().drain().map(|(r, _)| r).collect();
    for room in rooms {
        events::leave_room(&inner, &s, &conn, &room).await;
    }
    if let Err(e) = inner.ext.store.close_connection(&conn.tenant, &conn.id).await {
        tracing::warn!(tenant = conn.tenant, error = %e, "closing the connection record failed");
    }
}
