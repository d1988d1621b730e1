//! The operator against a real Kubernetes API server, when one is given:
//! `SWITCHBOARD_TEST_KUBECONFIG=/path/to/kubeconfig cargo test -p operator --test cluster`
//! (namespace `SWITCHBOARD_TEST_NAMESPACE`, default `default`). It installs the CRD, then
//! covers create, update, a Secret missing then added, and delete with the finalizer, with
//! an in-memory store and bus. Without the variable it is skipped, saying so: no
//! Kubernetes API server can be installed from the registries these machines reach.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use operator::Tenant;
use serde_json::json;
use state::{MemoryStore, Store};

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(90), "{what}: not within 90 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn ready(t: &Tenant) -> Option<(String, String)> {
    let c = t.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn against_a_real_cluster() {
    let Some(path) = std::env::var_os("SWITCHBOARD_TEST_KUBECONFIG") else {
        eprintln!(
            "skipped: set SWITCHBOARD_TEST_KUBECONFIG to a kubeconfig to run the operator against a real \
             cluster (none can be installed here)"
        );
        return;
    };
    let ns = std::env::var("SWITCHBOARD_TEST_NAMESPACE").unwrap_or_else(|_| "default".into());
    let kc = Kubeconfig::read_from(path).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    let client = kube::Client::try_from(cfg).expect("client");
    let apply = PatchParams::apply("switchboard-operator-test").force();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch("tenants.switchboard.dev", &apply, &Patch::Apply(Tenant::crd())).await.expect("CRD applied");
    let tenants: Api<Tenant> = Api::namespaced(client.clone(), &ns);
    eventually("the CRD is served", || async { tenants.list(&Default::default()).await.is_ok() }).await;

    let id = format!("sbtest-{}", state::random_token(4));
    let secret_name = format!("{id}-keys");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    let store = Arc::new(MemoryStore::new());
    let bus = Arc::new(bus::LocalBus::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = operator::Options {
        namespace: Some(ns.clone()),
        lease_name: format!("{id}-lease"),
        identity: format!("{id}-op"),
        timings: operator::lease::LeaseTimings::default(),
    };
    let op = tokio::spawn(operator::run_with(client.clone(), opts, store.clone(), bus, async {
        let _ = stopped.await;
    }));

    // Create, with the Secret not there yet.
    let resource = json!({
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": id},
        "spec": {"name": "Cluster test", "keys": [
            {"kid": "k1", "alg": "HS256", "secretRef": {"name": secret_name, "key": "secret"}}
        ]},
    });
    tenants.patch(&id, &apply, &Patch::Apply(&resource)).await.expect("Tenant applied");
    eventually("KeysUnresolved while the Secret is missing", || async {
        tenants.get(&id).await.ok().and_then(|t| ready(&t)) == Some(("False".into(), "KeysUnresolved".into()))
    })
    .await;
    assert!(store.get_tenant(&id).await.expect("store").is_some());

    // The Secret appears: the key is added.
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name},
        "stringData": {"secret": "0123456789abcdef0123456789abcdef-cluster"},
    });
    secrets.patch(&secret_name, &apply, &Patch::Apply(&secret)).await.expect("Secret applied");
    eventually("Ready once the Secret exists", || async {
        tenants.get(&id).await.ok().and_then(|t| ready(&t)) == Some(("True".into(), "Reconciled".into()))
    })
    .await;
    assert_eq!(store.list_keys(&id).await.expect("keys").len(), 1);

    // Update: the policy, and the status's observedGeneration.
    let mut updated = resource.clone();
    updated["spec"]["policy"] = json!({"maxConnections": 7});
    tenants.patch(&id, &apply, &Patch::Apply(&updated)).await.expect("updated");
    eventually("the update is written and observed", || async {
        let Ok(t) = tenants.get(&id).await else { return false };
        let observed = t.status.as_ref().and_then(|s| s.observed_generation);
        let policy = store.get_tenant(&id).await.ok().flatten().map(|s| s.policy.max_connections);
        observed == t.metadata.generation && policy == Some(7)
    })
    .await;

    // Delete: the finalizer removes the tenant first.
    tenants.delete(&id, &DeleteParams::default()).await.expect("deleted");
    eventually("the tenant and the resource are gone", || async {
        store.get_tenant(&id).await.ok().flatten().is_none()
            && tenants.get_opt(&id).await.ok().flatten().is_none()
    })
    .await;

    let _ = stop.send(());
    let _ = op.await;
    let _ = secrets.delete(&secret_name, &DeleteParams::default()).await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client, &ns);
    let _ = leases.delete(&format!("{id}-lease"), &DeleteParams::default()).await;
    eprintln!("cluster test passed in namespace {ns} with tenant {id}");
}
