//! Server publish, rooms and presence.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bus::{Payload, Publish};
use http::StatusCode;
use policy::{validate_event, validate_room};
use problem::{Code, Problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use state::StatsDelta;
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::TenantAccess;
use crate::extract::{Body, P};
use crate::util::{bus_err, store_err};

/// A message to publish into a room.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishIn {
    /// The event name subscribers receive: 1-128 bytes, not reserved by Socket.IO.
    #[schema(example = "chat:message")]
    pub event: String,
    /// Any JSON value, at most the tenant's `max_message_bytes` serialised; `null` when
    /// absent.
    #[serde(default)]
    pub data: Value,
}

/// Where the message went: `id` and `offset` are opaque strings, as subscribers see them.
#[derive(Serialize, ToSchema)]
pub struct PublishOut {
    pub id: String,
    #[schema(example = "42")]
    pub offset: String,
    /// Unix milliseconds.
    pub ts: i64,
}

/// A room with subscribers.
#[derive(Serialize, ToSchema)]
pub struct RoomOut {
    pub name: String,
    pub subscribers: u64,
}

/// `{"rooms": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<RoomOut>,
}

/// A member of a room: a user, with how many of its connections are in it.
#[derive(Serialize, ToSchema)]
pub struct MemberOut {
    pub sub: String,
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
    pub connections: u32,
}

/// `{"members": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberOut>,
}

fn room_problem() -> Problem {
    Problem::of(Code::InvalidRoom, "room names are 1-200 bytes of A-Z a-z 0-9 _ - : . @ / =")
}

/// Publishes a message to every subscriber of the room on every node, with `from: null`.
#[utoipa::path(
    post,
    path = "/v1/tenants/{t}/rooms/{room}/messages",
    tag = "rooms",
    params(("t" = String, Path, description = "Tenant id"), ("room" = String, Path, description = "Room name")),
    request_body = PublishIn,
    responses(
        (status = 202, description = "Taken by the bus", body = PublishOut),
        (status = 400, description = "Invalid request, room (`invalid_room`) or event (`invalid_event`)"),
        (status = 413, description = "`data` is larger than the tenant's max_message_bytes, or the body \
            larger than 16 MiB (`payload_too_large`)")
    )
)]
pub async fn publish(
    State(st): State<AdminState>,
    access: TenantAccess,
    path: P<(String, String)>,
    Body(req): Body<PublishIn>,
) -> Result<Response, Problem> {
    let (_, room) = path.0;
    let t = access.tenant;
    if !validate_room(&room) {
        return Err(room_problem());
    }
    if !validate_event(&req.event) {
        return Err(Problem::of(
            Code::InvalidEvent,
            "event names are 1-128 bytes and not reserved by Socket.IO",
        ));
    }
    let size = serde_json::to_vec(&req.data).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > t.policy.max_message_bytes {
        return Err(Problem::of(
            Code::PayloadTooLarge,
            format!("data is {size} bytes; the tenant allows {}", t.policy.max_message_bytes),
        ));
    }
    let p = Publish {
        tenant: t.id.clone(),
        room,
        payload: Payload::Event { event: req.event, data: req.data },
        from: None,
        origin_conn: None,
        echo: true,
        trace: telemetry::otel::current_context(),
    };
    let published = st.bus.publish(p).await.map_err(bus_err)?;
    st.metrics.messages_in.get_or_create(&telemetry::tenant(&t.id)).inc();
    if let Err(e) = st.store.add_stats(&t.id, StatsDelta { messages_in: 1, ..StatsDelta::default() }).await {
        tracing::warn!(tenant = %t.id, error = %e, "stats not counted");
    }
    let out = PublishOut { id: published.id, offset: published.offset.to_string(), ts: published.ts };
    Ok((StatusCode::ACCEPTED, Json(out)).into_response())
}

/// Rooms with at least one subscriber, across all nodes.
#[utoipa::path(
    get,
    path = "/v1/tenants/{t}/rooms",
    tag = "rooms",
    params(("t" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "Rooms and their subscriber counts", body = RoomList))
)]
pub async fn list_rooms(
    State(st): State<AdminState>,
    access: TenantAccess,
) -> Result<Json<RoomList>, Problem> {
    let v = st.store.rooms(&access.tenant.id).await.map_err(store_err)?;
    Ok(Json(RoomList {
        rooms: v.into_iter().map(|(name, subscribers)| RoomOut { name, subscribers }).collect(),
    }))
}

/// Who is in a room, across all nodes.
#[utoipa::path(
    get,
    path = "/v1/tenants/{t}/rooms/{room}/presence",
    tag = "rooms",
    params(("t" = String, Path, description = "Tenant id"), ("room" = String, Path, description = "Room name")),
    responses(
        (status = 200, description = "The room's members", body = MemberList),
        (status = 400, description = "Invalid request or room (`invalid_room`)")
    )
)]
pub async fn presence(
    State(st): State<AdminState>,
    access: TenantAccess,
    path: P<(String, String)>,
) -> Result<Json<MemberList>, Problem> {
    let (_, room) = path.0;
    if !validate_room(&room) {
        return Err(room_problem());
    }
    let v = st.store.presence(&access.tenant.id, &room).await.map_err(store_err)?;
    Ok(Json(MemberList {
        members: v
            .into_iter()
            .map(|m| MemberOut { sub: m.sub, meta: m.meta, connections: m.connections })
            .collect(),
    }))
}
