//! The `Tenant` custom resource (`switchboard.dev/v1alpha1`): these types are the single
//! source of the CRD (`switchboard crd`, `charts/switchboard/crds/`).
//!
//! `spec` mirrors the admin API's tenant (`name`, `policy`, SPEC §5) and its keys, whose
//! material comes from Secrets (or a JWKS URL) instead of the request body. The resource's
//! `metadata.name` is the tenant id.

use std::collections::BTreeMap;

use kube::CustomResource;
use kube::CustomResourceExt as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer that removes the tenant from the store before the resource goes.
pub const FINALIZER: &str = "switchboard.dev/tenant-cleanup";

/// The tenant as it should be: the operator writes it into the store the admin API uses.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    singular = "tenant",
    shortname = "sbtenant",
    namespaced,
    status = "TenantStatus",
    doc = "A Switchboard tenant: its Socket.IO namespace, policy and token keys. metadata.name is the \
           tenant id ([a-z0-9][a-z0-9-]{0,62}).",
    printcolumn = r#"{"name":"Display", "type":"string", "jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Ready", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Display name; defaults to the tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tenant's policy (SPEC §5); fields not given take their defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<TenantPolicySpec>,
    /// The keys that verify the tenant's client tokens. Keys in the store that are not
    /// listed here are removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<TenantKeySpec>,
}

/// A credential source a handshake may use (SPEC 3.2).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSourceSpec {
    Auth,
    Header,
    Ticket,
    Cookie,
    Query,
}

/// A right on a room.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RightSpec {
    Subscribe,
    Publish,
    Presence,
}

/// `policy::TenantPolicy`, field for field, in the camelCase Kubernetes uses; every field
/// is optional and takes the SPEC default when absent. A test checks that it covers every
/// field of the policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TenantPolicySpec {
    /// `"*"` or origins (`https://app.example.com`). Default `["*"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    /// Default `["auth", "header", "ticket"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_sources: Option<Vec<CredentialSourceSpec>>,
    /// Default `sb_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
    /// Rights every token has: room pattern (`chat`, `team:*`, `*`) to rights. Default `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_caps: Option<BTreeMap<String, Vec<RightSpec>>>,
    /// Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_user: Option<u32>,
    /// Default 65536.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<u64>,
    /// Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_rate_per_second: Option<u32>,
    /// Default 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_token_ttl_seconds: Option<u64>,
    /// Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_ttl_seconds: Option<u64>,
    /// Default 120.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_window_seconds: Option<u64>,
    /// Default `[]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_allowed_headers: Option<Vec<String>>,
    /// Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_events_max_members: Option<u32>,
    /// Signed webhooks (README "Webhooks"); default none. Its secrets come from Secrets.
    #[serde(default)]
    pub webhooks: Option<WebhooksSpec>,
    /// The subscribe authorization hook; default none. Its secret comes from a Secret.
    #[serde(default)]
    pub subscribe_hook: Option<SubscribeHookSpec>,
}

/// `policy.webhooks`, its secrets read from Secrets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct WebhooksSpec {
    /// `https://…` (`http://` only on loopback hosts).
    pub url: String,
    /// One or two secrets (two while rotating: each signs every request), 32-512 bytes.
    pub secret_refs: Vec<SecretKeyRef>,
    /// Default `room.occupied`, `room.vacated`, `presence.member_added`,
    /// `presence.member_removed`; also `connection.opened`, `connection.closed`,
    /// `session.ended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

/// `policy.subscribe_hook`, its secret read from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeHookSpec {
    /// `https://…` (`http://` only on loopback hosts).
    pub url: String,
    /// Signs the requests, 32-512 bytes.
    pub secret_ref: SecretKeyRef,
    /// Room patterns (`private:*`) whose subscriptions ask the hook.
    pub rooms: Vec<String>,
    /// Default 1500, at most 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Default 5, at most 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_seconds: Option<u64>,
}

impl TenantPolicySpec {
    /// The Secret references of the hooks.
    pub fn hook_secrets(&self) -> impl Iterator<Item = &SecretKeyRef> {
        self.webhooks
            .iter()
            .flat_map(|w| w.secret_refs.iter())
            .chain(self.subscribe_hook.iter().map(|h| &h.secret_ref))
    }
}

/// A key in a Secret of the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key within the Secret's data.
    pub key: String,
}

/// One key, in exactly one of three forms:
/// `{kid, alg: HS256|HS384|HS512, secretRef}` (an HMAC secret, at least 32 bytes),
/// `{kid, alg: RS256|RS384|RS512|ES256|ES384|EdDSA, publicKeySecretRef}` (an SPKI PEM
/// public key), or `{kid?, jwksUrl}` (https).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TenantKeySpec {
    /// The key id tokens name in their `kid` header; 1-128 bytes of `A-Z a-z 0-9 _ - . : =`.
    /// Required but for a JWKS source, which defaults to `jwks-` and a hash of the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The algorithm; absent for a JWKS source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// The HMAC secret (its UTF-8 bytes sign tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// The public key, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_secret_ref: Option<SecretKeyRef>,
    /// A JWKS document the edges fetch keys from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
}

impl TenantKeySpec {
    /// The Secret reference of this key, if any.
    pub fn secret(&self) -> Option<&SecretKeyRef> {
        self.secret_ref.as_ref().or(self.public_key_secret_ref.as_ref())
    }
}

impl TenantSpec {
    /// Whether a key or hook of this spec reads Secret `name`.
    pub fn references_secret(&self, name: &str) -> bool {
        self.secret_refs().any(|r| r.name == name)
    }

    /// Every Secret reference of the spec: keys' and hooks'.
    pub fn secret_refs(&self) -> impl Iterator<Item = &SecretKeyRef> {
        self.keys
            .iter()
            .filter_map(TenantKeySpec::secret)
            .chain(self.policy.iter().flat_map(|p| p.hook_secrets()))
    }
}

/// The observed state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// `Ready`, `KeysResolved` and `StoreReachable`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The standard Kubernetes condition (`metav1.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `KeysResolved` or `StoreReachable`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A PascalCase reason.
    pub reason: String,
    /// What happened, for people.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRD as YAML, as `switchboard crd` prints it and the chart ships it.
pub fn crd_yaml() -> String {
    let crd = Tenant::crd();
    let body = serde_saphyr::to_string(&crd).unwrap_or_else(|e| format!("# cannot render the CRD: {e}\n"));
    format!(
        "# The Tenant CRD. Generated by `switchboard crd` from services/operator/src/crd.rs; do not edit.\n---\n{body}"
    )
}
