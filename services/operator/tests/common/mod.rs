//! The Kubernetes API as kube's mock client (`tower_test::mock::pair` under
//! `kube::Client::new`), in controller-rs's `ApiServerVerifier` habit: every request the
//! operator makes is recorded and answered, and tests assert the exact sequence. The store
//! and bus are the in-memory twins (`state::testing::Flaky` over a `MemoryStore`, a
//! `LocalBus` whose sink records control messages).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bus::{Bus, Control, LocalBus, Message, Sink};
use http::{Request, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::runtime::controller::Action;
use operator::controller::{Context, Error, reconcile};
use operator::crd::{FINALIZER, SecretKeyRef, Tenant, TenantKeySpec, TenantSpec, TenantStatus};
use serde_json::{Value, json};
use state::testing::Flaky;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub const NS: &str = "prod";
pub const HMAC: &str = "0123456789abcdef0123456789abcdef-hmac";
pub const TENANT_PATH: &str = "/apis/switchboard.dev/v1alpha1/namespaces/prod/tenants/acme";
pub const STATUS_PATH: &str = "/apis/switchboard.dev/v1alpha1/namespaces/prod/tenants/acme/status";
pub const SECRET_PATH: &str = "/api/v1/namespaces/prod/secrets/acme-keys";
pub const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/prod/events";

/// A sink that records control messages.
#[derive(Default)]
pub struct Rec {
    pub controls: Mutex<Vec<Control>>,
}

#[async_trait]
impl Sink for Rec {
    async fn deliver(&self, _msg: Arc<Message>) {}
    async fn control(&self, msg: Control) {
        self.controls.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
    }
}

/// One request the operator made.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Value,
}

impl Seen {
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

pub struct Env {
    pub ctx: Arc<Context>,
    pub api: Handle,
    pub store: Arc<Flaky>,
    pub bus: Arc<LocalBus>,
    pub rec: Arc<Rec>,
    /// The Secrets the fake API server holds: name → data.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// When set, Secret reads answer this status (e.g. 403: RBAC refuses).
    pub secret_refusal: Option<u16>,
}

pub fn env() -> Env {
    let (svc, api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, NS);
    let store = Arc::new(Flaky::default());
    let bus = Arc::new(LocalBus::new());
    let rec = Arc::new(Rec::default());
    bus.attach(rec.clone());
    let ctx = Arc::new(Context::new(client, NS, store.clone(), bus.clone(), Some("op-0".into())));
    Env { ctx, api, store, bus, rec, secrets: BTreeMap::new(), secret_refusal: None }
}

/// A Tenant `acme` in `prod` with one HMAC key from Secret `acme-keys`.
pub fn tenant(generation: i64) -> Tenant {
    let mut t = Tenant::new(
        "acme",
        TenantSpec {
            name: Some("Acme".into()),
            policy: None,
            keys: vec![TenantKeySpec {
                kid: Some("k1".into()),
                alg: Some("HS256".into()),
                secret_ref: Some(SecretKeyRef { name: "acme-keys".into(), key: "secret".into() }),
                ..TenantKeySpec::default()
            }],
        },
    );
    t.metadata.namespace = Some(NS.into());
    t.metadata.uid = Some("uid-acme".into());
    t.metadata.resource_version = Some("1".into());
    t.metadata.generation = Some(generation);
    t
}

/// The same Tenant with the finalizer in place.
pub fn finalized(mut t: Tenant) -> Tenant {
    t.metadata.finalizers = Some(vec![FINALIZER.into()]);
    t
}

fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, status: u16, body: &Value) {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let res = Response::builder().status(status).body(Body::from(bytes)).expect("response");
    send.send_response(res);
}

async fn body_of(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.expect("request body");
    if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON request body") }
}

impl Env {
    pub fn set_secret(&mut self, name: &str, key: &str, value: &str) {
        self.secrets.entry(name.into()).or_default().insert(key.into(), value.into());
    }

    pub fn controls(&self) -> Vec<Control> {
        std::mem::take(&mut *self.rec.controls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn secret(&self, name: &str) -> Option<Value> {
        let data = self.secrets.get(name)?;
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some(NS.into());
        s.data = Some(data.iter().map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec()))).collect());
        serde_json::to_value(s).ok()
    }

    /// Runs one reconcile of `t`, answering every request as a well-behaved API server
    /// holding `t` and `self.secrets` would, and returns its result, the requests made, and
    /// the Tenant as the API server holds it afterwards (status patched, finalizers).
    pub async fn drive(&mut self, t: &Tenant) -> (Result<Action, Error>, Vec<Seen>, Tenant) {
        let mut current = t.clone();
        let mut task = tokio::spawn(reconcile(Arc::new(t.clone()), self.ctx.clone()));
        let mut seen = Vec::new();
        loop {
            let next = tokio::select! {
                r = &mut task => {
                    let r = r.expect("reconcile task");
                    return (r, seen, current);
                }
                next = tokio::time::timeout(Duration::from_secs(10), self.api.next_request()) => next,
            };
            let (req, send) = next.expect("a request or the end within 10 s").expect("the client is alive");
            let method = req.method().as_str().to_string();
            let path = req.uri().path().to_string();
            let body = body_of(req).await;
            let (status, reply) = match (method.as_str(), path.as_str()) {
                ("GET", p) if p.starts_with("/api/v1/namespaces/prod/secrets/") => {
                    let name = p.rsplit('/').next().unwrap_or_default();
                    match (self.secret_refusal, self.secret(name)) {
                        (Some(code), _) => (code, status_json(code, "Forbidden", "secrets is forbidden")),
                        (None, Some(s)) => (200, s),
                        (None, None) => {
                            (404, status_json(404, "NotFound", &format!("secrets \"{name}\" not found")))
                        }
                    }
                }
                ("PATCH", p) if p.ends_with("/status") => {
                    let s: TenantStatus = serde_json::from_value(body["status"].clone()).expect("a status");
                    current.status = Some(s);
                    (200, serde_json::to_value(&current).expect("json"))
                }
                ("PATCH", _) => {
                    // The finalizer's JSON patch: apply its add/remove.
                    for op in body.as_array().expect("a JSON patch") {
                        match op["op"].as_str() {
                            Some("add") => current.metadata.finalizers = Some(vec![FINALIZER.into()]),
                            Some("remove") => current.metadata.finalizers = None,
                            _ => {}
                        }
                    }
                    (200, serde_json::to_value(&current).expect("json"))
                }
                ("POST", p) if p == EVENTS_PATH => (201, body.clone()),
                _ => (404, status_json(404, "NotFound", "unexpected request")),
            };
            respond(send, status, &reply);
            seen.push(Seen { method, path, body });
        }
    }

    /// Answers the next request, which must be `method path`, with `status` and `reply`;
    /// returns its body.
    pub async fn answer(&mut self, method: &str, path: &str, status: u16, reply: Value) -> Value {
        let next = tokio::time::timeout(Duration::from_secs(10), self.api.next_request()).await;
        let (req, send) = next.expect("a request within 10 s").expect("the client is alive");
        assert_eq!((req.method().as_str(), req.uri().path()), (method, path), "unexpected request");
        let body = body_of(req).await;
        respond(send, status, &reply);
        body
    }

    /// Answers with a 404 or 409 `Status`.
    pub async fn refuse(&mut self, method: &str, path: &str, code: u16) -> Value {
        let reason = if code == 409 { "Conflict" } else { "NotFound" };
        self.answer(method, path, code, status_json(code, reason, "refused by the test")).await
    }
}

pub fn lines(seen: &[Seen]) -> Vec<String> {
    seen.iter().map(Seen::line).collect()
}

/// The condition `type_` of a status, as (status, reason).
pub fn condition(s: &TenantStatus, type_: &str) -> (String, String) {
    let c = s.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_}: {s:?}"));
    (c.status.clone(), c.reason.clone())
}

pub fn cond(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}
