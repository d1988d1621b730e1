//! Node liveness: the tenants where this node owns records, and the heartbeat that keeps
//! its `alive:<node>` key fresh in each of them (and notices when it lapsed).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Inner;
use super::codec::int;

impl Inner {
    /// Records that this node owns live records in `tenant`, so the heartbeat keeps them.
    pub(super) fn mark_alive(&self, tenant: &str) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.active.lock().insert(tenant.to_string(), seq);
    }

    pub(super) async fn beat(&self) {
        let snapshot: Vec<(String, u64)> =
            self.active.lock().iter().map(|(t, seq)| (t.clone(), *seq)).collect();
        let calls =
            snapshot.iter().map(|(t, _)| self.run(&self.scripts.heartbeat, t, vec![self.node(), self.ttl()]));
        let results = futures_util::future::join_all(calls).await;
        let (mut lapsed, mut failed, mut error) = (0, 0, None);
        let mut active = self.active.lock();
        for ((tenant, seq), r) in snapshot.into_iter().zip(results) {
            let code = match r {
                Ok(v) => int(&v),
                Err(e) => {
                    failed += 1;
                    error.get_or_insert(e);
                    continue;
                }
            };
            if code == 1 {
                continue;
            }
            // The tenant is gone (-1), or this node's key expired (0: its records are dead
            // and reaped by the next script there). Unless a write registered records
            // meanwhile (and so made a new key), stop beating there.
            if active.get(&tenant) == Some(&seq) {
                active.remove(&tenant);
                if code == 0 {
                    lapsed += 1;
                }
            }
        }
        drop(active);
        if let Some(e) = error {
            tracing::warn!(node = %self.opts.node_id, tenants = failed, error = %e, "state heartbeat failed");
        }
        if lapsed > 0 {
            tracing::warn!(node = %self.opts.node_id, tenants = lapsed, "state liveness lapsed; records of this node expired");
            self.lapses.send_modify(|n| *n += 1);
        }
    }
}

pub(super) async fn heartbeat_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.opts.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        inner.beat().await;
    }
}
