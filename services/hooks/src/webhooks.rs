//! Webhook delivery: a worker per tenant, batching, signatures, bounded retries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use policy::{HookEvent, RetrySchedule, WebhookConfig};
use rand::Rng;
use serde_json::json;
use tokio::sync::mpsc;

use crate::transport::{HookRequest, Transport};
use crate::{SIGNATURE_HEADER, TIMESTAMP_HEADER, WEBHOOK_ID_HEADER, now_ms};

/// How webhooks are batched, queued and retried.
#[derive(Debug, Clone, Copy)]
pub struct WebhookOptions {
    /// A batch leaves this long after its first event at the latest...
    pub batch_window: Duration,
    /// ...or as soon as it holds this many events.
    pub batch_max: usize,
    /// Events waiting per tenant; past it new events are dropped (and counted).
    pub queue: usize,
    /// One try's deadline.
    pub timeout: Duration,
    pub retry: RetrySchedule,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            batch_window: Duration::from_millis(250),
            batch_max: 100,
            queue: 10_000,
            timeout: Duration::from_secs(5),
            retry: RetrySchedule::default(),
        }
    }
}

struct Worker {
    tx: mpsc::Sender<HookEvent>,
    /// The newest configuration (a rotated secret or new URL applies to the next try).
    cfg: Arc<Mutex<WebhookConfig>>,
}

struct Inner {
    transport: Arc<dyn Transport>,
    metrics: Arc<telemetry::Metrics>,
    opts: WebhookOptions,
    workers: Mutex<HashMap<String, Worker>>,
}

/// Sends tenants' webhook events. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

impl Webhooks {
    /// Needs a Tokio runtime: workers are spawned on first use per tenant.
    pub fn new(
        transport: Arc<dyn Transport>,
        metrics: Arc<telemetry::Metrics>,
        opts: WebhookOptions,
    ) -> Webhooks {
        Webhooks { inner: Arc::new(Inner { transport, metrics, opts, workers: Mutex::new(HashMap::new()) }) }
    }

    fn count(&self, tenant: &str, outcome: &str, n: usize) {
        self.inner
            .metrics
            .webhook_events
            .get_or_create(&vec![
                ("tenant", telemetry::tenant_label(tenant)),
                ("outcome", outcome.to_string()),
            ])
            .inc_by(n as u64);
    }

    /// Queues `events` of `tenant` for `cfg` (events it did not ask for are skipped).
    /// Never waits: when the tenant's queue is full the rest are dropped and counted.
    pub fn offer(&self, tenant: &str, cfg: &WebhookConfig, events: Vec<HookEvent>) {
        let events: Vec<HookEvent> = events.into_iter().filter(|e| cfg.wants(&e.name)).collect();
        if events.is_empty() {
            return;
        }
        let tx = {
            let mut w = self.inner.workers.lock();
            let worker = w.entry(tenant.to_string()).or_insert_with(|| self.spawn(tenant, cfg.clone()));
            *worker.cfg.lock() = cfg.clone();
            worker.tx.clone()
        };
        let mut dropped = 0;
        for e in events {
            if tx.try_send(e).is_err() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::warn!(tenant, dropped, "webhook queue full: events dropped");
            self.count(tenant, "dropped", dropped);
        }
    }

    /// Stops the tenant's worker (webhooks switched off or tenant deleted); what it still
    /// holds is dropped.
    pub fn forget(&self, tenant: &str) {
        self.inner.workers.lock().remove(tenant);
    }

    fn spawn(&self, tenant: &str, cfg: WebhookConfig) -> Worker {
        let (tx, rx) = mpsc::channel(self.inner.opts.queue.max(1));
        let cfg = Arc::new(Mutex::new(cfg));
        tokio::spawn(run(self.clone(), tenant.to_string(), rx, Arc::clone(&cfg)));
        Worker { tx, cfg }
    }
}

/// The batch's body: Pusher's shape (`time_ms`, `events`), each event with its tenant.
fn body(tenant: &str, batch: &[HookEvent]) -> Bytes {
    let events: Vec<serde_json::Value> = batch
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("tenant".into(), json!(tenant));
            }
            v
        })
        .collect();
    Bytes::from(json!({"time_ms": now_ms(), "events": events}).to_string())
}

/// What one try's answer means for the batch.
enum Outcome {
    Sent,
    Retry(&'static str),
    /// The receiver refused it for good (3xx, 4xx but 408 and 429): retrying cannot help.
    Refused(u16),
}

async fn run(
    hooks: Webhooks,
    tenant: String,
    mut rx: mpsc::Receiver<HookEvent>,
    cfg: Arc<Mutex<WebhookConfig>>,
) {
    let opts = hooks.inner.opts;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + opts.batch_window;
        while batch.len() < opts.batch_max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        deliver(&hooks, &tenant, &cfg, batch).await;
    }
}

/// Sends one batch, retrying on the schedule; the body and its id stay the same across
/// tries (the signature is made again: its timestamp is the try's).
async fn deliver(hooks: &Webhooks, tenant: &str, cfg: &Mutex<WebhookConfig>, batch: Vec<HookEvent>) {
    let opts = hooks.inner.opts;
    let body = body(tenant, &batch);
    let id = format!("wh_{}", state::random_token(12));
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (url, secrets) = {
            let c = cfg.lock();
            (c.url.clone(), c.secrets.clone())
        };
        let ts = now_ms();
        let req = HookRequest {
            url,
            headers: vec![
                (SIGNATURE_HEADER, policy::signature_header(&secrets, ts, &body)),
                (TIMESTAMP_HEADER, ts.to_string()),
                (WEBHOOK_ID_HEADER, id.clone()),
            ],
            body: body.clone(),
            timeout: opts.timeout,
            read_body: false,
        };
        let outcome = match hooks.inner.transport.post(req).await {
            Ok(r) if (200..300).contains(&r.status) => Outcome::Sent,
            Ok(r) if r.status >= 500 || r.status == 408 || r.status == 429 => Outcome::Retry("status"),
            Ok(r) => Outcome::Refused(r.status),
            Err(e) => Outcome::Retry(e.code()),
        };
        match outcome {
            Outcome::Sent => {
                hooks.count(tenant, "sent", batch.len());
                return;
            }
            Outcome::Refused(status) => {
                tracing::warn!(
                    tenant,
                    webhook_id = id,
                    status,
                    events = batch.len(),
                    "webhook refused by the receiver: dropped"
                );
                hooks.count(tenant, "dropped", batch.len());
                return;
            }
            Outcome::Retry(why) => {
                let jitter: f64 = rand::rng().random();
                match opts.retry.next_delay(attempt, started.elapsed(), jitter) {
                    Some(d) => {
                        tracing::info!(tenant, webhook_id = id, attempt, why, "webhook failed: retrying");
                        hooks.count(tenant, "retried", batch.len());
                        tokio::time::sleep(d).await;
                    }
                    None => {
                        tracing::warn!(
                            tenant,
                            webhook_id = id,
                            attempt,
                            why,
                            events = batch.len(),
                            "webhook failed: gave up, dropped"
                        );
                        hooks.count(tenant, "dropped", batch.len());
                        return;
                    }
                }
            }
        }
    }
}
