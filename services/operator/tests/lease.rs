//! Leader election against kube's mock client: the exact Lease requests, and the answers
//! that make a replica lead or wait (including a lost race: a 409 on the write).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{NS, env};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::ObjectMeta;
use operator::lease::{LeaseLock, LeaseTimings};
use serde_json::Value;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/prod/leases/switchboard-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/prod/leases";

fn lock(e: &common::Env, me: &str, timings: LeaseTimings) -> LeaseLock {
    let api: Api<Lease> = Api::namespaced(e.ctx.client.clone(), NS);
    LeaseLock::new(api, "switchboard-operator", me, timings)
}

fn lease(holder: Option<&str>, renewed: Timestamp, version: &str) -> Value {
    let l = Lease {
        metadata: ObjectMeta {
            name: Some("switchboard-operator".into()),
            namespace: Some(NS.into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(renewed)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }),
    };
    serde_json::to_value(l).expect("json")
}

#[tokio::test]
async fn a_missing_lease_is_created_and_held() {
    let mut e = env();
    let l = lock(&e, "op-a", LeaseTimings::default());
    let now = Timestamp::now();
    let task = tokio::spawn(async move { l.try_acquire(now).await });
    e.refuse("GET", LEASE, 404).await;
    let created = e.answer("POST", LEASES, 201, lease(Some("op-a"), now, "1")).await;
    assert_eq!(created["metadata"]["name"], "switchboard-operator");
    assert_eq!(created["spec"]["holderIdentity"], "op-a");
    assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(created["spec"]["leaseTransitions"], 0);
    assert!(task.await.expect("task").expect("answered"));
}

#[tokio::test]
async fn two_replicas_racing_to_create_get_one_leader() {
    let mut e = env();
    let l = lock(&e, "op-b", LeaseTimings::default());
    let task = tokio::spawn(async move { l.try_acquire(Timestamp::now()).await });
    e.refuse("GET", LEASE, 404).await;
    e.refuse("POST", LEASES, 409).await;
    assert!(!task.await.expect("task").expect("answered"), "the other replica created it first");
}

#[tokio::test]
async fn a_lease_held_by_a_live_replica_is_left_alone() {
    let mut e = env();
    let l = lock(&e, "op-b", LeaseTimings::default());
    let now = Timestamp::now();
    let task = tokio::spawn(async move { l.try_acquire(now).await });
    e.answer("GET", LEASE, 200, lease(Some("op-a"), now - SignedDuration::from_secs(5), "7")).await;
    assert!(!task.await.expect("task").expect("answered"), "no write while op-a renews");
}

#[tokio::test]
async fn an_expired_lease_is_taken_with_the_version_read() {
    let mut e = env();
    let l = lock(&e, "op-b", LeaseTimings::default());
    let now = Timestamp::now();
    let task = tokio::spawn(async move { l.try_acquire(now).await });
    e.answer("GET", LEASE, 200, lease(Some("op-a"), now - SignedDuration::from_secs(30), "7")).await;
    let put = e.answer("PUT", LEASE, 200, lease(Some("op-b"), now, "8")).await;
    assert_eq!(put["metadata"]["resourceVersion"], "7", "optimistic concurrency on what was read");
    assert_eq!(put["spec"]["holderIdentity"], "op-b");
    assert_eq!(put["spec"]["leaseTransitions"], 4);
    assert!(task.await.expect("task").expect("answered"));
}

#[tokio::test]
async fn losing_the_race_for_an_expired_lease_is_a_409_and_no_leadership() {
    let mut e = env();
    let l = lock(&e, "op-b", LeaseTimings::default());
    let now = Timestamp::now();
    let task = tokio::spawn(async move { l.try_acquire(now).await });
    e.answer("GET", LEASE, 200, lease(Some("op-a"), now - SignedDuration::from_secs(30), "7")).await;
    e.refuse("PUT", LEASE, 409).await;
    assert!(!task.await.expect("task").expect("answered"));
}

#[tokio::test]
async fn the_holder_renews_keeping_its_acquire_time() {
    let mut e = env();
    let l = lock(&e, "op-a", LeaseTimings::default());
    let then = Timestamp::now() - SignedDuration::from_secs(4);
    let now = Timestamp::now();
    let task = tokio::spawn(async move { l.try_acquire(now).await });
    let mut held = lease(Some("op-a"), then, "9");
    held["spec"]["acquireTime"] =
        serde_json::to_value(MicroTime(then - SignedDuration::from_secs(60))).expect("t");
    let acquired = held["spec"]["acquireTime"].clone();
    e.answer("GET", LEASE, 200, held).await;
    let put = e.answer("PUT", LEASE, 200, lease(Some("op-a"), now, "10")).await;
    assert_eq!(put["spec"]["acquireTime"], acquired);
    assert_eq!(put["spec"]["leaseTransitions"], 3, "a renewal is no transition");
    assert_ne!(put["spec"]["renewTime"], serde_json::to_value(MicroTime(then)).expect("t"));
    assert!(task.await.expect("task").expect("answered"));
}

/// `lead` runs the work only once the Lease is held, and stops it as soon as another
/// replica holds the Lease.
#[tokio::test]
async fn work_runs_only_while_leading() {
    let mut e = env();
    let timings = LeaseTimings {
        lease: Duration::from_secs(15),
        renew_deadline: Duration::from_millis(300),
        retry: Duration::from_millis(20),
    };
    let l = lock(&e, "op-a", timings);
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        l.lead(
            move || {
                s.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>()
            },
            async move {
                let _ = stop_rx.await;
            },
        )
        .await;
    });
    let now = Timestamp::now();
    // Held by a live op-b: op-a waits and does not start.
    e.answer("GET", LEASE, 200, lease(Some("op-b"), now, "1")).await;
    assert_eq!(started.load(Ordering::SeqCst), 0);
    // Free: op-a takes it and starts working.
    e.answer("GET", LEASE, 200, lease(None, now, "2")).await;
    e.answer("PUT", LEASE, 200, lease(Some("op-a"), now, "3")).await;
    // The renewal finds op-b holding it (it took over): the work is dropped.
    e.answer("GET", LEASE, 200, lease(Some("op-b"), Timestamp::now(), "4")).await;
    assert_eq!(started.load(Ordering::SeqCst), 1);
    // Waiting again; shutting down ends it without a write (op-a does not hold the Lease).
    e.answer("GET", LEASE, 200, lease(Some("op-b"), Timestamp::now(), "4")).await;
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("lead returns").expect("task");
    assert_eq!(started.load(Ordering::SeqCst), 1);
}
