//! A tenant's policy (SPEC §5): one set of rules applied to every credential source.

use serde::{Deserialize, Serialize};

use crate::caps::Caps;
use crate::handshake::CredentialSource;
use crate::hooks::{SubscribeHookConfig, WebhookConfig, validate_subscribe_hook, validate_webhooks};

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
}

fn d_origins() -> Vec<String> {
    vec!["*".into()]
}
fn d_sources() -> Vec<CredentialSource> {
    vec![CredentialSource::Auth, CredentialSource::Header, CredentialSource::Ticket]
}
fn d_cookie() -> String {
    "sb_token".into()
}
fn d_max_conn() -> u64 {
    10_000
}
fn d_max_user() -> u32 {
    10
}
fn d_msg() -> usize {
    65_536
}
fn d_rate() -> u32 {
    50
}
fn d_ttl() -> u64 {
    86_400
}
fn d_ticket() -> u64 {
    30
}
fn d_recovery() -> u64 {
    120
}
fn d_presence() -> u32 {
    100
}

/// The policy fields and defaults of SPEC §5. Unknown fields are refused so that a typo
/// in an operator's PATCH is an error, not a silently ignored rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    #[serde(default = "d_origins")]
    pub allowed_origins: Vec<String>,
    #[serde(default = "d_sources")]
    pub credential_sources: Vec<CredentialSource>,
    #[serde(default = "d_cookie")]
    pub cookie_name: String,
    #[serde(default)]
    pub default_caps: Caps,
    #[serde(default = "d_max_conn")]
    pub max_connections: u64,
    #[serde(default = "d_max_user")]
    pub max_connections_per_user: u32,
    #[serde(default = "d_msg")]
    pub max_message_bytes: usize,
    #[serde(default = "d_rate")]
    pub publish_rate_per_second: u32,
    #[serde(default = "d_ttl")]
    pub max_token_ttl_seconds: u64,
    #[serde(default = "d_ticket")]
    pub ticket_ttl_seconds: u64,
    #[serde(default = "d_recovery")]
    pub recovery_window_seconds: u64,
    #[serde(default)]
    pub cors_allowed_headers: Vec<String>,
    #[serde(default = "d_presence")]
    pub presence_events_max_members: u32,
    /// Where room, presence and connection events are sent (null: nowhere). Written as
    /// `null` when off, so that every field of the policy always shows.
    #[serde(default)]
    pub webhooks: Option<WebhookConfig>,
    /// Which subscriptions the tenant's backend must allow (null: none asks).
    #[serde(default)]
    pub subscribe_hook: Option<SubscribeHookConfig>,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).unwrap_or_else(|_| unreachable!())
    }
}

/// Bounds that keep one tenant's settings from hurting the node.
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 16 * 1024 * 1024;

impl TenantPolicy {
    /// Whether a credential source is switched on.
    pub fn allows_source(&self, s: CredentialSource) -> bool {
        self.credential_sources.contains(&s)
    }

    /// Whether the origin list is the open `*`.
    pub fn any_origin(&self) -> bool {
        self.allowed_origins.iter().any(|o| o == "*")
    }

    /// Checks the values a deserialised policy can still get wrong.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |m: &str| Err(PolicyError::Invalid(m.to_string()));
        for o in &self.allowed_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return bad("allowed_origins entries are \"*\" or start with http:// or https://");
            }
            if o.len() > 512 {
                return bad("allowed_origins entries are at most 512 bytes");
            }
        }
        if self.allowed_origins.len() > 256 {
            return bad("allowed_origins holds at most 256 entries");
        }
        if self.cookie_name.is_empty()
            || self.cookie_name.len() > 64
            || !self.cookie_name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            return bad("cookie_name is 1-64 bytes of A-Z a-z 0-9 _ -");
        }
        if self.max_connections == 0 || self.max_connections_per_user == 0 {
            return bad("max_connections and max_connections_per_user must be positive");
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > MAX_MESSAGE_BYTES_LIMIT {
            return bad("max_message_bytes must be between 1 and 16777216");
        }
        if self.publish_rate_per_second == 0 {
            return bad("publish_rate_per_second must be positive");
        }
        if self.max_token_ttl_seconds == 0 || self.ticket_ttl_seconds == 0 || self.ticket_ttl_seconds > 3600 {
            return bad("max_token_ttl_seconds must be positive; ticket_ttl_seconds is 1-3600");
        }
        if self.recovery_window_seconds > 86_400 {
            return bad("recovery_window_seconds is at most 86400");
        }
        for h in &self.cors_allowed_headers {
            if h.is_empty()
                || h.len() > 128
                || !h.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            {
                return bad("cors_allowed_headers entries are header names");
            }
        }
        if let Some(w) = &self.webhooks {
            validate_webhooks(w)?;
        }
        if let Some(h) = &self.subscribe_hook {
            validate_subscribe_hook(h)?;
        }
        Ok(())
    }

    /// Applies a JSON merge patch (RFC 7386) to this policy and validates the result.
    pub fn merged(&self, patch: &serde_json::Value) -> Result<TenantPolicy, PolicyError> {
        let mut v = serde_json::to_value(self).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        merge(&mut v, patch);
        let p: TenantPolicy = serde_json::from_value(v).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }
}

fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_match_the_spec() {
        let p = TenantPolicy::default();
        assert_eq!(p.allowed_origins, vec!["*"]);
        assert_eq!(
            p.credential_sources,
            vec![CredentialSource::Auth, CredentialSource::Header, CredentialSource::Ticket]
        );
        assert_eq!(p.cookie_name, "sb_token");
        assert!(p.default_caps.is_empty());
        assert_eq!(p.max_connections, 10_000);
        assert_eq!(p.max_connections_per_user, 10);
        assert_eq!(p.max_message_bytes, 65_536);
        assert_eq!(p.publish_rate_per_second, 50);
        assert_eq!(p.max_token_ttl_seconds, 86_400);
        assert_eq!(p.ticket_ttl_seconds, 30);
        assert_eq!(p.recovery_window_seconds, 120);
        assert!(p.cors_allowed_headers.is_empty());
        assert_eq!(p.presence_events_max_members, 100);
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(serde_json::from_value::<TenantPolicy>(json!({"allowed_origin": ["*"]})).is_err());
        assert!(
            serde_json::from_value::<TenantPolicy>(json!({"credential_sources": ["carrier-pigeon"]}))
                .is_err()
        );
        let p = TenantPolicy::default();
        assert!(p.merged(&json!({"max_message_bytes": 0})).is_err());
        assert!(p.merged(&json!({"allowed_origins": ["example.com"]})).is_err());
        assert!(p.merged(&json!({"cookie_name": "a;b"})).is_err());
        assert!(p.merged(&json!({"default_caps": {"a b": ["subscribe"]}})).is_err());
    }

    #[test]
    fn merge_patch() {
        let p = TenantPolicy::default()
            .merged(&json!({"max_connections": 5, "default_caps": {"lobby": ["subscribe"]}}))
            .expect("valid");
        assert_eq!(p.max_connections, 5);
        assert_eq!(p.max_message_bytes, 65_536);
        assert!(p.default_caps.allows("lobby", crate::Right::Subscribe));
        // null resets a field to its default.
        let q = p.merged(&json!({"max_connections": null})).expect("valid");
        assert_eq!(q.max_connections, 10_000);
    }
}
