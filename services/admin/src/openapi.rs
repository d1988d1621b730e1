//! The OpenAPI 3.1 document served at `GET /v1/openapi.json`.
//!
//! The paths come from the route definitions themselves (`utoipa_axum::routes!` in
//! `routes`); this module adds what every route shares: the bearer security scheme, the
//! problem+json error schema, and the error answers every authenticated route can give.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

/// An error answer (RFC 9457 problem details).
#[derive(ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemDoc {
    /// `https://switchboard.dev/problems/<code>`.
    #[schema(example = "https://switchboard.dev/problems/not_found")]
    r#type: String,
    /// The HTTP reason phrase.
    #[schema(example = "Not Found")]
    title: String,
    /// The HTTP status.
    #[schema(example = 404)]
    status: u16,
    /// What went wrong, for people; never contains a secret.
    detail: String,
    /// The stable machine-readable code, e.g. `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `invalid_request`, `invalid_key`, `invalid_room`, `invalid_event`,
    /// `no_signing_key`, `payload_too_large`, `unsupported_media_type`, `unavailable`.
    #[schema(example = "not_found")]
    code: String,
}

/// One right on a room.
#[derive(ToSchema)]
#[schema(as = Right)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RightDoc {
    Subscribe,
    Publish,
    Presence,
}

/// Where a handshake credential may come from (SPEC 3.2).
#[derive(ToSchema)]
#[schema(as = CredentialSource)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum SourceDoc {
    Auth,
    Header,
    Ticket,
    Cookie,
    Query,
}

/// Capabilities: `{ "<room pattern>": ["subscribe", "publish", "presence"] }`; a pattern
/// is an exact room name, a prefix ending in `*`, or `*`.
#[derive(ToSchema)]
#[schema(as = Caps)]
#[allow(dead_code)]
pub struct CapsDoc(HashMap<String, Vec<RightDoc>>);

/// A tenant's policy (SPEC §5). Every field is optional on input and takes its default;
/// unknown fields are refused.
#[derive(ToSchema)]
#[schema(as = Policy)]
#[allow(dead_code)]
pub struct PolicyDoc {
    /// `["*"]` or origins starting with `http://` or `https://`.
    #[schema(default = json!(["*"]))]
    allowed_origins: Vec<String>,
    #[schema(default = json!(["auth", "header", "ticket"]))]
    credential_sources: Vec<SourceDoc>,
    #[schema(default = "sb_token")]
    cookie_name: String,
    /// Rights of a token without a `caps` claim.
    #[schema(default = json!({}))]
    default_caps: CapsDoc,
    #[schema(default = 10000)]
    max_connections: u64,
    #[schema(default = 10)]
    max_connections_per_user: u32,
    #[schema(default = 65536)]
    max_message_bytes: u64,
    #[schema(default = 50)]
    publish_rate_per_second: u32,
    #[schema(default = 86400)]
    max_token_ttl_seconds: u64,
    #[schema(default = 30)]
    ticket_ttl_seconds: u64,
    #[schema(default = 120)]
    recovery_window_seconds: u64,
    #[schema(default = json!([]))]
    cors_allowed_headers: Vec<String>,
    #[schema(default = 100)]
    presence_events_max_members: u32,
    /// Signed webhooks; `null` (the default) sends none.
    #[schema(nullable)]
    webhooks: Option<WebhooksDoc>,
    /// The subscribe authorization hook; `null` (the default) asks nothing.
    #[schema(nullable)]
    subscribe_hook: Option<SubscribeHookDoc>,
}

/// Where a tenant's webhooks go. Each request is a POST of `{time_ms, events: [{id, name,
/// tenant, time_ms, room?, user?, connection_id?, code?}]}` (at most 100 events, sent at
/// most 250 ms after the first), with `X-Switchboard-Timestamp` (unix ms),
/// `X-Switchboard-Webhook-Id` (the same on every retry) and `X-Switchboard-Signature:
/// v1=<hex>[,v1=<hex>]`: HMAC-SHA256 of `v1:<timestamp>:<body>` with each secret.
#[derive(ToSchema)]
#[schema(as = Webhooks)]
#[allow(dead_code)]
pub struct WebhooksDoc {
    /// `https://…`; `http://` only on loopback hosts; no user info.
    #[schema(example = "https://api.example.com/switchboard/webhooks")]
    url: String,
    /// One or two secrets of 32-512 bytes (two while rotating: each signs). Answers show
    /// `"<redacted>"`.
    secrets: Vec<String>,
    /// Of `room.occupied`, `room.vacated`, `presence.member_added`,
    /// `presence.member_removed`, `connection.opened`, `connection.closed`, `session.ended`.
    #[schema(default = json!(["room.occupied", "room.vacated", "presence.member_added", "presence.member_removed"]))]
    events: Vec<String>,
}

/// A hook asked before a subscription to a room its patterns cover: a signed POST (the
/// webhook headers, one signature) of `{tenant, sub, room, meta, connection_id, time_ms}`;
/// a 2xx `{"allow": true}` allows, `{"allow": false, "reason"}` refuses with `forbidden`
/// and the reason as the ack's message; anything else, or no answer within `timeout_ms`,
/// refuses (`forbidden`, fail-closed). Redirects are not followed.
#[derive(ToSchema)]
#[schema(as = SubscribeHook)]
#[allow(dead_code)]
pub struct SubscribeHookDoc {
    /// `https://…`; `http://` only on loopback hosts; no user info.
    url: String,
    /// 32-512 bytes. Answers show `"<redacted>"`.
    secret: String,
    /// Room patterns: a room, a prefix ending in `*`, or `*`.
    #[schema(example = json!(["private:*"]))]
    rooms: Vec<String>,
    /// 1-5000.
    #[schema(default = 1500)]
    timeout_ms: u64,
    /// How long an allow or refusal is reused for the same user and room, 0-60.
    #[schema(default = 5)]
    cache_seconds: u64,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard admin API",
        description = "Tenants, keys, API keys, tokens, tickets, revocations, server publish, rooms, \
                       presence, connections and stats of a Switchboard service (SPEC §5). \
                       Authenticate with `Authorization: Bearer <admin token>` (all tenants) or a \
                       tenant API key (its own tenant only). Errors are `application/problem+json`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(ProblemDoc, PolicyDoc, CapsDoc, RightDoc, SourceDoc, WebhooksDoc, SubscribeHookDoc)),
    tags(
        (name = "tenants", description = "Tenants and their policies"),
        (name = "keys", description = "Keys that verify the tenant's client tokens"),
        (name = "api-keys", description = "Tenant API keys for backends"),
        (name = "credentials", description = "Tokens, tickets and revocations"),
        (name = "rooms", description = "Server publish, rooms and presence"),
        (name = "sessions", description = "Connections and stats"),
        (name = "system", description = "Health, readiness, metrics and this document")
    )
)]
pub struct ApiDoc;

/// Routes that need no credential.
const PUBLIC: &[&str] = &["/healthz", "/readyz", "/metrics", "/v1/openapi.json"];

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// Adds what every route shares to the generated document.
fn finish(mut doc: Value) -> Value {
    doc["components"]["securitySchemes"]["bearer"] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token, or a tenant API key (`sbk_...`) confined to its tenant."
    });
    doc["components"]["responses"]["Problem"] = problem_response("An error (RFC 9457 problem details)");
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return doc };
    for (path, item) in paths.iter_mut() {
        let public = PUBLIC.contains(&path.as_str());
        for m in METHODS {
            let Some(op) = item.get_mut(*m).and_then(Value::as_object_mut) else { continue };
            let has_body = op.contains_key("requestBody");
            let responses = op.entry("responses").or_insert_with(|| json!({}));
            let Some(responses) = responses.as_object_mut() else { continue };
            // Errors declared by a route without a body are problem answers.
            for (status, r) in responses.iter_mut() {
                if (status.starts_with('4') || status.starts_with('5'))
                    && let Some(r) = r.as_object_mut()
                    && !r.contains_key("content")
                {
                    r.insert(
                        "content".into(),
                        json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}),
                    );
                }
            }
            let mut shared: Vec<(&str, &str)> = Vec::new();
            if !public {
                shared.extend([
                    ("400", "Invalid request: a malformed id, parameter or body (`invalid_request`)"),
                    ("401", "Missing or unknown credential (`unauthorized`)"),
                    ("403", "A tenant API key on another tenant's route, or on a route for the admin token only (`forbidden`)"),
                    ("404", "The tenant or record does not exist (`not_found`)"),
                    ("503", "The state store or the bus is unavailable (`unavailable`)"),
                ]);
            }
            if has_body {
                shared.extend([
                    ("413", "The request body is too large (`payload_too_large`)"),
                    ("415", "The request body is not application/json (`unsupported_media_type`)"),
                ]);
            }
            for (status, description) in shared {
                responses.entry(status).or_insert_with(|| problem_response(description));
            }
            if public {
                op.insert("security".into(), json!([]));
            } else {
                op.insert("security".into(), json!([{"bearer": []}]));
            }
        }
    }
    doc
}

/// The OpenAPI document of the admin API.
pub fn openapi() -> Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let doc = crate::routes::api().into_openapi();
        finish(serde_json::to_value(doc).unwrap_or_else(|_| json!({})))
    })
    .clone()
}
