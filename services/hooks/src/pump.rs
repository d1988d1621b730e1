//! From the store's webhook outbox to [`Webhooks`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use policy::WebhookConfig;
use state::Store;

use crate::Webhooks;

/// How often the pump looks.
#[derive(Debug, Clone, Copy)]
pub struct PumpOptions {
    /// Between takes (also how soon a dead node's rooms are reaped once its liveness
    /// expired).
    pub interval: Duration,
    /// How long the list of tenants with webhooks, and each one's configuration, is reused.
    pub refresh: Duration,
    /// Most events taken per tenant per look.
    pub max: usize,
}

impl Default for PumpOptions {
    fn default() -> Self {
        PumpOptions { interval: Duration::from_millis(250), refresh: Duration::from_secs(2), max: 1000 }
    }
}

/// Runs until the task is dropped: every `interval`, takes each webhook tenant's outbox
/// (the store gives a tenant's events to one node at a time) and offers them. Store
/// failures are logged and retried at the next look; nothing here blocks the edge.
pub async fn pump(store: Arc<dyn Store>, hooks: Webhooks, opts: PumpOptions) {
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tenants: (Option<Instant>, Vec<String>) = (None, Vec::new());
    let mut configs: HashMap<String, (Instant, Option<WebhookConfig>)> = HashMap::new();
    loop {
        tick.tick().await;
        if tenants.0.is_none_or(|t| t.elapsed() >= opts.refresh) {
            match store.hook_tenants().await {
                Ok(list) => {
                    for gone in configs.keys().filter(|t| !list.contains(t)).cloned().collect::<Vec<_>>() {
                        configs.remove(&gone);
                        hooks.forget(&gone);
                    }
                    tenants = (Some(Instant::now()), list);
                }
                Err(e) => tracing::warn!(error = %e, "webhook pump: cannot list tenants"),
            }
        }
        for t in &tenants.1 {
            let events = match store.take_hook_events(t, opts.max).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::debug!(tenant = t, error = %e, "webhook pump: take failed");
                    continue;
                }
            };
            if events.is_empty() {
                continue;
            }
            let fresh = configs.get(t).is_some_and(|(at, _)| at.elapsed() < opts.refresh);
            if !fresh {
                match store.get_tenant(t).await {
                    Ok(rec) => {
                        configs.insert(t.clone(), (Instant::now(), rec.and_then(|r| r.policy.webhooks)));
                    }
                    Err(e) => tracing::warn!(tenant = t, error = %e, "webhook pump: cannot read the tenant"),
                }
            }
            match configs.get(t).and_then(|(_, c)| c.as_ref()) {
                Some(cfg) => hooks.offer(t, cfg, events),
                None => tracing::debug!(
                    tenant = t,
                    n = events.len(),
                    "webhook pump: webhooks off; events dropped"
                ),
            }
        }
    }
}
