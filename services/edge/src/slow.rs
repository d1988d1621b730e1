//! Slow consumers: sockets whose outgoing queue was full when an event was broadcast.
//!
//! The adapter (`bus::NatsAdapter`) has already taken such a socket out of every room,
//! inside the broadcast that missed it, so nothing after the missed event reaches it and
//! the last offset it saw in each room is still a true "everything up to here". Here the
//! edge ends its session with `session_end {code: "slow_consumer"}` once its queue has
//! room for it: the client resumes from those offsets and the missed events are replayed
//! (SPEC 3.6, 3.7). No gap is silent.

use std::sync::Arc;
use std::time::Duration;

use bus::FullQueues;
use socketioxide::{SendError, SocketError};

use policy::SessionEnd;

use crate::conn::{conn_of, session_end_body};
use crate::tasks::TaskGuard;
use crate::{Inner, SocketIo, SocketRef};

/// How long the edge waits for a stalled client's queue to make room for `session_end`.
/// A client that reads nothing for this long is closed by Engine.IO's ping timeout anyway.
const STALL: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_millis(10);

const END: SessionEnd = SessionEnd::SlowConsumer;

/// Ends every socket the adapter evicts, for as long as the edge runs.
pub fn spawn(tasks: &TaskGuard, inner: Arc<Inner>, io: SocketIo, full: Arc<FullQueues>) {
    tasks.spawn(async move {
        loop {
            for (ns, sid) in full.next_batch().await {
                let Some(s) = io.of(ns.as_str()).and_then(|op| op.get_socket(sid)) else { continue };
                evicted(&inner, s);
            }
        }
    });
}

/// A socket that missed an event outside a broadcast (a resume's live hand-over): the
/// same treatment as one the adapter evicted.
pub fn evict(inner: &Arc<Inner>, s: &SocketRef) {
    s.leave_all();
    evicted(inner, s.clone());
}

fn evicted(inner: &Arc<Inner>, s: SocketRef) {
    let Some(c) = conn_of(&s) else { return };
    if c.slow.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    inner
        .ext
        .metrics
        .sessions_ended
        .get_or_create(&telemetry::tenant_code(&c.tenant, END.code().as_str()))
        .inc();
    tracing::info!(tenant = c.tenant, sid = %s.id, "slow consumer: its queue was full; ending its session");
    tokio::spawn(async move {
        let body = session_end_body(END);
        // Both the event and the disconnect need a place in the socket's queue.
        if !waiting(|| s.emit("session_end", &body)).await {
            tracing::debug!(sid = %s.id, "slow consumer: session_end not sent");
        }
        let _ = waiting(|| s.clone().disconnect().map_err(SendError::Socket)).await;
    });
}

/// Retries `send` while the socket's queue is full, for at most [`STALL`].
async fn waiting(mut send: impl FnMut() -> Result<(), SendError>) -> bool {
    let deadline = tokio::time::Instant::now() + STALL;
    loop {
        match send() {
            Ok(()) => return true,
            Err(SendError::Socket(SocketError::InternalChannelFull))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(RETRY).await;
            }
            Err(_) => return false,
        }
    }
}
