//! A client that stops reading: once its outgoing queue is full, the deliveries it cannot
//! take are counted (`switchboard_deliveries_dropped_total`), the other subscribers keep
//! getting everything, and the edge neither blocks nor panics. The stalled client gets
//! everything up to the first event it missed, then `session_end {code: "slow_consumer"}`,
//! and resuming from its last offset replays the rest: no gap is silent (SPEC 3.6, 3.7).

use std::sync::Arc;
use std::time::Duration;

use bus::{AdapterState, Bus, LocalBus, Payload, Publish};
use edge::{Edge, EdgeConfig};
use serde_json::json;
use testkit::sio::{self, Endpoint, Packet};

use telemetry::Metrics;

mod common;
use common::{TENANT, serve, store, token};

const ROOM: &str = "firehose";

async fn subscribed(port: u16, sub: &str) -> sio::Conn {
    subscribed_with(port, sub, None).await
}

async fn subscribed_with(port: u16, sub: &str, resume: Option<&str>) -> sio::Conn {
    let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}/{TENANT}")).expect("endpoint");
    let auth = loadtest::token::auth_json("token", &token(sub), resume);
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
async fn a_client_that_stops_reading_costs_only_its_own_deliveries_and_resumes_without_a_gap() {
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new());
    let metrics = Arc::new(Metrics::new());
    let (_edge, router) =
        Edge::new(EdgeConfig::default(), store().await, bus.clone(), AdapterState::local(), metrics.clone());
    let port = serve(router).await;

    // One subscriber that stops reading, one that reads everything.
    let mut stalled = subscribed(port, "stalled").await;
    let mut reader = subscribed(port, "reader").await;
    let prefix = reader.prefix.clone();
    // More than the socket's queue (1,024) and the kernel's buffers hold, fewer than the
    // room history keeps (1,000 past the first miss), so that the resume can be complete.
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
                    trace: Default::default(),
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

    // The stalled client reads again: a gap-free prefix, then `slow_consumer`.
    let session = stalled.session_id.clone();
    let (offsets, code) = drain_until_session_end(&mut stalled).await;
    assert_eq!(code, "slow_consumer");
    let got = offsets.len() as u64;
    assert!(got > 0 && got < N, "it got a prefix: {got}");
    let last = *offsets.last().expect("some");
    assert!(metrics.encode().contains("code=\"slow_consumer\""), "session end counted");

    // It resumes from the last offset it saw and gets exactly the rest, in order.
    let resume = format!(r#"{{"session":"{session}","offsets":{{"{ROOM}":"{last}"}}}}"#);
    let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}/{TENANT}")).expect("endpoint");
    let auth = loadtest::token::auth_json("token", &token("stalled"), Some(&resume));
    let (mut back, _) = sio::connect(&ep, None, &auth, Duration::from_secs(10)).await.expect("resumes");
    assert!(back.recovered, "recovered: true");
    let prefix = back.prefix.clone();
    let mut n = got;
    while n < N {
        let f =
            tokio::time::timeout(Duration::from_secs(30), back.recv()).await.expect("replay").expect("open");
        match sio::parse(&f, &prefix) {
            Packet::Event { name: "m", rest, .. } => {
                let args: Vec<serde_json::Value> = serde_json::from_str(&format!("[0{rest}")).expect("args");
                assert_eq!(args[1]["n"].as_u64(), Some(n), "replayed in order, no duplicate");
                n += 1;
            }
            Packet::Ping => back.pong().await.expect("pong"),
            _ => {}
        }
    }
}

/// What the stalled client reads once it reads again: the offsets of the events it got
/// (checked to be `0, 1, 2, ...` by `n`), until `session_end`, whose code is returned.
async fn drain_until_session_end(c: &mut sio::Conn) -> (Vec<u64>, String) {
    let prefix = c.prefix.clone();
    let mut offsets = Vec::new();
    loop {
        let f = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("session_end arrives")
            .expect("open until session_end");
        match sio::parse(&f, &prefix) {
            Packet::Event { name: "m", rest, .. } => {
                let args: Vec<serde_json::Value> = serde_json::from_str(&format!("[0{rest}")).expect("args");
                assert_eq!(args[1]["n"].as_u64(), Some(offsets.len() as u64), "in order, without a gap");
                offsets.push(args[2]["offset"].as_str().and_then(|o| o.parse().ok()).expect("offset"));
            }
            Packet::Event { name: "session_end", rest, .. } => {
                let args: Vec<serde_json::Value> = serde_json::from_str(&format!("[0{rest}")).expect("args");
                return (offsets, args[1]["code"].as_str().unwrap_or_default().to_string());
            }
            Packet::Ping => c.pong().await.expect("pong"),
            _ => {}
        }
    }
}
