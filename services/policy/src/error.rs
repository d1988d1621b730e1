//! The stable codes of SPEC 3.4 (handshake refusals) and 3.5 (event acks).

/// Why a handshake was refused. `code()` is exactly the string a client sees as the
/// `connect_error` message, so these strings are part of the public contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    #[error("unknown_tenant")]
    UnknownTenant,
    #[error("missing_credentials")]
    MissingCredentials,
    #[error("invalid_token")]
    InvalidToken,
    #[error("token_expired")]
    TokenExpired,
    #[error("token_not_yet_valid")]
    TokenNotYetValid,
    #[error("token_revoked")]
    TokenRevoked,
    #[error("ticket_invalid")]
    TicketInvalid,
    #[error("query_token_disabled")]
    QueryTokenDisabled,
    #[error("credential_source_disabled")]
    CredentialSourceDisabled,
    #[error("origin_not_allowed")]
    OriginNotAllowed,
    #[error("rate_limited")]
    RateLimited,
    #[error("over_capacity")]
    OverCapacity,
    #[error("unavailable")]
    Unavailable,
}

impl Refusal {
    /// Every refusal, for metrics that pre-register one series per code.
    pub const ALL: [Refusal; 13] = [
        Refusal::UnknownTenant,
        Refusal::MissingCredentials,
        Refusal::InvalidToken,
        Refusal::TokenExpired,
        Refusal::TokenNotYetValid,
        Refusal::TokenRevoked,
        Refusal::TicketInvalid,
        Refusal::QueryTokenDisabled,
        Refusal::CredentialSourceDisabled,
        Refusal::OriginNotAllowed,
        Refusal::RateLimited,
        Refusal::OverCapacity,
        Refusal::Unavailable,
    ];

    /// The SPEC code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::UnknownTenant => "unknown_tenant",
            Refusal::MissingCredentials => "missing_credentials",
            Refusal::InvalidToken => "invalid_token",
            Refusal::TokenExpired => "token_expired",
            Refusal::TokenNotYetValid => "token_not_yet_valid",
            Refusal::TokenRevoked => "token_revoked",
            Refusal::TicketInvalid => "ticket_invalid",
            Refusal::QueryTokenDisabled => "query_token_disabled",
            Refusal::CredentialSourceDisabled => "credential_source_disabled",
            Refusal::OriginNotAllowed => "origin_not_allowed",
            Refusal::RateLimited => "rate_limited",
            Refusal::OverCapacity => "over_capacity",
            Refusal::Unavailable => "unavailable",
        }
    }
}

/// Why an event was refused; sent in the ack as `{ok: false, error: {code, message}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum EventError {
    #[error("the token does not grant this right on this room")]
    Forbidden,
    #[error("room names are 1-200 bytes of A-Z a-z 0-9 _ - : . @ / =")]
    InvalidRoom,
    #[error("event names are 1-128 bytes and not reserved by Socket.IO")]
    InvalidEvent,
    #[error("the message is larger than the tenant's max_message_bytes")]
    PayloadTooLarge,
    #[error("too many messages: slow down")]
    RateLimited,
    #[error("the message bus is unavailable; retry")]
    Unavailable,
    #[error("the token is invalid")]
    InvalidToken,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the token was revoked")]
    TokenRevoked,
}

impl EventError {
    /// The SPEC code.
    pub fn code(self) -> &'static str {
        match self {
            EventError::Forbidden => "forbidden",
            EventError::InvalidRoom => "invalid_room",
            EventError::InvalidEvent => "invalid_event",
            EventError::PayloadTooLarge => "payload_too_large",
            EventError::RateLimited => "rate_limited",
            EventError::Unavailable => "unavailable",
            EventError::InvalidToken => "invalid_token",
            EventError::TokenExpired => "token_expired",
            EventError::TokenRevoked => "token_revoked",
        }
    }
}

impl From<Refusal> for EventError {
    /// A `refresh` reuses the handshake's token checks; only the token codes can occur.
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::TokenExpired => EventError::TokenExpired,
            Refusal::TokenRevoked => EventError::TokenRevoked,
            Refusal::Unavailable => EventError::Unavailable,
            Refusal::RateLimited => EventError::RateLimited,
            _ => EventError::InvalidToken,
        }
    }
}
