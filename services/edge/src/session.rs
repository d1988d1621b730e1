//! What a socket carries for a resume (SPEC 3.7) before and while it is resumed: the
//! request read from the handshake, and the history read for it. `resume` does the
//! resuming; `gate` orders the history before live events.

use std::collections::HashMap;

use bus::Message;
use serde_json::Value;

/// Most rooms a resume may name.
const MAX_ROOMS: usize = policy::MAX_RESUME_ROOMS;
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
    pub room: String,
    pub history: Vec<Message>,
    /// The last offset the client saw.
    pub after: u64,
    /// The room's newest offset when the history was read.
    pub newest: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
