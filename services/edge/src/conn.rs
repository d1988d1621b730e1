//! Per-socket state, kept in the socket's extensions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::SocketRef;
use parking_lot::{Mutex, RwLock};
use policy::{Identity, TokenBucket};
use socketioxide::adapter::Adapter;
use socketioxide::handler::{FromMessageParts, Value};
use socketioxide::socket::Socket;
use tokio::sync::Notify;

use crate::Inner;

/// What the edge knows of one socket.
pub struct Conn {
    pub tenant: String,
    /// The Socket.IO socket id, also the connection id in listings.
    pub id: String,
    pub sid: socketioxide::socket::Sid,
    /// Unix milliseconds of the handshake.
    pub connected_at: i64,
    /// The session id given to the client (resume builds on it).
    pub session: Mutex<String>,
    pub identity: RwLock<Identity>,
    pub bucket: Mutex<TokenBucket>,
    /// Rooms this socket subscribed to, each with the room's offset when it subscribed
    /// (where its history starts for a resume).
    pub rooms: Mutex<HashMap<String, u64>>,
    /// The session a handshake asked to resume, checked by `authorize`.
    pub resume: Mutex<Option<crate::session::Resume>>,
    /// Rooms whose history is being replayed to this socket: live messages wait here.
    pub replay: crate::gate::ReplayGates,
    /// History read for a resume, emitted right after the `session` event.
    pub pending_history: Mutex<Vec<crate::session::Pending>>,
    /// Event ordering: each incoming event takes a number in arrival order and runs when
    /// all events before it have finished, because socketioxide runs each handler as its
    /// own task and would otherwise let a later publish overtake an earlier one.
    next: AtomicU64,
    /// How many turns have finished, and the notification of each (a `watch` channel did
    /// this at 344 bytes per socket: its shared state holds nine `Notify`s).
    done: AtomicU64,
    turns: Notify,
    /// Set when the socket disconnected: events still queued do nothing.
    pub closed: std::sync::atomic::AtomicBool,
    /// Whether the session is in the store. A session without rooms has nothing to
    /// resume, so it is written only once it has some: most handshakes then cost one
    /// store write, not two.
    pub session_saved: std::sync::atomic::AtomicBool,
    /// Set when the socket's queue overflowed: it has left its rooms and its session is
    /// being ended with `slow_consumer` (see `slow`).
    pub slow: std::sync::atomic::AtomicBool,
}

impl Conn {
    pub fn new(
        tenant: String,
        sid: socketioxide::socket::Sid,
        session: String,
        identity: Identity,
        now_ms: u64,
        rate: u32,
    ) -> Conn {
        Conn {
            tenant,
            id: sid.to_string(),
            sid,
            connected_at: now_ms as i64,
            session: Mutex::new(session),
            identity: RwLock::new(identity),
            bucket: Mutex::new(TokenBucket::new(rate, now_ms)),
            rooms: Mutex::new(HashMap::new()),
            resume: Mutex::new(None),
            replay: crate::gate::ReplayGates::default(),
            pending_history: Mutex::new(Vec::new()),
            // Turn 0 belongs to the connect handler (`first_turn`); events start at 1.
            next: AtomicU64::new(1),
            done: AtomicU64::new(0),
            turns: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            session_saved: std::sync::atomic::AtomicBool::new(false),
            slow: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// The extractor that gives a handler its [`Conn`] and its turn. It must be the last
/// argument, so that no extractor after it can fail and leave its number unused.
pub struct Ordered {
    pub conn: Arc<Conn>,
    seq: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("socket has no connection state")]
pub struct NoConn;

impl<A: Adapter> FromMessageParts<A> for Ordered {
    type Error = NoConn;
    fn from_message_parts(s: &Arc<Socket<A>>, _: &mut Value, _: &Option<i64>) -> Result<Self, NoConn> {
        let conn = s.extensions.get::<Arc<Conn>>().ok_or(NoConn)?;
        let seq = conn.next.fetch_add(1, Ordering::SeqCst);
        Ok(Ordered { conn, seq })
    }
}

/// Held while a handler runs; lets the next event go when dropped, even on early return.
pub struct Turn {
    conn: Arc<Conn>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.conn.done.fetch_add(1, Ordering::SeqCst);
        self.conn.turns.notify_waiters();
    }
}

impl Conn {
    /// The connect handler's turn, taken before any event's.
    pub fn first_turn(self: &Arc<Self>) -> Ordered {
        Ordered { conn: self.clone(), seq: 0 }
    }

    /// A turn after every event received so far (for the disconnect handler).
    pub fn next_turn(self: &Arc<Self>) -> Ordered {
        Ordered { conn: self.clone(), seq: self.next.fetch_add(1, Ordering::SeqCst) }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Ordered {
    /// Waits until every earlier event of this socket has finished.
    pub async fn turn(self) -> (Arc<Conn>, Turn) {
        let seq = self.seq;
        loop {
            // Registered before the check, so that a turn finishing in between wakes us.
            let notified = self.conn.turns.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.conn.done.load(Ordering::SeqCst) >= seq {
                break;
            }
            notified.await;
        }
        let conn = self.conn;
        (conn.clone(), Turn { conn })
    }

    /// [`Ordered::turn`] for a client event: `None` once the socket has disconnected, so
    /// that events still queued behind the disconnect change nothing.
    pub async fn open_turn(self) -> Option<(Arc<Conn>, Turn)> {
        let (conn, turn) = self.turn().await;
        (!conn.is_closed()).then_some((conn, turn))
    }
}

/// The socket's state; `None` only before the connect handler ran.
pub fn conn_of(s: &SocketRef) -> Option<Arc<Conn>> {
    s.extensions.get::<Arc<Conn>>()
}

/// Tells the client why, then disconnects it. The event and the disconnect travel in the
/// same ordered queue, so the client sees `session_end` first.
pub fn end_session(inner: &Inner, s: &SocketRef, why: policy::SessionEnd) {
    let code = why.code().as_str();
    if let Some(c) = conn_of(s) {
        inner.ext.metrics.sessions_ended.get_or_create(&telemetry::tenant_code(&c.tenant, code)).inc();
        // The `session.ended` webhook; the store records it only when the tenant's
        // webhooks are on, and it must not hold up the socket's ending.
        let (store, tenant, conn_id, code) =
            (inner.ext.store.clone(), c.tenant.clone(), c.id.clone(), code.to_string());
        let sub = c.identity.read().sub.clone();
        tokio::spawn(async move {
            if let Err(e) = store.push_hook_event(&tenant, "session.ended", &sub, &conn_id, &code).await {
                tracing::debug!(tenant, error = %e, "session.ended not recorded");
            }
        });
    }
    match s.emit("session_end", &session_end_body(why)) {
        // Already closing (its disconnect handler is still running): nothing to tell.
        Ok(()) | Err(socketioxide::SendError::Socket(socketioxide::SocketError::Closed)) => {}
        Err(e) => tracing::warn!(sid = %s.id, code, error = %e, "session_end not sent"),
    }
    let _ = s.clone().disconnect();
}

/// The `session_end` event's payload (SPEC 3.6).
pub fn session_end_body(why: policy::SessionEnd) -> serde_json::Value {
    serde_json::json!({"code": why.code().as_str(), "message": why.message()})
}
