//! Keeping this node's records in the store true while it runs.
//!
//! The store holds a record of every connection, subscription and presence entry, owned
//! by the node that wrote it and kept alive by that node's heartbeat (so that a node that
//! dies leaves no ghosts). Two things make those records fall behind the sockets this
//! node really holds: the store being unreachable for longer than the liveness TTL (the
//! records expire although their sockets are fine), and handshakes admitted while the
//! store was down (never written). Either way, once the store answers again, this task
//! writes every local socket's records again — without a restart and without waiting for
//! the clients to reconnect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use state::{ConnRecord, StoreError};

use crate::conn::conn_of;
use crate::tasks::TaskGuard;
use crate::{Inner, SocketIo, SocketRef};

/// How often a pending re-registration is retried while the store is still down.
const RETRY: Duration = Duration::from_secs(1);

/// Asks for every local record to be written again as soon as the store answers.
pub fn request(inner: &Inner) {
    inner.local.reregister.store(true, Ordering::SeqCst);
}

/// Runs the re-registration task for the life of the edge.
pub fn spawn(tasks: &TaskGuard, inner: Arc<Inner>, io: SocketIo) {
    let mut lapses = inner.ext.store.lapses();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(RETRY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            match lapses.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        changed = rx.changed() => match changed {
                            Ok(()) => request(&inner),
                            // The store is gone (shutting down): only requests remain.
                            Err(_) => lapses = None,
                        },
                        _ = tick.tick() => {}
                    }
                }
                None => {
                    tick.tick().await;
                }
            }
            if !inner.local.reregister.load(Ordering::SeqCst) || inner.ext.store.ping().await.is_err() {
                continue;
            }
            inner.local.reregister.store(false, Ordering::SeqCst);
            match reregister_all(&inner, &io).await {
                Ok(n) => {
                    tracing::info!(sockets = n, "this node's connection and presence records written again")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "re-registering this node's records failed; retrying");
                    request(&inner);
                }
            }
        }
    });
}

fn transport(s: &SocketRef) -> String {
    format!("{:?}", s.transport_type()).to_lowercase()
}

/// Writes the connection, subscriptions, presence and session of every open socket.
async fn reregister_all(inner: &Arc<Inner>, io: &SocketIo) -> Result<usize, StoreError> {
    let sockets: Vec<SocketRef> = io.nsps().into_iter().flat_map(|ns| ns.sockets()).collect();
    let mut n = 0;
    for s in sockets {
        let Some(c) = conn_of(&s) else { continue };
        if c.is_closed() {
            continue;
        }
        let (sub, meta) = {
            let id = c.identity.read();
            (id.sub.clone(), id.meta.clone())
        };
        let record = ConnRecord {
            id: c.id.clone(),
            sub: sub.clone(),
            node: inner.cfg.node_id.clone(),
            transport: transport(&s),
            connected_at: c.connected_at,
        };
        // The socket is already admitted: limits were applied at its handshake and must
        // not refuse it now.
        inner.ext.store.open_connection(&c.tenant, record, u64::MAX, u32::MAX).await?;
        let rooms: Vec<String> = c.rooms.lock().keys().cloned().collect();
        for room in &rooms {
            inner.ext.store.room_subscribe(&c.tenant, room, &c.id).await?;
            inner.ext.store.presence_join(&c.tenant, room, &sub, &c.id, meta.clone()).await?;
        }
        crate::resume::save_session(inner, &c, false).await;
        // A disconnect that raced these writes may have cleaned up before them: undo, so
        // that no record outlives its socket.
        if c.is_closed() {
            let _ = inner.ext.store.close_connection(&c.tenant, &c.id).await;
            for room in &rooms {
                let _ = inner.ext.store.room_unsubscribe(&c.tenant, room, &c.id).await;
                let _ = inner.ext.store.presence_leave(&c.tenant, room, &sub, &c.id).await;
            }
            continue;
        }
        n += 1;
    }
    Ok(n)
}
