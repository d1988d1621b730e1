//! Connections (list and kick) and stats.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bus::Control;
use http::StatusCode;
use problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;
use crate::auth::TenantAccess;
use crate::extract::Q;
use crate::util::{bus_err, check_id_claim, invalid, rfc3339_ms, store_err};

/// A live connection.
#[derive(Serialize, ToSchema)]
pub struct ConnOut {
    pub id: String,
    pub sub: String,
    /// The edge node holding it.
    pub node: String,
    /// `websocket` or `polling`.
    pub transport: String,
    /// RFC 3339.
    pub connected_at: String,
}

/// `{"connections": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct ConnList {
    pub connections: Vec<ConnOut>,
}

/// Which connections.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConnQuery {
    /// Only this user's connections (required to kick).
    pub sub: Option<String>,
}

/// A kick sent to every node.
#[derive(Serialize, ToSchema)]
pub struct KickOut {
    pub sub: String,
    /// How many connections the user had when the kick was sent.
    pub connections: u64,
}

/// A tenant's counters.
#[derive(Serialize, ToSchema)]
pub struct StatsOut {
    pub connections: u64,
    pub rooms: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub handshakes_refused: u64,
}

/// Live connections across all nodes, optionally of one user.
#[utoipa::path(
    get,
    path = "/v1/tenants/{t}/connections",
    tag = "sessions",
    params(("t" = String, Path, description = "Tenant id"), ConnQuery),
    responses((status = 200, description = "Live connections", body = ConnList))
)]
pub async fn list_connections(
    State(st): State<AdminState>,
    access: TenantAccess,
    Q(q): Q<ConnQuery>,
) -> Result<Json<ConnList>, Problem> {
    if let Some(s) = &q.sub {
        check_id_claim("sub", s)?;
    }
    let v = st.store.list_connections(&access.tenant.id, q.sub.as_deref()).await.map_err(store_err)?;
    Ok(Json(ConnList {
        connections: v
            .into_iter()
            .map(|c| ConnOut {
                id: c.id,
                sub: c.sub,
                node: c.node,
                transport: c.transport,
                connected_at: rfc3339_ms(c.connected_at),
            })
            .collect(),
    }))
}

/// Ends every connection of a user on every node with `session_end {code: "kicked"}`.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{t}/connections",
    tag = "sessions",
    params(("t" = String, Path, description = "Tenant id"), ConnQuery),
    responses(
        (status = 202, description = "The kick was sent to every node", body = KickOut),
        (status = 400, description = "Invalid request; `sub` is required")
    )
)]
pub async fn kick_connections(
    State(st): State<AdminState>,
    access: TenantAccess,
    Q(q): Q<ConnQuery>,
) -> Result<Response, Problem> {
    let Some(sub) = q.sub else {
        return Err(invalid("sub is required: DELETE /v1/tenants/{t}/connections?sub=<user>"));
    };
    check_id_claim("sub", &sub)?;
    let tenant = access.tenant.id;
    let n = st.store.list_connections(&tenant, Some(&sub)).await.map_err(store_err)?.len() as u64;
    st.bus
        .control_with(Control::Kick { tenant, sub: sub.clone() }, telemetry::otel::current_context())
        .await
        .map_err(bus_err)?;
    Ok((StatusCode::ACCEPTED, Json(KickOut { sub, connections: n })).into_response())
}

/// The tenant's counters.
#[utoipa::path(
    get,
    path = "/v1/tenants/{t}/stats",
    tag = "sessions",
    params(("t" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "Counters", body = StatsOut))
)]
pub async fn stats(State(st): State<AdminState>, access: TenantAccess) -> Result<Json<StatsOut>, Problem> {
    let s = st.store.stats(&access.tenant.id).await.map_err(store_err)?;
    Ok(Json(StatsOut {
        connections: s.connections,
        rooms: s.rooms,
        messages_in: s.messages_in,
        messages_out: s.messages_out,
        handshakes_refused: s.handshakes_refused,
    }))
}
