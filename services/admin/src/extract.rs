//! Extractors whose every rejection is a problem: axum's own answer in plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::header;
use http::request::Parts;
use problem::{Code, Problem};
use serde::de::DeserializeOwned;

use crate::util::invalid;

/// A JSON body: `application/json` (or `application/*+json`) or 415; at most the route's
/// body limit or 413; well-formed and of the expected shape (unknown fields refused by
/// the request types) or 400.
pub struct Body<T>(pub T);

fn is_json(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !is_json(ct) {
            return Err(Problem::of(Code::UnsupportedMediaType, "the request body must be application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::of(Code::PayloadTooLarge, "the request body is too large")
            } else {
                invalid("the request body could not be read")
            }
        })?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| invalid(format!("invalid JSON body: {e}")))
    }
}

/// Path parameters; a parameter that is not valid UTF-8 after percent-decoding is a 400.
pub struct P<T>(pub T);

impl<S, T> FromRequestParts<S> for P<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| P(p.0))
            .map_err(|_| invalid("invalid path parameter"))
    }
}

/// Query parameters; unknown or malformed ones are a 400.
pub struct Q<T>(pub T);

impl<S, T> FromRequestParts<S> for Q<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| invalid(format!("invalid query: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
        assert!(!is_json("application/jsonx"));
    }
}
