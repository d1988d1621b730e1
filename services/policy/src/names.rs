//! Validation of the names users choose: tenant ids, rooms and events (SPEC 3.1, 3.5).
//! Each check is a byte scan with no allocation, because rooms are validated on every
//! publish.

/// Longest room name, in bytes.
pub const MAX_ROOM_BYTES: usize = 200;
/// Longest event name, in bytes.
pub const MAX_EVENT_BYTES: usize = 128;

/// Tenant ids match `[a-z0-9][a-z0-9-]{0,62}`.
pub fn validate_tenant_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A user id (`sub`) or token id (`jti`): 1-256 bytes, no control characters. The token
/// verifier applies it to claims, and the admin API to what it mints or revokes, so that
/// whatever is minted or revoked can also be verified.
pub fn valid_id_claim(v: &str) -> bool {
    !v.is_empty() && v.len() <= crate::token::MAX_ID_BYTES && !v.chars().any(char::is_control)
}

/// A key id: 1-128 bytes of `A-Z a-z 0-9 _ - . : =`.
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 128
        && kid.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':' | b'='))
}

/// An id the admin API generated (API keys, revocations): 1-64 bytes of `A-Z a-z 0-9 _ -`.
pub fn valid_record_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

/// Room names are 1–200 bytes of `A-Z a-z 0-9 _ - : . @ / =`.
pub fn validate_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_BYTES
        && room
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b':' | b'.' | b'@' | b'/' | b'='))
}

/// Names the Socket.IO client or this server gives a meaning of their own: a client
/// listening for a published event of that name would be confused with the protocol's.
const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
    "error",
    "message",
    "reconnect",
    "reconnect_attempt",
    "reconnect_error",
    "reconnect_failed",
    "ping",
    "pong",
    "session",
    "session_end",
    "presence:join",
    "presence:leave",
];

/// Event names are 1–128 bytes of printable characters, not a reserved name.
pub fn validate_event(event: &str) -> bool {
    !event.is_empty()
        && event.len() <= MAX_EVENT_BYTES
        && !event.chars().any(char::is_control)
        && !RESERVED_EVENTS.contains(&event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["a", "demo", "acme-1", "0", &"a".repeat(63)] {
            assert!(validate_tenant_id(ok), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", "a/b", &"a".repeat(64), "é", "a b", "*", ">"] {
            assert!(!validate_tenant_id(bad), "{bad}");
        }
    }

    #[test]
    fn rooms() {
        for ok in ["chat", "a", "user:42", "x@y.z/w=1_-", &"r".repeat(200)] {
            assert!(validate_room(ok), "{ok}");
        }
        for bad in ["", " ", "a b", "a*", "a>", "é", "a\0", &"r".repeat(201), "a\nb", "#"] {
            assert!(!validate_room(bad), "{bad}");
        }
    }

    #[test]
    fn events() {
        assert!(validate_event("chat message"));
        assert!(validate_event("msg:new"));
        assert!(validate_event(&"e".repeat(128)));
        assert!(!validate_event(&"e".repeat(129)));
        assert!(!validate_event(""));
        assert!(!validate_event("connect"));
        assert!(!validate_event("disconnect"));
        assert!(!validate_event("session_end"));
        assert!(!validate_event("a\u{7}b"));
    }
}
