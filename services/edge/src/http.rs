//! The edge's HTTP endpoints (SPEC §4): tickets, health, readiness, metrics, and CORS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use policy::Refusal;
use problem::Problem;
use state::random_token;

use crate::Inner;
use crate::clock::now_s;

pub fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/tickets", post(issue_ticket))
        .with_state(inner)
}

async fn readyz(State(inner): State<Arc<Inner>>) -> Response {
    if inner.local.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    if let Err(e) = inner.ext.store.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("state store: {e}")).into_response();
    }
    if let Err(e) = inner.ext.bus.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("bus: {e}")).into_response();
    }
    "ready".into_response()
}

async fn metrics(State(inner): State<Arc<Inner>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        inner.ext.metrics.encode(),
    )
        .into_response()
}

/// Gives a request's URI and header values allocations of their own, and strips a
/// Socket.IO request's extensions down to what the socket needs.
///
/// hyper parses a request head without copying it: the URI and every header value are
/// slices of the connection's read buffer (8 KiB or more), and each slice keeps the whole
/// buffer alive. engineioxide keeps a clone of the request head in every socket for the
/// socket's whole life, so before this every idle WebSocket held its HTTP connection's
/// read buffers, about 16 KiB of heap (measured with heaptrack), for a few hundred bytes
/// of headers. Copying them costs one small allocation per header and lets the buffer go
/// once the WebSocket has taken over the connection. axum's router has also stored a
/// clone of the URI (`OriginalUri`) and the matched path parameters in the extensions,
/// which nothing reads on a Socket.IO request: only the peer address (`ConnectInfo`, for
/// the per-IP handshake limit) and hyper's upgrade handle (taken by engineioxide) stay,
/// which saves another ~0.6 KiB per socket.
pub async fn own_head(mut req: Request) -> Request {
    if let Ok(uri) = req.uri().to_string().parse::<http::Uri>() {
        *req.uri_mut() = uri;
    }
    for (_, v) in req.headers_mut().iter_mut() {
        if let Ok(mut owned) = HeaderValue::from_bytes(v.as_bytes()) {
            owned.set_sensitive(v.is_sensitive());
            *v = owned;
        }
    }
    let socket_io = req.uri().path().starts_with(SOCKET_IO_PATH);
    let ext = req.extensions_mut();
    if socket_io {
        let mut kept = http::Extensions::new();
        if let Some(peer) = ext.remove::<ConnectInfo<SocketAddr>>() {
            kept.insert(peer);
        }
        if let Some(upgrade) = ext.remove::<hyper::upgrade::OnUpgrade>() {
            kept.insert(upgrade);
        }
        *ext = kept;
    } else if let Some(original) = ext.get_mut::<axum::extract::OriginalUri>()
        && let Ok(uri) = original.0.to_string().parse::<http::Uri>()
    {
        original.0 = uri;
    }
    req
}

/// Where socketioxide serves Socket.IO (its default, which the edge keeps).
const SOCKET_IO_PATH: &str = "/socket.io/";

/// `POST /v1/tickets` with `Authorization: Bearer <client token>` → `201 {ticket, expires_in}`;
/// a refusal is a problem answer with its SPEC code, logged without the credential.
async fn issue_ticket(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Result<Response, Problem> {
    let r = ticket(&inner, &headers).await;
    if let Err(p) = &r {
        tracing::info!(code = p.code.as_str(), "ticket request refused");
    }
    r
}

async fn ticket(inner: &Arc<Inner>, headers: &HeaderMap) -> Result<Response, Problem> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let (token, tenant) = policy::ticket_request(auth).map_err(Problem::from)?;
    let kid = policy::token_kid(&token);
    let ctx = inner
        .local
        .tenants
        .get_for_kid(&tenant, kid.as_deref())
        .await
        .map_err(|_| Problem::from(Refusal::Unavailable))?
        .ok_or(Problem::from(Refusal::InvalidToken))?;
    let pol = &ctx.tenant.policy;
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let grant = policy::grant_ticket(&token, &tenant, &ctx.ring, pol, &ctx.revocations, origin, now_s())?;
    let ticket = random_token(32);
    inner
        .ext
        .store
        .put_ticket(&tenant, &ticket, grant, pol.ticket_ttl_seconds)
        .await
        .map_err(|_| Problem::from(Refusal::Unavailable))?;
    let mut r = (
        StatusCode::CREATED,
        Json(serde_json::json!({"ticket": ticket, "expires_in": pol.ticket_ttl_seconds})),
    )
        .into_response();
    if let Some(o) = origin {
        allow_origin(r.headers_mut(), o, policy::origin_explicitly_allowed(pol, o));
    }
    Ok(r)
}

fn allow_origin(h: &mut HeaderMap, origin: &str, credentials: bool) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if credentials {
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
}

/// CORS. Preflights are answered before the tenant is known (SPEC §4): any Origin, the
/// methods used, `authorization`, `content-type` and every tenant's
/// `cors_allowed_headers`. The Origin itself is enforced at CONNECT and on the ticket
/// request. Socket.IO polling answers echo the Origin with credentials, so that browsers
/// can read them; whether that origin may connect is decided at CONNECT.
pub async fn cors(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string);
    let is_preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if is_preflight {
        let mut allowed = vec!["authorization".to_string(), "content-type".to_string()];
        allowed.extend(inner.local.tenants.cors_headers().await);
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        if let Some(o) = &origin {
            allow_origin(h, o, true);
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
        if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        return r;
    }
    let is_socketio = req.uri().path().starts_with("/socket.io");
    let is_ticket = req.uri().path() == "/v1/tickets";
    let mut r = next.run(req).await;
    if let Some(o) = origin {
        if is_socketio {
            allow_origin(r.headers_mut(), &o, true);
        } else if is_ticket && !r.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            // A refused ticket request: the page may read why (a code such as
            // `token_expired` tells it to refresh), without credentials.
            allow_origin(r.headers_mut(), &o, false);
        }
    }
    r
}
