//! Health, readiness, metrics and the API's own description: no credential needed.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header;
use problem::{Code, Problem};

use crate::AdminState;

/// Alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    responses((status = 200, description = "The process is alive", body = String, content_type = "text/plain"))
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready: the state store and the bus answer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "The state store or the bus is unreachable (`unavailable`)")
    )
)]
pub async fn readyz(State(st): State<AdminState>) -> Result<&'static str, Problem> {
    if let Err(e) = st.store.ping().await {
        tracing::warn!(error = %e, "readiness: state store unreachable");
        return Err(Problem::of(Code::Unavailable, "the state store is unreachable"));
    }
    if let Err(e) = st.bus.ping().await {
        tracing::warn!(error = %e, "readiness: bus unreachable");
        return Err(Problem::of(Code::Unavailable, "the message bus is unreachable"));
    }
    Ok("ready")
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses((status = 200, description = "Prometheus text exposition", body = String,
        content_type = "application/openmetrics-text"))
)]
pub async fn metrics(State(st): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        st.metrics.encode(),
    )
        .into_response()
}

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object))
)]
pub async fn openapi_json() -> Json<serde_json::Value> {
    Json(crate::openapi::openapi())
}
