//! Session expiry: one ordered set and one task for every socket of the node, not a timer
//! per socket. At a token's `exp` the socket gets `session_end {code: "token_expired"}`
//! unless a `refresh` moved its `exp` first.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::SocketIo;
use crate::tasks::TaskGuard;
use parking_lot::Mutex;
use socketioxide::socket::Sid;

use crate::Inner;
use crate::clock::now_s;
use crate::conn::{conn_of, end_session};

/// Entries are `(exp, namespace, socket id)`, ordered by `exp`.
#[derive(Default)]
pub struct ExpiryQueue {
    set: Mutex<BTreeSet<(i64, String, Sid)>>,
}

/// How often due sessions are looked for; the precision of expiry.
const TICK: Duration = Duration::from_millis(250);

impl ExpiryQueue {
    pub fn schedule(&self, exp: i64, ns: &str, sid: Sid) {
        self.set.lock().insert((exp, ns.to_string(), sid));
    }

    pub fn cancel(&self, exp: i64, ns: &str, sid: Sid) {
        self.set.lock().remove(&(exp, ns.to_string(), sid));
    }

    /// Removes and returns every entry due at `now`.
    fn due(&self, now: i64) -> Vec<(i64, String, Sid)> {
        let mut set = self.set.lock();
        let mut out = Vec::new();
        while let Some(first) = set.first() {
            if first.0 > now {
                break;
            }
            if let Some(e) = set.pop_first() {
                out.push(e);
            }
        }
        out
    }
}

pub fn spawn(tasks: &TaskGuard, inner: Arc<Inner>, io: SocketIo) {
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // `exp` is the first second the token is no longer valid.
            let now = now_s();
            for (exp, ns, sid) in inner.local.expiry.due(now) {
                let Some(s) = io.of(&ns).and_then(|op| op.get_socket(sid)) else { continue };
                let Some(conn) = conn_of(&s) else { continue };
                // A refresh moved `exp`: its own entry is in the set.
                if conn.identity.read().exp != exp {
                    continue;
                }
                end_session(&inner, &s, policy::SessionEnd::TokenExpired);
            }
        }
    });
}
