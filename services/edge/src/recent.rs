//! The newest events of each room this node receives, kept so that a resume can be
//! answered from memory instead of the bus's history.
//!
//! Why: when a node drains, its clients resume together on the other nodes, which already
//! receive those rooms live. Reading each client's missed events back from JetStream costs
//! a round trip per event; under a rolling restart that is hundreds of thousands of
//! requests in a few seconds, resumes slow down, clients fall behind the history's reach
//! and lose their sessions. From memory a resume costs nothing.
//!
//! Correctness rests on one fact: from the moment this node takes interest in a room, the
//! bus hands it every event of the room in offset order without gaps (it catches up after
//! a reconnection). So the events held here are complete from the oldest one held: a
//! client that has seen that one (or a later one) gets everything it missed from here.
//! Anything older goes to the bus's history as before. Interest ending forgets the room.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bus::{Message, Payload};
use parking_lot::Mutex;

/// Events kept per room; older ones are dropped first.
const PER_ROOM: usize = 256;
/// Events older than this (milliseconds) are dropped when the room gets a new one.
const MAX_AGE_MS: i64 = 60_000;

/// tenant → room → its newest events, oldest first. Nested so that recording an event
/// (once per message, on the delivery path) looks up by `&str` without allocating a key.
type Rooms = HashMap<String, HashMap<String, VecDeque<Arc<Message>>>>;

#[derive(Default)]
pub struct Recent {
    rooms: Mutex<Rooms>,
}

/// What [`Recent::since`] found: every event after the offset asked for, and the newest
/// offset this node has seen in the room.
pub struct Found {
    pub messages: Vec<Message>,
    pub newest: u64,
}

impl Recent {
    /// Keeps a live event (presence changes carry no offset and are not kept).
    pub fn record(&self, m: &Arc<Message>) {
        if m.offset == 0 || !matches!(m.payload, Payload::Event { .. }) {
            return;
        }
        let mut tenants = self.rooms.lock();
        let rooms = match tenants.get_mut(&m.tenant) {
            Some(r) => r,
            None => tenants.entry(m.tenant.clone()).or_default(),
        };
        let q = match rooms.get_mut(&m.room) {
            Some(q) => q,
            None => rooms.entry(m.room.clone()).or_default(),
        };
        // Offsets only grow on a room's feed; anything else means the feed started over
        // (the stream was reset): what is held no longer describes it.
        if q.back().is_some_and(|b| b.offset >= m.offset) {
            q.clear();
        }
        q.push_back(m.clone());
        while q.len() > PER_ROOM || q.front().is_some_and(|f| m.ts - f.ts > MAX_AGE_MS) {
            q.pop_front();
        }
    }

    /// Forgets a room this node no longer receives: its feed is no longer complete.
    pub fn forget(&self, tenant: &str, room: &str) {
        let mut tenants = self.rooms.lock();
        if let Some(rooms) = tenants.get_mut(tenant) {
            rooms.remove(room);
            if rooms.is_empty() {
                tenants.remove(tenant);
            }
        }
    }

    /// Every event of the room after `after`, when this node holds all of them.
    pub fn since(&self, tenant: &str, room: &str, after: u64) -> Option<Found> {
        let tenants = self.rooms.lock();
        let q = tenants.get(tenant)?.get(room)?;
        let (front, back) = (q.front()?, q.back()?);
        // Before the oldest held event there may be events this node never saw; past the
        // newest, the client saw something this node has not received yet.
        if after < front.offset || after > back.offset {
            return None;
        }
        let newest = back.offset;
        let messages = q.iter().filter(|m| m.offset > after).map(|m| (**m).clone()).collect();
        Some(Found { messages, newest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(room: &str, offset: u64, ts: i64) -> Arc<Message> {
        Arc::new(Message {
            tenant: "t".into(),
            room: room.into(),
            payload: Payload::Event { event: "e".into(), data: json!(offset) },
            from: None,
            origin_conn: None,
            echo: false,
            id: format!("m{offset}"),
            offset,
            ts,
            trace: Default::default(),
        })
    }

    fn offsets(f: &Found) -> Vec<u64> {
        f.messages.iter().map(|m| m.offset).collect()
    }

    #[test]
    fn answers_only_when_it_holds_everything_after_the_offset() {
        let r = Recent::default();
        assert!(r.since("t", "a", 0).is_none(), "nothing held");
        for o in [10, 12, 15] {
            r.record(&msg("a", o, 1_000));
        }
        // The client saw 10 or later: all it missed is here.
        let f = r.since("t", "a", 10).expect("held");
        assert_eq!((offsets(&f), f.newest), (vec![12, 15], 15));
        assert_eq!(offsets(&r.since("t", "a", 13).expect("held")), vec![15]);
        assert_eq!(offsets(&r.since("t", "a", 15).expect("held")), Vec::<u64>::new());
        // Before the oldest held event there may be events this node never saw.
        assert!(r.since("t", "a", 9).is_none());
        assert!(r.since("t", "a", 16).is_none(), "the client is ahead of this node's feed");
        assert!(r.since("t", "b", 10).is_none(), "another room");
        r.forget("t", "a");
        assert!(r.since("t", "a", 10).is_none(), "forgotten");
    }

    #[test]
    fn bounded_by_count_and_age_and_reset_by_a_restarted_feed() {
        let r = Recent::default();
        for o in 1..=(PER_ROOM as u64 + 10) {
            r.record(&msg("a", o, 1_000));
        }
        assert!(r.since("t", "a", 10).is_none(), "oldest dropped");
        assert_eq!(r.since("t", "a", 11).expect("held").messages.len(), PER_ROOM - 1);
        r.record(&msg("a", 1_000, 1_000 + MAX_AGE_MS + 1));
        let f = r.since("t", "a", 1_000).expect("held");
        assert_eq!(f.newest, 1_000);
        assert!(r.since("t", "a", 999).is_none(), "aged out");
        // A feed that starts over (offset not growing) replaces what was held.
        r.record(&msg("a", 3, 1_000 + MAX_AGE_MS + 2));
        assert!(r.since("t", "a", 1_000).is_none());
        assert_eq!(r.since("t", "a", 3).expect("held").newest, 3);
    }
}
