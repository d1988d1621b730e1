//! Revocations (SPEC §5): which identities a revocation matches.

use serde::{Deserialize, Serialize};

use crate::token::{Identity, TIME_LEEWAY_SECONDS};

/// What a revocation matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RevocationRule {
    /// One token, by its `jti`.
    Jti { jti: String },
    /// Tokens of `sub` with an `iat` before `issued_before`.
    SubBefore { sub: String, issued_before: i64 },
    /// Every token of `sub` issued until the revocation was made, and those without `iat`.
    Sub { sub: String },
}

/// A stored revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub id: String,
    #[serde(flatten)]
    pub rule: RevocationRule,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which no token it can match is still valid.
    pub expires_at: i64,
}

impl Revocation {
    /// Builds a revocation made at `now`, with the TTL of the longest remaining life of a
    /// token it can match: a token accepted now or later expires at most
    /// `max_token_ttl_seconds` (plus the `iat` leeway) after now.
    pub fn new(id: String, rule: RevocationRule, now: i64, max_token_ttl_seconds: u64) -> Revocation {
        let ttl = i64::try_from(max_token_ttl_seconds).unwrap_or(i64::MAX / 4);
        Revocation {
            id,
            rule,
            created_at: now,
            expires_at: now.saturating_add(ttl).saturating_add(TIME_LEEWAY_SECONDS),
        }
    }

    /// Whether this revocation matches the identity.
    pub fn matches(&self, id: &Identity) -> bool {
        match &self.rule {
            RevocationRule::Jti { jti } => id.jti.as_deref() == Some(jti.as_str()),
            RevocationRule::Sub { sub } => *sub == id.sub && id.iat.is_none_or(|iat| iat <= self.created_at),
            RevocationRule::SubBefore { sub, issued_before } => {
                *sub == id.sub && id.iat.is_some_and(|iat| iat < *issued_before)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Caps, CredentialSource};

    fn ident(sub: &str, jti: Option<&str>, iat: Option<i64>) -> Identity {
        Identity {
            sub: sub.into(),
            jti: jti.map(Into::into),
            iat,
            exp: 10_000,
            caps: Caps::default(),
            meta: None,
            source: CredentialSource::Auth,
        }
    }

    #[test]
    fn rules() {
        let by_jti = Revocation::new("r1".into(), RevocationRule::Jti { jti: "j".into() }, 100, 60);
        assert!(by_jti.matches(&ident("u", Some("j"), None)));
        assert!(!by_jti.matches(&ident("u", Some("k"), None)));
        assert!(!by_jti.matches(&ident("u", None, None)));
        assert_eq!(by_jti.expires_at, 100 + 60 + TIME_LEEWAY_SECONDS);

        let by_sub = Revocation::new("r2".into(), RevocationRule::Sub { sub: "u".into() }, 100, 60);
        assert!(by_sub.matches(&ident("u", None, Some(99))));
        assert!(by_sub.matches(&ident("u", None, Some(100))));
        assert!(by_sub.matches(&ident("u", None, None)));
        assert!(!by_sub.matches(&ident("u", None, Some(101))));
        assert!(!by_sub.matches(&ident("v", None, Some(1))));

        let before = Revocation::new(
            "r3".into(),
            RevocationRule::SubBefore { sub: "u".into(), issued_before: 50 },
            100,
            60,
        );
        assert!(before.matches(&ident("u", None, Some(49))));
        assert!(!before.matches(&ident("u", None, Some(50))));
        assert!(!before.matches(&ident("u", None, None)));
    }

    #[test]
    fn json_forms() {
        let r: RevocationRule = serde_json::from_str(r#"{"sub":"u","issued_before":5}"#).expect("parses");
        assert_eq!(r, RevocationRule::SubBefore { sub: "u".into(), issued_before: 5 });
        let r: RevocationRule = serde_json::from_str(r#"{"sub":"u"}"#).expect("parses");
        assert_eq!(r, RevocationRule::Sub { sub: "u".into() });
        let r: RevocationRule = serde_json::from_str(r#"{"jti":"x"}"#).expect("parses");
        assert_eq!(r, RevocationRule::Jti { jti: "x".into() });
    }
}
