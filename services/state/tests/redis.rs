//! The Redis store against a private `redis-server` per test: the generic suite, several
//! nodes sharing one Redis, node death, and Redis outages.
//!
//! Needs `redis-server` (Redis 7+) on PATH; fails with a clear message otherwise.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use state::testing::{RedisCluster, RedisServer, conn, grant};
use state::{ApiKeyRecord, RedisOptions, RedisStore, SessionRecord, Store, StoreError, Tenant, hash_secret};

fn tenant(id: &str) -> Tenant {
    Tenant { name: format!("Tenant {id}"), created_at: 7, ..state::testing::tenant(id) }
}

async fn node(server: &RedisServer, id: &str) -> RedisStore {
    RedisStore::connect(&server.url(), id).await.expect("connect")
}

/// A node with a short liveness TTL, so that its death shows within a test.
async fn short_lived_node(server: &RedisServer, id: &str) -> RedisStore {
    short_lived_node_at(&server.url(), id).await
}

/// Polls `check` every 25 ms until it holds; panics after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    start.elapsed()
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// Every key in the server (tests only: KEYS is fine on an empty private server).
async fn all_keys(server: &RedisServer) -> Vec<String> {
    let c = Builder::from_config(Config::from_url(&server.url()).expect("url")).build().expect("client");
    c.init().await.expect("raw client");
    let mut keys: Vec<String> = c.custom(fred::cmd!("KEYS"), vec!["*"]).await.expect("KEYS");
    let _ = c.quit().await;
    keys.sort();
    keys
}

#[tokio::test]
async fn redis_store_passes_the_suite() {
    let server = RedisServer::start();
    let s = node(&server, "n1").await;
    s.ping().await.expect("ping");
    state::testing::suite(&s).await;
}

#[tokio::test]
async fn records_round_trip_and_a_deleted_tenant_leaves_nothing_behind() {
    let server = RedisServer::start();
    let s = node(&server, "n1").await;
    // An id that would break a naive key layout still stays inside its own hash tag.
    for id in ["acme", "we{ird}:*"] {
        let t = tenant(id);
        s.create_tenant(t.clone()).await.expect("create");
        assert_eq!(s.get_tenant(id).await.expect("get"), Some(t));
        s.add_api_key(
            id,
            ApiKeyRecord { id: "a".into(), name: "ci".into(), hash: hash_secret(id), created_at: 1 },
        )
        .await
        .expect("api key");
        s.put_ticket(id, "tk", grant("u"), 30).await.expect("ticket");
        let session =
            SessionRecord { id: "s".into(), sub: "u".into(), rooms: Default::default(), updated_at: 1 };
        s.put_session(id, session, 60).await.expect("session");
        let key = policy::KeyRecord {
            kid: "k".into(),
            alg: Some("HS256".into()),
            material: policy::KeyMaterial::Hmac { secret: policy::Secret::new("s") },
            created_at: 1,
        };
        s.add_key(id, key).await.expect("key");
        let r =
            policy::Revocation::new("r".into(), policy::RevocationRule::Sub { sub: "u".into() }, now_s(), 60);
        s.add_revocation(id, r).await.expect("revocation");
        s.add_stats(id, state::StatsDelta { messages_in: 1, ..Default::default() }).await.expect("stats");
        assert_eq!(s.list_revocations(id).await.expect("revocations").len(), 1);
        s.open_connection(id, conn("c1", "u", "n1"), 10, 10).await.expect("open");
        s.presence_join(id, "room:1", "u", "c1", Some(serde_json::json!({"big": 1u64 << 60})))
            .await
            .expect("join");
        s.room_subscribe(id, "room:1", "c1").await.expect("sub");
        let m = s.presence(id, "room:1").await.expect("presence");
        assert_eq!(m[0].meta, Some(serde_json::json!({"big": 1u64 << 60})), "meta is stored verbatim");
    }
    assert_eq!(s.list_tenants().await.expect("list").len(), 2);
    assert!(all_keys(&server).await.iter().any(|k| k.starts_with("sb:{t:we%7Bird%7D%3A%2A}:")));

    assert!(s.delete_tenant("we{ird}:*").await.expect("delete"));
    assert!(s.delete_tenant("acme").await.expect("delete"));
    assert_eq!(s.find_api_key(&hash_secret("acme")).await.expect("find"), None);
    assert!(s.list_tenants().await.expect("list").is_empty());
    assert_eq!(all_keys(&server).await, Vec::<String>::new(), "nothing left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_is_taken_once_across_nodes() {
    let server = RedisServer::start();
    let (a, b) = (node(&server, "a").await, node(&server, "b").await);
    a.create_tenant(tenant("t")).await.expect("create");
    a.put_ticket("t", "tk", grant("u"), 30).await.expect("put");
    assert_eq!(b.take_ticket("t", "tk").await.expect("take").map(|g| g.sub), Some("u".into()));
    assert_eq!(a.take_ticket("t", "tk").await.expect("take"), None);
    assert_eq!(b.take_ticket("t", "tk").await.expect("take"), None);

    // 20 concurrent takes of one ticket from two nodes: exactly one wins.
    let (a, b) = (Arc::new(a), Arc::new(b));
    for round in 0..5 {
        let ticket = format!("race-{round}");
        a.put_ticket("t", &ticket, grant("u"), 30).await.expect("put");
        let takes: Vec<_> = (0..20)
            .map(|i| {
                let s = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
                let ticket = ticket.clone();
                tokio::spawn(async move { s.take_ticket("t", &ticket).await.expect("take") })
            })
            .collect();
        let mut won = 0;
        for t in takes {
            won += usize::from(t.await.expect("join").is_some());
        }
        assert_eq!(won, 1, "round {round}");
    }
}

#[tokio::test]
async fn sessions_resume_on_any_node_until_they_expire() {
    let server = RedisServer::start();
    let (a, b) = (node(&server, "a").await, node(&server, "b").await);
    let session = |rooms: &[(&str, u64)]| SessionRecord {
        id: "s1".into(),
        sub: "u".into(),
        rooms: rooms.iter().map(|(r, o)| (r.to_string(), *o)).collect(),
        updated_at: 1,
    };
    assert_eq!(a.put_session("t", session(&[]), 60).await, Err(StoreError::NotFound));
    a.create_tenant(tenant("t")).await.expect("create");
    a.put_session("t", session(&[("chat", 7)]), 60).await.expect("put");
    assert_eq!(b.get_session("t", "s1").await.expect("get"), Some(session(&[("chat", 7)])));
    assert_eq!(b.get_session("t", "s1").await.expect("get"), Some(session(&[("chat", 7)])), "not single use");
    b.put_session("t", session(&[("chat", 7), ("news", 2)]), 60).await.expect("replace");
    assert_eq!(a.get_session("t", "s1").await.expect("get"), Some(session(&[("chat", 7), ("news", 2)])));
    assert_eq!(a.get_session("other", "s1").await.expect("get"), None, "another tenant's");
    a.put_session("t", session(&[]), 0).await.expect("put");
    assert_eq!(a.get_session("t", "s1").await.expect("get"), None, "expired");
    a.put_session("t", session(&[]), 60).await.expect("put");
    assert!(a.delete_tenant("t").await.expect("delete"));
    a.create_tenant(tenant("t")).await.expect("create");
    assert_eq!(a.get_session("t", "s1").await.expect("get"), None, "gone with its tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_hold_across_nodes() {
    let server = RedisServer::start();
    let (a, b) = (node(&server, "a").await, node(&server, "b").await);
    a.create_tenant(tenant("t")).await.expect("create");
    assert!(a.open_connection("t", conn("a1", "u", "a"), 3, 2).await.expect("open"));
    assert!(b.open_connection("t", conn("b1", "u", "b"), 3, 2).await.expect("open"));
    assert!(!a.open_connection("t", conn("a2", "u", "a"), 3, 2).await.expect("open"), "per user, both nodes");
    assert!(b.open_connection("t", conn("b2", "v", "b"), 3, 2).await.expect("open"));
    assert!(
        !a.open_connection("t", conn("a3", "w", "a"), 3, 2).await.expect("open"),
        "per tenant, both nodes"
    );
    assert_eq!(a.list_connections("t", None).await.expect("list").len(), 3);
    assert_eq!(b.stats("t").await.expect("stats").connections, 3);
    b.close_connection("t", "b1").await.expect("close");
    assert!(a.open_connection("t", conn("a4", "u", "a"), 3, 2).await.expect("open"), "room again");

    // 40 concurrent opens from two nodes under a limit of 10: exactly 10 get in.
    a.create_tenant(tenant("race")).await.expect("create");
    let (a, b) = (Arc::new(a), Arc::new(b));
    let opens: Vec<_> = (0..40)
        .map(|i| {
            let s = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            tokio::spawn(async move {
                s.open_connection("race", conn(&format!("c{i}"), &format!("u{}", i % 4), "x"), 10, 100)
                    .await
                    .expect("open")
            })
        })
        .collect();
    let mut admitted = 0;
    for o in opens {
        admitted += usize::from(o.await.expect("join"));
    }
    assert_eq!(admitted, 10);
    assert_eq!(a.list_connections("race", None).await.expect("list").len(), 10);
}

#[tokio::test]
async fn presence_spans_nodes() {
    let server = RedisServer::start();
    let (a, b) = (node(&server, "a").await, node(&server, "b").await);
    a.create_tenant(tenant("t")).await.expect("create");
    let j =
        a.presence_join("t", "room", "u", "a1", Some(serde_json::json!({"name": "U"}))).await.expect("join");
    assert!(j.user_changed && j.members == 1);
    let j = b.presence_join("t", "room", "u", "b1", None).await.expect("join");
    assert!(!j.user_changed, "the user's second connection, on another node");
    b.presence_join("t", "room", "v", "b2", None).await.expect("join");
    for s in [&a, &b] {
        let m = s.presence("t", "room").await.expect("presence");
        assert_eq!(
            m.iter().map(|m| (m.sub.as_str(), m.connections)).collect::<Vec<_>>(),
            vec![("u", 2), ("v", 1)]
        );
        assert_eq!(m[0].meta, Some(serde_json::json!({"name": "U"})));
    }
    let l = a.presence_leave("t", "room", "u", "a1").await.expect("leave");
    assert!(!l.user_changed && l.members == 2);
    let l = b.presence_leave("t", "room", "u", "b1").await.expect("leave");
    assert!(l.user_changed && l.members == 1);
    assert!(!a.presence_leave("t", "room", "u", "b1").await.expect("leave").user_changed, "idempotent");

    a.room_subscribe("t", "room", "a1").await.expect("sub");
    b.room_subscribe("t", "room", "b2").await.expect("sub");
    assert_eq!(b.rooms("t").await.expect("rooms"), vec![("room".into(), 2)]);
}

#[tokio::test]
async fn a_dead_node_loses_its_connections_and_members() {
    let server = RedisServer::start();
    let a = node(&server, "a").await;
    let b = short_lived_node(&server, "b").await;
    a.create_tenant(tenant("t")).await.expect("create");
    assert!(a.open_connection("t", conn("a1", "u", "a"), 3, 10).await.expect("open"));
    a.presence_join("t", "room", "u", "a1", None).await.expect("join");
    a.room_subscribe("t", "room", "a1").await.expect("sub");
    for i in 0..2 {
        let id = format!("b{i}");
        assert!(b.open_connection("t", conn(&id, "v", "b"), 3, 10).await.expect("open"));
        b.presence_join("t", "room", "v", &id, None).await.expect("join");
        b.room_subscribe("t", "room", &id).await.expect("sub");
    }
    assert!(!a.open_connection("t", conn("a2", "u", "a"), 3, 10).await.expect("open"), "full");

    // The heartbeat keeps b's records well past its liveness TTL.
    tokio::time::sleep(b.liveness_ttl() * 2).await;
    assert_eq!(a.list_connections("t", None).await.expect("list").len(), 3);
    assert_eq!(a.presence("t", "room").await.expect("presence").len(), 2);

    // b dies without a goodbye: within its liveness TTL every read forgets it.
    b.stop_heartbeat();
    drop(b);
    let took = eventually(Duration::from_secs(5), "b's records expire", || async {
        a.list_connections("t", None).await.expect("list").len() == 1
    })
    .await;
    println!("dead node's records gone after {took:?} (liveness ttl 1 s)");
    let m = a.presence("t", "room").await.expect("presence");
    assert_eq!(m.iter().map(|m| m.sub.as_str()).collect::<Vec<_>>(), vec!["u"]);
    assert_eq!(a.rooms("t").await.expect("rooms"), vec![("room".into(), 1)]);
    let st = a.stats("t").await.expect("stats");
    assert_eq!((st.connections, st.rooms), (1, 1));
    assert!(a.open_connection("t", conn("a2", "u", "a"), 3, 10).await.expect("open"), "capacity is back");
    // Nothing of b is left in Redis.
    assert!(!all_keys(&server).await.iter().any(|k| k.ends_with(":b")), "{:?}", all_keys(&server).await);
}

#[tokio::test]
async fn goodbye_removes_a_nodes_records_at_once() {
    let server = RedisServer::start();
    let (a, b) = (node(&server, "a").await, node(&server, "b").await);
    a.create_tenant(tenant("t")).await.expect("create");
    assert!(b.open_connection("t", conn("b1", "v", "b"), 3, 10).await.expect("open"));
    b.presence_join("t", "room", "v", "b1", None).await.expect("join");
    b.room_subscribe("t", "room", "b1").await.expect("sub");
    b.goodbye().await.expect("goodbye");
    assert!(a.list_connections("t", None).await.expect("list").is_empty());
    assert!(a.presence("t", "room").await.expect("presence").is_empty());
    assert!(a.rooms("t").await.expect("rooms").is_empty());
}

#[tokio::test]
async fn an_outage_fails_fast_and_the_store_recovers_by_itself() {
    let mut server = RedisServer::start();
    let mut o = RedisOptions::new("n1");
    o.command_timeout = Duration::from_millis(500);
    let s = RedisStore::connect_with(&server.url(), o).await.expect("connect");
    s.create_tenant(tenant("t")).await.expect("create");

    // Redis dies: every call answers `unavailable`, within the command timeout.
    server.stop();
    for _ in 0..3 {
        let start = Instant::now();
        let r = s.create_tenant(tenant("u")).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        let r = s.take_ticket("t", "tk").await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(matches!(s.ping().await, Err(StoreError::Unavailable(_))));
        assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    }

    // Redis is back (empty): the same store works again, scripts reloaded.
    server.restart();
    eventually(Duration::from_secs(10), "the store reconnects", || async { s.ping().await.is_ok() }).await;
    s.create_tenant(tenant("t")).await.expect("create after restart");
    s.put_ticket("t", "tk", grant("u"), 30).await.expect("put after restart");
    assert!(s.take_ticket("t", "tk").await.expect("take").is_some());
    assert!(s.open_connection("t", conn("c1", "u", "n1"), 3, 3).await.expect("open"));
}

#[tokio::test]
async fn a_frozen_redis_times_out_instead_of_hanging() {
    let server = RedisServer::start();
    let mut o = RedisOptions::new("n1");
    o.command_timeout = Duration::from_millis(500);
    let s = RedisStore::connect_with(&server.url(), o).await.expect("connect");
    s.create_tenant(tenant("t")).await.expect("create");

    server.pause();
    let start = Instant::now();
    let r = s.get_tenant("t").await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    let r = s.presence_join("t", "room", "u", "c1", None).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());

    server.resume();
    eventually(Duration::from_secs(10), "the store answers again", || async {
        s.get_tenant("t").await.is_ok()
    })
    .await;
    assert!(s.presence_join("t", "room", "u", "c1", None).await.expect("join").user_changed);
}

#[tokio::test]
async fn connecting_to_nothing_is_unavailable() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let mut o = RedisOptions::new("n1");
    o.command_timeout = Duration::from_millis(500);
    let start = Instant::now();
    let r = RedisStore::connect_with(&url, o).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    let r = RedisStore::connect("redis://:hunter2@bad host:1/", "n1").await;
    let Err(StoreError::Unavailable(msg)) = r else { panic!("{r:?}") };
    assert!(!msg.contains("hunter2"), "the URL's password leaked: {msg}");
}

#[tokio::test]
async fn a_node_whose_liveness_lapsed_is_told_and_its_records_are_gone() {
    let server = RedisServer::start();
    let b = short_lived_node(&server, "b").await;
    let mut lapses = b.lapses();
    b.create_tenant(tenant("t")).await.expect("create");
    assert!(b.open_connection("t", conn("b1", "v", "b"), 3, 10).await.expect("open"));
    // As if Redis had been out of reach for longer than the liveness TTL.
    let c = Builder::from_config(Config::from_url(&server.url()).expect("url")).build().expect("client");
    c.init().await.expect("raw client");
    let _: i64 = c.del("sb:{t:t}:alive:b").await.expect("DEL");
    tokio::time::timeout(Duration::from_secs(5), lapses.changed())
        .await
        .expect("told in time")
        .expect("changed");
    assert_eq!(*lapses.borrow(), 1);
    assert!(b.list_connections("t", None).await.expect("list").is_empty(), "its records are reaped");
    // It registers its connection again, and stays alive from then on.
    assert!(b.open_connection("t", conn("b1", "v", "b"), 3, 10).await.expect("open"));
    tokio::time::sleep(b.liveness_ttl() * 2).await;
    assert_eq!(b.list_connections("t", None).await.expect("list").len(), 1);
    let _ = c.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_runs_the_suite_and_shares_state_between_nodes() {
    let cluster = RedisCluster::start();
    let a = RedisStore::connect(&cluster.url(), "a").await.expect("connect");
    state::testing::suite(&a).await;

    // Tenants land on different cluster nodes; every operation of one stays on its node.
    let b = short_lived_node_at(&cluster.url(), "b").await;
    let ids: Vec<String> = (0..12).map(|i| format!("tenant-{i}")).collect();
    for id in &ids {
        a.create_tenant(tenant(id)).await.expect("create");
        a.add_api_key(
            id,
            ApiKeyRecord { id: "k".into(), name: "n".into(), hash: hash_secret(id), created_at: 1 },
        )
        .await
        .expect("api key");
        a.put_ticket(id, "tk", grant("u"), 30).await.expect("ticket");
        assert!(a.open_connection(id, conn("a1", "u", "a"), 2, 2).await.expect("open"));
        assert!(b.open_connection(id, conn("b1", "u", "b"), 2, 2).await.expect("open"));
        assert!(
            !b.open_connection(id, conn("b2", "v", "b"), 2, 2).await.expect("open"),
            "limit across nodes"
        );
        b.presence_join(id, "room", "v", "b1", None).await.expect("join");
    }
    let counts = cluster.key_counts();
    assert!(counts.iter().filter(|&&n| n > 0).count() >= 2, "tenants spread over the cluster: {counts:?}");
    for id in &ids {
        assert_eq!(b.find_api_key(&hash_secret(id)).await.expect("find").map(|(t, _)| t), Some(id.clone()));
        assert!(b.take_ticket(id, "tk").await.expect("take").is_some());
        assert!(a.take_ticket(id, "tk").await.expect("take").is_none());
        assert_eq!(a.presence(id, "room").await.expect("presence").len(), 1);
    }
    assert_eq!(b.list_tenants().await.expect("list").len(), ids.len());

    // b dies: its records go on every cluster node.
    b.stop_heartbeat();
    drop(b);
    for id in &ids {
        eventually(Duration::from_secs(5), "b's records expire", || async {
            a.list_connections(id, None).await.expect("list").len() == 1
                && a.presence(id, "room").await.expect("presence").is_empty()
        })
        .await;
    }
    for id in &ids {
        assert!(a.delete_tenant(id).await.expect("delete"));
    }
    assert!(a.list_tenants().await.expect("list").is_empty());
    assert_eq!(cluster.key_counts().iter().sum::<u64>(), 0, "nothing left behind");
}

async fn short_lived_node_at(url: &str, id: &str) -> RedisStore {
    let mut o = RedisOptions::new(id);
    o.liveness_ttl = Duration::from_millis(1000);
    o.heartbeat_interval = Duration::from_millis(200);
    RedisStore::connect_with(url, o).await.expect("connect")
}

/// Throughput of `take_ticket` and `presence_join` against a local Redis. Run with
/// `cargo test --release -p state --test redis -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn throughput() {
    let server = RedisServer::start();
    let s = Arc::new(node(&server, "n1").await);
    s.create_tenant(tenant("t")).await.expect("create");
    const N: usize = 20_000;
    for concurrency in [1usize, 32] {
        for i in 0..N {
            s.put_ticket("t", &format!("k{concurrency}-{i}"), grant("u"), 60).await.expect("put");
        }
        let st = Arc::clone(&s);
        let rate = run(N, concurrency, move |i| {
            let s = Arc::clone(&st);
            async move {
                assert!(s.take_ticket("t", &format!("k{concurrency}-{i}")).await.expect("take").is_some());
            }
        })
        .await;
        println!("take_ticket   concurrency {concurrency:>2}: {rate:>8.0} ops/s");
        let st = Arc::clone(&s);
        let rate = run(N, concurrency, move |i| {
            let s = Arc::clone(&st);
            async move {
                s.presence_join(
                    "t",
                    &format!("r{}", i % 100),
                    &format!("u{i}"),
                    &format!("c{concurrency}-{i}"),
                    None,
                )
                .await
                .expect("join");
            }
        })
        .await;
        println!("presence_join concurrency {concurrency:>2}: {rate:>8.0} ops/s");
    }
}

async fn run<F, Fut>(n: usize, concurrency: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut i = w;
                while i < n {
                    op(i).await;
                    i += concurrency;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    n as f64 / start.elapsed().as_secs_f64()
}
