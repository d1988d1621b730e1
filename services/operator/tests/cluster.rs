//! The operator against a real Kubernetes API server, when one is given:
//! `SWITCHBOARD_TEST_KUBECONFIG=/path/to/kubeconfig cargo test -p operator --test cluster`
//! (namespace `SWITCHBOARD_TEST_NAMESPACE`, default `default`). It installs the CRD, then
//! runs tests/scenario, the same scenario as tests/kmock.rs: create, update, a Secret
//! missing then added, the store down and back, a conflicting admin write, delete with the
//! finalizer, `/readyz`. Without the variable it is skipped, saying so: no Kubernetes API
//! server can be installed from the registries these machines reach.

mod common;
mod scenario;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use operator::Tenant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    scenario::eventually("the CRD is served", || async {
        tenants.list(&Default::default()).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;

    let id = format!("sbtest-{}", state::random_token(4));
    scenario::Scenario { client, namespace: ns.clone(), id: id.clone() }.run().await;
    eprintln!("cluster test passed in namespace {ns} with tenant {id}");
}
