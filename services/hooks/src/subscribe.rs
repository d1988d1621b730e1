//! The subscribe authorization hook: one signed POST per (user, room), answers cached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use policy::{HookAnswer, SubscribeHookConfig};
use serde_json::json;

use crate::transport::{HookRequest, Transport};
use crate::{SIGNATURE_HEADER, TIMESTAMP_HEADER, now_ms};

/// Most cached answers a node keeps; when full, expired ones go, then all.
const MAX_CACHED: usize = 100_000;

/// What the edge does with the subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused: `forbidden`, with this message (the tenant's reason, or why the hook gave
    /// no usable answer — fail-closed).
    Deny(String),
}

/// The subscription being asked about.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeRequest<'a> {
    pub tenant: &'a str,
    pub sub: &'a str,
    pub room: &'a str,
    pub meta: Option<&'a serde_json::Value>,
    pub connection_id: &'a str,
}

type Key = (String, String, String);

/// Asks tenants' subscribe hooks. Cheap to share behind an `Arc`.
pub struct SubscribeHooks {
    transport: Arc<dyn Transport>,
    metrics: Arc<telemetry::Metrics>,
    cache: Mutex<HashMap<Key, (Instant, Decision)>>,
}

impl SubscribeHooks {
    pub fn new(transport: Arc<dyn Transport>, metrics: Arc<telemetry::Metrics>) -> SubscribeHooks {
        SubscribeHooks { transport, metrics, cache: Mutex::new(HashMap::new()) }
    }

    fn count(&self, tenant: &str, outcome: &str) {
        self.metrics
            .subscribe_hook
            .get_or_create(&vec![
                ("tenant", telemetry::tenant_label(tenant)),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// Whether `r` may subscribe, per `cfg` (the caller checked `cfg.covers(room)`). Allows
    /// and refusals from the tenant are cached for `cache_seconds`; failures are not (the
    /// next try asks again).
    pub async fn check(&self, cfg: &SubscribeHookConfig, r: SubscribeRequest<'_>) -> Decision {
        let key = (r.tenant.to_string(), r.sub.to_string(), r.room.to_string());
        if cfg.cache_seconds > 0
            && let Some((until, d)) = self.cache.lock().get(&key)
            && *until > Instant::now()
        {
            let d = d.clone();
            self.count(r.tenant, if d == Decision::Allow { "allow_cached" } else { "deny_cached" });
            return d;
        }
        let ts = now_ms();
        let body = Bytes::from(
            json!({
                "tenant": r.tenant,
                "sub": r.sub,
                "room": r.room,
                "meta": r.meta,
                "connection_id": r.connection_id,
                "time_ms": ts,
            })
            .to_string(),
        );
        let req = HookRequest {
            url: cfg.url.clone(),
            headers: vec![
                (SIGNATURE_HEADER, policy::signature_header(std::slice::from_ref(&cfg.secret), ts, &body)),
                (TIMESTAMP_HEADER, ts.to_string()),
            ],
            body,
            timeout: Duration::from_millis(cfg.timeout_ms),
            read_body: true,
        };
        let answer = match self.transport.post(req).await {
            Ok(resp) => policy::read_hook_answer(resp.status, &resp.body),
            Err(e) => {
                tracing::warn!(
                    tenant = r.tenant,
                    room = r.room,
                    code = e.code(),
                    "subscribe hook: no answer; refused"
                );
                self.count(r.tenant, "error");
                return Decision::Deny("the tenant's subscribe hook did not answer".into());
            }
        };
        let d = match answer {
            HookAnswer::Allow => Decision::Allow,
            HookAnswer::Deny(reason) => Decision::Deny(reason),
            HookAnswer::Invalid(why) => {
                tracing::warn!(
                    tenant = r.tenant,
                    room = r.room,
                    why,
                    "subscribe hook: unusable answer; refused"
                );
                self.count(r.tenant, "error");
                return Decision::Deny("the tenant's subscribe hook gave no valid answer".into());
            }
        };
        self.count(r.tenant, if d == Decision::Allow { "allow" } else { "deny" });
        if cfg.cache_seconds > 0 {
            let mut c = self.cache.lock();
            if c.len() >= MAX_CACHED {
                let now = Instant::now();
                c.retain(|_, (until, _)| *until > now);
                if c.len() >= MAX_CACHED {
                    c.clear();
                }
            }
            c.insert(key, (Instant::now() + Duration::from_secs(cfg.cache_seconds), d.clone()));
        }
        d
    }

    /// Drops the tenant's cached answers (its configuration changed).
    pub fn forget(&self, tenant: &str) {
        self.cache.lock().retain(|(t, _, _), _| t != tenant);
    }
}
