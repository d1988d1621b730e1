//! Webhooks and the subscribe hook against real HTTP receivers on 127.0.0.1, started by
//! the tests: signatures, retries after 500s and timeouts, order, hostile answers (huge
//! bodies, slow drips, redirects), and one tenant's dead endpoint never delaying another.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use hooks::{Decision, HttpTransport, SubscribeHooks, SubscribeRequest, Transport, WebhookOptions, Webhooks};
use policy::{HookEvent, RetrySchedule, Secret, SubscribeHookConfig, WebhookConfig};
use tokio::sync::mpsc;

/// What a receiver got.
#[derive(Debug, Clone)]
struct Got {
    headers: HeaderMap,
    body: Bytes,
}

type Behave = Arc<dyn Fn(usize) -> Response + Send + Sync>;

#[derive(Clone)]
struct Rx {
    tx: mpsc::UnboundedSender<Got>,
    calls: Arc<AtomicUsize>,
    behave: Behave,
}

async fn receive(State(rx): State<Rx>, headers: HeaderMap, body: Bytes) -> Response {
    let n = rx.calls.fetch_add(1, Ordering::SeqCst);
    let _ = rx.tx.send(Got { headers, body });
    let resp = (rx.behave)(n);
    // A test's way to answer late: the head itself waits.
    if let Some(ms) = resp.headers().get("x-test-delay-ms").and_then(|v| v.to_str().ok()?.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    resp
}

/// A receiver on 127.0.0.1 answering the n-th call (0-based) with `behave(n)`.
async fn receiver(
    behave: impl Fn(usize) -> Response + Send + Sync + 'static,
) -> (String, mpsc::UnboundedReceiver<Got>, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let state = Rx { tx, calls: Arc::clone(&calls), behave: Arc::new(behave) };
    let app = Router::new().route("/hook", post(receive)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx, calls)
}

fn ok() -> Response {
    (StatusCode::OK, "{}").into_response()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Got>, within: Duration) -> Got {
    tokio::time::timeout(within, rx.recv()).await.expect("a request in time").expect("receiver alive")
}

fn secret(c: char) -> Secret {
    Secret::new(std::iter::repeat_n(c, 32).collect::<String>())
}

fn event(i: usize, name: &str, room: &str) -> HookEvent {
    HookEvent {
        id: format!("evt_{i}"),
        name: name.into(),
        time_ms: i as i64,
        room: Some(room.into()),
        user: None,
        connection_id: None,
        code: None,
    }
}

fn cfg(url: &str, secrets: Vec<Secret>) -> WebhookConfig {
    WebhookConfig {
        url: url.into(),
        secrets,
        events: policy::WEBHOOK_EVENTS.iter().map(|s| s.to_string()).collect(),
    }
}

fn opts() -> WebhookOptions {
    WebhookOptions {
        batch_window: Duration::from_millis(100),
        batch_max: 100,
        queue: 1000,
        timeout: Duration::from_millis(400),
        retry: RetrySchedule {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            max_attempts: 4,
            max_total: Duration::from_secs(5),
        },
    }
}

fn transport() -> Arc<dyn Transport> {
    Arc::new(HttpTransport::new(16 * 1024).expect("client"))
}

fn webhooks(metrics: &Arc<telemetry::Metrics>) -> Webhooks {
    Webhooks::new(transport(), Arc::clone(metrics), opts())
}

fn counted(m: &telemetry::Metrics, tenant: &str, outcome: &str) -> u64 {
    m.webhook_events
        .get_or_create(&vec![("tenant", tenant.to_string()), ("outcome", outcome.to_string())])
        .get()
}

fn events_of(g: &Got) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&g.body).expect("json body");
    assert!(v["time_ms"].as_i64().is_some(), "time_ms");
    v["events"].as_array().expect("events").clone()
}

fn verify(g: &Got, s: &Secret) -> bool {
    let sig = g.headers.get("x-switchboard-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts: i64 = g
        .headers
        .get("x-switchboard-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    policy::verify_signature(s, sig, ts, &g.body)
}

#[tokio::test]
async fn batches_are_signed_with_both_secrets_while_rotating() {
    let (url, mut rx, _) = receiver(|_| ok()).await;
    let m = telemetry::Metrics::shared();
    let w = webhooks(&m);
    let (old, new) = (secret('o'), secret('n'));
    w.offer(
        "acme",
        &cfg(&url, vec![new.clone(), old.clone()]),
        vec![event(1, "room.occupied", "lobby"), event(2, "room.vacated", "lobby")],
    );
    let g = next(&mut rx, Duration::from_secs(2)).await;
    assert!(verify(&g, &old) && verify(&g, &new), "both secrets verify");
    assert!(!verify(&g, &secret('x')));
    // Tampering with the body breaks it.
    let tampered =
        Got { body: Bytes::from(String::from_utf8_lossy(&g.body).replace("lobby", "lobbx")), ..g.clone() };
    assert!(!verify(&tampered, &new));
    let evs = events_of(&g);
    assert_eq!(evs.len(), 2, "one batch");
    assert_eq!(evs[0]["name"], "room.occupied");
    assert_eq!(evs[0]["id"], "evt_1");
    assert_eq!(evs[0]["tenant"], "acme");
    assert!(g.headers.get("x-switchboard-webhook-id").is_some());
    // Events the tenant did not ask for are not sent.
    let mut only = cfg(&url, vec![new]);
    only.events = vec!["room.vacated".into()];
    w.offer("acme", &only, vec![event(3, "room.occupied", "a"), event(4, "room.vacated", "a")]);
    let evs = events_of(&next(&mut rx, Duration::from_secs(2)).await);
    assert_eq!(evs.iter().map(|e| e["id"].as_str().unwrap_or("")).collect::<Vec<_>>(), ["evt_4"]);
}

#[tokio::test]
async fn a_500_and_a_timeout_are_retried_with_the_same_id_and_body() {
    let (url, mut rx, _) = receiver(|n| match n {
        0 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        // No answer within the 400 ms deadline.
        1 => Response::builder()
            .status(200)
            .header("x-test-delay-ms", "1500")
            .body(Body::empty())
            .unwrap_or_default(),
        _ => ok(),
    })
    .await;
    let m = telemetry::Metrics::shared();
    let w = webhooks(&m);
    let start = Instant::now();
    w.offer("acme", &cfg(&url, vec![secret('a')]), vec![event(1, "room.occupied", "r")]);
    let tries: Vec<Got> = vec![
        next(&mut rx, Duration::from_secs(2)).await,
        next(&mut rx, Duration::from_secs(2)).await,
        next(&mut rx, Duration::from_secs(3)).await,
    ];
    let id = |g: &Got| g.headers.get("x-switchboard-webhook-id").cloned();
    assert!(tries.iter().all(|g| id(g) == id(&tries[0]) && g.body == tries[0].body), "same id and body");
    wait_for(|| counted(&m, "acme", "sent") == 1, "sent").await;
    assert_eq!(counted(&m, "acme", "retried"), 2);
    assert!(start.elapsed() >= Duration::from_millis(400), "the timeout was waited for");
}

/// A body that drips one byte every `every`, forever: only a deadline ends it.
fn drip(every: Duration) -> Body {
    Body::from_stream(futures_util::stream::unfold((), move |()| async move {
        tokio::time::sleep(every).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b" ")), ()))
    }))
}

async fn wait_for(mut check: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redirects_are_not_followed_and_refusals_are_dropped_and_counted() {
    let (elsewhere, mut elsewhere_rx, _) = receiver(|_| ok()).await;
    let target = elsewhere.clone();
    let (url, mut rx, calls) = receiver(move |_| {
        Response::builder()
            .status(307)
            .header("location", target.as_str())
            .body(Body::empty())
            .unwrap_or_default()
    })
    .await;
    let m = telemetry::Metrics::shared();
    let w = webhooks(&m);
    w.offer("acme", &cfg(&url, vec![secret('a')]), vec![event(1, "room.occupied", "r")]);
    next(&mut rx, Duration::from_secs(2)).await;
    wait_for(|| counted(&m, "acme", "dropped") == 1, "dropped").await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a 3xx is not retried");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), elsewhere_rx.recv()).await.is_err(),
        "the redirect target got nothing"
    );
}

#[tokio::test]
async fn retries_are_bounded_then_the_batch_is_dropped() {
    let (url, mut rx, calls) = receiver(|_| StatusCode::SERVICE_UNAVAILABLE.into_response()).await;
    let m = telemetry::Metrics::shared();
    let w = webhooks(&m);
    w.offer(
        "acme",
        &cfg(&url, vec![secret('a')]),
        vec![event(1, "room.occupied", "r"), event(2, "room.vacated", "r")],
    );
    next(&mut rx, Duration::from_secs(2)).await;
    wait_for(|| counted(&m, "acme", "dropped") == 2, "dropped after the last try").await;
    assert_eq!(calls.load(Ordering::SeqCst), 4, "max_attempts tries");
    assert_eq!(counted(&m, "acme", "retried"), 6, "2 events x 3 retries");
}

#[tokio::test]
async fn events_of_a_room_arrive_in_order_across_batches() {
    let (url, mut rx, _) = receiver(|_| ok()).await;
    let m = telemetry::Metrics::shared();
    let w = webhooks(&m);
    let c = cfg(&url, vec![secret('a')]);
    for chunk in 0..5 {
        let evs = (0..70)
            .map(|i| {
                let n = chunk * 70 + i;
                event(n, if n % 2 == 0 { "room.occupied" } else { "room.vacated" }, "r")
            })
            .collect();
        w.offer("acme", &c, evs);
    }
    let mut ids = Vec::new();
    let mut batches = 0;
    while ids.len() < 350 {
        let evs = events_of(&next(&mut rx, Duration::from_secs(3)).await);
        assert!(evs.len() <= 100, "at most 100 per batch");
        batches += 1;
        ids.extend(evs.iter().map(|e| e["id"].as_str().unwrap_or("").to_string()));
    }
    assert_eq!(ids, (0..350).map(|n| format!("evt_{n}")).collect::<Vec<_>>());
    assert!(batches >= 4, "{batches} batches");
}

#[tokio::test]
async fn a_dead_endpoint_never_delays_another_tenant() {
    // A "dead" endpoint: accepts connections, never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = format!("http://{}/hook", hole.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let (url, mut rx, _) = receiver(|_| ok()).await;
    let m = telemetry::Metrics::shared();
    let w = webhooks(&m);
    // The dead tenant's queue fills up: the rest are dropped at once, nothing waits.
    let small = Webhooks::new(transport(), Arc::clone(&m), WebhookOptions { queue: 10, ..opts() });
    let start = Instant::now();
    for i in 0..50 {
        small.offer("dead", &cfg(&dead, vec![secret('d')]), vec![event(i, "room.occupied", "r")]);
    }
    assert!(start.elapsed() < Duration::from_millis(50), "offer never waits: {:?}", start.elapsed());
    assert!(counted(&m, "dead", "dropped") >= 39, "queue overflow counted");
    for i in 0..20 {
        w.offer("dead", &cfg(&dead, vec![secret('d')]), vec![event(i, "room.occupied", "r")]);
    }
    let t0 = Instant::now();
    w.offer("live", &cfg(&url, vec![secret('l')]), vec![event(1, "room.occupied", "r")]);
    let g = next(&mut rx, Duration::from_secs(2)).await;
    let took = t0.elapsed();
    assert_eq!(events_of(&g)[0]["tenant"], "live");
    assert!(took < Duration::from_millis(400), "the live tenant waited {took:?}");
    println!("live tenant's batch arrived in {took:?} while another tenant's endpoint hangs");
}

fn hook_cfg(url: &str, cache_seconds: u64) -> SubscribeHookConfig {
    SubscribeHookConfig {
        url: url.into(),
        secret: secret('h'),
        rooms: vec!["private:*".into()],
        timeout_ms: 300,
        cache_seconds,
    }
}

fn req<'a>(room: &'a str, meta: &'a serde_json::Value) -> SubscribeRequest<'a> {
    SubscribeRequest { tenant: "acme", sub: "ann", room, meta: Some(meta), connection_id: "c1" }
}

#[tokio::test]
async fn the_subscribe_hook_allows_denies_with_a_reason_and_caches() {
    let (url, mut rx2, calls2) = receiver(|_| {
        (StatusCode::OK, axum::Json(serde_json::json!({"allow": false, "reason": "not in this team"})))
            .into_response()
    })
    .await;
    let (allow_url, _allow_rx, _) = receiver(|_| (StatusCode::OK, r#"{"allow":true}"#).into_response()).await;
    let m = telemetry::Metrics::shared();
    let h = SubscribeHooks::new(transport(), Arc::clone(&m));
    let meta = serde_json::json!({"team": "red"});
    assert_eq!(
        h.check(&hook_cfg(&url, 5), req("private:1", &meta)).await,
        Decision::Deny("not in this team".into())
    );
    let g = next(&mut rx2, Duration::from_secs(1)).await;
    let v: serde_json::Value = serde_json::from_slice(&g.body).expect("json");
    assert_eq!(
        (v["sub"].as_str(), v["room"].as_str(), v["connection_id"].as_str()),
        (Some("ann"), Some("private:1"), Some("c1"))
    );
    assert_eq!(v["meta"], meta);
    assert!(verify(&g, &secret('h')), "the request is signed");
    // Cached: the second ask does not reach the endpoint.
    assert_eq!(
        h.check(&hook_cfg(&url, 5), req("private:1", &meta)).await,
        Decision::Deny("not in this team".into())
    );
    assert_eq!(calls2.load(Ordering::SeqCst), 1);
    assert_eq!(h.check(&hook_cfg(&allow_url, 0), req("private:2", &meta)).await, Decision::Allow);
}

#[tokio::test]
async fn the_subscribe_hook_fails_closed_on_hostile_answers() {
    let huge = "x".repeat(1024 * 1024);
    let (huge_url, _a, _) =
        receiver(move |_| (StatusCode::OK, format!(r#"{{"allow":true,"pad":"{huge}"}}"#)).into_response())
            .await;
    let (drip_url, _b, _) = receiver(|_| {
        Response::builder().status(200).body(drip(Duration::from_millis(50))).unwrap_or_default()
    })
    .await;
    let (err_url, _c, calls) =
        receiver(|_| (StatusCode::INTERNAL_SERVER_ERROR, r#"{"allow":true}"#).into_response()).await;
    let (garbage_url, _d, _) = receiver(|_| (StatusCode::OK, "<html>yes</html>").into_response()).await;
    let (elsewhere, mut elsewhere_rx, _) =
        receiver(|_| (StatusCode::OK, r#"{"allow":true}"#).into_response()).await;
    let target = elsewhere.clone();
    let (redirect_url, _e, _) = receiver(move |_| {
        Response::builder()
            .status(302)
            .header("location", target.as_str())
            .body(Body::empty())
            .unwrap_or_default()
    })
    .await;
    let m = telemetry::Metrics::shared();
    let h = SubscribeHooks::new(transport(), Arc::clone(&m));
    let meta = serde_json::Value::Null;
    for (what, url) in [
        ("huge", &huge_url),
        ("drip", &drip_url),
        ("500", &err_url),
        ("garbage", &garbage_url),
        ("redirect", &redirect_url),
    ] {
        let start = Instant::now();
        let d = h.check(&hook_cfg(url, 5), req("private:1", &meta)).await;
        let took = start.elapsed();
        assert!(matches!(d, Decision::Deny(_)), "{what}: {d:?}");
        assert!(took < Duration::from_millis(600), "{what} took {took:?} (timeout 300 ms)");
        println!("{what}: refused in {took:?}");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), elsewhere_rx.recv()).await.is_err(),
        "redirect not followed"
    );
    // Failures are not cached: the next subscribe asks again.
    h.check(&hook_cfg(&err_url, 5), req("private:1", &meta)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_webhook_acknowledged_with_a_huge_or_dripping_body_is_sent_once() {
    let huge = "x".repeat(4 * 1024 * 1024);
    let (url, mut rx, calls) = receiver(move |n| {
        if n == 0 {
            (StatusCode::OK, huge.clone()).into_response()
        } else {
            Response::builder().status(200).body(drip(Duration::from_millis(50))).unwrap_or_default()
        }
    })
    .await;
    let m = telemetry::Metrics::shared();
    let w = webhooks(&m);
    let c = cfg(&url, vec![secret('a')]);
    w.offer("acme", &c, vec![event(1, "room.occupied", "r")]);
    next(&mut rx, Duration::from_secs(2)).await;
    wait_for(|| counted(&m, "acme", "sent") == 1, "first sent").await;
    w.offer("acme", &c, vec![event(2, "room.vacated", "r")]);
    next(&mut rx, Duration::from_secs(2)).await;
    wait_for(|| counted(&m, "acme", "sent") == 2, "second sent").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no retries: the status acknowledged them");
    assert_eq!(counted(&m, "acme", "retried"), 0);
}

#[tokio::test]
async fn private_networks_are_refused_unless_allowed() {
    let (url, mut rx, calls) = receiver(|_| (StatusCode::OK, r#"{"allow":true}"#).into_response()).await;
    let public_only: Arc<dyn Transport> = Arc::new(HttpTransport::public_only(16 * 1024).expect("client"));
    let m = telemetry::Metrics::shared();
    let h = SubscribeHooks::new(public_only, Arc::clone(&m));
    let meta = serde_json::Value::Null;
    let by_name = url.replace("127.0.0.1", "localhost");
    for u in
        [&url, &by_name, &"http://[::1]:9/hook".to_string(), &"http://169.254.169.254/latest".to_string()]
    {
        let d = h.check(&hook_cfg(u, 0), req("private:1", &meta)).await;
        assert!(matches!(d, Decision::Deny(_)), "{u}: {d:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing reached the loopback receiver");
    assert!(rx.try_recv().is_err());
    // Allowed, the same receiver answers.
    let h = SubscribeHooks::new(transport(), m);
    assert_eq!(h.check(&hook_cfg(&url, 0), req("private:1", &meta)).await, Decision::Allow);
}
