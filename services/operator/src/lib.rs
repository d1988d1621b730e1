//! The Kubernetes operator: the only crate that knows kube. It keeps the store the admin
//! API writes in line with `Tenant` resources (`switchboard.dev/v1alpha1`).
//!
//! - [`crd`]: the `Tenant` types, the single source of the CRD;
//! - [`plan`]: the reconcile core, with no IO: spec + Secrets + store contents → writes and
//!   status;
//! - [`controller`]: the kube-rs `Controller` (Tenants, and the Secrets they reference), the
//!   finalizer that removes the tenant like `DELETE /v1/tenants/{t}`, status, Events;
//! - [`lease`]: leader election on a `coordination.k8s.io` Lease, so that two replicas
//!   never both write;
//! - [`health`]: `/healthz` and `/readyz` for the kubelet's probes.
//!
//! It writes only through `admin::service`, the admin API's own tenant and key code. Its
//! only HTTP is the health router; it does not speak Socket.IO or decide policy.

pub mod controller;
pub mod crd;
pub mod health;
pub mod lease;
pub mod plan;

pub use crd::{Tenant, TenantSpec, TenantStatus, crd_yaml};

use std::sync::Arc;

use bus::Bus;
use state::Store;

/// How `switchboard operator` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespace watched; `None`: `POD_NAMESPACE`, else the kubeconfig's default.
    pub namespace: Option<String>,
    /// The Lease that elects the one replica that writes.
    pub lease_name: String,
    /// This replica's identity in the Lease and in Events.
    pub identity: String,
    pub timings: lease::LeaseTimings,
    /// Where the election and the controller report for `/readyz` ([`health::router`]).
    pub health: health::Health,
}

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No in-cluster configuration and no usable kubeconfig.
    #[error("no Kubernetes configuration (in-cluster or kubeconfig): {0}")]
    Config(#[source] kube::Error),
}

impl StartError {
    pub fn code(&self) -> &'static str {
        match self {
            StartError::Config(_) => "kubernetes_config",
        }
    }
}

/// Connects to the Kubernetes API (in-cluster, else the kubeconfig) and runs the
/// controller while this replica holds the Lease, until `shutdown` resolves.
pub async fn run(
    opts: Options,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let client = kube::Client::try_default().await.map_err(StartError::Config)?;
    run_with(client, opts, store, bus, shutdown).await;
    Ok(())
}

/// [`run`] with a given client.
pub async fn run_with(
    client: kube::Client,
    opts: Options,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let namespace = opts
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| client.default_namespace().to_string());
    tracing::info!(namespace, lease = opts.lease_name, identity = opts.identity, "operator starting");
    let mut ctx =
        controller::Context::new(client.clone(), namespace.clone(), store, bus, Some(opts.identity.clone()));
    ctx.health = opts.health.clone();
    let ctx = Arc::new(ctx);
    let lock = lease::LeaseLock::new(
        kube::Api::namespaced(client, &namespace),
        opts.lease_name.clone(),
        opts.identity.clone(),
        opts.timings,
    )
    .with_health(opts.health.clone());
    lock.lead(|| controller::run(ctx.clone(), std::future::pending()), shutdown).await;
    tracing::info!("operator stopped");
}
