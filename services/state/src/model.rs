//! The records the store holds.

use policy::TenantPolicy;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A tenant and its policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub policy: TenantPolicy,
    /// Unix seconds.
    pub created_at: i64,
    /// Who owns the tenant's definition when it is not the admin API: the Kubernetes
    /// operator sets it (`Tenant <namespace>/<name>`), and the admin API then refuses to
    /// change it. Absent in records written before it existed, and for admin-made tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// A tenant API key; the key itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub hash: String,
    pub created_at: i64,
}

/// What a ticket grants: the identity it was issued for (a `policy` type: the rules
/// about grants are `policy`'s; the store keeps them).
pub use policy::TicketGrant;

/// A live connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnRecord {
    pub id: String,
    pub sub: String,
    pub node: String,
    pub transport: String,
    /// Unix milliseconds.
    pub connected_at: i64,
}

/// A presence member: a user, with how many of its connections are in the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub sub: String,
    pub meta: Option<serde_json::Value>,
    pub connections: u32,
}

/// Whether a presence change was the user's first connection joining or last leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    /// True when the user joined (first connection) or left (last connection).
    pub user_changed: bool,
    /// Members in the room after the change.
    pub members: u64,
}

/// Counters added by a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsDelta {
    pub messages_in: u64,
    pub messages_out: u64,
    pub handshakes_refused: u64,
}

/// A tenant's counters (SPEC §5 `stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub connections: u64,
    pub rooms: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub handshakes_refused: u64,
}

/// `bytes` random bytes, URL-safe hex: tickets, API keys, secrets, ids.
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The stored form of a secret the store must recognise but never reveal.
pub fn hash_secret(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_records_from_before_managed_by_still_decode() {
        let old = r#"{"id":"acme","name":"Acme","policy":{},"created_at":5}"#;
        let t: Tenant = serde_json::from_str(old).expect("decodes");
        assert_eq!(t.managed_by, None);
        // And an unowned record is written as before, without the field.
        assert!(!serde_json::to_string(&t).expect("encodes").contains("managed_by"));
        let owned = Tenant { managed_by: Some("Tenant ns/acme".into()), ..t };
        let back: Tenant =
            serde_json::from_str(&serde_json::to_string(&owned).expect("encodes")).expect("decodes");
        assert_eq!(back, owned);
    }
}
