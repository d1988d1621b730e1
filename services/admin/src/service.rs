//! The tenant and key writes, shared by the admin API's routes and the Kubernetes operator
//! (`services/operator`), so that both validate, store and notify the same way: tenant id
//! and name rules, policy defaults and merge, `kid` rules, key material checks, the store
//! write, and the `TenantChanged`/`TenantDeleted` control message that tells every edge.
//!
//! Ownership: a tenant whose record has `managed_by` set belongs to that writer (the
//! operator, for a `Tenant` resource). Every write here names its writer (`None` for the
//! admin API) and is refused with [`ServiceError::Managed`] (`409 managed_by_operator`)
//! when the tenant belongs to someone else, so the two never fight over one tenant.
//!
//! The `prepare_*` functions are pure (no IO): they turn a request into the record that
//! would be written, or say why not. The operator's reconcile core uses them to know what
//! the store should hold.

use bus::{Bus, Control};
use policy::{Algorithm, KeyMaterial, KeyRecord, Secret, TenantPolicy, decoding_key, parse_algorithm};
use problem::{Code, Problem};
use state::{Store, StoreError, Tenant, random_token};

use crate::util::{check_name, store_err, valid_kid};

/// What a tenant id must look like (SPEC 3.1).
pub const TENANT_ID_RULE: &str = "tenant ids match [a-z0-9][a-z0-9-]{0,62}";
/// What a key id must look like.
pub const KID_RULE: &str = "kid is 1-128 bytes of A-Z a-z 0-9 _ - . : =";
/// Largest PEM accepted, in bytes (an RSA 8192 public key is under 1.5 KiB).
const MAX_PEM_BYTES: usize = 16 * 1024;
/// Longest JWKS URL, in bytes.
const MAX_URL_BYTES: usize = 2048;
/// Shortest HMAC secret given from outside (RFC 7518 3.2: at least the hash size of
/// HS256); generated secrets are 64 characters.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Longest HMAC secret given from outside.
const MAX_HMAC_SECRET_BYTES: usize = 4096;

/// Why a tenant or key write was refused. Details never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed (`invalid_request`).
    #[error("{0}")]
    Invalid(String),
    /// Key material that does not parse or fit its algorithm (`invalid_key`).
    #[error("{0}")]
    InvalidKey(String),
    /// The tenant or key exists already (`conflict`).
    #[error("{0}")]
    Conflict(String),
    /// No such tenant or key (`not_found`).
    #[error("{0}")]
    NotFound(String),
    /// The tenant belongs to another writer: the operator, for a `Tenant` resource
    /// (`managed_by_operator`).
    #[error("tenant {tenant} is managed by the Kubernetes operator ({owner}); change that resource instead")]
    Managed { tenant: String, owner: String },
    /// The operator may not take over a tenant the admin API created (`conflict`).
    #[error("tenant {tenant} exists and was not created by {writer}; delete it or rename the resource")]
    NotManaged { tenant: String, writer: String },
    /// The store failed; nothing was written.
    #[error("{0}")]
    Store(StoreError),
    /// The change was saved but the control message could not be sent (`unavailable`).
    #[error("{what} was saved, but the message bus is unavailable to tell the edges; retry")]
    NotNotified { what: String },
}

impl ServiceError {
    /// The SPEC code this error answers with.
    pub fn kind(&self) -> Code {
        match self {
            ServiceError::Invalid(_) => Code::InvalidRequest,
            ServiceError::InvalidKey(_) => Code::InvalidKey,
            ServiceError::Conflict(_) | ServiceError::NotManaged { .. } => Code::Conflict,
            ServiceError::NotFound(_) => Code::NotFound,
            ServiceError::Managed { .. } => Code::ManagedByOperator,
            ServiceError::Store(e) => e.kind(),
            ServiceError::NotNotified { .. } => Code::Unavailable,
        }
    }

    /// [`ServiceError::kind`] as its string (logs, the operator's condition reasons).
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }
}

impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Problem {
        match e {
            ServiceError::Store(e) => store_err(e),
            e => Problem::of(e.kind(), e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

fn invalid(detail: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(detail.into())
}

fn invalid_key(detail: impl Into<String>) -> ServiceError {
    ServiceError::InvalidKey(detail.into())
}

/// A display-name check as a service error.
fn name_ok(field: &str, v: &str) -> Result<()> {
    check_name(field, v).map_err(|p| ServiceError::Invalid(p.detail))
}

/// Refuses a write by `writer` (`None`: the admin API) to a tenant owned by someone else.
pub fn check_writer(t: &Tenant, writer: Option<&str>) -> Result<()> {
    match (t.managed_by.as_deref(), writer) {
        (owner, w) if owner == w => Ok(()),
        (Some(owner), _) => Err(ServiceError::Managed { tenant: t.id.clone(), owner: owner.to_string() }),
        (None, Some(w)) => Err(ServiceError::NotManaged { tenant: t.id.clone(), writer: w.to_string() }),
        (None, None) => Ok(()),
    }
}

/// Sends a control message after a change was saved. A failure says the change itself was
/// kept (so a retry is needed only for the notification, which every edge also picks up
/// when its cache expires).
pub async fn notify(bus: &dyn Bus, c: Control, what: &str) -> Result<()> {
    // Every edge's handling joins the trace of the request (or reconcile) that caused it.
    bus.control_with(c, telemetry::otel::current_context()).await.map_err(|e| {
        tracing::warn!(error = %e, "control message not sent");
        ServiceError::NotNotified { what: what.to_string() }
    })
}

/// A policy given as a JSON object of the fields to set (the others take their defaults),
/// on top of `base`.
fn policy_from(base: &TenantPolicy, p: Option<&serde_json::Value>, not_object: &str) -> Result<TenantPolicy> {
    match p {
        None | Some(serde_json::Value::Null) => Ok(base.clone()),
        Some(p @ serde_json::Value::Object(_)) => {
            base.merged(p).map_err(|e| invalid(format!("invalid policy: {e}")))
        }
        Some(_) => Err(invalid(not_object)),
    }
}

/// A tenant to create.
#[derive(Debug, Clone, Default)]
pub struct NewTenant {
    pub id: String,
    /// Defaults to the id.
    pub name: Option<String>,
    /// The fields to set; the others take their defaults.
    pub policy: Option<serde_json::Value>,
    /// Who owns it (`None`: the admin API).
    pub managed_by: Option<String>,
}

/// The tenant record `req` describes, checked (pure).
pub fn prepare_tenant(req: NewTenant, now: i64) -> Result<Tenant> {
    if !policy::validate_tenant_id(&req.id) {
        return Err(invalid(TENANT_ID_RULE));
    }
    let name = match req.name {
        Some(n) => {
            name_ok("name", &n)?;
            n
        }
        None => req.id.clone(),
    };
    let policy = policy_from(&TenantPolicy::default(), req.policy.as_ref(), "policy must be an object")?;
    Ok(Tenant { id: req.id, name, policy, created_at: now, managed_by: req.managed_by })
}

/// Stores a new tenant; `Conflict` when one with its id exists.
pub async fn create_tenant(store: &dyn Store, t: &Tenant) -> Result<()> {
    store.create_tenant(t.clone()).await.map_err(|e| match e {
        StoreError::Conflict => ServiceError::Conflict(format!("tenant {} exists", t.id)),
        e => ServiceError::Store(e),
    })
}

/// A change to a tenant: a new name, and a JSON merge patch (RFC 7386) of its policy.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub policy: Option<serde_json::Value>,
}

/// `t` with `patch` applied, checked (pure).
pub fn patched(mut t: Tenant, patch: TenantPatch) -> Result<Tenant> {
    if let Some(n) = patch.name {
        name_ok("name", &n)?;
        t.name = n;
    }
    t.policy =
        policy_from(&t.policy, patch.policy.as_ref(), "policy must be an object (a JSON merge patch)")?;
    Ok(t)
}

/// Replaces `current` with `new` (same id) on behalf of `writer`, then tells the edges.
pub async fn update_tenant(
    store: &dyn Store,
    bus: &dyn Bus,
    writer: Option<&str>,
    current: &Tenant,
    new: &Tenant,
) -> Result<()> {
    check_writer(current, writer)?;
    if new.id != current.id || new.managed_by != current.managed_by {
        return Err(invalid("a tenant's id and owner do not change"));
    }
    store.update_tenant(new.clone()).await.map_err(ServiceError::Store)?;
    notify(bus, Control::TenantChanged { tenant: new.id.clone() }, "the tenant").await
}

/// Deletes tenant `id` and everything under it on behalf of `writer`; its live sessions
/// end with `tenant_deleted` on every node.
pub async fn delete_tenant(store: &dyn Store, bus: &dyn Bus, writer: Option<&str>, id: &str) -> Result<()> {
    if !policy::validate_tenant_id(id) {
        return Err(invalid(TENANT_ID_RULE));
    }
    let Some(t) = store.get_tenant(id).await.map_err(ServiceError::Store)? else {
        return Err(ServiceError::NotFound("no such tenant".into()));
    };
    check_writer(&t, writer)?;
    if !store.delete_tenant(id).await.map_err(ServiceError::Store)? {
        return Err(ServiceError::NotFound("no such tenant".into()));
    }
    notify(bus, Control::TenantDeleted { tenant: id.to_string() }, "the deletion").await
}

/// A key to add: exactly one of
/// - `{alg}` with `HS256`/`HS384`/`HS512`: an HMAC key, its secret generated (the admin
///   API) or given in `secret` (the operator, from a Kubernetes Secret);
/// - `{alg, public_key_pem}` with `RS256/384/512`, `ES256/384` or `EdDSA`;
/// - `{jwks_url}`.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest {
    /// Generated (`k_...`) when absent.
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub public_key_pem: Option<String>,
    pub jwks_url: Option<String>,
    /// An HMAC secret given rather than generated.
    pub secret: Option<Secret>,
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Checks a PEM public key against its algorithm: it must parse for the algorithm's
/// family, and an EC key must be on the algorithm's curve (ES256 = P-256, ES384 = P-384).
fn check_pem(alg: Algorithm, pem: &str) -> Result<()> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(invalid_key("public_key_pem is too large"));
    }
    // `decoding_key` also refuses EC keys on the other curve and pasted private keys.
    decoding_key(alg, &KeyMaterial::PublicPem { pem: pem.to_string() })
        .map_err(|e| invalid_key(format!("public_key_pem does not fit {alg:?}: {e}")))?;
    Ok(())
}

/// A JWKS URL: https, or http on a loopback host (127.0.0.0/8, `localhost`, `[::1]`); no
/// credentials in it.
pub fn check_jwks_url(s: &str) -> Result<()> {
    if s.len() > MAX_URL_BYTES {
        return Err(invalid("jwks_url is too long"));
    }
    let u = url::Url::parse(s).map_err(|_| invalid("jwks_url is not a URL"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(invalid("jwks_url must not carry credentials"));
    }
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(invalid("jwks_url has no host")),
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid("jwks_url must be https (http only on a loopback host)")),
    }
}

fn check_secret(s: &Secret) -> Result<()> {
    let n = s.expose().len();
    if !(MIN_HMAC_SECRET_BYTES..=MAX_HMAC_SECRET_BYTES).contains(&n) {
        return Err(invalid_key(format!(
            "an HMAC secret is {MIN_HMAC_SECRET_BYTES}-{MAX_HMAC_SECRET_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The key record `req` describes, checked (pure but for generating a missing kid or
/// secret), and the generated secret to show once.
pub fn prepare_key(req: KeyRequest, now: i64) -> Result<(KeyRecord, Option<String>)> {
    let kid = match req.kid {
        Some(k) if valid_kid(&k) => k,
        Some(_) => return Err(invalid(KID_RULE)),
        None => format!("k_{}", random_token(8)),
    };
    let mut shown = None;
    let (alg, material) = match (req.alg, req.public_key_pem, req.jwks_url, req.secret) {
        (_, _, Some(_), Some(_)) | (_, Some(_), _, Some(_)) => {
            return Err(invalid("a secret goes only with an HMAC alg"));
        }
        (None, None, Some(url), None) => {
            check_jwks_url(&url)?;
            (None, KeyMaterial::Jwks { url })
        }
        (Some(_), None, Some(_), None) => {
            return Err(invalid("a JWKS source takes no alg: its keys carry their own"));
        }
        (_, Some(_), Some(_), None) => return Err(invalid("give public_key_pem or jwks_url, not both")),
        (None, Some(_), None, None) => return Err(invalid("public_key_pem needs its alg")),
        (None, None, None, _) => {
            return Err(invalid("give {alg} (HMAC), {alg, public_key_pem} or {jwks_url}"));
        }
        (Some(a), pem, None, secret) => {
            let alg = parse_algorithm(&a).ok_or_else(|| {
                invalid_key("alg is one of HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 EdDSA")
            })?;
            match (pem, secret) {
                (Some(pem), _) => {
                    if is_hmac(alg) {
                        return Err(invalid_key("HMAC secrets are generated: send {alg} alone"));
                    }
                    check_pem(alg, &pem)?;
                    (Some(a), KeyMaterial::PublicPem { pem })
                }
                (None, secret) => {
                    if !is_hmac(alg) {
                        return Err(invalid("a public-key algorithm needs public_key_pem"));
                    }
                    let secret = match secret {
                        Some(s) => {
                            check_secret(&s)?;
                            s
                        }
                        None => {
                            let s = random_token(32);
                            shown = Some(s.clone());
                            Secret::new(s)
                        }
                    };
                    (Some(a), KeyMaterial::Hmac { secret })
                }
            }
        }
    };
    Ok((KeyRecord { kid, alg, material, created_at: now }, shown))
}

/// Adds a key to `tenant` on behalf of `writer`, then tells the edges.
pub async fn add_key(
    store: &dyn Store,
    bus: &dyn Bus,
    writer: Option<&str>,
    tenant: &Tenant,
    rec: &KeyRecord,
) -> Result<()> {
    check_writer(tenant, writer)?;
    store.add_key(&tenant.id, rec.clone()).await.map_err(|e| match e {
        StoreError::Conflict => ServiceError::Conflict(format!("key {} exists", rec.kid)),
        e => ServiceError::Store(e),
    })?;
    notify(bus, Control::TenantChanged { tenant: tenant.id.clone() }, "the key").await
}

/// Deletes key `kid` of `tenant` on behalf of `writer`, then tells the edges: tokens it
/// signed stop verifying on every edge.
pub async fn delete_key(
    store: &dyn Store,
    bus: &dyn Bus,
    writer: Option<&str>,
    tenant: &Tenant,
    kid: &str,
) -> Result<()> {
    if !valid_kid(kid) {
        return Err(invalid(KID_RULE));
    }
    check_writer(tenant, writer)?;
    if !store.delete_key(&tenant.id, kid).await.map_err(ServiceError::Store)? {
        return Err(ServiceError::NotFound("no such key".into()));
    }
    notify(bus, Control::TenantChanged { tenant: tenant.id.clone() }, "the deletion").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_urls() {
        assert!(check_jwks_url("https://issuer.example.com/jwks.json").is_ok());
        assert!(check_jwks_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_jwks_url("http://127.1.2.3/jwks").is_ok());
        assert!(check_jwks_url("http://localhost/jwks").is_ok());
        assert!(check_jwks_url("http://[::1]:9/jwks").is_ok());
        assert!(check_jwks_url("http://example.com/jwks").is_err());
        assert!(check_jwks_url("http://localhost.example.com/jwks").is_err());
        assert!(check_jwks_url("ftp://example.com/jwks").is_err());
        assert!(check_jwks_url("https://u:p@example.com/jwks").is_err());
        assert!(check_jwks_url("not a url").is_err());
        assert!(check_jwks_url("file:///etc/passwd").is_err());
    }

    fn tenant(managed_by: Option<&str>) -> Tenant {
        prepare_tenant(
            NewTenant {
                id: "acme".into(),
                managed_by: managed_by.map(str::to_string),
                ..NewTenant::default()
            },
            0,
        )
        .expect("valid")
    }

    #[test]
    fn writers_touch_only_their_own_tenants() {
        assert_eq!(check_writer(&tenant(None), None), Ok(()));
        assert_eq!(check_writer(&tenant(Some("Tenant a/b")), Some("Tenant a/b")), Ok(()));
        let e = check_writer(&tenant(Some("Tenant a/b")), None).expect_err("admin on an owned tenant");
        assert_eq!(e.code(), "managed_by_operator");
        assert_eq!(Problem::from(e).status, http::StatusCode::CONFLICT);
        let e = check_writer(&tenant(Some("Tenant a/b")), Some("Tenant c/b")).expect_err("another owner");
        assert_eq!(e.code(), "managed_by_operator");
        let e = check_writer(&tenant(None), Some("Tenant a/b")).expect_err("no takeover");
        assert_eq!(e.code(), "conflict");
    }

    #[test]
    fn given_hmac_secrets_are_checked_and_never_shown() {
        let req = |secret: &str| KeyRequest {
            kid: Some("k1".into()),
            alg: Some("HS256".into()),
            secret: Some(Secret::new(secret)),
            ..KeyRequest::default()
        };
        let (rec, shown) = prepare_key(req(&"s".repeat(32)), 3).expect("valid");
        assert_eq!(shown, None);
        assert_eq!(rec.material, KeyMaterial::Hmac { secret: Secret::new("s".repeat(32)) });
        assert_eq!(prepare_key(req("short"), 3).expect_err("short").code(), "invalid_key");
        let with_url = KeyRequest { jwks_url: Some("https://x.example/j".into()), ..req(&"s".repeat(32)) };
        assert_eq!(prepare_key(with_url, 3).expect_err("secret and url").code(), "invalid_request");
        let rs = KeyRequest { alg: Some("RS256".into()), ..req(&"s".repeat(32)) };
        assert_eq!(prepare_key(rs, 3).expect_err("not hmac").code(), "invalid_request");
    }
}
