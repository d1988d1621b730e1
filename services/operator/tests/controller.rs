//! The controller's reconcile against kube's mock client: the exact Kubernetes requests it
//! makes (finalizer, Secret reads, status patch, Events) and what it writes to the store
//! and tells the bus, for create, update, a Secret missing then added, the store down,
//! delete with the finalizer, and writes that conflict with the admin API.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as AxumBody;
use bus::Control;
use common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use operator::controller::{RECHECK, RESYNC, error_policy};
use operator::crd::{FINALIZER, TenantPolicySpec};
use policy::{KeyMaterial, Secret, TenantPolicy};
use serde_json::json;
use state::Store;
use tower::ServiceExt as _;

/// A first reconcile only adds the finalizer (the patch itself triggers the next one).
#[tokio::test]
async fn a_new_tenant_gets_the_finalizer_first() {
    let mut e = env();
    let t = tenant(1);
    let task = tokio::spawn(operator::controller::reconcile(Arc::new(t.clone()), e.ctx.clone()));
    let patch = e.answer("PATCH", TENANT_PATH, 200, serde_json::to_value(finalized(t)).expect("json")).await;
    assert_eq!(
        patch,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
    assert_eq!(task.await.expect("task").expect("reconciled"), Action::await_change());
    assert_eq!(
        e.store.get_tenant("acme").await.expect("store"),
        None,
        "nothing written before the finalizer"
    );
}

#[tokio::test]
async fn create_writes_the_tenant_reports_ready_and_records_an_event() {
    let mut e = env();
    e.set_secret("acme-keys", "secret", HMAC);
    let (r, seen, after) = e.drive(&finalized(tenant(1))).await;
    assert_eq!(r.expect("reconciled"), Action::requeue(RESYNC));
    assert_eq!(
        lines(&seen),
        vec![format!("GET {SECRET_PATH}"), format!("PATCH {STATUS_PATH}"), format!("POST {EVENTS_PATH}"),]
    );
    let status = after.status.clone().expect("status");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&status, "Ready"), cond("True", "Reconciled"));
    assert_eq!(condition(&status, "KeysResolved"), cond("True", "Resolved"));
    assert_eq!(condition(&status, "StoreReachable"), cond("True", "Reachable"));
    let ev = &seen[2].body;
    assert_eq!(ev["type"], "Normal");
    assert_eq!(ev["reason"], "Synced");
    assert_eq!(ev["note"], "created the tenant; added keys k1");
    assert_eq!(ev["regarding"]["name"], "acme");
    assert_eq!(ev["regarding"]["kind"], "Tenant");
    assert_eq!(ev["reportingController"], "switchboard-operator");

    let stored = e.store.get_tenant("acme").await.expect("store").expect("tenant");
    assert_eq!(stored.name, "Acme");
    assert_eq!(stored.managed_by.as_deref(), Some("Tenant prod/acme"));
    let keys = e.store.list_keys("acme").await.expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].material, KeyMaterial::Hmac { secret: Secret::new(HMAC) });
    assert_eq!(e.controls(), vec![Control::TenantChanged { tenant: "acme".into() }]);

    // Nothing changed: the next reconcile reads the Secret and writes nothing, not even
    // the status.
    let (r, seen, _) = e.drive(&after).await;
    assert_eq!(r.expect("reconciled"), Action::requeue(RESYNC));
    assert_eq!(lines(&seen), vec![format!("GET {SECRET_PATH}")]);
    assert!(e.controls().is_empty());
}

#[tokio::test]
async fn an_update_is_written_and_reports_the_new_observed_generation() {
    let mut e = env();
    e.set_secret("acme-keys", "secret", HMAC);
    let (_, _, after) = e.drive(&finalized(tenant(1))).await;
    e.controls();

    let mut t2 = after.clone();
    t2.metadata.generation = Some(2);
    t2.spec.policy = Some(TenantPolicySpec { max_connections: Some(5), ..TenantPolicySpec::default() });
    let (r, seen, after2) = e.drive(&t2).await;
    assert_eq!(r.expect("reconciled"), Action::requeue(RESYNC));
    assert_eq!(
        lines(&seen),
        vec![format!("GET {SECRET_PATH}"), format!("PATCH {STATUS_PATH}"), format!("POST {EVENTS_PATH}"),]
    );
    let status = after2.status.expect("status");
    assert_eq!(status.observed_generation, Some(2));
    assert!(status.conditions.iter().all(|c| c.observed_generation == Some(2)), "{status:?}");
    let before = after.status.expect("status");
    assert_eq!(
        status.conditions.iter().map(|c| &c.last_transition_time).collect::<Vec<_>>(),
        before.conditions.iter().map(|c| &c.last_transition_time).collect::<Vec<_>>(),
        "no condition changed its status"
    );
    assert_eq!(seen[2].body["note"], "updated the tenant");
    let stored = e.store.get_tenant("acme").await.expect("store").expect("tenant");
    assert_eq!(stored.policy.max_connections, 5);
    assert_eq!(stored.policy.max_message_bytes, TenantPolicy::default().max_message_bytes);
    assert_eq!(e.controls(), vec![Control::TenantChanged { tenant: "acme".into() }]);
}

#[tokio::test]
async fn a_missing_secret_then_added() {
    let mut e = env();
    let (r, seen, after) = e.drive(&finalized(tenant(1))).await;
    assert_eq!(r.expect("reconciled"), Action::requeue(RECHECK));
    assert_eq!(
        lines(&seen),
        vec![
            format!("GET {SECRET_PATH}"),
            format!("PATCH {STATUS_PATH}"),
            format!("POST {EVENTS_PATH}"),
            format!("POST {EVENTS_PATH}"),
        ]
    );
    let status = after.status.clone().expect("status");
    assert_eq!(condition(&status, "KeysResolved"), cond("False", "SecretNotFound"));
    assert_eq!(condition(&status, "Ready"), cond("False", "KeysUnresolved"));
    assert_eq!(seen[2].body["note"], "created the tenant");
    assert_eq!(
        (&seen[3].body["type"], &seen[3].body["reason"]),
        (&json!("Warning"), &json!("KeysUnresolved"))
    );
    assert!(e.store.get_tenant("acme").await.expect("store").is_some(), "the tenant exists without the key");
    assert!(e.store.list_keys("acme").await.expect("keys").is_empty());

    // Still missing: the status stands, and no second Warning.
    let (_, seen, after) = e.drive(&after).await;
    assert_eq!(lines(&seen), vec![format!("GET {SECRET_PATH}")]);

    // The Secret appears (the Secret watch re-reconciles): the key is added.
    e.set_secret("acme-keys", "secret", HMAC);
    e.controls();
    let (r, seen, after) = e.drive(&after).await;
    assert_eq!(r.expect("reconciled"), Action::requeue(RESYNC));
    assert_eq!(
        lines(&seen),
        vec![format!("GET {SECRET_PATH}"), format!("PATCH {STATUS_PATH}"), format!("POST {EVENTS_PATH}"),]
    );
    let status = after.status.expect("status");
    assert_eq!(condition(&status, "KeysResolved"), cond("True", "Resolved"));
    assert_eq!(condition(&status, "Ready"), cond("True", "Reconciled"));
    assert_eq!(seen[2].body["note"], "added keys k1");
    assert_eq!(e.store.list_keys("acme").await.expect("keys").len(), 1);
    assert_eq!(e.controls(), vec![Control::TenantChanged { tenant: "acme".into() }]);
}

#[tokio::test]
async fn a_store_that_is_down_shows_in_the_status_and_requeues_with_backoff() {
    let mut e = env();
    e.set_secret("acme-keys", "secret", HMAC);
    e.store.set_down(true);
    let t = finalized(tenant(1));
    let (r, seen, after) = e.drive(&t).await;
    let err = r.expect_err("the store is down");
    assert_eq!(err.code(), "unavailable");
    assert_eq!(
        lines(&seen),
        vec![format!("GET {SECRET_PATH}"), format!("PATCH {STATUS_PATH}"), format!("POST {EVENTS_PATH}"),]
    );
    let status = after.status.clone().expect("status");
    assert_eq!(condition(&status, "StoreReachable"), cond("False", "StoreUnavailable"));
    assert_eq!(condition(&status, "Ready"), cond("False", "StoreUnavailable"));
    assert_eq!(seen[2].body["reason"], "StoreUnavailable");
    let t = Arc::new(after.clone());
    assert_eq!(error_policy(t.clone(), &err, e.ctx.clone()), Action::requeue(Duration::from_secs(5)));
    assert_eq!(error_policy(t.clone(), &err, e.ctx.clone()), Action::requeue(Duration::from_secs(10)));

    // Back up: written, Ready, and the backoff starts over.
    e.store.set_down(false);
    let (r, _, after) = e.drive(&after).await;
    assert_eq!(r.expect("reconciled"), Action::requeue(RESYNC));
    let status = after.status.expect("status");
    assert_eq!(condition(&status, "StoreReachable"), cond("True", "Reachable"));
    assert_eq!(condition(&status, "Ready"), cond("True", "Reconciled"));
    assert_eq!(error_policy(t, &err, e.ctx.clone()), Action::requeue(Duration::from_secs(5)));
}

fn deleting(mut t: operator::Tenant) -> operator::Tenant {
    t.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    t
}

#[tokio::test]
async fn delete_removes_the_tenant_then_the_finalizer() {
    let mut e = env();
    e.set_secret("acme-keys", "secret", HMAC);
    let (_, _, after) = e.drive(&finalized(tenant(1))).await;
    e.controls();

    let (r, seen, gone) = e.drive(&deleting(after)).await;
    assert_eq!(r.expect("cleaned up"), Action::await_change());
    assert_eq!(lines(&seen), vec![format!("POST {EVENTS_PATH}"), format!("PATCH {TENANT_PATH}")]);
    assert_eq!(seen[0].body["reason"], "Deleted");
    assert_eq!(
        seen[1].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    assert_eq!(gone.metadata.finalizers, None);
    assert_eq!(e.store.get_tenant("acme").await.expect("store"), None);
    assert_eq!(e.controls(), vec![Control::TenantDeleted { tenant: "acme".into() }], "sessions end");

    // A cleanup retried after the tenant is gone (say the control message failed) says
    // it again, and lets the resource go.
    let mut again = deleting(finalized(tenant(1)));
    again.status = gone.status.clone();
    let (r, seen, _) = e.drive(&again).await;
    assert!(r.is_ok());
    assert_eq!(lines(&seen), vec![format!("PATCH {TENANT_PATH}")]);
    assert_eq!(e.controls(), vec![Control::TenantDeleted { tenant: "acme".into() }]);
}

#[tokio::test]
async fn delete_keeps_the_finalizer_while_the_store_is_down() {
    let mut e = env();
    e.set_secret("acme-keys", "secret", HMAC);
    let (_, _, after) = e.drive(&finalized(tenant(1))).await;
    e.store.set_down(true);
    let (r, seen, still) = e.drive(&deleting(after.clone())).await;
    assert!(r.is_err());
    assert_eq!(lines(&seen), vec![format!("POST {EVENTS_PATH}")], "no finalizer removal");
    assert_eq!(seen[0].body["type"], "Warning");
    assert_eq!(still.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    e.store.set_down(false);
    let (r, _, _) = e.drive(&deleting(after)).await;
    assert!(r.is_ok());
    assert_eq!(e.store.get_tenant("acme").await.expect("store"), None);
}

#[tokio::test]
async fn a_tenant_someone_else_owns_is_not_touched_nor_removed() {
    let mut e = env();
    e.set_secret("acme-keys", "secret", HMAC);
    let admin_made = admin::service::prepare_tenant(
        admin::service::NewTenant { id: "acme".into(), ..Default::default() },
        1,
    )
    .expect("valid");
    e.store.create_tenant(admin_made.clone()).await.expect("create");
    let (r, seen, after) = e.drive(&finalized(tenant(1))).await;
    assert_eq!(r.expect("reconciled"), Action::requeue(RECHECK));
    assert_eq!(
        lines(&seen),
        vec![format!("GET {SECRET_PATH}"), format!("PATCH {STATUS_PATH}"), format!("POST {EVENTS_PATH}"),]
    );
    assert_eq!(condition(after.status.as_ref().expect("status"), "Ready"), cond("False", "NotOwned"));
    assert_eq!(e.store.get_tenant("acme").await.expect("store"), Some(admin_made.clone()));
    // Deleting the resource leaves the admin API's tenant in place.
    let (r, seen, _) = e.drive(&deleting(after)).await;
    assert!(r.is_ok());
    assert_eq!(lines(&seen), vec![format!("PATCH {TENANT_PATH}")]);
    assert_eq!(e.store.get_tenant("acme").await.expect("store"), Some(admin_made));
}

#[tokio::test]
async fn admin_api_writes_to_an_operator_tenant_get_409() {
    let mut e = env();
    e.set_secret("acme-keys", "secret", HMAC);
    let (_, _, _) = e.drive(&finalized(tenant(1))).await;
    e.controls();
    let token = "operator-test-admin-token-0123";
    let router = admin::router(admin::AdminState {
        store: e.store.clone(),
        bus: e.bus.clone(),
        metrics: telemetry::Metrics::shared(),
        admin_token: Secret::new(token),
    });
    let call = |method: &str, uri: &str, body: Option<serde_json::Value>| {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.map_or_else(AxumBody::empty, |b| AxumBody::from(b.to_string())))
            .expect("request");
        router.clone().oneshot(req)
    };
    for (method, uri, body) in [
        ("PATCH", "/v1/tenants/acme", Some(json!({"policy": {"max_connections": 1}}))),
        ("DELETE", "/v1/tenants/acme", None),
        ("POST", "/v1/tenants/acme/keys", Some(json!({"alg": "HS256"}))),
        ("DELETE", "/v1/tenants/acme/keys/k1", None),
    ] {
        let res = call(method, uri, body).await.expect("answer");
        assert_eq!(res.status(), 409, "{method} {uri}");
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16).await.expect("body");
        let p: serde_json::Value = serde_json::from_slice(&bytes).expect("problem");
        assert_eq!(p["code"], "managed_by_operator", "{method} {uri}: {p}");
    }
    let stored = e.store.get_tenant("acme").await.expect("store").expect("tenant");
    assert_eq!(stored.policy.max_connections, TenantPolicy::default().max_connections);
    assert_eq!(e.store.list_keys("acme").await.expect("keys").len(), 1);
    assert!(e.controls().is_empty());
}

#[tokio::test]
async fn a_resource_name_that_is_no_tenant_id_is_refused_in_the_status() {
    let mut e = env();
    let mut t = finalized(tenant(1));
    t.metadata.name = Some("acme.example".into());
    t.spec.keys.clear();
    let (r, seen, after) = e.drive(&t).await;
    assert_eq!(r.expect("reconciled"), Action::requeue(RECHECK));
    let status_path = STATUS_PATH.replace("acme", "acme.example");
    assert_eq!(lines(&seen), vec![format!("PATCH {status_path}"), format!("POST {EVENTS_PATH}")]);
    assert_eq!(condition(after.status.as_ref().expect("status"), "Ready"), cond("False", "InvalidTenantId"));
    assert!(e.store.list_tenants().await.expect("store").is_empty());
}

#[tokio::test]
async fn secrets_the_operator_may_not_read_show_in_the_status() {
    let mut e = env();
    e.secret_refusal = Some(403);
    let (r, seen, after) = e.drive(&finalized(tenant(1))).await;
    assert_eq!(r.expect_err("forbidden").code(), "kubernetes_api");
    assert_eq!(
        lines(&seen),
        vec![format!("GET {SECRET_PATH}"), format!("PATCH {STATUS_PATH}"), format!("POST {EVENTS_PATH}"),]
    );
    let status = after.status.expect("status");
    assert_eq!(condition(&status, "KeysResolved"), cond("False", "SecretsUnreadable"));
    assert_eq!(condition(&status, "Ready"), cond("False", "SecretsUnreadable"));
    assert_eq!(seen[2].body["type"], "Warning");
    assert!(e.store.list_tenants().await.expect("store").is_empty(), "nothing written");
}
