//! A client that stops reading: once its outgoing queue is full, the deliveries it cannot
//! take are counted (`switchboard_deliveries_dropped_total`), the other subscribers keep
//! getting everything, and the edge neither blocks nor panics.

use std::sync::Arc;
use std::time::Duration;

use bus::{AdapterState, Bus, LocalBus, Payload, Publish};
use edge::{Edge, EdgeConfig};
use loadtest::sio::{self, Endpoint, Packet};
use serde_json::json;

use telemetry::Metrics;

mod common;
use common::{TENANT, serve, store, token};

const ROOM: &str = "firehose";

async fn subscribed(port: u16, sub: &str) -> sio::Conn {
    let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}/{TENANT}")).expect("endpoint");
    let auth = loadtest::token::auth_json("token", &token(sub), None);
    let (mut conn, _) = sio::connect(&ep, None, &auth, Duration::from_secs(10)).await.expect("connects");
    let prefix = conn.prefix.clone();
    let id = conn.emit_with_ack("subscribe", &json!({ "room": ROOM }).to_string()).await.expect("send");
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), conn.recv()).await.expect("ack").expect("open");
        match sio::parse(&f, &prefix) {
            Packet::Ack { id: got, body } if got == id => {
                assert!(body.contains("\"ok\":true"), "{body}");
                return conn;
            }
            Packet::Ping => conn.pong().await.expect("pong"),
            _ => {}
        }
    }
}

fn dropped(metrics: &Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("switchboard_deliveries_dropped_total{") && l.contains(TENANT))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_costs_only_its_own_deliveries() {
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let metrics = Arc::new(Metrics::new());
    let (_edge, router) =
        Edge::new(EdgeConfig::default(), store().await, bus.clone(), AdapterState::local(), metrics.clone());
    let port = serve(router).await;

    // One subscriber that never reads again, one that reads everything.
    let _stalled = subscribed(port, "stalled").await;
    let mut reader = subscribed(port, "reader").await;
    let prefix = reader.prefix.clone();
    const N: u64 = 1500;
    let pad = "x".repeat(32 * 1024);
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for n in 0..N {
                let p = Publish {
                    tenant: TENANT.into(),
                    room: ROOM.into(),
                    payload: Payload::Event { event: "m".into(), data: json!({"n": n, "pad": pad}) },
                    from: None,
                    origin_conn: None,
                    echo: true,
                };
                bus.publish(p).await.expect("publish");
            }
        })
    };
    let mut got = 0u64;
    while got < N {
        let f = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("the reader keeps receiving")
            .expect("open");
        match sio::parse(&f, &prefix) {
            Packet::Event { name: "m", .. } => got += 1,
            Packet::Ping => reader.pong().await.expect("pong"),
            _ => {}
        }
    }
    publisher.await.expect("publisher");
    // 1,500 events of 32 KiB overflow what the kernel buffers (a few MiB) plus the
    // socket's 1,024-packet queue: the stalled client's surplus is counted as dropped.
    let d = dropped(&metrics);
    assert!(d > 0 && d < N, "dropped deliveries counted: {d}");
}
