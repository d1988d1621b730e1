//! Every stable error code of the contract in one typed enum: handshake refusals (SPEC
//! 3.4), event errors (SPEC 3.5), `session_end` codes (SPEC 3.6) and the codes of HTTP
//! problem answers (SPEC §5). [`Refusal`](crate::Refusal) and
//! [`EventError`](crate::EventError) say *why* something was refused; this says which
//! string the client reads. `problem::status` maps a code to its HTTP status, once.

/// A SPEC code. [`Code::as_str`] is the string on the wire (a `connect_error` message,
/// an ack's `error.code`, a `session_end` code or a problem's `code`), so these strings
/// are part of the public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    // SPEC 3.4: handshake refusals.
    UnknownTenant,
    MissingCredentials,
    InvalidToken,
    TokenExpired,
    TokenNotYetValid,
    TokenRevoked,
    TicketInvalid,
    QueryTokenDisabled,
    CredentialSourceDisabled,
    OriginNotAllowed,
    RateLimited,
    OverCapacity,
    Unavailable,
    // SPEC 3.5: event errors (plus the token codes above).
    Forbidden,
    InvalidRoom,
    InvalidEvent,
    PayloadTooLarge,
    // SPEC 3.6: `session_end` codes (plus `token_revoked`, `token_expired`).
    Kicked,
    TenantDeleted,
    Draining,
    SlowConsumer,
    // SPEC §5: HTTP problem answers.
    InvalidRequest,
    InvalidKey,
    Unauthorized,
    NotFound,
    Conflict,
    NoSigningKey,
    ManagedByOperator,
    MethodNotAllowed,
    UnsupportedMediaType,
    Internal,
}

impl Code {
    /// Every code, for tests and metrics that pre-register series.
    pub const ALL: [Code; 30] = [
        Code::UnknownTenant,
        Code::MissingCredentials,
        Code::InvalidToken,
        Code::TokenExpired,
        Code::TokenNotYetValid,
        Code::TokenRevoked,
        Code::TicketInvalid,
        Code::QueryTokenDisabled,
        Code::CredentialSourceDisabled,
        Code::OriginNotAllowed,
        Code::RateLimited,
        Code::OverCapacity,
        Code::Unavailable,
        Code::Forbidden,
        Code::InvalidRoom,
        Code::InvalidEvent,
        Code::PayloadTooLarge,
        Code::Kicked,
        Code::TenantDeleted,
        Code::Draining,
        Code::SlowConsumer,
        Code::InvalidRequest,
        Code::InvalidKey,
        Code::Unauthorized,
        Code::NotFound,
        Code::Conflict,
        Code::NoSigningKey,
        Code::ManagedByOperator,
        Code::MethodNotAllowed,
        Code::UnsupportedMediaType,
    ];

    /// The string a client reads.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::UnknownTenant => "unknown_tenant",
            Code::MissingCredentials => "missing_credentials",
            Code::InvalidToken => "invalid_token",
            Code::TokenExpired => "token_expired",
            Code::TokenNotYetValid => "token_not_yet_valid",
            Code::TokenRevoked => "token_revoked",
            Code::TicketInvalid => "ticket_invalid",
            Code::QueryTokenDisabled => "query_token_disabled",
            Code::CredentialSourceDisabled => "credential_source_disabled",
            Code::OriginNotAllowed => "origin_not_allowed",
            Code::RateLimited => "rate_limited",
            Code::OverCapacity => "over_capacity",
            Code::Unavailable => "unavailable",
            Code::Forbidden => "forbidden",
            Code::InvalidRoom => "invalid_room",
            Code::InvalidEvent => "invalid_event",
            Code::PayloadTooLarge => "payload_too_large",
            Code::Kicked => "kicked",
            Code::TenantDeleted => "tenant_deleted",
            Code::Draining => "draining",
            Code::SlowConsumer => "slow_consumer",
            Code::InvalidRequest => "invalid_request",
            Code::InvalidKey => "invalid_key",
            Code::Unauthorized => "unauthorized",
            Code::NotFound => "not_found",
            Code::Conflict => "conflict",
            Code::NoSigningKey => "no_signing_key",
            Code::ManagedByOperator => "managed_by_operator",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::Internal => "internal",
        }
    }

    /// The code a wire string names.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.iter().copied().chain([Code::Internal]).find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the server ends a session: the `session_end {code, message}` sent just before it
/// disconnects the socket (SPEC 3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEnd {
    TokenRevoked,
    TokenExpired,
    Kicked,
    TenantDeleted,
    Draining,
    SlowConsumer,
}

impl SessionEnd {
    pub const ALL: [SessionEnd; 6] = [
        SessionEnd::TokenRevoked,
        SessionEnd::TokenExpired,
        SessionEnd::Kicked,
        SessionEnd::TenantDeleted,
        SessionEnd::Draining,
        SessionEnd::SlowConsumer,
    ];

    pub const fn code(self) -> Code {
        match self {
            SessionEnd::TokenRevoked => Code::TokenRevoked,
            SessionEnd::TokenExpired => Code::TokenExpired,
            SessionEnd::Kicked => Code::Kicked,
            SessionEnd::TenantDeleted => Code::TenantDeleted,
            SessionEnd::Draining => Code::Draining,
            SessionEnd::SlowConsumer => Code::SlowConsumer,
        }
    }

    /// The human-readable `message` next to the code.
    pub const fn message(self) -> &'static str {
        match self {
            SessionEnd::TokenRevoked => "the token was revoked",
            SessionEnd::TokenExpired => "the token expired; reconnect with a fresh one",
            SessionEnd::Kicked => "the session was ended by the tenant",
            SessionEnd::TenantDeleted => "the tenant was deleted",
            SessionEnd::Draining => "the node is shutting down; reconnect",
            SessionEnd::SlowConsumer => "the connection fell behind its messages; resume to get the rest",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL.iter().copied().chain([Code::Internal]) {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert_eq!(Code::parse(c.as_str()), Some(c));
        }
        assert_eq!(Code::parse("nonsense"), None);
    }

    #[test]
    fn session_end_codes_are_the_spec_ones() {
        let codes: Vec<&str> = SessionEnd::ALL.iter().map(|e| e.code().as_str()).collect();
        assert_eq!(
            codes,
            ["token_revoked", "token_expired", "kicked", "tenant_deleted", "draining", "slow_consumer"]
        );
    }
}
