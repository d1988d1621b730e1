//! The webhook outbox: transitions recorded once, in order, cluster-wide — on the memory
//! store and on Redis with several nodes, a killed node's rooms vacated by the reap.
//!
//! Needs `redis-server` (Redis 7+) on PATH.

use std::time::{Duration, Instant};

use policy::{Secret, TenantPolicy, WebhookConfig};
use state::testing::{RedisServer, conn};
use state::{MemoryStore, RedisOptions, RedisStore, Store, Tenant};

fn tenant(id: &str, hooks: bool) -> Tenant {
    let mut policy = TenantPolicy::default();
    if hooks {
        policy.webhooks = Some(WebhookConfig {
            url: "http://127.0.0.1:9/h".into(),
            secrets: vec![Secret::new("s".repeat(32))],
            events: policy::WEBHOOK_EVENTS.iter().map(|s| s.to_string()).collect(),
        });
    }
    Tenant { policy, ..state::testing::tenant(id) }
}

async fn names(s: &dyn Store, t: &str) -> Vec<String> {
    s.take_hook_events(t, 100)
        .await
        .expect("take")
        .into_iter()
        .map(|e| format!("{} {}", e.name, e.room.or(e.user).unwrap_or_default()))
        .collect()
}

/// One user on two connections (two nodes for Redis) joining and leaving a room.
async fn scenario(a: &dyn Store, b: &dyn Store) {
    a.create_tenant(tenant("acme", true)).await.expect("create");
    a.create_tenant(tenant("quiet", false)).await.expect("create");
    assert_eq!(a.hook_tenants().await.expect("tenants"), vec!["acme".to_string()]);
    for (s, c, n) in [(a, "c1", "n1"), (b, "c2", "n2")] {
        assert!(s.open_connection("acme", conn(c, "ann", n), 10, 10).await.expect("open"));
        s.room_subscribe("acme", "lobby", c).await.expect("sub");
        s.presence_join("acme", "lobby", "ann", c, None).await.expect("join");
    }
    assert_eq!(
        names(a, "acme").await,
        [
            "connection.opened ann",
            "room.occupied lobby",
            "presence.member_added lobby",
            "connection.opened ann"
        ]
    );
    a.room_unsubscribe("acme", "lobby", "c1").await.expect("unsub");
    a.presence_leave("acme", "lobby", "ann", "c1").await.expect("leave");
    assert!(names(a, "acme").await.is_empty(), "the room is still occupied by c2");
    b.room_unsubscribe("acme", "lobby", "c2").await.expect("unsub");
    b.presence_leave("acme", "lobby", "ann", "c2").await.expect("leave");
    b.close_connection("acme", "c2").await.expect("close");
    b.push_hook_event("acme", "session.ended", "ann", "c2", "kicked").await.expect("push");
    let evs = a.take_hook_events("acme", 100).await.expect("take");
    let got: Vec<&str> = evs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(got, ["room.vacated", "presence.member_removed", "connection.closed", "session.ended"]);
    assert_eq!(evs[3].code.as_deref(), Some("kicked"));
    let mut ids: Vec<&str> = evs.iter().map(|e| e.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "ids are unique");
    // A tenant without webhooks records nothing.
    a.open_connection("quiet", conn("q1", "bob", "n1"), 10, 10).await.expect("open");
    a.room_subscribe("quiet", "lobby", "q1").await.expect("sub");
    assert!(a.take_hook_events("quiet", 100).await.expect("take").is_empty());
}

#[tokio::test]
async fn memory_store_records_transitions_once_in_order() {
    let m = MemoryStore::new();
    scenario(&m, &m).await;
}

#[tokio::test]
async fn redis_records_transitions_once_in_order_across_nodes() {
    let server = RedisServer::start();
    let a = RedisStore::connect(&server.url(), "n1").await.expect("n1");
    let b = RedisStore::connect(&server.url(), "n2").await.expect("n2");
    scenario(&a, &b).await;
}

#[tokio::test]
async fn a_killed_nodes_rooms_are_vacated_once_by_the_reap() {
    let server = RedisServer::start();
    let url = server.url();
    let short = |id: &str| {
        let mut o = RedisOptions::new(id);
        o.liveness_ttl = Duration::from_millis(1000);
        o.heartbeat_interval = Duration::from_millis(200);
        RedisStore::connect_with(&url, o)
    };
    let (a, b, c) =
        (short("n1").await.expect("n1"), short("n2").await.expect("n2"), short("n3").await.expect("n3"));
    a.create_tenant(tenant("acme", true)).await.expect("create");
    a.open_connection("acme", conn("c1", "ann", "n1"), 10, 10).await.expect("open");
    c.open_connection("acme", conn("c3", "cat", "n3"), 10, 10).await.expect("open");
    c.room_subscribe("acme", "solo", "c3").await.expect("sub");
    c.presence_join("acme", "solo", "cat", "c3", None).await.expect("join");
    let first = a.take_hook_events("acme", 100).await.expect("take");
    assert_eq!(first.len(), 4);
    // n1 holds the outbox now: n2 gets nothing while n1 keeps taking.
    assert!(b.take_hook_events("acme", 100).await.expect("take").is_empty());
    c.stop_heartbeat();
    let killed = Instant::now();
    let mut got = Vec::new();
    while got.len() < 3 {
        assert!(killed.elapsed() < Duration::from_secs(5), "the reap did not come: {got:?}");
        got.extend(a.take_hook_events("acme", 100).await.expect("take").into_iter().map(|e| e.name));
        assert!(b.take_hook_events("acme", 100).await.expect("take").is_empty(), "one node takes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, ["connection.closed", "presence.member_removed", "room.vacated"]);
    assert!(killed.elapsed() >= Duration::from_millis(700), "not before the liveness expired");
    // n1 says goodbye: n2 takes over the outbox at once, and gets n1's last events.
    a.goodbye().await.expect("goodbye");
    let after: Vec<String> =
        b.take_hook_events("acme", 100).await.expect("take").into_iter().map(|e| e.name).collect();
    assert_eq!(after, ["connection.closed"]);
    // Turning webhooks off empties and stops the outbox.
    b.update_tenant(tenant("acme", false)).await.expect("update");
    b.open_connection("acme", conn("c2", "bob", "n2"), 10, 10).await.expect("open");
    assert!(b.take_hook_events("acme", 100).await.expect("take").is_empty());
    assert!(b.hook_tenants().await.expect("tenants").is_empty());
}
