//! Resuming a session on any node (SPEC 3.7).
//!
//! A client reconnecting with `auth.resume = {session, offsets}` gets its rooms back and
//! every event it missed, in order, without duplicates, before newer ones — or, when that
//! cannot be guaranteed, `session {recovered: false}` and a fresh start, never a silent
//! gap.
//!
//! The seam between history and live events is closed by a gate per room and socket: the
//! socket joins the socketioxide room `~r:<room>` before the room itself, and deliveries
//! skip gated sockets and hand them the event through [`offer`], which buffers it while
//! the history is read. [`finish`] then emits the history, then the buffer, both
//! deduplicated by offset, and lifts the gate under the same lock `offer` takes, so each
//! event reaches the socket exactly once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::SocketRef;
use bus::Message;
use serde_json::{Value, json};
use state::SessionRecord;

use crate::Inner;
use crate::conn::Conn;
use crate::deliver::event_meta;

/// Most rooms a resume may name, and most events replayed per room.
const MAX_ROOMS: usize = 256;
const MAX_REPLAY: usize = 1000;
/// Session ids are 32 hex characters; anything much longer is not one of ours.
const MAX_SESSION_BYTES: usize = 64;

/// What a handshake asked to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub session: String,
    /// Room → the last offset the client saw there.
    pub offsets: HashMap<String, u64>,
}

impl Resume {
    /// Reads `auth.resume`; anything malformed means "no resume" (a fresh session), never
    /// a refused handshake: the credential decides whether the client may connect.
    pub fn parse(auth: &Value) -> Option<Resume> {
        let r = auth.get("resume")?;
        let session = r.get("session")?.as_str()?;
        if session.is_empty() || session.len() > MAX_SESSION_BYTES {
            return None;
        }
        let mut offsets = HashMap::new();
        if let Some(o) = r.get("offsets").and_then(Value::as_object) {
            if o.len() > MAX_ROOMS {
                return None;
            }
            for (room, v) in o {
                let off = match v {
                    Value::String(s) => s.parse::<u64>().ok()?,
                    Value::Number(n) => n.as_u64()?,
                    _ => return None,
                };
                if !policy::validate_room(room) {
                    return None;
                }
                offsets.insert(room.clone(), off);
            }
        }
        Some(Resume { session: session.to_string(), offsets })
    }
}

/// A room whose history is being replayed to one socket.
#[derive(Debug, Default)]
pub struct RoomReplay {
    buffer: Vec<Arc<Message>>,
    /// The newest offset emitted to the socket in this room.
    last: u64,
    done: bool,
}

/// The socketioxide room of sockets whose history of `room` is still being replayed.
pub fn gate_room(room: &str) -> String {
    format!("~r:{room}")
}

fn emit(s: &SocketRef, m: &Message) {
    if let bus::Payload::Event { event, data } = &m.payload {
        let _ = s.emit(event, &(data, event_meta(m)));
    }
}

/// Puts the gate up for `room` on this socket.
pub fn begin(conn: &Conn, s: &SocketRef, room: &str) {
    conn.replay.lock().insert(room.to_string(), RoomReplay::default());
    s.join(gate_room(room));
}

/// A live event for a gated socket: buffered while its history is replayed, emitted
/// (once) after.
pub fn offer(conn: &Conn, s: &SocketRef, m: &Arc<Message>) {
    let mut replay = conn.replay.lock();
    match replay.get_mut(&m.room) {
        Some(r) if !r.done => r.buffer.push(m.clone()),
        Some(r) => {
            if m.offset > r.last {
                emit(s, m);
                r.last = m.offset;
            }
        }
        None => emit(s, m),
    }
}

/// Emits the history, then what arrived meanwhile, each event once, and lifts the gate.
fn finish(conn: &Conn, s: &SocketRef, room: &str, history: &[Message]) {
    let mut replay = conn.replay.lock();
    let r = replay.entry(room.to_string()).or_default();
    let mut last = r.last;
    for m in history {
        if m.offset > last {
            emit(s, m);
            last = m.offset;
        }
    }
    for m in std::mem::take(&mut r.buffer) {
        if m.offset > last {
            emit(s, &m);
            last = m.offset;
        }
    }
    r.last = last;
    r.done = true;
    s.leave(gate_room(room));
}

/// Drops a room's gate (the socket left the room).
pub fn abandon(conn: &Conn, s: &SocketRef, room: &str) {
    if conn.replay.lock().remove(room).is_some() {
        s.leave(gate_room(room));
    }
}

/// Writes the socket's session to the store: while connected it lives as long as the
/// token plus the recovery window (so a node killed outright still leaves it behind);
/// after a disconnect, the recovery window.
pub async fn save_session(inner: &Inner, conn: &Conn, disconnected: bool) {
    let Ok(Some(ctx)) = inner.tenants.get(&conn.tenant).await else { return };
    let window = ctx.tenant.policy.recovery_window_seconds;
    if window == 0 {
        return;
    }
    let (sub, exp) = {
        let id = conn.identity.read();
        (id.sub.clone(), id.exp)
    };
    let now = bus::now_ms();
    let ttl = if disconnected { window } else { (exp - now / 1000).max(0) as u64 + window };
    let rec = SessionRecord {
        id: conn.session.lock().clone(),
        sub,
        rooms: conn.rooms.lock().iter().map(|(r, o)| (r.clone(), *o)).collect(),
        updated_at: now,
    };
    if let Err(e) = inner.store.put_session(&conn.tenant, rec, ttl).await {
        tracing::warn!(tenant = conn.tenant, error = %e, "session not saved; it cannot be resumed");
    }
}

/// Runs after connect: resumes the session the client asked for when that can be done
/// completely, else starts a fresh one; then emits `session`.
pub async fn start(inner: &Arc<Inner>, s: &SocketRef, conn: &Arc<Conn>) {
    let asked = conn.resume.lock().take();
    let recovered = match asked {
        Some(r) => try_resume(inner, s, conn, r).await,
        None => false,
    };
    if !recovered {
        save_session(inner, conn, false).await;
    }
    let id = conn.session.lock().clone();
    tracing::debug!(tenant = conn.tenant, session = id, recovered, "session started");
    let _ = s.emit("session", &json!({"id": id, "recovered": recovered}));
    if recovered {
        // The history was read with the gates up; now emit it and lift them.
        let pending: Vec<(String, Vec<Message>)> = std::mem::take(&mut *conn.pending_history.lock());
        for (room, history) in pending {
            finish(conn, s, &room, &history);
        }
    }
}

async fn try_resume(inner: &Arc<Inner>, s: &SocketRef, conn: &Arc<Conn>, r: Resume) -> bool {
    let rec = match inner.store.get_session(&conn.tenant, &r.session).await {
        Ok(Some(rec)) => rec,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(tenant = conn.tenant, error = %e, "session lookup failed; starting fresh");
            return false;
        }
    };
    let (sub, caps_ok) = {
        let id = conn.identity.read();
        (id.sub.clone(), rec.rooms.keys().all(|room| id.caps.allows(room, policy::Right::Subscribe)))
    };
    // Another user's session, or rooms the new credential no longer grants: fresh start.
    if rec.sub != sub || !caps_ok || rec.rooms.len() > MAX_ROOMS {
        return false;
    }
    let mut histories = Vec::new();
    let mut complete = true;
    for (room, since) in &rec.rooms {
        let after = r.offsets.get(room).copied().unwrap_or(*since).max(*since);
        if join_gated(inner, s, conn, room, *since).await.is_err() {
            complete = false;
            break;
        }
        match inner.bus.history(&conn.tenant, room, after, MAX_REPLAY).await {
            Ok(h) if h.complete => histories.push((room.clone(), h.messages)),
            Ok(_) => {
                complete = false;
                break;
            }
            Err(e) => {
                tracing::warn!(tenant = conn.tenant, error = %e, "history unavailable; starting fresh");
                complete = false;
                break;
            }
        }
    }
    if !complete {
        // Undo every room joined so far: the client starts fresh and resubscribes.
        let joined: Vec<String> = conn.rooms.lock().drain().map(|(r, _)| r).collect();
        for room in joined {
            crate::events::leave_room(inner, s, conn, &room).await;
        }
        return false;
    }
    *conn.session.lock() = rec.id;
    *conn.pending_history.lock() = histories;
    true
}

async fn join_gated(
    inner: &Arc<Inner>,
    s: &SocketRef,
    conn: &Arc<Conn>,
    room: &str,
    since: u64,
) -> Result<(), policy::EventError> {
    crate::events::join_room(inner, s, conn, room, since, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resume_requests_and_ignores_junk() {
        let r = Resume::parse(
            &json!({"token": "t", "resume": {"session": "abc", "offsets": {"chat": "42", "x": 7}}}),
        )
        .expect("valid");
        assert_eq!(r.session, "abc");
        assert_eq!(r.offsets.get("chat"), Some(&42));
        assert_eq!(r.offsets.get("x"), Some(&7));
        assert_eq!(Resume::parse(&json!({"resume": {"session": "abc"}})).map(|r| r.offsets.len()), Some(0));
        for junk in [
            json!({}),
            json!({"resume": "abc"}),
            json!({"resume": {"session": ""}}),
            json!({"resume": {"session": 5}}),
            json!({"resume": {"session": "x".repeat(65)}}),
            json!({"resume": {"session": "a", "offsets": {"chat": "-1"}}}),
            json!({"resume": {"session": "a", "offsets": {"chat": "1e3"}}}),
            json!({"resume": {"session": "a", "offsets": {"bad room": "1"}}}),
            json!({"resume": {"session": "a", "offsets": {"chat": [1]}}}),
        ] {
            assert_eq!(Resume::parse(&junk), None, "{junk}");
        }
        let many: serde_json::Map<String, Value> =
            (0..=MAX_ROOMS).map(|i| (format!("r{i}"), json!(1))).collect();
        assert_eq!(Resume::parse(&json!({"resume": {"session": "a", "offsets": many}})), None);
    }
}
