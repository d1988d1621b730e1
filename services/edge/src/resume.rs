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
//! deduplicated by offset. The gate stays up until the live feed has caught up with the
//! history: the stream the history comes from can be ahead of the live feed this node
//! receives (under load, by hundreds of milliseconds), and an event replayed from history
//! must not arrive again live. So `offer` keeps deduplicating, and lifts the gate when an
//! event at or past the newest offset the history knew arrives. It does so from inside
//! the delivery of that event — deliveries of one room are sequential — so no later event
//! can be broadcast between the gate coming down and the socket being back in the room:
//! each event reaches the socket exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::SocketRef;
use bus::Message;
use serde_json::{Value, json};
use socketioxide::{SendError, SocketError};
use state::SessionRecord;

use crate::Inner;
use crate::conn::Conn;
use crate::deliver::event_meta;

/// Most rooms a resume may name, and most events replayed per room.
const MAX_ROOMS: usize = policy::MAX_RESUME_ROOMS;
const MAX_REPLAY: usize = 10_000;
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

/// A room's history read for a resume, waiting to be emitted after the `session` event.
pub struct Pending {
    room: String,
    history: Vec<Message>,
    /// The last offset the client saw.
    after: u64,
    /// The room's newest offset when the history was read.
    newest: u64,
}

/// A room whose history is being replayed to one socket.
#[derive(Debug, Default)]
pub struct RoomReplay {
    buffer: Vec<Arc<Message>>,
    /// The newest offset emitted to the socket in this room.
    last: u64,
    done: bool,
    /// Once the history is out: the live event at or past this offset lifts the gate.
    lift_at: u64,
}

/// The socketioxide room of sockets whose history of `room` is still being replayed.
pub fn gate_room(room: &str) -> String {
    format!("~r:{room}")
}

/// Emits a live event to a socket whose gate handed it over; a full queue makes it a slow
/// consumer (see `slow`), so that the event it missed is replayed when it resumes.
fn emit(inner: &Arc<Inner>, s: &SocketRef, m: &Message) {
    if let bus::Payload::Event { event, data } = &m.payload
        && let Err(SendError::Socket(SocketError::InternalChannelFull)) =
            s.emit(event, &(data, event_meta(m)))
    {
        crate::slow::evict(inner, s);
    }
}

/// Puts the gate up for `room` on this socket.
pub fn begin(conn: &Conn, s: &SocketRef, room: &str) {
    conn.replay.lock().insert(room.to_string(), RoomReplay::default());
    s.join(gate_room(room));
}

/// A live event for a gated socket: buffered while its history is replayed, emitted
/// (once) after.
pub fn offer(inner: &Arc<Inner>, conn: &Conn, s: &SocketRef, m: &Arc<Message>) {
    let mut replay = conn.replay.lock();
    match replay.get_mut(&m.room) {
        Some(r) if !r.done => r.buffer.push(m.clone()),
        Some(r) => {
            if m.offset > r.last {
                emit(inner, s, m);
                r.last = m.offset;
            }
            // Presence events carry no offset and lift nothing.
            if m.offset != 0 && m.offset >= r.lift_at {
                replay.remove(&m.room);
                s.leave(gate_room(&m.room));
            }
        }
        None => emit(inner, s, m),
    }
}

/// How long a replay waits for the socket's outgoing queue to make room before it gives
/// up on a client that is not reading.
const REPLAY_STALL: Duration = Duration::from_secs(10);

/// Emits one replayed event, waiting while the socket's outgoing queue is full: a replay
/// can be longer than the queue, and an event it cannot queue must not be skipped.
/// `false` when the socket is gone or stalled.
async fn emit_waiting(s: &SocketRef, m: &Message) -> bool {
    let bus::Payload::Event { event, data } = &m.payload else { return true };
    let deadline = tokio::time::Instant::now() + REPLAY_STALL;
    loop {
        match s.emit(event, &(data, event_meta(m))) {
            Ok(()) => return true,
            Err(SendError::Socket(SocketError::InternalChannelFull))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => return false,
        }
    }
}

/// Emits the history, then what arrived meanwhile, each event once; the gate comes down
/// once the live feed reaches `newest` (see the module's documentation). Live events keep
/// going to the buffer until it is empty, so the lock is never held across a wait.
async fn finish(conn: &Conn, s: &SocketRef, room: &str, history: Vec<Message>, after: u64, newest: u64) {
    // The client saw everything up to `after`; the live feed of this node may still bring
    // some of it (it can lag behind the node the client came from): not again.
    let mut last = conn.replay.lock().get(room).map_or(0, |r| r.last).max(after);
    let mut batch: Vec<Arc<Message>> = history.into_iter().map(Arc::new).collect();
    loop {
        for m in &batch {
            if m.offset > last {
                if !emit_waiting(s, m).await {
                    // The client stopped reading: close it rather than leave a gap; it
                    // resumes from the last offset it saw.
                    tracing::debug!(sid = %s.id, "replay stalled; disconnecting");
                    let _ = s.clone().disconnect();
                    return;
                }
                last = m.offset;
            }
        }
        let mut replay = conn.replay.lock();
        let Some(r) = replay.get_mut(room) else { return };
        if r.buffer.is_empty() {
            r.last = last;
            r.done = true;
            r.lift_at = newest.max(last).max(1);
            return;
        }
        batch = std::mem::take(&mut r.buffer);
    }
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
    let Ok(Some(ctx)) = inner.local.tenants.get(&conn.tenant).await else { return };
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
    let rooms: std::collections::BTreeMap<String, u64> =
        conn.rooms.lock().iter().map(|(r, o)| (r.clone(), *o)).collect();
    // Nothing to resume yet; resuming an unsaved session starts a fresh one, which for a
    // session without rooms is the same thing. Once saved, every change is written, so
    // that a stored session never names a room the client left.
    if rooms.is_empty() && !conn.session_saved.load(Ordering::SeqCst) {
        return;
    }
    let rec = SessionRecord { id: conn.session.lock().clone(), sub, rooms, updated_at: now };
    match inner.ext.store.put_session(&conn.tenant, rec, ttl).await {
        Ok(()) => conn.session_saved.store(true, Ordering::SeqCst),
        Err(e) => tracing::warn!(tenant = conn.tenant, error = %e, "session not saved; it cannot be resumed"),
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
        let pending = std::mem::take(&mut *conn.pending_history.lock());
        for p in pending {
            finish(conn, s, &p.room, p.history, p.after, p.newest).await;
        }
    }
}

async fn try_resume(inner: &Arc<Inner>, s: &SocketRef, conn: &Arc<Conn>, r: Resume) -> bool {
    let rec = match inner.ext.store.get_session(&conn.tenant, &r.session).await {
        Ok(Some(rec)) => rec,
        Ok(None) => {
            tracing::debug!(tenant = conn.tenant, "resume: no such session");
            return false;
        }
        Err(e) => {
            tracing::warn!(tenant = conn.tenant, error = %e, "session lookup failed; starting fresh");
            return false;
        }
    };
    let may = policy::may_resume(&conn.identity.read(), &rec.sub, rec.rooms.keys().map(String::as_str));
    // Another user's session, or rooms the new credential no longer grants: fresh start.
    if !may {
        tracing::debug!(tenant = conn.tenant, "resume: another user's session or rooms no longer granted");
        return false;
    }
    let mut histories = Vec::new();
    let mut complete = true;
    for (room, since) in &rec.rooms {
        let after = r.offsets.get(room).copied().unwrap_or(*since).max(*since);
        if let Err(e) = join_gated(inner, s, conn, room, *since).await {
            tracing::debug!(tenant = conn.tenant, room, code = e.code(), "resume: rejoining failed");
            complete = false;
            break;
        }
        // From memory when this node holds everything after `after` (see `recent`).
        if let Some(f) = inner.local.recent.since(&conn.tenant, room, after) {
            tracing::debug!(
                tenant = conn.tenant,
                room,
                after,
                events = f.messages.len(),
                "resume: history from memory"
            );
            histories.push(Pending { room: room.clone(), history: f.messages, after, newest: f.newest });
            continue;
        }
        match inner.ext.bus.history(&conn.tenant, room, after, MAX_REPLAY).await {
            Ok(h) if h.complete => {
                tracing::debug!(
                    tenant = conn.tenant,
                    room,
                    after,
                    events = h.messages.len(),
                    "resume: history from the bus"
                );
                let newest = h.messages.last().map_or(h.last, |m| m.offset.max(h.last));
                histories.push(Pending { room: room.clone(), history: h.messages, after, newest });
            }
            Ok(h) => {
                tracing::debug!(
                    tenant = conn.tenant,
                    room,
                    after,
                    got = h.messages.len(),
                    "resume: history incomplete"
                );
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
    conn.session_saved.store(true, Ordering::SeqCst);
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
