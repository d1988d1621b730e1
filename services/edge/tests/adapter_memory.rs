//! socketioxide's cross-node operators through `bus::NatsAdapter` over its in-memory
//! transport (`bus::MemoryTransport`, one `MemoryHub` for all nodes): the same adapter
//! logic as `adapter.rs` runs against nats-server, without a server, so it is fast enough
//! to test membership with short timings. Each node is an in-process edge with its own
//! `LocalBus`; real Socket.IO clients (`testkit::sio`) connect to each.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bus::{AdapterConfig, AdapterState, AdapterTransport, Bus, LocalBus, MemoryHub, MemoryTransport};
use edge::{Edge, EdgeConfig};
use futures_util::StreamExt;
use serde_json::json;
use telemetry::Metrics;

#[path = "common/cluster.rs"]
mod cluster;
mod common;
use cluster::{HasEdge, NS, await_sockets, client, fetch, nodes_of, ops};
use common::{serve, store};

/// Far above what any test waits: a request that returns quickly did not wait for it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Node {
    edge: Edge,
    port: u16,
    transport: MemoryTransport,
    _bus: Arc<dyn Bus>,
}

impl HasEdge for Node {
    fn edge(&self) -> &Edge {
        &self.edge
    }
}

async fn node(hub: &Arc<MemoryHub>, name: &str, cfg: AdapterConfig) -> Node {
    let transport = MemoryTransport::new(hub);
    let adapter = AdapterState::remote(Arc::new(transport.clone()), name, cfg);
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let edge_cfg = EdgeConfig { node_id: name.into(), ..EdgeConfig::default() };
    let (edge, router) = Edge::new(edge_cfg, store().await, bus.clone(), adapter, Arc::new(Metrics::new()));
    let port = serve(router).await;
    Node { edge, port, transport, _bus: bus }
}

fn timings() -> AdapterConfig {
    AdapterConfig { request_timeout: REQUEST_TIMEOUT, ..AdapterConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_reach_every_node_over_the_memory_transport() {
    let hub = MemoryHub::new();
    let a = node(&hub, "a", timings()).await;
    let b = node(&hub, "b", timings()).await;
    let c = node(&hub, "c", timings()).await;
    let mut a1 = client(a.port, "a1", &["chat"]).await;
    let mut b1 = client(b.port, "b1", &["chat"]).await;
    let mut c1 = client(c.port, "c1", &["other"]).await;

    await_sockets(&a, 3, Duration::from_secs(5)).await;
    let (all, took) = fetch(&a).await;
    assert_eq!(nodes_of(&all).len(), 3, "one socket per node, each with its node's id");
    // Well under the request timeout (30 s): it returned when every node had answered.
    assert!(took < Duration::from_secs(10), "a request returns once every node answered: {took:?}");
    let in_chat = ops(&a).to("chat").fetch_sockets().await.expect("fetch chat");
    assert_eq!(in_chat.len(), 2);
    let rooms: HashSet<String> =
        ops(&a).rooms().await.expect("rooms").into_iter().map(|r| r.to_string()).collect();
    assert!(rooms.contains("chat") && rooms.contains("other"), "{rooms:?}");

    // A broadcast reaches the room's sockets on every node, and no others.
    ops(&a).to("chat").emit("hello", &json!({"n": 1})).await.expect("emit");
    assert!(a1.event("hello", Duration::from_secs(5)).await.is_some(), "local socket");
    assert!(b1.event("hello", Duration::from_secs(5)).await.is_some(), "remote socket");
    ops(&a).to("other").emit("marker", &json!({})).await.expect("emit");
    let first = c1.event("marker", Duration::from_secs(5)).await.expect("c1 gets its room's event");
    assert!(!first.contains("hello"), "c1 is not in chat");

    // One remote socket: only its node is asked, and its rooms come from there.
    let a_uid = ops(&a).local().fetch_sockets().await.expect("local")[0].data().server_id;
    let remote = in_chat.iter().find(|s| s.data().server_id != a_uid).expect("b1 is remote");
    remote.emit("direct", &json!({})).await.expect("emit to a remote socket");
    assert!(b1.event("direct", Duration::from_secs(5)).await.is_some());
    let remote_rooms: Vec<String> =
        remote.rooms().await.expect("rooms").into_iter().map(|r| r.to_string()).collect();
    assert!(remote_rooms.contains(&"chat".to_string()), "{remote_rooms:?}");

    // Acks come back from the remote client too.
    let acks = ops(&a)
        .to("chat")
        .timeout(Duration::from_secs(5))
        .emit_with_ack::<_, String>("ping", &json!({}))
        .await
        .expect("emit_with_ack");
    let got: HashSet<String> = tokio::time::timeout(Duration::from_secs(10), acks.collect::<Vec<_>>())
        .await
        .expect("acks end")
        .into_iter()
        .map(|(_, r)| r.expect("an ack"))
        .collect();
    assert_eq!(got, HashSet::from(["pong-a1".to_string(), "pong-b1".to_string()]));

    ops(&b).to("other").join("extra").await.expect("join");
    assert_eq!(ops(&a).to("extra").fetch_sockets().await.expect("fetch extra").len(), 1);
    ops(&a).to("extra").leave("extra").await.expect("leave");
    assert!(ops(&b).to("extra").fetch_sockets().await.expect("fetch extra").is_empty());

    ops(&a).to("other").disconnect().await.expect("disconnect");
    assert!(c1.disconnected(Duration::from_secs(5)).await, "c1 was disconnected by node a");
    await_sockets(&a, 2, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_severed_node_is_waited_for_only_until_it_is_forgotten() {
    let hub = MemoryHub::new();
    let node_timeout = Duration::from_secs(2);
    let cfg = AdapterConfig { heartbeat_every: Duration::from_millis(100), node_timeout, ..timings() };
    let a = node(&hub, "a", cfg.clone()).await;
    let b = node(&hub, "b", cfg.clone()).await;
    let c = node(&hub, "c", cfg.clone()).await;
    let _a1 = client(a.port, "a1", &[]).await;
    let _b1 = client(b.port, "b1", &[]).await;
    let _c1 = client(c.port, "c1", &[]).await;
    await_sockets(&a, 3, Duration::from_secs(5)).await;

    // c's connection dies without a goodbye; its sockets stay up on c but are unreachable.
    c.transport.sever();
    let (s, took) = fetch(&a).await;
    assert_eq!(s.len(), 2, "a answers with what it reached");
    // Far under the request timeout (30 s): it waited for the severed node only until it
    // was forgotten. (Margins are wide: CI machines are loaded.)
    assert!(took < node_timeout + Duration::from_secs(8), "waited {took:?} for a severed node");
    let (s, took) = fetch(&b).await;
    assert_eq!(s.len(), 2);
    assert!(took < node_timeout, "once forgotten, nothing waits for it: {took:?}");
    assert_eq!(ops(&a).fetch_sockets().await.expect("fetch").len(), 2);

    // A node joining later is known once it has the tenant.
    let d = node(&hub, "d", cfg).await;
    let _d1 = client(d.port, "d1", &[]).await;
    await_sockets(&a, 3, Duration::from_secs(5)).await;
    assert_eq!(fetch(&d).await.0.len(), 3, "the new node sees the others too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_leaving_a_namespace_is_forgotten_at_once() {
    let hub = MemoryHub::new();
    let a = node(&hub, "a", timings()).await;
    let b = node(&hub, "b", timings()).await;
    let _a1 = client(a.port, "a1", &[]).await;
    let _b1 = client(b.port, "b1", &[]).await;
    await_sockets(&a, 2, Duration::from_secs(5)).await;
    let all = bus::adapter::requests_subject(NS);
    assert_eq!(hub.subscribers(&all), 2);
    // Deleting the namespace closes b's adapter: it unsubscribes and says goodbye, so a
    // forgets it at once, not after the 15 s node timeout.
    b.edge.io().delete_ns(NS);
    // Both bounds are far under the 15 s node timeout (wide margins: CI machines are loaded).
    await_sockets(&a, 1, Duration::from_secs(7)).await;
    let (_, took) = fetch(&a).await;
    assert!(took < Duration::from_secs(7), "{took:?}");
    assert_eq!(hub.subscribers(&all), 1, "b no longer listens to the tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_adapter_subjects_is_dropped() {
    let hub = MemoryHub::new();
    let a = node(&hub, "a", timings()).await;
    let b = node(&hub, "b", timings()).await;
    let _a1 = client(a.port, "a1", &["chat"]).await;
    let _b1 = client(b.port, "b1", &["chat"]).await;
    await_sockets(&a, 2, Duration::from_secs(5)).await;
    let raw = MemoryTransport::new(&hub);
    let (all, _) = fetch(&a).await;
    for uid in nodes_of(&all) {
        for subject in [
            bus::adapter::requests_subject(NS),
            bus::adapter::node_requests_subject(NS, &uid),
            bus::adapter::responses_subject(NS, &uid),
        ] {
            for body in [
                &b"\xff\x00garbage"[..],
                b"{}",
                br#"{"node_id":"AAAAAAAAAAAAAAAA","id":"AAAAAAAAAAAAAAAA","type":99}"#,
                br#"{"node_id":"AAAAAAAAAAAAAAAA","id":"AAAAAAAAAAAAAAAA","type":3,"opts":null}"#,
            ] {
                raw.publish(subject.clone(), Default::default(), body.to_vec().into())
                    .await
                    .expect("publish");
            }
            let mut h = bus::transport::Headers::new();
            h.insert(bus::adapter::REQUEST_HEADER, "not-a-sid");
            raw.publish(subject.clone(), h, "x".into()).await.expect("publish");
            let mut h = bus::transport::Headers::new();
            h.insert(bus::adapter::BYE_HEADER, "1");
            raw.publish(subject.clone(), h, b"\xff\xfe".to_vec().into()).await.expect("publish");
        }
    }
    let (after, took) = fetch(&a).await;
    assert_eq!(after.len(), 2, "both nodes still answer and still know each other");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(fetch(&b).await.0.len(), 2);
}
