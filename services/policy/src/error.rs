//! Why a handshake (SPEC 3.4) or an event (SPEC 3.5) was refused; each maps to one
//! [`Code`].

use crate::Code;

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

    /// The SPEC code, as the client reads it.
    pub fn code(self) -> &'static str {
        Code::from(self).as_str()
    }
}

impl From<Refusal> for Code {
    fn from(r: Refusal) -> Code {
        match r {
            Refusal::UnknownTenant => Code::UnknownTenant,
            Refusal::MissingCredentials => Code::MissingCredentials,
            Refusal::InvalidToken => Code::InvalidToken,
            Refusal::TokenExpired => Code::TokenExpired,
            Refusal::TokenNotYetValid => Code::TokenNotYetValid,
            Refusal::TokenRevoked => Code::TokenRevoked,
            Refusal::TicketInvalid => Code::TicketInvalid,
            Refusal::QueryTokenDisabled => Code::QueryTokenDisabled,
            Refusal::CredentialSourceDisabled => Code::CredentialSourceDisabled,
            Refusal::OriginNotAllowed => Code::OriginNotAllowed,
            Refusal::RateLimited => Code::RateLimited,
            Refusal::OverCapacity => Code::OverCapacity,
            Refusal::Unavailable => Code::Unavailable,
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
    /// The SPEC code, as the client reads it.
    pub fn code(self) -> &'static str {
        Code::from(self).as_str()
    }
}

impl From<EventError> for Code {
    fn from(e: EventError) -> Code {
        match e {
            EventError::Forbidden => Code::Forbidden,
            EventError::InvalidRoom => Code::InvalidRoom,
            EventError::InvalidEvent => Code::InvalidEvent,
            EventError::PayloadTooLarge => Code::PayloadTooLarge,
            EventError::RateLimited => Code::RateLimited,
            EventError::Unavailable => Code::Unavailable,
            EventError::InvalidToken => Code::InvalidToken,
            EventError::TokenExpired => Code::TokenExpired,
            EventError::TokenRevoked => Code::TokenRevoked,
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
