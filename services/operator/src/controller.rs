//! The kube-rs `Controller` on `Tenant`: it reads the Secrets a Tenant's keys reference and
//! what the store holds, asks [`crate::plan`] what to do, writes through `admin::service`,
//! and reports in the status and in Events. A change to a referenced Secret re-reconciles
//! the Tenants that use it. A finalizer removes the tenant from the store (like
//! `DELETE /v1/tenants/{t}`: its sessions end with `tenant_deleted`) before the resource
//! goes. Failures requeue with a per-object exponential backoff.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use admin::service::{self, ServiceError};
use bus::Bus;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource as _, ResourceExt as _};
use state::{Store, StoreError};

use crate::crd::{FINALIZER, Tenant};
use crate::health::Health;
use crate::plan::{self, Input, Plan, Secrets, StoreView};

/// How often a reconciled Tenant is checked again without any change (repairs drift, e.g.
/// a store that lost its data).
pub const RESYNC: Duration = Duration::from_secs(600);
/// How often a Tenant waiting on something outside it (a Secret, a spec fix, another
/// owner) is looked at again; a Secret change re-reconciles at once anyway.
pub const RECHECK: Duration = Duration::from_secs(120);
/// The name Events are reported under.
pub const CONTROLLER_NAME: &str = "switchboard-operator";

/// Why a reconcile failed. It is retried with backoff and shows in the status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The state store could not be read.
    #[error("state store: {0}")]
    Store(StoreError),
    /// A write through the admin service failed.
    #[error("{0}")]
    Write(ServiceError),
    /// Adding or removing the finalizer failed, or the cleanup did.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes_api",
            Error::Store(e) => e.code(),
            Error::Write(e) => e.code(),
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.code(),
                _ => "finalizer_failed",
            },
        }
    }
}

/// Exponential backoff per object: 5 s, 10 s, 20 s ... up to 5 min; reset by a success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: std::sync::Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);

    /// The delay before retrying `key` after one more failure.
    pub fn next(&self, key: &str) -> Duration {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_insert(0);
        let d = Self::BASE.saturating_mul(1u32 << (*n).min(10));
        *n = n.saturating_add(1);
        d.min(Self::MAX)
    }

    /// Forgets `key`'s failures.
    pub fn reset(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// What the controller works with.
pub struct Context {
    pub client: Client,
    /// The namespace watched (Tenants and their Secrets).
    pub namespace: String,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    /// Who reports Events. A `Recorder` is made per Event: kube's caches events by reason
    /// and turns a repeat into a series that keeps the first note, and these notes say
    /// what changed each time (Events are sent only on changes, so they stay few).
    pub reporter: Reporter,
    pub backoff: Backoff,
    /// Told when the watches have listed (`/readyz`).
    pub health: Health,
}

impl Context {
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        instance: Option<String>,
    ) -> Context {
        Context {
            reporter: Reporter { controller: CONTROLLER_NAME.into(), instance },
            client,
            namespace: namespace.into(),
            store,
            bus,
            backoff: Backoff::default(),
            health: Health::default(),
        }
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One reconcile of one Tenant (what the `Controller` runs).
pub async fn reconcile(t: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = t.namespace().unwrap_or_else(|| ctx.namespace.clone());
    let api: Api<Tenant> = Api::namespaced(ctx.client.clone(), &ns);
    let key = format!("{ns}/{}", t.name_any());
    let r = finalizer(&api, FINALIZER, t, |event| async {
        match event {
            finalizer::Event::Apply(t) => apply(&t, &ns, &ctx).await,
            finalizer::Event::Cleanup(t) => cleanup(&t, &ns, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if r.is_ok() {
        ctx.backoff.reset(&key);
    }
    r
}

/// What the `Controller` does after a failed reconcile: retry with backoff.
pub fn error_policy(t: Arc<Tenant>, e: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any());
    let delay = ctx.backoff.next(&key);
    tracing::warn!(tenant = %key, code = e.code(), error = %e, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

async fn read_secrets(t: &Tenant, ns: &str, ctx: &Context) -> Result<Secrets, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let names: BTreeSet<&str> = t.spec.secret_refs().map(|r| r.name.as_str()).collect();
    let mut out = Secrets::new();
    for name in names {
        let s = api.get_opt(name).await?;
        let data = s.map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect());
        out.insert(name.to_string(), data);
    }
    Ok(out)
}

async fn read_store(store: &dyn Store, id: &str) -> StoreView {
    if !policy::validate_tenant_id(id) {
        return StoreView::Absent;
    }
    match store.get_tenant(id).await {
        Err(e) => StoreView::Unreachable(e.to_string()),
        Ok(None) => StoreView::Absent,
        Ok(Some(tenant)) => match store.list_keys(id).await {
            Ok(keys) => StoreView::Present { tenant: Box::new(tenant), keys },
            Err(StoreError::NotFound) => StoreView::Absent,
            Err(e) => StoreView::Unreachable(e.to_string()),
        },
    }
}

/// Carries out a plan's writes, in order: the tenant, removed keys, added keys.
async fn execute(p: &Plan, store: &StoreView, owner: &str, ctx: &Context) -> Result<(), ServiceError> {
    let (store_api, bus) = (ctx.store.as_ref(), ctx.bus.as_ref());
    let w = Some(owner);
    let current = match (store, &p.create) {
        (_, Some(t)) => {
            service::create_tenant(store_api, t).await?;
            t.clone()
        }
        (StoreView::Present { tenant, .. }, None) => (**tenant).clone(),
        _ => return Ok(()),
    };
    let current = match &p.update {
        Some(new) => {
            service::update_tenant(store_api, bus, w, &current, new).await?;
            new.clone()
        }
        None => current,
    };
    for kid in &p.remove_keys {
        match service::delete_key(store_api, bus, w, &current, kid).await {
            Ok(()) | Err(ServiceError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    for k in &p.add_keys {
        service::add_key(store_api, bus, w, &current, k).await?;
    }
    Ok(())
}

async fn publish(ctx: &Context, t: &Tenant, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(e) = recorder.publish(&ev, &t.object_ref(&())).await {
        tracing::warn!(error = %e, "event not recorded");
    }
}

async fn apply(t: &Tenant, ns: &str, ctx: &Context) -> Result<Action, Error> {
    let name = t.name_any();
    let owner = plan::owner_of(ns, &name);
    let previous = t.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let generation = t.metadata.generation;
    let secrets = match read_secrets(t, ns, ctx).await {
        Ok(s) => s,
        Err(e) => {
            // Say so in the status (best effort: the API server may be what failed).
            let mut status = t.status.clone().unwrap_or_default();
            let msg = format!("cannot read the Secrets the keys reference: {e}");
            let c = (plan::KEYS_RESOLVED, "False", "SecretsUnreadable", msg.clone());
            plan::set_condition(&mut status.conditions, &previous, generation, now_s(), c);
            let c = (plan::READY, "False", "SecretsUnreadable", msg.clone());
            plan::set_condition(&mut status.conditions, &previous, generation, now_s(), c);
            status.observed_generation = generation;
            if t.status.as_ref() != Some(&status) {
                let api: Api<Tenant> = Api::namespaced(ctx.client.clone(), ns);
                let patch = serde_json::json!({ "status": status });
                if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await
                {
                    tracing::warn!(error = %e, "status not written");
                }
                publish(ctx, t, EventType::Warning, "SecretsUnreadable", msg).await;
            }
            return Err(e);
        }
    };
    let store = read_store(ctx.store.as_ref(), &name).await;
    let now = now_s();
    let p = plan::plan(Input {
        namespace: ns,
        name: &name,
        generation,
        spec: &t.spec,
        secrets: &secrets,
        store: &store,
        previous: &previous,
        now,
    });
    let written = execute(&p, &store, &owner, ctx).await;
    let status = match &written {
        Ok(()) => p.status.clone(),
        Err(e) => plan::failed_status(&p.status, &previous, generation, now, e),
    };
    if t.status.as_ref() != Some(&status) {
        let api: Api<Tenant> = Api::namespaced(ctx.client.clone(), ns);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    match written {
        Err(e) => {
            publish(ctx, t, EventType::Warning, plan::reason_of(&e), e.to_string()).await;
            return Err(Error::Write(e));
        }
        Ok(()) if p.writes() => publish(ctx, t, EventType::Normal, "Synced", p.summary()).await,
        Ok(()) => {}
    }
    if p.ready {
        tracing::debug!(tenant = %name, "reconciled");
        return Ok(Action::requeue(RESYNC));
    }
    let (reason, message) =
        p.ready_condition().map(|c| (c.reason.clone(), c.message.clone())).unwrap_or_default();
    // Only a changed condition is worth an Event; the status says the rest.
    let was =
        previous.iter().find(|c| c.type_ == plan::READY).map(|c| (c.status.as_str(), c.reason.as_str()));
    if was != Some(("False", reason.as_str())) {
        publish(ctx, t, EventType::Warning, &reason, message.clone()).await;
    }
    if let StoreView::Unreachable(e) = store {
        return Err(Error::Store(StoreError::Unavailable(e)));
    }
    tracing::info!(tenant = %name, reason, message, "not ready");
    Ok(Action::requeue(RECHECK))
}

async fn cleanup(t: &Tenant, ns: &str, ctx: &Context) -> Result<Action, Error> {
    let name = t.name_any();
    let owner = plan::owner_of(ns, &name);
    if !policy::validate_tenant_id(&name) {
        return Ok(Action::await_change());
    }
    let stored = match ctx.store.get_tenant(&name).await {
        Ok(s) => s,
        Err(e) => {
            publish(ctx, t, EventType::Warning, "StoreUnavailable", format!("cannot remove the tenant: {e}"))
                .await;
            return Err(Error::Store(e));
        }
    };
    match stored {
        Some(s) if s.managed_by.as_deref() == Some(owner.as_str()) => {
            match service::delete_tenant(ctx.store.as_ref(), ctx.bus.as_ref(), Some(&owner), &name).await {
                Ok(()) | Err(ServiceError::NotFound(_)) => {}
                Err(e) => {
                    publish(ctx, t, EventType::Warning, plan::reason_of(&e), e.to_string()).await;
                    return Err(Error::Write(e));
                }
            }
            publish(ctx, t, EventType::Normal, "Deleted", format!("tenant {name} removed from the store"))
                .await;
        }
        // Gone already (perhaps by an earlier attempt whose control message failed): say
        // it again, so that every edge ends the tenant's sessions. Harmless otherwise.
        None => {
            if let Err(e) = service::notify(
                ctx.bus.as_ref(),
                bus::Control::TenantDeleted { tenant: name.clone() },
                "the deletion",
            )
            .await
            {
                publish(ctx, t, EventType::Warning, plan::reason_of(&e), e.to_string()).await;
                return Err(Error::Write(e));
            }
        }
        // Not ours: nothing to remove.
        Some(_) => {}
    }
    Ok(Action::await_change())
}

/// The Tenants among `tenants` whose keys read `secret`: a change to the Secret
/// re-reconciles them.
pub fn tenants_using(tenants: &[Arc<Tenant>], secret: &Secret) -> Vec<ObjectRef<Tenant>> {
    let name = secret.name_any();
    let ns = secret.namespace();
    tenants
        .iter()
        .filter(|t| t.namespace() == ns && t.spec.references_secret(&name))
        .map(|t| ObjectRef::from_obj(&**t))
        .collect()
}

/// Runs the controller over `ctx.namespace` until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let tenants: Api<Tenant> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let controller = Controller::new(tenants, watcher::Config::default());
    let cache = controller.store();
    let health = ctx.health.clone();
    let synced = {
        let (cache, health) = (cache.clone(), health.clone());
        async move {
            // The Tenant reflector's first list is in: the controller sees every Tenant.
            if cache.wait_until_ready().await.is_ok() {
                health.set_synced(true);
            }
            std::future::pending::<()>().await;
        }
    };
    let controller = controller
        .watches(secrets, watcher::Config::default(), move |s: Secret| tenants_using(&cache.state(), &s))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            match r {
                Ok((o, _)) => tracing::debug!(tenant = %o, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "controller"),
            }
        });
    tokio::select! {
        () = controller => {}
        () = synced => {}
    }
    health.set_synced(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{SecretKeyRef, TenantKeySpec, TenantSpec};

    #[test]
    fn a_secret_maps_to_the_tenants_that_read_it() {
        let t = |name: &str, ns: &str, secret: &str| {
            let mut t = Tenant::new(
                name,
                TenantSpec {
                    keys: vec![TenantKeySpec {
                        kid: Some("k".into()),
                        alg: Some("HS256".into()),
                        secret_ref: Some(SecretKeyRef { name: secret.into(), key: "secret".into() }),
                        ..TenantKeySpec::default()
                    }],
                    ..TenantSpec::default()
                },
            );
            t.metadata.namespace = Some(ns.into());
            Arc::new(t)
        };
        let all = vec![t("a", "prod", "s1"), t("b", "prod", "s2"), t("c", "dev", "s1"), t("d", "prod", "s1")];
        let mut secret = Secret::default();
        secret.metadata.name = Some("s1".into());
        secret.metadata.namespace = Some("prod".into());
        let names: Vec<String> = tenants_using(&all, &secret).into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec!["a", "d"]);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let b = Backoff::default();
        let got: Vec<u64> = (0..9).map(|_| b.next("ns/a").as_secs()).collect();
        assert_eq!(got, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.next("ns/b").as_secs(), 5, "per object");
        b.reset("ns/a");
        assert_eq!(b.next("ns/a").as_secs(), 5);
    }
}
