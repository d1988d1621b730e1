//! Rolling upgrades: a node must read what nodes of the previous and the next release
//! write. The frozen bytes below were written by the first release of the v1 schema; they
//! must keep decoding as long as v1 is spoken.

use bus::{Control, Payload, decode_control, decode_room};
use prost::Message as _;

/// `RoomMessage{tenant: "acme", room: "chat", event: {event: "msg", data_json: {"a":1}},
/// from: "alice", origin_node: "n1", origin_conn: "c1", echo: false, id: "n1-1",
/// ts: 1700000000000}` as written by release 0.1.
const ROOM_V1_0: &str = "0a0461636d651204636861741a0e0a036d736712077b2261223a317d3205616c6963653a026e314202633152046e312d315880d095ffbc31";

/// `Control{kick: {tenant: "acme", sub: "mallory"}, origin_node: "n1"}` from release 0.1.
const KICK_V1_0: &str = "120f0a0461636d651207 6d616c6c6f72797a026e31";

fn bytes(hex_str: &str) -> Vec<u8> {
    let clean: String = hex_str.chars().filter(|c| !c.is_whitespace()).collect();
    (0..clean.len()).step_by(2).map(|i| u8::from_str_radix(&clean[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn decodes_what_the_first_v1_release_wrote() {
    let m = decode_room(&bytes(ROOM_V1_0), 7, "n2").expect("decodes");
    assert_eq!(m.tenant, "acme");
    assert_eq!(m.room, "chat");
    assert_eq!(m.payload, Payload::Event { event: "msg".into(), data: serde_json::json!({"a": 1}) });
    assert_eq!(m.from.as_deref(), Some("alice"));
    assert_eq!(m.id, "n1-1");
    assert_eq!(m.ts, 1_700_000_000_000);
    assert_eq!(m.offset, 7);
    assert_eq!(m.origin_conn, None, "written on another node");
    assert_eq!(
        decode_control(&bytes(KICK_V1_0)),
        Some(Control::Kick { tenant: "acme".into(), sub: "mallory".into() })
    );
}

#[test]
fn tolerates_fields_from_a_newer_release() {
    // A newer writer adds field 40 (a string) and field 41 (a varint); this release skips
    // them and reads the rest.
    let mut b = bytes(ROOM_V1_0);
    b.extend_from_slice(&[0xc2, 0x02, 0x03, b'n', b'e', b'w', 0xc8, 0x02, 0x2a]);
    let m = decode_room(&b, 1, "n1").expect("unknown fields are skipped");
    assert_eq!(m.room, "chat");
    assert_eq!(m.origin_conn.as_deref(), Some("c1"));
}

#[test]
fn frozen_bytes_match_what_this_release_writes() {
    // If this fails, the v1 encoding changed incompatibly: make a v2 package instead.
    let m = bus::pb::RoomMessage {
        tenant: "acme".into(),
        room: "chat".into(),
        payload: Some(bus::pb::room_message::Payload::Event(bus::pb::Event {
            event: "msg".into(),
            data_json: br#"{"a":1}"#.to_vec(),
        })),
        from: Some("alice".into()),
        origin_node: "n1".into(),
        origin_conn: "c1".into(),
        echo: false,
        id: "n1-1".into(),
        ts: 1_700_000_000_000,
        trace: Default::default(),
    };
    assert_eq!(m.encode_to_vec(), bytes(ROOM_V1_0));
}

#[test]
fn garbage_is_refused_not_panicked_on() {
    for b in [&b""[..], b"\xff", b"\x0a\xff\xff\xff\xff\x0f", &[0u8; 64]] {
        let _ = decode_room(b, 0, "n");
        let _ = decode_control(b);
    }
}
