//! Small helpers: clocks, RFC 3339 times, name checks as problems (the rules are
//! `policy`'s) and store and bus failures as problems (their codes are the errors' own).

use bus::{Bus, BusError, Control};
use problem::{Code, Problem};
use state::StoreError;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Unix seconds now.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix seconds as an RFC 3339 string (UTC). Out-of-range values are clamped to the range
/// RFC 3339 can express rather than failing an answer.
pub fn rfc3339(secs: i64) -> String {
    let secs = secs.clamp(-62_135_596_800, 253_402_300_799);
    OffsetDateTime::from_unix_timestamp(secs).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// Unix milliseconds as an RFC 3339 string (UTC).
pub fn rfc3339_ms(ms: i64) -> String {
    let ms = ms.clamp(-62_135_596_800_000, 253_402_300_799_999);
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A `400 invalid_request` problem.
pub fn invalid(detail: impl Into<String>) -> Problem {
    Problem::of(Code::InvalidRequest, detail)
}

/// The problem a store failure answers with. The store's own message is logged, not sent.
pub fn store_err(e: StoreError) -> Problem {
    let detail = match &e {
        StoreError::NotFound => "not found",
        StoreError::Conflict => "already exists",
        StoreError::Unavailable(msg) => {
            tracing::warn!(error = %msg, "state store unavailable");
            "the state store is unavailable; retry"
        }
    };
    Problem::of(e.kind(), detail)
}

/// The problem a bus failure answers with.
pub fn bus_err(e: BusError) -> Problem {
    tracing::warn!(error = %e, "bus unavailable");
    Problem::of(e.kind(), "the message bus is unavailable; retry")
}

/// Sends a control message after a change was saved ([`crate::service::notify`]): a
/// failure is a 503 whose detail says the change itself was kept.
pub async fn notify(bus: &dyn Bus, c: Control, what: &str) -> Result<(), Problem> {
    crate::service::notify(bus, c, what).await.map_err(Problem::from)
}

/// A user id (`sub`) or token id (`jti`) as `policy::valid_id_claim` has it, so that
/// what is minted or revoked can also be verified.
pub fn check_id_claim(field: &str, v: &str) -> Result<(), Problem> {
    if !policy::valid_id_claim(v) {
        return Err(invalid(format!("{field} must be 1-256 bytes without control characters")));
    }
    Ok(())
}

/// A display name: 1-200 bytes, no control characters.
pub fn check_name(field: &str, v: &str) -> Result<(), Problem> {
    if v.trim().is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
        return Err(invalid(format!("{field} must be 1-200 bytes without control characters")));
    }
    Ok(())
}

/// Key ids and the ids this API generates follow `policy`'s rules.
pub use policy::{valid_kid, valid_record_id};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.5Z");
        assert!(!rfc3339(i64::MAX).is_empty());
        assert!(!rfc3339_ms(i64::MIN).is_empty());
    }

    #[test]
    fn ids() {
        assert!(valid_kid("k_0a"));
        assert!(!valid_kid("../x"));
        assert!(!valid_kid(""));
        assert!(valid_record_id("ak_12"));
        assert!(!valid_record_id("a b"));
        assert!(check_id_claim("sub", "u\0").is_err());
        assert!(check_name("name", "  ").is_err());
    }
}
