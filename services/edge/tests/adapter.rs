//! socketioxide's cross-node operators through `bus::NatsAdapter`: three in-process edges
//! on one private nats-server, real Socket.IO clients (the load generator's lean client)
//! connected to each, and the operators called on one node's `Edge::io()`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{AdapterConfig, Bus, NatsBus, NatsConfig};
use edge::{Edge, EdgeConfig};
use futures_util::StreamExt;
use serde_json::json;

use telemetry::Metrics;
use testkit::NatsServer;

#[path = "common/cluster.rs"]
mod cluster;
mod common;
use cluster::{HasEdge, NS, await_sockets, client, fetch, nodes_of, ops};
use common::{serve, store};

/// Far above what any test waits: a request that returns quickly did not wait for it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One edge node serving on a free port.
struct Node {
    edge: Edge,
    port: u16,
    _bus: Arc<dyn Bus>,
}

impl HasEdge for Node {
    fn edge(&self) -> &Edge {
        &self.edge
    }
}

async fn node(nats: &str, name: &str) -> Node {
    let mut cfg = NatsConfig::new(nats, name);
    cfg.history_in_memory = true;
    let bus = NatsBus::connect(cfg).await.expect("nats");
    let adapter = bus
        .adapter_state()
        .with_config(AdapterConfig { request_timeout: REQUEST_TIMEOUT, ..AdapterConfig::default() });
    let bus: Arc<dyn Bus> = Arc::new(bus);
    let edge_cfg = EdgeConfig { node_id: name.into(), ..EdgeConfig::default() };
    let (edge, router) = Edge::new(edge_cfg, store().await, bus.clone(), adapter, Arc::new(Metrics::new()));
    let port = serve(router).await;
    Node { edge, port, _bus: bus }
}

/// A node on its own runtime and thread, so that the test can kill it outright: its tasks
/// and its NATS connection die with the runtime, and nothing says goodbye.
struct Doomed {
    port: u16,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn doomed_node(nats: String, name: &'static str) -> Doomed {
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let (kill, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let n = node(&nats, name).await;
            let _ = port_tx.send(n.port);
            let _ = kill_rx.await;
            // Dropped with the runtime, not closed: no goodbye.
            std::mem::forget(n);
        });
        rt.shutdown_background();
    });
    let port = port_rx.recv_timeout(Duration::from_secs(20)).expect("the doomed node starts");
    Doomed { port, kill: Some(kill), thread: Some(thread) }
}

impl Doomed {
    fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Doomed {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_reach_every_node() {
    let nats = NatsServer::start().await;
    let a = node(&nats.url(), "a").await;
    let b = node(&nats.url(), "b").await;
    let c = node(&nats.url(), "c").await;
    let mut a1 = client(a.port, "a1", &["chat"]).await;
    let mut b1 = client(b.port, "b1", &["chat"]).await;
    let mut c1 = client(c.port, "c1", &["other"]).await;

    // fetch_sockets: every socket on every node, each with its own node's id.
    await_sockets(&a, 3, Duration::from_secs(5)).await;
    let (all, took) = fetch(&a).await;
    assert_eq!(nodes_of(&all).len(), 3, "one socket per node");
    assert!(took < Duration::from_secs(2), "a request waits only for live nodes: {took:?}");
    let (in_chat, _) = ops(&a).to("chat").fetch_sockets().await.map(|s| (s, ())).expect("fetch chat");
    assert_eq!(in_chat.len(), 2);

    // rooms: from every node.
    let rooms: HashSet<String> =
        ops(&a).rooms().await.expect("rooms").into_iter().map(|r| r.to_string()).collect();
    assert!(rooms.contains("chat") && rooms.contains("other"), "{rooms:?}");

    // to(room).emit: every node's sockets of the room, no others.
    ops(&a).to("chat").emit("hello", &json!({"n": 1})).await.expect("emit");
    assert!(a1.event("hello", Duration::from_secs(5)).await.is_some(), "local socket");
    assert!(b1.event("hello", Duration::from_secs(5)).await.is_some(), "remote socket");
    ops(&a).to("other").emit("marker", &json!({})).await.expect("emit");
    let first = c1.event("marker", Duration::from_secs(5)).await.expect("c1 gets its room's event");
    assert!(!first.contains("hello"));
    assert!(c1.event("hello", Duration::from_millis(300)).await.is_none(), "c1 is not in chat");

    // broadcast with acks: the remote client's ack comes back.
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

    // join / leave on remote sockets.
    ops(&a).to("other").join("extra").await.expect("join");
    let (extra, _) = ops(&a).to("extra").fetch_sockets().await.map(|s| (s, ())).expect("fetch extra");
    assert_eq!(extra.len(), 1, "c1 joined extra on node c");
    ops(&b).to("extra").emit("in-extra", &json!({})).await.expect("emit");
    assert!(c1.event("in-extra", Duration::from_secs(5)).await.is_some());
    ops(&a).to("extra").leave("extra").await.expect("leave");
    let (extra, _) = ops(&a).to("extra").fetch_sockets().await.map(|s| (s, ())).expect("fetch extra");
    assert!(extra.is_empty(), "c1 left extra");

    // disconnect remote sockets.
    ops(&a).to("other").disconnect().await.expect("disconnect");
    assert!(c1.disconnected(Duration::from_secs(5)).await, "c1 was disconnected by node a");
    await_sockets(&a, 2, Duration::from_secs(5)).await;
    drop((a, b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_adapter_subjects_is_dropped() {
    let nats = NatsServer::start().await;
    let a = node(&nats.url(), "a").await;
    let b = node(&nats.url(), "b").await;
    let _a1 = client(a.port, "a1", &["chat"]).await;
    let _b1 = client(b.port, "b1", &["chat"]).await;
    await_sockets(&a, 2, Duration::from_secs(5)).await;
    let (all, _) = fetch(&a).await;
    let raw = async_nats::connect(nats.url()).await.expect("raw client");
    let all_subject = bus::adapter::requests_subject(NS);
    for uid in nodes_of(&all) {
        for subject in [
            all_subject.clone(),
            bus::adapter::node_requests_subject(NS, &uid),
            bus::adapter::responses_subject(NS, &uid),
        ] {
            for body in [
                &b"\xff\x00garbage"[..],
                b"{}",
                b"[]",
                br#"{"node_id":"AAAAAAAAAAAAAAAA","id":"AAAAAAAAAAAAAAAA","type":99}"#,
                br#"{"node_id":"AAAAAAAAAAAAAAAA","id":"AAAAAAAAAAAAAAAA","type":3,"opts":null}"#,
                br#"{"node_id":"AAAAAAAAAAAAAAAA","id":"AAAAAAAAAAAAAAAA","type":4,"rooms":null,"opts":{"flags":2,"rooms":[],"except":[],"sid":null,"server_id":null}}"#,
            ] {
                raw.publish(subject.clone(), body.to_vec().into()).await.expect("publish");
            }
            let mut h = async_nats::HeaderMap::new();
            h.insert(bus::adapter::REQUEST_HEADER, "not-a-sid");
            raw.publish_with_headers(subject.clone(), h, "x".into()).await.expect("publish");
            let mut h = async_nats::HeaderMap::new();
            h.insert(bus::adapter::BYE_HEADER, "1");
            raw.publish_with_headers(subject.clone(), h, b"\xff\xfe".to_vec().into()).await.expect("publish");
        }
    }
    raw.flush().await.expect("flush");
    // Both nodes still answer, promptly, and still see each other.
    let (after, took) = fetch(&a).await;
    assert_eq!(after.len(), 2);
    assert!(took < Duration::from_secs(2), "{took:?}");
    let (from_b, _) = fetch(&b).await;
    assert_eq!(from_b.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_nodes_are_not_waited_for_and_new_nodes_answer_within_a_second() {
    let nats = NatsServer::start().await;
    let a = node(&nats.url(), "a").await;
    let b = node(&nats.url(), "b").await;
    let mut c = doomed_node(nats.url(), "c");
    let _a1 = client(a.port, "a1", &["chat"]).await;
    let _b1 = client(b.port, "b1", &["chat"]).await;
    let _c1 = client(c.port, "c1", &["chat"]).await;
    await_sockets(&a, 3, Duration::from_secs(5)).await;

    // Node c dies without a goodbye. A request started now waits for it only until it is
    // forgotten (15 s without a heartbeat), far less than the request timeout.
    c.kill();
    let (s, took) = fetch(&a).await;
    assert_eq!(s.len(), 2);
    assert!(took < Duration::from_secs(17), "waited {took:?} for a dead node");
    assert!(took + Duration::from_secs(10) < REQUEST_TIMEOUT);
    // Once forgotten, nothing waits for it.
    let (s, took) = fetch(&a).await;
    assert_eq!(s.len(), 2);
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (s, took) = fetch(&b).await;
    assert_eq!(s.len(), 2);
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A node started later is known, and answers, within a second of having the tenant.
    let d = node(&nats.url(), "d").await;
    let _d1 = client(d.port, "d1", &[]).await;
    let joined = Instant::now();
    await_sockets(&a, 3, Duration::from_secs(1)).await;
    assert!(joined.elapsed() < Duration::from_secs(1));
    let (s, _) = fetch(&d).await;
    assert_eq!(s.len(), 3, "the new node sees the others too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_leaving_a_namespace_says_goodbye() {
    let nats = NatsServer::start().await;
    let a = node(&nats.url(), "a").await;
    let b = node(&nats.url(), "b").await;
    let _a1 = client(a.port, "a1", &[]).await;
    let _b1 = client(b.port, "b1", &[]).await;
    await_sockets(&a, 2, Duration::from_secs(5)).await;
    // Deleting the namespace on b closes its adapter: a forgets b at once, not after 15 s.
    b.edge.io().delete_ns(NS);
    let start = Instant::now();
    await_sockets(&a, 1, Duration::from_secs(2)).await;
    let (_, took) = fetch(&a).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}
