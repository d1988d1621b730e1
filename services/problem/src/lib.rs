//! The one place SPEC error codes become HTTP answers: `application/problem+json`
//! (RFC 9457) bodies `{type, title, status, detail, code}` with the status each
//! [`Code`] maps to ([`status`], the only such mapping). Socket.IO answers carry the same
//! codes as plain strings ([`Code::as_str`], through `policy::Refusal::code` and
//! `policy::EventError::code`).
//!
//! It knows nothing of why an error happened; callers give the code and a detail that
//! must never contain a secret.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
pub use policy::Code;
use policy::{EventError, Refusal};

/// The HTTP status of a SPEC code: the one mapping from codes to statuses.
pub fn status(code: Code) -> StatusCode {
    match code {
        Code::MissingCredentials
        | Code::InvalidToken
        | Code::TokenExpired
        | Code::TokenNotYetValid
        | Code::TokenRevoked
        | Code::Unauthorized
        | Code::TicketInvalid => StatusCode::UNAUTHORIZED,
        Code::Forbidden | Code::OriginNotAllowed | Code::CredentialSourceDisabled | Code::QueryTokenDisabled => {
            StatusCode::FORBIDDEN
        }
        Code::UnknownTenant | Code::NotFound => StatusCode::NOT_FOUND,
        Code::Conflict | Code::NoSigningKey | Code::ManagedByOperator => StatusCode::CONFLICT,
        Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Code::OverCapacity | Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidRoom
        | Code::InvalidEvent
        | Code::InvalidRequest
        | Code::InvalidKey
        // `session_end` codes never answer a request; were one used, it is the client's.
        | Code::Kicked
        | Code::TenantDeleted
        | Code::Draining
        | Code::SlowConsumer => StatusCode::BAD_REQUEST,
    }
}

/// The HTTP status of a code given as its string; a string that is no code is a bad
/// request.
pub fn status_of(code: &str) -> StatusCode {
    Code::parse(code).map_or(StatusCode::BAD_REQUEST, status)
}

/// A problem answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: Code,
    pub detail: String,
    pub status: StatusCode,
}

impl Problem {
    /// A problem with the status its code maps to.
    pub fn of(code: Code, detail: impl Into<String>) -> Problem {
        Problem { code, detail: detail.into(), status: status(code) }
    }

    /// [`Problem::of`] for a code given as its string. A string that is no SPEC code is a
    /// bug in the caller; it answers `internal` rather than inventing a code.
    pub fn new(code: &str, detail: impl Into<String>) -> Problem {
        Problem::of(Code::parse(code).unwrap_or(Code::Internal), detail)
    }

    /// The same problem with another status (e.g. 403 for a tenant key on another tenant).
    pub fn with_status(mut self, status: StatusCode) -> Problem {
        self.status = status;
        self
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "type": format!("https://switchboard.dev/problems/{}", self.code.as_str()),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code.as_str(),
        })
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body().to_string()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        r
    }
}

/// A refused handshake-style request (`POST /v1/tickets`): its code, and its code again
/// as the detail (a refusal tells nothing more).
impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Problem {
        Problem::of(Code::from(r), r.to_string())
    }
}

/// A refused event's code with its message.
impl From<EventError> for Problem {
    fn from(e: EventError) -> Problem {
        Problem::of(Code::from(e), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_statuses() {
        assert_eq!(status_of("invalid_token"), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of("origin_not_allowed"), StatusCode::FORBIDDEN);
        assert_eq!(status_of("unknown_tenant"), StatusCode::NOT_FOUND);
        assert_eq!(status_of("unavailable"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of("invalid_request"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("managed_by_operator"), StatusCode::CONFLICT);
        let p = Problem::new("conflict", "tenant acme exists");
        assert_eq!(p.body()["status"], 409);
        assert_eq!(p.body()["code"], "conflict");
    }

    #[test]
    fn every_code_has_one_status_and_refusals_keep_their_code() {
        for c in Code::ALL {
            assert_eq!(status_of(c.as_str()), status(c), "{c}");
        }
        assert_eq!(status(Code::Internal), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(Problem::new("no such code", "x").code, Code::Internal);
        for r in Refusal::ALL {
            let p = Problem::from(r);
            assert_eq!((p.code.as_str(), p.detail.as_str()), (r.code(), r.code()));
        }
        let p = Problem::from(EventError::PayloadTooLarge);
        assert_eq!(
            (p.status, p.body()["code"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
        );
    }
}
