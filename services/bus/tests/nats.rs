//! The NATS bus against a real, private `nats-server` with JetStream.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::{Bus, Control, Message, NatsBus, NatsConfig, Payload, Publish, Sink};
use testkit::NatsServer;
use tokio::sync::mpsc;

/// A sink that forwards what it receives to the test.
struct Chan(mpsc::UnboundedSender<Arc<Message>>, mpsc::UnboundedSender<Control>);

#[async_trait]
impl Sink for Chan {
    async fn deliver(&self, m: Arc<Message>) {
        let _ = self.0.send(m);
    }
    async fn control(&self, c: Control) {
        let _ = self.1.send(c);
    }
}

struct Node {
    bus: NatsBus,
    msgs: mpsc::UnboundedReceiver<Arc<Message>>,
    ctl: mpsc::UnboundedReceiver<Control>,
}

async fn node(url: &str, id: &str) -> Node {
    let mut cfg = NatsConfig::new(url, id);
    cfg.history_in_memory = true;
    let bus = NatsBus::connect(cfg).await.expect("connects");
    let (mt, msgs) = mpsc::unbounded_channel();
    let (ct, ctl) = mpsc::unbounded_channel();
    bus.attach(Arc::new(Chan(mt, ct)));
    Node { bus, msgs, ctl }
}

fn event(room: &str, n: u64) -> Publish {
    Publish {
        tenant: "acme".into(),
        room: room.into(),
        payload: Payload::Event { event: "e".into(), data: serde_json::json!({"n": n}) },
        from: Some("alice".into()),
        origin_conn: Some("conn-1".into()),
        echo: false,
        trace: Default::default(),
    }
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a message within 5 s")
        .expect("open")
}

#[tokio::test]
async fn delivers_in_order_only_to_interested_nodes() {
    let nats = NatsServer::start().await;
    let a = node(&nats.url(), "a").await;
    let mut b = node(&nats.url(), "b").await;
    let mut c = node(&nats.url(), "c").await;
    b.bus.set_interest("acme", "chat.room", true).await.expect("interest");

    let mut offsets = Vec::new();
    for n in 0..50 {
        offsets.push(a.bus.publish(event("chat.room", n)).await.expect("publish").offset);
    }
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets grow: {offsets:?}");
    for (n, off) in offsets.iter().enumerate() {
        let m = recv(&mut b.msgs).await;
        assert_eq!(m.room, "chat.room");
        assert_eq!(m.offset, *off, "delivered with the publish's offset, in order");
        assert_eq!(m.payload, Payload::Event { event: "e".into(), data: serde_json::json!({"n": n}) });
        assert_eq!(m.from.as_deref(), Some("alice"));
        assert_eq!(m.origin_conn, None, "another node's connection id is meaningless here");
    }
    // A marker on another room that c is interested in proves c is live and got nothing
    // of chat.room.
    c.bus.set_interest("acme", "marker", true).await.expect("interest");
    a.bus.publish(event("marker", 0)).await.expect("publish");
    assert_eq!(recv(&mut c.msgs).await.room, "marker");
    assert!(c.msgs.try_recv().is_err(), "c has no member of chat.room and received none of it");

    // Interest withdrawn: b stops receiving.
    b.bus.set_interest("acme", "chat.room", false).await.expect("interest");
    b.bus.set_interest("acme", "marker", true).await.expect("interest");
    a.bus.publish(event("chat.room", 99)).await.expect("publish");
    a.bus.publish(event("marker", 1)).await.expect("publish");
    assert_eq!(recv(&mut b.msgs).await.room, "marker");
}

#[tokio::test]
async fn own_connection_ids_survive_and_presence_has_no_offset() {
    let nats = NatsServer::start().await;
    let mut a = node(&nats.url(), "a").await;
    a.bus.set_interest("acme", "r", true).await.expect("interest");
    let p = a.bus.publish(event("r", 1)).await.expect("publish");
    let m = recv(&mut a.msgs).await;
    assert_eq!(m.origin_conn.as_deref(), Some("conn-1"));
    assert_eq!(m.id, p.id);
    let mut presence = event("r", 0);
    presence.payload =
        Payload::PresenceJoin { sub: "bob".into(), meta: Some(serde_json::json!({"n": "Bob"})) };
    a.bus.publish(presence.clone()).await.expect("publish");
    let m = recv(&mut a.msgs).await;
    assert_eq!(m.payload, presence.payload);
    assert_eq!(m.offset, 0);
}

#[tokio::test]
async fn control_messages_reach_every_node_and_nodes_know_each_other() {
    let nats = NatsServer::start().await;
    let mut a = node(&nats.url(), "a").await;
    let mut b = node(&nats.url(), "b").await;
    let kick = Control::Kick { tenant: "acme".into(), sub: "mallory".into() };
    a.bus.control(kick.clone()).await.expect("control");
    assert_eq!(recv(&mut a.ctl).await, kick);
    assert_eq!(recv(&mut b.ctl).await, kick);
    testkit::eventually(Duration::from_secs(3), "both nodes known", || a.bus.nodes() == vec!["a", "b"]).await;
    b.bus.leave().await;
    testkit::eventually(Duration::from_secs(3), "b forgotten after leaving", || a.bus.nodes() == vec!["a"])
        .await;
}

#[tokio::test]
async fn publish_fails_fast_while_nats_is_down_and_recovers() {
    let mut nats = NatsServer::start().await;
    let mut a = node(&nats.url(), "a").await;
    a.bus.set_interest("acme", "r", true).await.expect("interest");
    a.bus.publish(event("r", 0)).await.expect("publish");
    recv(&mut a.msgs).await;

    nats.kill();
    let started = std::time::Instant::now();
    let r = a.bus.publish(event("r", 1)).await;
    assert!(r.is_err(), "a publish that cannot reach the bus says so");
    assert!(started.elapsed() < Duration::from_secs(10), "and does not hang");
    testkit::eventually(Duration::from_secs(5), "ping reports the outage", || {
        futures_util::FutureExt::now_or_never(a.bus.ping()).is_some_and(|r| r.is_err())
    })
    .await;

    nats.restart().await;
    // The client reconnects by itself; publishing resumes and the subscription is back.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if a.bus.publish(event("r", 2)).await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "publishing did not resume after NATS came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let m = recv(&mut a.msgs).await;
        if m.payload == (Payload::Event { event: "e".into(), data: serde_json::json!({"n": 2}) }) {
            break;
        }
    }
}

#[tokio::test]
async fn history_replays_in_order_and_admits_gaps() {
    let nats = NatsServer::start().await;
    let mut cfg = NatsConfig::new(nats.url(), "h");
    cfg.history_in_memory = true;
    cfg.history_max_per_room = 5;
    let bus = NatsBus::connect(cfg).await.expect("connects");
    let mut offs = Vec::new();
    for n in 0..4 {
        offs.push(bus.publish(event("r.1", n)).await.expect("publish").offset);
        // Another room's events interleave in the stream's sequence.
        bus.publish(event("other", n)).await.expect("publish");
    }
    assert_eq!(bus.last_offset("acme", "r.1").await.expect("last"), offs[3]);
    assert_eq!(bus.last_offset("acme", "never").await.expect("last"), 0);

    let r = bus.history("acme", "r.1", offs[1], 100).await.expect("history");
    assert_eq!(r.messages.iter().map(|m| m.offset).collect::<Vec<_>>(), offs[2..].to_vec());
    assert!(r.complete);
    assert_eq!(r.last, offs[3]);
    assert_eq!(
        r.messages[0].payload,
        Payload::Event { event: "e".into(), data: serde_json::json!({"n": 2}) }
    );

    let r = bus.history("acme", "r.1", offs[3] + 1_000, 100).await.expect("history");
    assert!(!r.complete, "an offset beyond the stream's end (from before a reset) promises nothing");

    let r = bus.history("acme", "r.1", 0, 100).await.expect("history");
    assert_eq!(r.messages.len(), 4);
    assert!(r.complete, "nothing was ever dropped");

    let r = bus.history("acme", "r.1", offs[0], 1).await.expect("history");
    assert_eq!(r.messages.len(), 1);
    assert!(!r.complete, "capped");

    // Past the per-room limit the oldest events go: a resume from before them is not
    // complete.
    for n in 4..8 {
        bus.publish(event("r.1", n)).await.expect("publish");
    }
    let r = bus.history("acme", "r.1", offs[0], 100).await.expect("history");
    assert!(!r.complete, "events after offs[0] were dropped by the per-room limit");
    let latest = bus.last_offset("acme", "r.1").await.expect("last");
    let r = bus.history("acme", "r.1", latest, 100).await.expect("history");
    assert!(r.messages.is_empty() && r.complete);
}

/// A resume after a long outage reads thousands of events: they come back in batches,
/// every one in order, and a history trimmed under the resume point is not passed off as
/// complete.
#[tokio::test]
async fn a_long_history_is_read_whole_in_order_across_batches() {
    let nats = NatsServer::start().await;
    let mut cfg = NatsConfig::new(nats.url(), "h");
    cfg.history_in_memory = true;
    cfg.history_max_per_room = 1_000;
    let bus = NatsBus::connect(cfg).await.expect("connects");
    let mut offs = Vec::new();
    for n in 0..1_500 {
        offs.push(bus.publish(event("long", n)).await.expect("publish").offset);
        if n % 3 == 0 {
            bus.publish(event("other", n)).await.expect("publish");
        }
    }
    // The room keeps its newest 1,000: offs[500..]. From offs[510], 989 events follow,
    // more than the direct reads and more than one fetch.
    let r = bus.history("acme", "long", offs[510], 10_000).await.expect("history");
    assert_eq!(r.messages.iter().map(|m| m.offset).collect::<Vec<_>>(), offs[511..].to_vec());
    assert!(
        r.messages.iter().zip(511u64..).all(
            |(m, n)| m.payload == Payload::Event { event: "e".into(), data: serde_json::json!({"n": n}) }
        )
    );
    assert!(r.complete);
    assert_eq!(r.last, offs[1_499]);

    let r = bus.history("acme", "long", offs[510], 600).await.expect("history");
    assert_eq!(r.messages.iter().map(|m| m.offset).collect::<Vec<_>>(), offs[511..1_111].to_vec());
    assert!(!r.complete, "capped at 600");
    assert_eq!(r.last, offs[1_499]);

    let r = bus.history("acme", "long", offs[100], 10_000).await.expect("history");
    assert!(!r.complete, "events after offs[100] were dropped by the per-room limit");
}

/// Nodes started with different history limits (a changed setting, a rolling upgrade):
/// the newest applies to the stream, and every node judges completeness by the stream's
/// limit, not its own setting, so a smaller limit set elsewhere is never a silent gap.
#[tokio::test]
async fn the_history_limit_in_force_is_the_streams() {
    let nats = NatsServer::start().await;
    let with = |id: &str, per_room: i64| {
        let mut cfg = NatsConfig::new(nats.url(), id);
        cfg.history_in_memory = true;
        cfg.history_max_per_room = per_room;
        cfg
    };
    let a = NatsBus::connect(with("a", 10)).await.expect("connects");
    let b = NatsBus::connect(with("b", 3)).await.expect("connects");
    for n in 0..8 {
        a.publish(event("r", n)).await.expect("publish");
    }
    let r = a.history("acme", "r", 0, 100).await.expect("history");
    assert_eq!(r.messages.len(), 3, "the stream keeps 3, as b set it");
    assert!(!r.complete, "five events were dropped: a must not call this complete");

    let c = NatsBus::connect(with("c", 20)).await.expect("connects");
    let first = c.publish(event("s", 0)).await.expect("publish").offset;
    for n in 1..15 {
        c.publish(event("s", n)).await.expect("publish");
    }
    let r = b.history("acme", "s", first, 100).await.expect("history");
    assert_eq!(r.messages.len(), 14, "the stream now keeps 20, whatever b's own setting says");
    assert!(r.complete);
}

#[tokio::test]
async fn credentials_are_required_when_the_server_asks_for_them() {
    let nats = NatsServer::start_with(&["--user", "sb", "--pass", "s3cret-pass"]).await;
    let mut anon = NatsConfig::new(nats.url(), "anon");
    anon.history_in_memory = true;
    anon.connect_timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    assert!(NatsBus::connect(anon).await.is_err(), "no credentials: refused");
    assert!(started.elapsed() < Duration::from_secs(15), "and says so in bounded time");
    let mut wrong = NatsConfig::new(nats.url(), "wrong");
    wrong.user = Some("sb".into());
    wrong.password = Some("nope".into());
    wrong.history_in_memory = true;
    wrong.connect_timeout = Duration::from_secs(2);
    assert!(NatsBus::connect(wrong).await.is_err(), "wrong password: refused");
    let mut right = NatsConfig::new(nats.url(), "right");
    right.user = Some("sb".into());
    right.password = Some("s3cret-pass".into());
    right.history_in_memory = true;
    let bus = NatsBus::connect(right.clone()).await.expect("right credentials connect");
    bus.publish(event("r", 0)).await.expect("publish");
    assert!(!format!("{right:?}").contains("s3cret-pass"), "Debug redacts the password");
}

/// A plain NATS server (no JetStream, the NATS Helm chart's default): the bus starts and
/// fans out, carries presence and control messages, but keeps no history, so every event
/// has offset 0 and a history read is incomplete (a resume answers `recovered: false`).
#[tokio::test]
async fn a_plain_nats_server_serves_fan_out_and_control_without_history() {
    let nats = NatsServer::plain().await;
    let a = node(&nats.url(), "a").await;
    let mut b = node(&nats.url(), "b").await;
    assert!(!a.bus.has_history() && !b.bus.has_history(), "no JetStream: no history");
    b.bus.set_interest("acme", "room", true).await.expect("interest");
    for n in 0..20 {
        let p = a.bus.publish(event("room", n)).await.expect("publish without JetStream");
        assert_eq!(p.offset, 0, "no offsets without history");
    }
    for n in 0..20 {
        let m = recv(&mut b.msgs).await;
        assert_eq!(m.payload, Payload::Event { event: "e".into(), data: serde_json::json!({"n": n}) });
        assert_eq!(m.offset, 0);
    }
    let mut presence = event("room", 0);
    presence.payload = Payload::PresenceJoin { sub: "bob".into(), meta: None };
    a.bus.publish(presence.clone()).await.expect("presence");
    assert_eq!(recv(&mut b.msgs).await.payload, presence.payload);
    let kick = Control::Kick { tenant: "acme".into(), sub: "mallory".into() };
    a.bus.control(kick.clone()).await.expect("control");
    assert_eq!(recv(&mut b.ctl).await, kick);
    let h = b.bus.history("acme", "room", 0, 100).await.expect("history answers");
    assert!(!h.complete && h.messages.is_empty(), "no history: never complete");
    assert_eq!(b.bus.last_offset("acme", "room").await.expect("last offset"), 0);
    testkit::eventually(Duration::from_secs(3), "nodes known", || a.bus.nodes() == vec!["a", "b"]).await;
}

#[tokio::test]
async fn jetstream_means_history() {
    let nats = NatsServer::start().await;
    assert!(node(&nats.url(), "a").await.bus.has_history());
}

/// A sink that holds its first delivery until the test lets it go, as an edge does whose
/// sockets' queues are full.
struct Stuck(mpsc::UnboundedSender<Arc<Message>>, Arc<tokio::sync::Semaphore>);

#[async_trait]
impl Sink for Stuck {
    async fn deliver(&self, m: Arc<Message>) {
        let _ = self.1.acquire().await.expect("open").forget();
        self.1.add_permits(1);
        let _ = self.0.send(m);
    }
    async fn control(&self, _: Control) {}
}

#[tokio::test]
async fn events_the_client_library_dropped_are_read_back_from_the_stream_in_order() {
    let nats = NatsServer::start().await;
    let a = node(&nats.url(), "a").await;
    // b's client library keeps at most 4 messages per subscription and drops the rest,
    // as async-nats does for any subscription read too slowly (a slow consumer).
    let mut cfg = NatsConfig::new(nats.url(), "b");
    cfg.history_in_memory = true;
    cfg.subscription_capacity = 4;
    let b = NatsBus::connect(cfg).await.expect("connects");
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (tx, mut msgs) = mpsc::unbounded_channel();
    b.attach(Arc::new(Stuck(tx, gate.clone())));
    b.set_interest("acme", "r", true).await.expect("interest");

    let mut offsets = Vec::new();
    for n in 0..700 {
        offsets.push(a.bus.publish(event("r", n)).await.expect("publish").offset);
    }
    // Everything is stored; b's room task is stuck on the first event, so most of the
    // rest were dropped by its client library. Now b catches up.
    gate.add_permits(1);
    for (n, off) in offsets.iter().enumerate() {
        let m = recv(&mut msgs).await;
        assert_eq!(m.offset, *off, "event {n}: every event once, in order");
        assert_eq!(m.payload, Payload::Event { event: "e".into(), data: serde_json::json!({"n": n}) });
    }
    // And live delivery goes on after the gap.
    let off = a.bus.publish(event("r", 700)).await.expect("publish").offset;
    assert_eq!(recv(&mut msgs).await.offset, off);
    assert!(msgs.try_recv().is_err(), "nothing twice");
}

#[tokio::test]
async fn a_publish_tried_again_is_stored_once() {
    // The retry inside `publish` after a lost acknowledgement carries the same
    // `Nats-Msg-Id`; the stream keeps one copy. Shown here by publishing the same id
    // twice through the raw JetStream API, as the retry does.
    let nats = NatsServer::start().await;
    let mut a = node(&nats.url(), "a").await;
    a.bus.set_interest("acme", "r", true).await.expect("interest");
    let first = a.bus.publish(event("r", 0)).await.expect("publish");
    let m = recv(&mut a.msgs).await;
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let js = async_nats::jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", first.id.as_str());
    let ack = js
        .publish_with_headers("sb.s.acme.r", headers, bytes::Bytes::from_static(b"again"))
        .await
        .expect("sent")
        .await
        .expect("acknowledged");
    assert!(ack.duplicate, "the stream recognised the id");
    assert_eq!(ack.sequence, m.offset, "and kept the first copy");
    let next = a.bus.publish(event("r", 1)).await.expect("publish");
    assert_eq!(recv(&mut a.msgs).await.offset, next.offset, "no second copy was delivered");
}

#[tokio::test]
async fn a_restarted_node_publishes_anew_not_as_a_retry() {
    // A node restarted within the stream's duplicate window counts its messages from 1
    // again; its ids must still be new, or the stream would drop its publishes as retries.
    let nats = NatsServer::start().await;
    let mut watcher = node(&nats.url(), "watcher").await;
    watcher.bus.set_interest("acme", "r", true).await.expect("interest");
    let before = node(&nats.url(), "edge0").await;
    let first = before.bus.publish(event("r", 0)).await.expect("publish");
    drop(before);
    let after = node(&nats.url(), "edge0").await;
    let second = after.bus.publish(event("r", 1)).await.expect("publish");
    assert_ne!(first.id, second.id, "ids never repeat across restarts");
    assert!(second.offset > first.offset, "stored as a new event: {first:?} {second:?}");
    assert_eq!(recv(&mut watcher.msgs).await.offset, first.offset);
    assert_eq!(recv(&mut watcher.msgs).await.offset, second.offset, "and delivered");
}
