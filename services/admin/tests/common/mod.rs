//! Shared test scaffolding: the router over a `MemoryStore` and a `LocalBus` with a
//! recording sink, a store (`state::testing::Flaky`) and a bus that can be switched off, and
//! request helpers.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use admin::{AdminState, router};
use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use bus::{Bus, BusError, Control, LocalBus, Message, Publish, Published, Sink};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use policy::Secret;
use serde_json::{Value, json};
use telemetry::Metrics;
use tower::ServiceExt;

pub const ADMIN: &str = "test-admin-token-0123456789";

/// A sink that records what the bus delivered.
#[derive(Default)]
pub struct Rec {
    pub messages: Mutex<Vec<Arc<Message>>>,
    pub controls: Mutex<Vec<Control>>,
}

#[async_trait]
impl Sink for Rec {
    async fn deliver(&self, msg: Arc<Message>) {
        self.messages.lock().push(msg);
    }
    async fn control(&self, msg: Control) {
        self.controls.lock().push(msg);
    }
}

pub use state::testing::Flaky;

/// A bus that refuses everything while `down`, and otherwise is a `LocalBus`.
#[derive(Default)]
pub struct FlakyBus {
    pub inner: LocalBus,
    pub down: AtomicBool,
}

impl FlakyBus {
    fn check(&self) -> Result<(), BusError> {
        if self.down.load(Ordering::SeqCst) {
            Err(BusError::Unavailable("switched off".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Bus for FlakyBus {
    fn attach(&self, sink: Arc<dyn Sink>) {
        self.inner.attach(sink);
    }
    async fn publish(&self, p: Publish) -> Result<Published, BusError> {
        self.check()?;
        self.inner.publish(p).await
    }
    async fn set_interest(&self, tenant: &str, room: &str, interested: bool) -> Result<(), BusError> {
        self.check()?;
        self.inner.set_interest(tenant, room, interested).await
    }
    async fn history(
        &self,
        tenant: &str,
        room: &str,
        after: u64,
        max: usize,
    ) -> Result<bus::Replay, BusError> {
        self.check()?;
        self.inner.history(tenant, room, after, max).await
    }
    async fn last_offset(&self, tenant: &str, room: &str) -> Result<u64, BusError> {
        self.check()?;
        self.inner.last_offset(tenant, room).await
    }
    async fn control_with(&self, c: Control, trace: bus::TraceContext) -> Result<(), BusError> {
        self.check()?;
        self.inner.control_with(c, trace).await
    }
    async fn ping(&self) -> Result<(), BusError> {
        self.check()
    }
}

pub struct Env {
    pub app: Router,
    pub store: Arc<Flaky>,
    pub bus: Arc<FlakyBus>,
    pub rec: Arc<Rec>,
    pub metrics: Arc<Metrics>,
}

pub fn env() -> Env {
    let store = Arc::new(Flaky::default());
    let bus = Arc::new(FlakyBus::default());
    let rec = Arc::new(Rec::default());
    bus.attach(rec.clone());
    let metrics = Metrics::shared();
    let app = router(AdminState {
        store: store.clone(),
        bus: bus.clone(),
        metrics: metrics.clone(),
        admin_token: Secret::new(ADMIN),
    });
    Env { app, store, bus, rec, metrics }
}

/// An answer: status, headers, and the body as JSON (or a JSON string when it is not).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status; body {}", self.body);
        let ct = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(ct, "application/problem+json", "content type; body {}", self.body);
        assert_eq!(self.body["code"], code, "code; body {}", self.body);
        assert_eq!(self.body["status"], status, "body status; body {}", self.body);
        for f in ["type", "title", "detail"] {
            assert!(self.body[f].is_string(), "problem field {f}: {}", self.body);
        }
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "status; body {}", self.body);
        &self.body
    }
}

impl Env {
    /// Sends a raw request.
    pub async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.expect("the router answers");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer { status, headers, body }
    }

    /// Sends `method path` with a bearer credential and an optional JSON body.
    pub async fn call(&self, method: &str, path: &str, auth: Option<&str>, body: Option<Value>) -> Answer {
        let mut b =
            Request::builder().method(Method::from_bytes(method.as_bytes()).expect("method")).uri(path);
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, format!("Bearer {a}"));
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .expect("request"),
            None => b.body(Body::empty()).expect("request"),
        };
        self.send(req).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call(method, path, Some(ADMIN), body).await
    }

    /// Creates a tenant with the admin token.
    pub async fn tenant(&self, id: &str) {
        self.admin("POST", "/v1/tenants", Some(json!({"id": id}))).await.ok(201);
    }

    /// Creates a tenant API key and returns it.
    pub async fn api_key(&self, tenant: &str) -> String {
        let a = self
            .admin("POST", &format!("/v1/tenants/{tenant}/api-keys"), Some(json!({"name": "test"})))
            .await;
        a.ok(201)["key"].as_str().expect("key").to_string()
    }

    /// Control messages sent so far, cleared.
    pub fn take_controls(&self) -> Vec<Control> {
        std::mem::take(&mut *self.rec.controls.lock())
    }

    pub fn set_store_down(&self, down: bool) {
        self.store.down.store(down, Ordering::SeqCst);
    }

    pub fn set_bus_down(&self, down: bool) {
        self.bus.down.store(down, Ordering::SeqCst);
    }
}

/// Whether `s` is an RFC 3339 UTC timestamp as this API writes them.
pub fn is_rfc3339(s: &Value) -> bool {
    s.as_str().is_some_and(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

/// Every route of SPEC §5 as `(method, path template)`, plus the system routes.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants"),
    ("GET", "/v1/tenants/{t}"),
    ("PATCH", "/v1/tenants/{t}"),
    ("DELETE", "/v1/tenants/{t}"),
    ("POST", "/v1/tenants/{t}/keys"),
    ("GET", "/v1/tenants/{t}/keys"),
    ("DELETE", "/v1/tenants/{t}/keys/{kid}"),
    ("POST", "/v1/tenants/{t}/api-keys"),
    ("GET", "/v1/tenants/{t}/api-keys"),
    ("DELETE", "/v1/tenants/{t}/api-keys/{id}"),
    ("POST", "/v1/tenants/{t}/tokens"),
    ("POST", "/v1/tenants/{t}/tickets"),
    ("POST", "/v1/tenants/{t}/revocations"),
    ("GET", "/v1/tenants/{t}/revocations"),
    ("DELETE", "/v1/tenants/{t}/revocations/{id}"),
    ("POST", "/v1/tenants/{t}/rooms/{room}/messages"),
    ("GET", "/v1/tenants/{t}/rooms"),
    ("GET", "/v1/tenants/{t}/rooms/{room}/presence"),
    ("GET", "/v1/tenants/{t}/connections"),
    ("DELETE", "/v1/tenants/{t}/connections"),
    ("GET", "/v1/tenants/{t}/stats"),
];

/// Routes that need no credential.
pub const PUBLIC: &[&str] = &["/healthz", "/readyz", "/metrics", "/v1/openapi.json"];

/// A plausible valid request for a route of tenant `t`: the concrete path and body.
pub fn sample(method: &str, template: &str, t: &str) -> (String, Option<Value>) {
    let path = template
        .replace("{t}", t)
        .replace("{kid}", "k1")
        .replace("{id}", "rv_0011223344556677")
        .replace("{room}", "lobby");
    let path = if template.ends_with("/connections") && method == "DELETE" {
        format!("{path}?sub=u1")
    } else {
        path
    };
    let body = match (method, template) {
        ("POST", "/v1/tenants") => Some(json!({"id": "fresh"})),
        ("PATCH", _) => Some(json!({"name": "renamed"})),
        ("POST", p) if p.ends_with("/keys") => Some(json!({"alg": "HS256"})),
        ("POST", p) if p.ends_with("/api-keys") => Some(json!({"name": "n"})),
        ("POST", p) if p.ends_with("/tokens") => Some(json!({"sub": "u1"})),
        ("POST", p) if p.ends_with("/tickets") => Some(json!({"sub": "u1"})),
        ("POST", p) if p.ends_with("/revocations") => Some(json!({"sub": "u1"})),
        ("POST", p) if p.ends_with("/messages") => Some(json!({"event": "e", "data": 1})),
        _ => None,
    };
    (path, body)
}
