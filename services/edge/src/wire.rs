//! What the edge puts on the wire for a delivered event, shared by live delivery
//! (`deliver`) and replay (`gate`).

use bus::Message;
use serde_json::json;

/// The `meta` argument of a delivered event (SPEC 3.6).
pub fn event_meta(msg: &Message) -> serde_json::Value {
    json!({
        "room": msg.room,
        "id": msg.id,
        "offset": msg.offset.to_string(),
        "from": msg.from,
        "ts": msg.ts,
    })
}
