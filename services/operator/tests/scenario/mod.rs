//! One scenario, run by the real operator (`operator::run_with`: Lease election, the
//! kube-rs Controller, its watches, the finalizer) against a Kubernetes API server over
//! HTTP: kmock's emulator (tests/kmock.rs) or a real cluster (tests/cluster.rs). The store is
//! a `Flaky` in-memory store that the test can switch off; the bus a `LocalBus` whose sink
//! records control messages. Two replicas run: the leader does the work while the other
//! waits as a ready standby, then takes over when the leader stops and releases the Lease.
//!
//! Every wait is a poll with a deadline. The deadlines that prove a watch or a requeue did
//! the work are shorter than `controller::RECHECK` (120 s), the operator's periodic look at a
//! Tenant that is not ready, so that the periodic look cannot pass them.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body as AxumBody;
use bus::{Bus as _, Control, LocalBus};
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use operator::Tenant;
use operator::crd::FINALIZER;
use operator::health::Health;
use policy::TenantPolicy;
use serde_json::json;
use state::Store;
use state::testing::Flaky;
use tower::ServiceExt as _;

use crate::common::Rec;

/// Long enough for a slow CI machine; shorter than `RECHECK`.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `check` until it holds, failing after `DEADLINE` with `what` and the last state.
pub async fn eventually<F, Fut, T>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(start.elapsed() < DEADLINE, "{what}: not within {DEADLINE:?}; last: {last}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The condition `type_` as (status, reason).
pub fn condition(t: &Tenant, type_: &str) -> Option<(String, String)> {
    let c = t.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

fn cond(status: &str, reason: &str) -> Option<(String, String)> {
    Some((status.to_string(), reason.to_string()))
}

pub struct Scenario {
    pub client: kube::Client,
    pub namespace: String,
    /// The Tenant's name, the tenant id; also the prefix of the Secret's and Lease's names.
    pub id: String,
}

impl Scenario {
    fn secret_name(&self) -> String {
        format!("{}-keys", self.id)
    }

    fn lease_name(&self) -> String {
        format!("{}-lease", self.id)
    }

    async fn holder(&self, leases: &Api<Lease>) -> Option<String> {
        leases.get(&self.lease_name()).await.expect("the Lease").spec.and_then(|s| s.holder_identity)
    }

    /// Starts one operator replica `{id}-{name}` with its health endpoints on a free port.
    async fn replica(&self, name: &str, store: &Arc<Flaky>, bus: &Arc<LocalBus>) -> Replica {
        let health = Health::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("health port");
        let health_url = format!("http://{}", listener.local_addr().expect("addr"));
        let server =
            tokio::spawn(axum::serve(listener, operator::health::router(health.clone())).into_future());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let opts = operator::Options {
            namespace: Some(self.namespace.clone()),
            lease_name: self.lease_name(),
            identity: format!("{}-{name}", self.id),
            timings: operator::lease::LeaseTimings::default(),
            health,
        };
        let task =
            tokio::spawn(operator::run_with(self.client.clone(), opts, store.clone(), bus.clone(), async {
                let _ = stopped.await;
            }));
        Replica { health_url, stop, task, server }
    }

    /// Runs the scenario; panics on the first step that does not hold.
    pub async fn run(&self) {
        let (ns, id) = (self.namespace.as_str(), self.id.as_str());
        let tenants: Api<Tenant> = Api::namespaced(self.client.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), ns);
        let store = Arc::new(Flaky::default());
        let bus = Arc::new(LocalBus::new());
        let rec = Arc::new(Rec::default());
        bus.attach(rec.clone());

        let first = self.replica("op-1", &store, &bus).await;
        // Ready once it leads and its watches have listed.
        first.wait_ready("leading").await;
        assert_eq!(http_get(&format!("{}/healthz", first.health_url)).await.expect("healthz").0, 200);
        assert_eq!(self.holder(&leases).await.as_deref(), Some(format!("{id}-op-1").as_str()));
        // A second replica waits as a standby: ready (it can take over), writing nothing.
        let second = self.replica("op-2", &store, &bus).await;
        second.wait_ready("standby").await;

        // 1. Create: the tenant appears in the store, the status says Ready for generation 1.
        let resource = json!({
            "apiVersion": "switchboard.dev/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": id},
            "spec": {"name": "Scenario"},
        });
        let created: Tenant = serde_json::from_value(resource).expect("a Tenant");
        tenants.create(&PostParams::default(), &created).await.expect("Tenant created");
        let t = eventually("Ready for the created generation", || async {
            let t = tenants.get(id).await.map_err(|e| e.to_string())?;
            let observed = t.status.as_ref().and_then(|s| s.observed_generation);
            if condition(&t, "Ready") == cond("True", "Reconciled") && observed == t.metadata.generation {
                Ok(t)
            } else {
                Err(format!("{:?}", t.status))
            }
        })
        .await;
        assert_eq!(t.metadata.finalizers.as_deref(), Some(&[FINALIZER.to_string()][..]));
        let stored = store.get_tenant(id).await.expect("store").expect("the tenant in the store");
        assert_eq!(stored.name, "Scenario");
        assert_eq!(stored.managed_by.as_deref(), Some(format!("Tenant {ns}/{id}").as_str()));
        assert_eq!(condition(&t, "StoreReachable"), cond("True", "Reachable"));
        let first_generation = t.metadata.generation.expect("a generation");

        // 2. Update the spec: the store follows, the status observes the new generation.
        let merge = PatchParams::default();
        let patch = json!({"spec": {"policy": {"maxConnections": 7}}});
        tenants.patch(id, &merge, &Patch::Merge(&patch)).await.expect("spec patched");
        eventually("the update is in the store and observed", || async {
            let t = tenants.get(id).await.map_err(|e| e.to_string())?;
            let observed = t.status.as_ref().and_then(|s| s.observed_generation);
            let max = store.get_tenant(id).await.ok().flatten().map(|s| s.policy.max_connections);
            if max == Some(7)
                && observed == t.metadata.generation
                && observed > Some(first_generation)
                && condition(&t, "Ready") == cond("True", "Reconciled")
            {
                Ok(())
            } else {
                Err(format!("max_connections {max:?}, {:?}", t.status))
            }
        })
        .await;

        // 3. A key from a Secret that does not exist yet: KeysResolved false; the Secret
        // appears: the Secret watch re-reconciles (no spec change), KeysResolved true.
        let patch = json!({"spec": {"keys": [
            {"kid": "k1", "alg": "HS256", "secretRef": {"name": self.secret_name(), "key": "secret"}}
        ]}});
        tenants.patch(id, &merge, &Patch::Merge(&patch)).await.expect("key added to the spec");
        eventually("KeysResolved false while the Secret is missing", || async {
            let t = tenants.get(id).await.map_err(|e| e.to_string())?;
            let keys = condition(&t, "KeysResolved");
            let ready = condition(&t, "Ready");
            if keys.as_ref().map(|k| k.0.as_str()) == Some("False")
                && ready == cond("False", "KeysUnresolved")
            {
                Ok(())
            } else {
                Err(format!("{:?}", t.status))
            }
        })
        .await;
        assert!(store.list_keys(id).await.expect("keys").is_empty());
        let mut secret = Secret::default();
        secret.metadata.name = Some(self.secret_name());
        let hmac = "0123456789abcdef0123456789abcdef-scenario";
        secret.data = Some([("secret".to_string(), ByteString(hmac.as_bytes().to_vec()))].into());
        secrets.create(&PostParams::default(), &secret).await.expect("Secret created");
        eventually("KeysResolved true once the Secret exists (the Secret watch)", || async {
            let t = tenants.get(id).await.map_err(|e| e.to_string())?;
            let keys = store.list_keys(id).await.map(|k| k.len()).unwrap_or(0);
            if condition(&t, "KeysResolved") == cond("True", "Resolved")
                && condition(&t, "Ready") == cond("True", "Reconciled")
                && keys == 1
            {
                Ok(())
            } else {
                Err(format!("{keys} key(s), {:?}", t.status))
            }
        })
        .await;

        // 4. The store goes down during a change: StoreReachable false; the failed reconcile
        // is requeued (backoff 5 s, 10 s, ...), so the change lands once the store is back.
        store.set_down(true);
        let patch = json!({"spec": {"name": "Scenario, renamed"}});
        tenants.patch(id, &merge, &Patch::Merge(&patch)).await.expect("renamed");
        eventually("StoreReachable false while the store is down", || async {
            let t = tenants.get(id).await.map_err(|e| e.to_string())?;
            if condition(&t, "StoreReachable").map(|c| c.0) == Some("False".into())
                && condition(&t, "Ready").map(|c| c.0) == Some("False".into())
            {
                Ok(())
            } else {
                Err(format!("{:?}", t.status))
            }
        })
        .await;
        store.set_down(false);
        eventually("the requeued reconcile writes the change once the store is back", || async {
            let t = tenants.get(id).await.map_err(|e| e.to_string())?;
            let name = store.get_tenant(id).await.ok().flatten().map(|s| s.name);
            if name.as_deref() == Some("Scenario, renamed")
                && condition(&t, "StoreReachable") == cond("True", "Reachable")
                && condition(&t, "Ready") == cond("True", "Reconciled")
            {
                Ok(())
            } else {
                Err(format!("name {name:?}, {:?}", t.status))
            }
        })
        .await;

        // 5. The admin API refuses to write an operator-managed tenant: 409 managed_by_operator.
        let token = "scenario-admin-token-0123456789";
        let router = admin::router(admin::AdminState {
            store: store.clone(),
            bus: bus.clone(),
            metrics: telemetry::Metrics::shared(),
            admin_token: policy::Secret::new(token),
        });
        for (method, uri, body) in [
            ("PATCH", format!("/v1/tenants/{id}"), Some(json!({"policy": {"max_connections": 1}}))),
            ("DELETE", format!("/v1/tenants/{id}"), None),
            ("DELETE", format!("/v1/tenants/{id}/keys/k1"), None),
        ] {
            let req = http::Request::builder()
                .method(method)
                .uri(&uri)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(body.map_or_else(AxumBody::empty, |b| AxumBody::from(b.to_string())))
                .expect("request");
            let res = router.clone().oneshot(req).await.expect("answer");
            assert_eq!(res.status(), 409, "{method} {uri}");
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 16).await.expect("body");
            let p: serde_json::Value = serde_json::from_slice(&bytes).expect("problem");
            assert_eq!(p["code"], "managed_by_operator", "{method} {uri}: {p}");
        }
        let stored = store.get_tenant(id).await.expect("store").expect("tenant");
        assert_eq!(stored.policy.max_connections, 7);
        assert_ne!(stored.policy.max_connections, TenantPolicy::default().max_connections);

        // 6. Delete: the finalizer removes the tenant from the store (its sessions end), then
        // lets the resource go.
        rec.controls.lock().unwrap_or_else(|e| e.into_inner()).clear();
        tenants.delete(id, &DeleteParams::default()).await.expect("delete accepted");
        eventually("the tenant leaves the store and the resource goes", || async {
            let gone = store.get_tenant(id).await.map_err(|e| e.to_string())?.is_none();
            let resource = tenants.get_opt(id).await.map_err(|e| e.to_string())?;
            if gone && resource.is_none() {
                Ok(())
            } else {
                Err(format!("in store: {}, {resource:?}", !gone))
            }
        })
        .await;
        let controls = std::mem::take(&mut *rec.controls.lock().unwrap_or_else(|e| e.into_inner()));
        assert!(controls.contains(&Control::TenantDeleted { tenant: id.to_string() }), "{controls:?}");

        // The leader stops and releases the Lease: the standby takes over at its next try
        // (every 2 s), without waiting the lease out (15 s); then it stops and releases too.
        first.stop().await;
        second.wait_ready("leading").await;
        assert_eq!(self.holder(&leases).await.as_deref(), Some(format!("{id}-op-2").as_str()));
        second.stop().await;
        assert_eq!(self.holder(&leases).await, None, "released");

        let _ = secrets.delete(&self.secret_name(), &DeleteParams::default()).await;
        let _ = leases.delete(&self.lease_name(), &DeleteParams::default()).await;
    }
}

/// One running operator replica.
struct Replica {
    health_url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Replica {
    /// Waits until `/readyz` answers 200 with `role`.
    async fn wait_ready(&self, role: &str) {
        let url = format!("{}/readyz", self.health_url);
        eventually(&format!("/readyz 200 as {role}"), || async {
            let (code, body) = http_get(&url).await?;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            if code == 200 && v["role"] == role { Ok(()) } else { Err(format!("{code} {body}")) }
        })
        .await;
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.task).await.expect("the operator stops").expect("operator task");
        self.server.abort();
    }
}

/// A GET over a plain TCP connection: (status, body).
pub async fn http_get(url: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url.strip_prefix("http://").ok_or("not http")?;
    let (addr, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or(format!("no status: {text}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}
