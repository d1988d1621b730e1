//! Mints HS256 client tokens the way a tenant's backend would (SPEC 3.2): header `kid`,
//! claims `aud` (the tenant), `sub`, `iat`, `exp` and `caps`, signed with the UTF-8 bytes
//! of the secret.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::clock::now_s;

#[derive(Clone)]
pub struct Minter {
    key: EncodingKey,
    header: Header,
    tenant: String,
    ttl: u64,
}

impl Minter {
    pub fn new(secret: &str, kid: Option<&str>, tenant: &str, ttl: u64) -> Self {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.filter(|k| !k.is_empty()).map(str::to_string);
        Minter { key: EncodingKey::from_secret(secret.as_bytes()), header, tenant: tenant.to_string(), ttl }
    }

    /// A token for `sub` that may subscribe and publish on every room (no presence: the
    /// reference Node server has none, and presence events would skew the comparison).
    pub fn mint(&self, sub: &str) -> anyhow::Result<String> {
        let now = now_s();
        let claims = json!({
            "aud": self.tenant, "sub": sub, "iat": now, "exp": now + self.ttl,
            "caps": {"*": ["subscribe", "publish"]},
        });
        Ok(jsonwebtoken::encode(&self.header, &claims, &self.key)?)
    }
}

/// The JSON `auth` payload of a CONNECT packet carrying a token or a ticket.
pub fn auth_json(field: &str, value: &str, resume: Option<&str>) -> String {
    match resume {
        Some(r) => format!("{{\"{field}\":\"{value}\",\"resume\":{r}}}"),
        None => format!("{{\"{field}\":\"{value}\"}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_verifiable_tokens() -> anyhow::Result<()> {
        let m = Minter::new("s3cret", Some("demo-hs256"), "demo", 60);
        let t = m.mint("u1")?;
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
        v.set_audience(&["demo"]);
        let d = jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &v,
        )?;
        assert_eq!(d.header.kid.as_deref(), Some("demo-hs256"));
        assert_eq!(d.claims["sub"], "u1");
        assert_eq!(d.claims["caps"]["*"][1], "publish");
        assert_eq!(auth_json("token", "abc", None), r#"{"token":"abc"}"#);
        Ok(())
    }
}
