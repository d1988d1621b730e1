//! The one place SPEC error codes become HTTP answers: `application/problem+json`
//! (RFC 9457) bodies `{type, title, status, detail, code}` with the status each code
//! maps to. Socket.IO answers carry the same codes as plain strings (see `policy`).
//!
//! It knows nothing of why an error happened; callers give the code and a detail that
//! must never contain a secret.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// The HTTP status of a SPEC code.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "missing_credentials"
        | "invalid_token"
        | "token_expired"
        | "token_not_yet_valid"
        | "token_revoked"
        | "unauthorized"
        | "ticket_invalid" => StatusCode::UNAUTHORIZED,
        "forbidden" | "origin_not_allowed" | "credential_source_disabled" | "query_token_disabled" => {
            StatusCode::FORBIDDEN
        }
        "unknown_tenant" | "not_found" => StatusCode::NOT_FOUND,
        "conflict" | "no_signing_key" | "managed_by_operator" => StatusCode::CONFLICT,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "over_capacity" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A problem answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: String,
    pub detail: String,
    pub status: StatusCode,
}

impl Problem {
    /// A problem with the status its code maps to.
    pub fn new(code: &str, detail: impl Into<String>) -> Problem {
        Problem { code: code.to_string(), detail: detail.into(), status: status_of(code) }
    }

    /// The same problem with another status (e.g. 403 for a tenant key on another tenant).
    pub fn with_status(mut self, status: StatusCode) -> Problem {
        self.status = status;
        self
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "type": format!("https://switchboard.dev/problems/{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
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
}
