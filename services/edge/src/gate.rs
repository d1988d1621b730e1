//! The replay gate: orders a resumed room's history before its live events, each event
//! once (SPEC 3.7; `resume` reads the history and drives the gate).
//!
//! The seam between history and live events is closed by a gate per room and socket: the
//! socket joins the socketioxide room `~r:<room>` before the room itself, and deliveries
//! skip gated sockets and hand them the event through [`ReplayGates::offer`], which
//! buffers it while the history is read. [`ReplayGates::finish`] then emits the history,
//! then the buffer, both deduplicated by offset. The gate stays up until the live feed has
//! caught up with the history: the stream the history comes from can be ahead of the live
//! feed this node receives (under load, by hundreds of milliseconds), and an event
//! replayed from history must not arrive again live. So `offer` keeps deduplicating, and
//! lifts the gate when an event at or past the newest offset the history knew arrives. It
//! does so from inside the delivery of that event — deliveries of one room are sequential
//! — so no later event can be broadcast between the gate coming down and the socket being
//! back in the room: each event reaches the socket exactly once.
//!
//! The gate knows sockets only as `SocketRef`s and nothing of the edge's state: what to do
//! with a socket whose queue is full is the caller's (`deliver` passes `slow::evict`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::SocketRef;
use bus::Message;
use parking_lot::Mutex;
use socketioxide::{SendError, SocketError};

use crate::wire::event_meta;

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

/// One socket's gates: the rooms whose history is being replayed to it, where live
/// messages wait.
#[derive(Debug, Default)]
pub struct ReplayGates {
    rooms: Mutex<HashMap<String, RoomReplay>>,
}

impl ReplayGates {
    /// Puts the gate up for `room` on this socket.
    pub fn begin(&self, s: &SocketRef, room: &str) {
        self.open(room);
        s.join(gate_room(room));
    }

    /// A live event for a gated socket: buffered while its history is replayed, emitted
    /// (once) after. A full queue calls `evict` (the socket becomes a slow consumer, so
    /// that the event it missed is replayed when it resumes).
    pub fn offer(&self, s: &SocketRef, m: &Arc<Message>, evict: impl FnOnce()) {
        self.offer_with(m, |m| emit_live(s, m, evict), |room| s.leave(gate_room(room)));
    }

    /// Emits the history, then what arrived meanwhile, each event once; the gate comes
    /// down once the live feed reaches `newest` (see the module's documentation). Live
    /// events keep going to the buffer until it is empty, so the lock is never held across
    /// a wait.
    pub async fn finish(&self, s: &SocketRef, room: &str, history: Vec<Message>, after: u64, newest: u64) {
        let mut last = self.resume_point(room, after);
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
            match self.settle(room, last, newest) {
                Some(more) => batch = more,
                None => return,
            }
        }
    }

    /// Drops a room's gate (the socket left the room).
    pub fn abandon(&self, s: &SocketRef, room: &str) {
        if self.rooms.lock().remove(room).is_some() {
            s.leave(gate_room(room));
        }
    }

    /// The state half of [`ReplayGates::begin`].
    fn open(&self, room: &str) {
        self.rooms.lock().insert(room.to_string(), RoomReplay::default());
    }

    /// The state half of [`ReplayGates::offer`]: `emit` sends the event to the socket,
    /// `lift` takes it out of the gate room. Both run under the lock, so that offers of
    /// one socket are ordered with the lifting.
    fn offer_with(&self, m: &Arc<Message>, emit: impl FnOnce(&Message), lift: impl FnOnce(&str)) {
        let mut replay = self.rooms.lock();
        match replay.get_mut(&m.room) {
            Some(r) if !r.done => r.buffer.push(m.clone()),
            Some(r) => {
                if m.offset > r.last {
                    emit(m);
                    r.last = m.offset;
                }
                // Presence events carry no offset and lift nothing.
                if m.offset != 0 && m.offset >= r.lift_at {
                    replay.remove(&m.room);
                    lift(&m.room);
                }
            }
            None => emit(m),
        }
    }

    /// Where a replay starts: the client saw everything up to `after`; the live feed of
    /// this node may still bring some of it (it can lag behind the node the client came
    /// from): not again.
    fn resume_point(&self, room: &str, after: u64) -> u64 {
        self.rooms.lock().get(room).map_or(0, |r| r.last).max(after)
    }

    /// After emitting everything up to `last`: the events buffered meanwhile, or `None`
    /// when there are none (the history is out and the gate waits for the live feed to
    /// reach `newest`) or the gate is gone.
    fn settle(&self, room: &str, last: u64, newest: u64) -> Option<Vec<Arc<Message>>> {
        let mut replay = self.rooms.lock();
        let r = replay.get_mut(room)?;
        if r.buffer.is_empty() {
            r.last = last;
            r.done = true;
            r.lift_at = newest.max(last).max(1);
            return None;
        }
        Some(std::mem::take(&mut r.buffer))
    }
}

/// Emits a live event to a socket whose gate handed it over; `evict` when its queue is
/// full.
fn emit_live(s: &SocketRef, m: &Message, evict: impl FnOnce()) {
    if let bus::Payload::Event { event, data } = &m.payload
        && let Err(SendError::Socket(SocketError::InternalChannelFull)) =
            s.emit(event, &(data, event_meta(m)))
    {
        evict();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn event(room: &str, offset: u64) -> Arc<Message> {
        Arc::new(Message {
            tenant: "t".into(),
            room: room.into(),
            payload: bus::Payload::Event { event: "e".into(), data: serde_json::json!(offset) },
            from: None,
            origin_conn: None,
            echo: true,
            id: format!("m{offset}"),
            offset,
            ts: 0,
            trace: Default::default(),
        })
    }

    /// Offers `m`; returns the offsets emitted and whether the gate was lifted.
    fn offer(g: &ReplayGates, m: &Arc<Message>) -> (Vec<u64>, bool) {
        let emitted = RefCell::new(Vec::new());
        let mut lifted = false;
        g.offer_with(m, |m| emitted.borrow_mut().push(m.offset), |_| lifted = true);
        (emitted.into_inner(), lifted)
    }

    fn offsets(b: &[Arc<Message>]) -> Vec<u64> {
        b.iter().map(|m| m.offset).collect()
    }

    #[test]
    fn buffers_while_replaying_then_deduplicates_until_the_feed_catches_up() {
        let g = ReplayGates::default();
        // An ungated room passes straight through.
        assert_eq!(offer(&g, &event("other", 3)), (vec![3], false));

        g.open("chat");
        assert_eq!(g.resume_point("chat", 4), 4);
        // While the history is read and emitted, live events wait.
        assert_eq!(offer(&g, &event("chat", 6)), (vec![], false));
        assert_eq!(offer(&g, &event("chat", 7)), (vec![], false));
        // History 5..=6 emitted: the buffer comes back for emitting, then the gate is done,
        // waiting for the live feed to reach the newest offset the history knew (9).
        let more = g.settle("chat", 6, 9).expect("buffered events");
        assert_eq!(offsets(&more), vec![6, 7]);
        assert_eq!(g.settle("chat", 7, 9), None);
        // Already emitted (from history): not again; the gate stays up.
        assert_eq!(offer(&g, &event("chat", 7)), (vec![], false));
        assert_eq!(offer(&g, &event("chat", 8)), (vec![8], false));
        // The feed reaches the history's newest offset: emitted once, and the gate lifts.
        assert_eq!(offer(&g, &event("chat", 9)), (vec![9], true));
        // Lifted: events go straight through again.
        assert_eq!(offer(&g, &event("chat", 9)), (vec![9], false));
    }

    #[test]
    fn offsetless_events_lift_nothing_and_a_gone_gate_settles_to_nothing() {
        let g = ReplayGates::default();
        g.open("chat");
        assert_eq!(g.settle("chat", 0, 0), None);
        // An event without an offset is not at or past `lift_at` (at least 1).
        assert_eq!(offer(&g, &event("chat", 0)), (vec![], false));
        assert_eq!(offer(&g, &event("chat", 1)), (vec![1], true));
        assert_eq!(g.settle("chat", 1, 1), None);
        assert_eq!(g.resume_point("gone", 5), 5);
    }
}
