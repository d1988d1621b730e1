//! The session record in the store (SPEC 3.7): written while a socket lives and after it
//! disconnects, so that a resume on any node finds it (`resume` reads it).

use std::sync::atomic::Ordering;

use state::SessionRecord;

use crate::Inner;
use crate::conn::Conn;

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
