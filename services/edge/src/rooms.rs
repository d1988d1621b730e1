//! Room membership on this node, a leaf module: how many local sockets subscribe to each
//! room (so that the bus is told when this node starts and stops needing it), and the
//! names of the socketioxide rooms the edge uses internally (`~` is outside the room
//! alphabet, so no client room can collide with them).

use std::collections::HashMap;

use parking_lot::Mutex;

/// The socketioxide room of presence watchers of `room`.
pub fn presence_room(room: &str) -> String {
    format!("~p:{room}")
}

/// How many local sockets subscribe to each room, so that the bus is told when this node
/// starts and stops needing a room.
#[derive(Default)]
pub struct LocalRooms {
    map: Mutex<HashMap<(String, String), u32>>,
}

impl LocalRooms {
    /// Counts a local subscriber in; true when it is the room's first on this node.
    pub fn join(&self, tenant: &str, room: &str) -> bool {
        let mut m = self.map.lock();
        let n = m.entry((tenant.to_string(), room.to_string())).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Counts a local subscriber out; true when it was the room's last on this node.
    pub fn leave(&self, tenant: &str, room: &str) -> bool {
        let mut m = self.map.lock();
        let key = (tenant.to_string(), room.to_string());
        match m.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                m.remove(&key);
                true
            }
            None => false,
        }
    }

    pub fn count(&self, tenant: &str, room: &str) -> u32 {
        self.map.lock().get(&(tenant.to_string(), room.to_string())).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_first_and_last_subscriber_per_tenant_room() {
        let r = LocalRooms::default();
        assert!(r.join("a", "chat"));
        assert!(!r.join("a", "chat"));
        assert!(r.join("b", "chat"), "another tenant's room of the same name is another room");
        assert_eq!(r.count("a", "chat"), 2);
        assert!(!r.leave("a", "chat"));
        assert!(r.leave("a", "chat"));
        assert!(!r.leave("a", "chat"), "leaving a room never joined changes nothing");
        assert_eq!(r.count("a", "chat"), 0);
        assert_eq!(presence_room("chat"), "~p:chat");
    }
}
