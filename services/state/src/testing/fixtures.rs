//! Builders for the records tests make over and over: a tenant, a connection, a ticket
//! grant, an HMAC key and a client token signed with it. Each gives the plain default;
//! a test that needs another field says so with struct update syntax
//! (`Tenant { created_at: 7, ..tenant("acme") }`) or the token builder's methods.

use policy::{Algorithm, Caps, KeyMaterial, KeyRecord, Secret, TenantPolicy};
use serde_json::{Value, json};

use crate::{ConnRecord, Tenant, TicketGrant};

/// A tenant with the default policy, named after its id, created at 1.
pub fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: id.into(),
        policy: TenantPolicy::default(),
        created_at: 1,
        managed_by: None,
    }
}

/// A WebSocket connection of `sub` on `node`, opened at 1.
pub fn conn(id: &str, sub: &str, node: &str) -> ConnRecord {
    ConnRecord {
        id: id.into(),
        sub: sub.into(),
        node: node.into(),
        transport: "websocket".into(),
        connected_at: 1,
    }
}

/// A ticket grant for `sub` with every right, whose session never ends in a test.
pub fn grant(sub: &str) -> TicketGrant {
    TicketGrant { sub: sub.into(), caps: Caps::all(), meta: None, exp: i64::MAX / 2, jti: None, iat: None }
}

/// An HS256 key record; the key is the UTF-8 bytes of `secret` (SPEC 3.2).
pub fn hmac_key(kid: &str, secret: &str) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        alg: Some("HS256".into()),
        material: KeyMaterial::Hmac { secret: Secret::new(secret) },
        created_at: 0,
    }
}

/// A client token for a tenant, signed with an HS256 key: `iat` now and `exp` an hour
/// later unless changed.
#[must_use]
pub struct TokenBuilder {
    claims: Value,
    kid: String,
    secret: String,
}

/// [`TokenBuilder`] for `sub` at `tenant`, signed by the key `kid` with `secret`.
pub fn token(tenant: &str, sub: &str, kid: &str, secret: &str) -> TokenBuilder {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    TokenBuilder {
        claims: json!({"aud": tenant, "sub": sub, "iat": now, "exp": now + 3600}),
        kid: kid.into(),
        secret: secret.into(),
    }
}

impl TokenBuilder {
    /// Sets (or with `Value::Null`, removes) one claim.
    pub fn claim(mut self, name: &str, v: Value) -> TokenBuilder {
        if let Some(o) = self.claims.as_object_mut() {
            if v.is_null() {
                o.remove(name);
            } else {
                o.insert(name.into(), v);
            }
        }
        self
    }

    /// Every right on every room.
    pub fn all_rights(self) -> TokenBuilder {
        self.claim("caps", json!({"*": ["subscribe", "publish", "presence"]}))
    }

    pub fn sign(self) -> String {
        policy::mint_hmac(Algorithm::HS256, Some(&self.kid), &Secret::new(self.secret), &self.claims)
            .expect("an HS256 key signs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_with_their_key() {
        let (ring, errors) =
            policy::KeyRing::from_records([&hmac_key("k1", "fixture-secret-0123456789abcdef")]);
        assert!(errors.is_empty());
        let t = token("acme", "u1", "k1", "fixture-secret-0123456789abcdef").all_rights().sign();
        let now = i64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs(),
        )
        .expect("fits");
        let id = policy::verify_token(
            &t,
            "acme",
            &ring,
            &TenantPolicy::default(),
            policy::CredentialSource::Auth,
            now,
        )
        .expect("valid");
        assert_eq!(id.sub, "u1");
        assert!(id.caps.allows("any", policy::Right::Publish));
        let expired =
            token("acme", "u1", "k1", "fixture-secret-0123456789abcdef").claim("exp", json!(1)).sign();
        let r = policy::verify_token(
            &expired,
            "acme",
            &ring,
            &TenantPolicy::default(),
            policy::CredentialSource::Auth,
            now,
        );
        assert_eq!(r.err(), Some(policy::Refusal::TokenExpired));
    }
}
