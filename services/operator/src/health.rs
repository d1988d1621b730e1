//! The operator's health, for the kubelet's probes (`switchboard operator --listen`):
//!
//! - `GET /healthz` (liveness): 200 while the process serves. It does not depend on the
//!   Kubernetes API or the store: restarting the operator cures neither, and an API server
//!   outage must not restart every replica at once.
//! - `GET /readyz` (readiness): 200 when this replica does its part: it leads and its
//!   watches have listed the Tenants, or it is a standby that reached the Lease within a
//!   lease duration (so it can take over). 503 otherwise: starting, a leader whose watches
//!   have not synced, or a replica cut off from the API server. A watch that breaks after
//!   the first list is retried by kube's watcher with backoff; readiness does not flap
//!   with it (the Lease renewals decide whether this replica still leads).
//!
//! Both answer a small JSON body saying why, for people reading `kubectl describe`.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::time::Instant;

/// What this replica is doing in the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not yet through its first look at the Lease.
    Starting,
    /// Another replica holds the Lease; this one waits to take over.
    Standby,
    /// This replica holds the Lease and runs the controller.
    Leading,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby => "standby",
            Role::Leading => "leading",
        }
    }
}

#[derive(Debug)]
struct Inner {
    role: AtomicU8,
    synced: AtomicBool,
    /// When the Lease was last read or written successfully.
    lease_seen: Mutex<Option<Instant>>,
    /// How old `lease_seen` may be for a standby to count as ready (the lease duration:
    /// past it, a standby that cannot reach the API server could not take over either).
    stale_after: Duration,
}

/// Shared between the election, the controller and the HTTP listener; cheap to clone.
#[derive(Debug, Clone)]
pub struct Health(Arc<Inner>);

impl Default for Health {
    fn default() -> Self {
        Health::new(crate::lease::LeaseTimings::default().lease)
    }
}

impl Health {
    /// A standby counts as ready while it reached the Lease within `stale_after`.
    pub fn new(stale_after: Duration) -> Health {
        Health(Arc::new(Inner {
            role: AtomicU8::new(0),
            synced: AtomicBool::new(false),
            lease_seen: Mutex::new(None),
            stale_after,
        }))
    }

    pub fn role(&self) -> Role {
        match self.0.role.load(Ordering::SeqCst) {
            1 => Role::Standby,
            2 => Role::Leading,
            _ => Role::Starting,
        }
    }

    pub fn set_role(&self, role: Role) {
        let v = match role {
            Role::Starting => 0,
            Role::Standby => 1,
            Role::Leading => 2,
        };
        self.0.role.store(v, Ordering::SeqCst);
        if role != Role::Leading {
            // A new term lists again before it is ready.
            self.set_synced(false);
        }
    }

    /// The controller's watches have listed (true) or stopped (false).
    pub fn set_synced(&self, synced: bool) {
        self.0.synced.store(synced, Ordering::SeqCst);
    }

    /// The Lease was read or written just now.
    pub fn lease_reached(&self) {
        *self.0.lease_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn lease_fresh(&self) -> bool {
        let seen = *self.0.lease_seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.is_some_and(|t| t.elapsed() <= self.0.stale_after)
    }

    /// Whether `/readyz` answers 200, and why (not).
    pub fn readiness(&self) -> (bool, &'static str) {
        match self.role() {
            Role::Starting => (false, "starting: the Lease has not been read yet"),
            Role::Leading if self.0.synced.load(Ordering::SeqCst) => (true, "leading; watches synced"),
            Role::Leading => (false, "leading; watches not synced yet"),
            Role::Standby if self.lease_fresh() => (true, "standby; the Lease is reachable"),
            Role::Standby => (false, "standby; the Lease has not been reached lately"),
        }
    }
}

fn answer(ok: bool, role: Role, detail: &str) -> impl IntoResponse + use<> {
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "role": role.as_str(),
        "detail": detail,
    });
    (code, axum::Json(body))
}

/// `/healthz` and `/readyz` over `health`.
pub fn router(health: Health) -> Router {
    let live = health.clone();
    Router::new()
        .route(
            "/healthz",
            get(move || {
                let role = live.role();
                async move { answer(true, role, "serving") }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ((ok, detail), role) = (health.readiness(), health.role());
                async move { answer(ok, role, detail) }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn readiness_follows_the_role_the_sync_and_the_lease() {
        let h = Health::new(Duration::from_secs(15));
        assert!(!h.readiness().0, "starting");
        h.lease_reached();
        h.set_role(Role::Standby);
        assert_eq!(h.readiness(), (true, "standby; the Lease is reachable"));
        tokio::time::advance(Duration::from_secs(16)).await;
        assert_eq!(h.readiness(), (false, "standby; the Lease has not been reached lately"));
        h.set_role(Role::Leading);
        assert_eq!(h.readiness(), (false, "leading; watches not synced yet"));
        h.set_synced(true);
        assert_eq!(h.readiness(), (true, "leading; watches synced"));
        h.set_role(Role::Standby);
        h.set_role(Role::Leading);
        assert!(!h.readiness().0, "a new term syncs again");
    }

    async fn get(h: &Health, path: &str) -> (u16, serde_json::Value) {
        use tower::ServiceExt as _;
        let req = axum::http::Request::get(path).body(axum::body::Body::empty()).expect("request");
        let res = router(h.clone()).oneshot(req).await.expect("answer");
        let code = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16).await.expect("body");
        (code, serde_json::from_slice(&bytes).expect("JSON"))
    }

    #[tokio::test]
    async fn the_router_answers_liveness_always_and_readiness_as_the_state_says() {
        let h = Health::default();
        let (code, body) = get(&h, "/healthz").await;
        assert_eq!(
            (code, body["status"].as_str(), body["role"].as_str()),
            (200, Some("ok"), Some("starting"))
        );
        let (code, body) = get(&h, "/readyz").await;
        assert_eq!((code, body["status"].as_str()), (503, Some("unavailable")));
        assert_eq!(body["detail"], "starting: the Lease has not been read yet");
        h.set_role(Role::Leading);
        h.set_synced(true);
        let (code, body) = get(&h, "/readyz").await;
        assert_eq!((code, body["role"].as_str()), (200, Some("leading")));
        // Liveness never follows readiness.
        h.set_role(Role::Standby);
        assert_eq!(get(&h, "/healthz").await.0, 200);
    }
}
