//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one writes. kube-rs ships no helper for it; this is the client-go
//! scheme in small:
//!
//! - a replica takes the Lease when it does not exist, is free, or its holder has not
//!   renewed it within `leaseDurationSeconds`;
//! - every write of the Lease is a `PUT` carrying the `resourceVersion` that was read, so
//!   of two replicas racing for it the API server accepts one and answers the other 409;
//! - the leader renews every `retry` and stops leading (drops its work) when it could not
//!   renew for `renew_deadline`, which is shorter than the lease: it has stopped writing
//!   before anyone else may take over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::health::{Health, Role};

/// Timings, as client-go's defaults: lease 15 s, renew deadline 10 s, retry 2 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    pub lease: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            lease: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// One replica's handle on the Lease.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: LeaseTimings,
    health: Option<Health>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaseLock {
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        timings: LeaseTimings,
    ) -> Self {
        LeaseLock { api, name: name.into(), identity: identity.into(), timings, health: None }
    }

    /// Reports the election (standby, leading, the Lease reached) to `health` (`/readyz`).
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    fn report(&self, role: Option<Role>, reached: bool) {
        let Some(h) = &self.health else { return };
        if reached {
            h.lease_reached();
        }
        if let Some(role) = role {
            h.set_role(role);
        }
    }

    /// This replica's identity (the Lease's `holderIdentity` while it leads).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, now: Timestamp, acquired: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.timings.lease.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Takes or renews the Lease at `now`; false when another replica holds it (or won a
    /// race for it).
    pub async fn try_acquire(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mine = holder == Some(self.identity.as_str());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(t), Some(d)) => t.0 + SignedDuration::from_secs(i64::from(d)) < now,
            _ => true,
        };
        if holder.is_some() && !mine && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if mine {
            self.spec(now, spec.acquire_time.map_or(now, |t| t.0), transitions)
        } else {
            self.spec(now, now, transitions.saturating_add(1))
        };
        // The metadata read carries its resourceVersion: a concurrent writer makes this a 409.
        let lease = Lease { metadata: current.metadata, spec: Some(new_spec) };
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (best effort), so that another replica need not wait it out.
    pub async fn release(&self) {
        let Ok(Some(current)) = self.api.get_opt(&self.name).await else { return };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let lease = Lease {
            metadata: current.metadata,
            spec: Some(LeaseSpec { holder_identity: None, renew_time: None, ..spec }),
        };
        if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, "could not release the lease");
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire(Timestamp::now()).await {
                Ok(true) => {
                    self.report(None, true);
                    return;
                }
                Ok(false) => self.report(Some(Role::Standby), true),
                Err(e) => tracing::warn!(error = %e, lease = self.name, "cannot read the lease"),
            }
            tokio::time::sleep(self.timings.retry).await;
        }
    }

    /// Renews the Lease every `retry`; returns when leadership is lost: another replica
    /// holds it, or renewals failed for `renew_deadline`.
    pub async fn hold(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timings.retry).await;
            match self.try_acquire(Timestamp::now()).await {
                Ok(true) => {
                    last_renewed = tokio::time::Instant::now();
                    self.report(None, true);
                }
                Ok(false) => {
                    tracing::warn!(lease = self.name, "another replica holds the lease");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, lease = self.name, "lease renewal failed");
                    if last_renewed.elapsed() >= self.timings.renew_deadline {
                        return;
                    }
                }
            }
        }
    }

    /// Runs `work` only while this replica leads: waits for the Lease, runs `work` while
    /// renewing it, drops `work` at once when the Lease is lost and waits again. Returns
    /// when `work` ends or `shutdown` resolves, releasing the Lease.
    pub async fn lead<W, F>(&self, mut work: W, shutdown: impl std::future::Future<Output = ()>)
    where
        W: FnMut() -> F,
        F: std::future::Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = self.acquire() => {}
                () = &mut shutdown => return,
            }
            tracing::info!(lease = self.name, identity = self.identity, "leading: writes start");
            self.report(Some(Role::Leading), false);
            tokio::select! {
                () = work() => {
                    self.release().await;
                    return;
                }
                () = self.hold() => {
                    tracing::warn!(lease = self.name, "lost the lease: writes stop");
                    self.report(Some(Role::Standby), false);
                }
                () = &mut shutdown => {
                    self.release().await;
                    return;
                }
            }
        }
    }
}
