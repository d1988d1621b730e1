//! The tenant admin HTTP API (SPEC §5).
//!
//! Every route is declared once, with its OpenAPI description, through
//! `utoipa_axum::routes!`: the router that serves the API and the document at
//! `GET /v1/openapi.json` come from the same definitions, so a route cannot be served
//! without being described.
//!
//! Who may do what:
//! - `Authorization: Bearer <admin token>`: every route of every tenant;
//! - `Authorization: Bearer <tenant API key>`: the routes of its own tenant only (403 on
//!   another tenant's routes); it cannot create, list or delete tenants (403);
//! - no or an unknown credential: 401.
//!
//! Every error answer is `application/problem+json` (the `problem` crate), including
//! the ones axum or a layer would answer in plain text (unknown route, wrong method,
//! body too large, a panic): [`problemize`] rewrites them on the way out.

mod auth;
mod extract;
mod openapi;
mod routes;
pub mod service;
mod util;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bus::Bus;
use http::{HeaderValue, StatusCode, header};
use policy::Secret;
use problem::{Code, Problem};
use state::Store;
use telemetry::Metrics;

pub use openapi::openapi;

/// What the admin API needs.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub metrics: Arc<Metrics>,
    pub admin_token: Secret,
}

/// Largest request body on every route but server publish, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest body of `POST /v1/tenants/{t}/rooms/{room}/messages`: a tenant may allow
/// messages up to 16 MiB (`max_message_bytes`), plus room for the envelope. The tenant's
/// own limit is then applied to `data`.
pub const MAX_PUBLISH_BODY_BYTES: usize = 16 * 1024 * 1024 + 64 * 1024;

/// The admin router, serving `/v1/...`, `/healthz`, `/readyz` and `/metrics`.
pub fn router(state: AdminState) -> axum::Router {
    let (router, _doc) = routes::api().split_for_parts();
    let router = router.fallback(unknown_route).layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    // Counted last, so that every answer is counted with the status the client got.
    protect(router).layer(middleware::from_fn_with_state(state.clone(), count_requests)).with_state(state)
}

/// The outermost layers: a panic becomes a 500 problem, and every error answer is a
/// problem.
fn protect<S: Clone + Send + Sync + 'static>(router: axum::Router<S>) -> axum::Router<S> {
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .layer(middleware::from_fn(problemize))
}

async fn unknown_route() -> Problem {
    Problem::of(Code::NotFound, "no such route")
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("admin API handler panicked");
    Problem::of(Code::Internal, "internal error").into_response()
}

/// Counts requests by route template, method and status.
async fn count_requests(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let method = req.method().as_str().to_string();
    // One span per request, named by its route template (never the path itself, which
    // holds tenant and room names), with its status.
    let span = tracing::info_span!(
        "admin",
        otel.name = format!("{method} {}", route.as_deref().unwrap_or("unmatched")),
        http.request.method = method.as_str(),
        http.route = route.as_deref().unwrap_or("unmatched"),
        http.response.status_code = tracing::field::Empty,
    );
    let res = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.record("http.response.status_code", res.status().as_u16());
    let labels = vec![
        ("route", route.unwrap_or_else(|| "unmatched".to_string())),
        ("method", method),
        ("status", res.status().as_u16().to_string()),
    ];
    st.metrics.admin_requests.get_or_create(&labels).inc();
    res
}

/// Turns every error answer that is not already `application/problem+json` (axum's
/// plain-text rejections, 405, a layer's 413, a caught panic) into one, keeping the
/// status and the other headers (`Allow`, ...).
async fn problemize(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if is_problem {
        return res;
    }
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => (Code::NotFound, "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (Code::MethodNotAllowed, "this route does not take this method"),
        StatusCode::PAYLOAD_TOO_LARGE => (Code::PayloadTooLarge, "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (Code::UnsupportedMediaType, "send application/json"),
        StatusCode::UNAUTHORIZED => (Code::Unauthorized, "missing or invalid credentials"),
        StatusCode::FORBIDDEN => (Code::Forbidden, "not allowed"),
        StatusCode::SERVICE_UNAVAILABLE => (Code::Unavailable, "unavailable; retry"),
        s if s.is_server_error() => (Code::Internal, "internal error"),
        _ => (Code::InvalidRequest, "invalid request"),
    };
    let (mut parts, _) = res.into_parts();
    let (_, body) = Problem::of(code, detail).with_status(status).into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    async fn answer(
        router: axum::Router,
        method: &str,
        uri: &str,
    ) -> (StatusCode, String, serde_json::Value) {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).expect("request");
        let res = router.oneshot(req).await.expect("answer");
        let status = res.status();
        let ct =
            res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body");
        (status, ct, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn panics_and_plain_errors_become_problems() {
        let r = protect(
            axum::Router::new()
                .route("/boom", axum::routing::get(boom))
                .route(
                    "/plain",
                    axum::routing::get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }),
                )
                .route("/fine", axum::routing::get(|| async { "fine" })),
        );
        let (status, ct, body) = answer(r.clone(), "GET", "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(ct, "application/problem+json");
        assert_eq!(body["code"], "internal");
        let (status, ct, body) = answer(r.clone(), "GET", "/plain").await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(ct, "application/problem+json");
        assert_eq!(body["status"], 418);
        let (status, ct, body) = answer(r.clone(), "POST", "/fine").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(ct, "application/problem+json");
        assert_eq!(body["code"], "method_not_allowed");
        let (status, ct, _) = answer(r, "GET", "/fine").await;
        assert_eq!((status, ct.as_str()), (StatusCode::OK, "text/plain; charset=utf-8"));
    }
}
