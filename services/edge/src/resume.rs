//! Resuming a session on any node (SPEC 3.7).
//!
//! A client reconnecting with `auth.resume = {session, offsets}` gets its rooms back and
//! every event it missed, in order, without duplicates, before newer ones — or, when that
//! cannot be guaranteed, `session {recovered: false}` and a fresh start, never a silent
//! gap.
//!
//! This module reads the session (`record` writes it) and the rooms' history; the gate
//! (`gate`) orders that history before the live events and explains why each event
//! reaches the socket exactly once. The request and the history read for it are
//! `session`'s.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::SocketRef;
use serde_json::json;

use crate::Inner;
use crate::conn::Conn;
use crate::record::save_session;
use crate::session::{Pending, Resume};

/// Most events replayed per room.
const MAX_REPLAY: usize = 10_000;

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
            conn.replay.finish(s, &p.room, p.history, p.after, p.newest).await;
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
