//! One process, no network: publishes are delivered to the attached sink in the order
//! they were given offsets.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use crate::{
    Bus, BusError, Control, ControlMeta, Message, Payload, Publish, Published, Replay, Sink, TraceContext,
    now_ms,
};

/// Most events kept per room for resume, and for how long.
const HISTORY_PER_ROOM: usize = 1000;
const HISTORY_MS: i64 = 15 * 60 * 1000;

#[derive(Default)]
struct Room {
    last: u64,
    history: VecDeque<Message>,
}

impl Room {
    fn trim(&mut self, now: i64) {
        while self.history.len() > HISTORY_PER_ROOM
            || self.history.front().is_some_and(|m| now - m.ts > HISTORY_MS)
        {
            self.history.pop_front();
        }
    }
}

/// The single-process [`Bus`].
pub struct LocalBus {
    sink: OnceLock<Arc<dyn Sink>>,
    /// Per-room last offset. The lock is held while delivering so that delivery order is
    /// offset order even with concurrent publishers.
    rooms: tokio::sync::Mutex<HashMap<(String, String), Room>>,
    id_prefix: String,
    next_id: std::sync::atomic::AtomicU64,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus::new()
    }
}

impl LocalBus {
    pub fn new() -> LocalBus {
        LocalBus {
            sink: OnceLock::new(),
            rooms: tokio::sync::Mutex::new(HashMap::new()),
            id_prefix: format!("{:08x}", rand::random::<u32>()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

#[async_trait]
impl Bus for LocalBus {
    fn attach(&self, sink: Arc<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    async fn publish(&self, p: Publish) -> Result<Published, BusError> {
        let mut rooms = self.rooms.lock().await;
        let room = rooms.entry((p.tenant.clone(), p.room.clone())).or_default();
        let is_event = matches!(p.payload, Payload::Event { .. });
        if is_event {
            room.last += 1;
        }
        let offset = room.last;
        let n = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = Published { id: format!("{}-{n:x}", self.id_prefix), offset, ts: now_ms() };
        let msg = Arc::new(Message {
            tenant: p.tenant,
            room: p.room,
            payload: p.payload,
            from: p.from,
            origin_conn: p.origin_conn,
            echo: p.echo,
            id: out.id.clone(),
            offset,
            ts: out.ts,
            trace: p.trace,
        });
        if is_event {
            room.history.push_back((*msg).clone());
            room.trim(out.ts);
        }
        if let Some(s) = self.sink.get() {
            s.deliver(msg).await;
        }
        Ok(out)
    }

    async fn history(&self, tenant: &str, room: &str, after: u64, max: usize) -> Result<Replay, BusError> {
        let mut rooms = self.rooms.lock().await;
        let Some(r) = rooms.get_mut(&(tenant.to_string(), room.to_string())) else {
            return Ok(Replay { messages: Vec::new(), complete: true, last: 0 });
        };
        r.trim(now_ms());
        // Offsets are contiguous here: the history is complete when it still holds the
        // first event after `after` (or there is none).
        let first = r.history.front().map_or(r.last + 1, |m| m.offset);
        let messages: Vec<Message> =
            r.history.iter().filter(|m| m.offset > after).take(max).cloned().collect();
        let all = r.last.saturating_sub(after) as usize;
        Ok(Replay { complete: after + 1 >= first && messages.len() == all, messages, last: r.last })
    }

    async fn last_offset(&self, tenant: &str, room: &str) -> Result<u64, BusError> {
        Ok(self.rooms.lock().await.get(&(tenant.to_string(), room.to_string())).map_or(0, |r| r.last))
    }

    async fn set_interest(&self, _tenant: &str, _room: &str, _interested: bool) -> Result<(), BusError> {
        Ok(())
    }

    async fn control_with(&self, c: Control, trace: TraceContext) -> Result<(), BusError> {
        if let Some(s) = self.sink.get() {
            s.control_with(c, ControlMeta { trace, sent_ms: now_ms() }).await;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    fn nodes(&self) -> Vec<String> {
        vec!["local".into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Rec(Mutex<Vec<Arc<Message>>>, Mutex<Vec<Control>>);

    #[async_trait]
    impl Sink for Rec {
        async fn deliver(&self, m: Arc<Message>) {
            self.0.lock().push(m);
        }
        async fn control(&self, c: Control) {
            self.1.lock().push(c);
        }
    }

    fn ev(room: &str) -> Publish {
        Publish {
            tenant: "t".into(),
            room: room.into(),
            payload: Payload::Event { event: "e".into(), data: serde_json::json!(1) },
            from: None,
            origin_conn: None,
            echo: false,
            trace: Default::default(),
        }
    }

    #[tokio::test]
    async fn offsets_grow_per_room_and_delivery_follows_them() {
        let bus = LocalBus::new();
        let rec = Arc::new(Rec::default());
        bus.attach(rec.clone());
        assert_eq!(bus.publish(ev("a")).await.expect("publish").offset, 1);
        assert_eq!(bus.publish(ev("a")).await.expect("publish").offset, 2);
        assert_eq!(bus.publish(ev("b")).await.expect("publish").offset, 1);
        let mut presence = ev("a");
        presence.payload = Payload::PresenceJoin { sub: "u".into(), meta: None };
        assert_eq!(bus.publish(presence).await.expect("publish").offset, 2, "presence does not advance");
        let got: Vec<(String, u64)> = rec.0.lock().iter().map(|m| (m.room.clone(), m.offset)).collect();
        assert_eq!(got, vec![("a".into(), 1), ("a".into(), 2), ("b".into(), 1), ("a".into(), 2)]);
        let ids: std::collections::HashSet<String> = rec.0.lock().iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids.len(), 4, "ids are unique");
        bus.control(Control::Kick { tenant: "t".into(), sub: "u".into() }).await.expect("control");
        assert_eq!(rec.1.lock().len(), 1);
    }

    #[tokio::test]
    async fn history_replays_after_an_offset_and_knows_when_it_is_complete() {
        let bus = LocalBus::new();
        for _ in 0..5 {
            bus.publish(ev("a")).await.expect("publish");
        }
        let r = bus.history("t", "a", 2, 100).await.expect("history");
        assert_eq!(r.messages.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(r.complete);
        assert_eq!(r.last, 5);
        let r = bus.history("t", "a", 2, 2).await.expect("history");
        assert!(!r.complete, "capped below what is missing");
        let r = bus.history("t", "a", 5, 100).await.expect("history");
        assert!(r.messages.is_empty() && r.complete);
        assert_eq!(bus.last_offset("t", "a").await.expect("last"), 5);
        assert_eq!(bus.last_offset("t", "none").await.expect("last"), 0);
        // Past the retained window: incomplete.
        for _ in 0..HISTORY_PER_ROOM {
            bus.publish(ev("a")).await.expect("publish");
        }
        let r = bus.history("t", "a", 2, 10_000).await.expect("history");
        assert!(!r.complete, "events 3..=5 were dropped");
        let r = bus.history("t", "a", 10, 10_000).await.expect("history");
        assert!(r.complete);
        assert_eq!(r.messages.len(), HISTORY_PER_ROOM + 5 - 10);
    }
}
