//! `/v1/tenants/{t}/keys`: the keys that verify a tenant's client tokens.
//!
//! Rotation: add a new key, mint or sign new tokens with it (tokens name it by `kid`),
//! delete the old key once its tokens have expired. Both verify in between. Every change
//! tells the edges to reload the tenant's keys.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bus::Control;
use http::StatusCode;
use policy::{Algorithm, KeyMaterial, KeyRecord, Secret, decoding_key, parse_algorithm};
use problem::Problem;
use serde::{Deserialize, Serialize};
use state::random_token;
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::TenantAccess;
use crate::extract::{Body, P};
use crate::util::{invalid, notify, now_s, rfc3339, store_err, valid_kid};

/// Largest PEM accepted, in bytes (an RSA 8192 public key is under 1.5 KiB).
const MAX_PEM_BYTES: usize = 16 * 1024;
/// Longest JWKS URL, in bytes.
const MAX_URL_BYTES: usize = 2048;

/// A new key: exactly one of three forms.
/// - `{alg}` with `HS256`/`HS384`/`HS512`: a generated HMAC secret, returned once;
/// - `{alg, public_key_pem}` with `RS256/384/512`, `ES256/384` or `EdDSA`: a public key;
/// - `{jwks_url}`: keys fetched by the edges from a JWKS document (https, or http on a
///   loopback host).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Generated (`k_...`) when absent; 1-128 bytes of `A-Z a-z 0-9 _ - . : =`.
    pub kid: Option<String>,
    #[schema(example = "HS256")]
    pub alg: Option<String>,
    /// An SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_pem: Option<String>,
    #[schema(example = "https://issuer.example.com/.well-known/jwks.json")]
    pub jwks_url: Option<String>,
}

/// A key as listed: never its secret.
#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    pub kid: String,
    /// Absent for a JWKS source, whose keys carry their own algorithms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `hmac`, `public_pem` or `jwks`.
    #[schema(example = "hmac")]
    pub kind: String,
    /// For `public_pem` keys: the public key (it is public).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    /// For `jwks` keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// A key just created. `secret` (HMAC keys only) is shown this once: tokens are signed
/// with its UTF-8 bytes.
#[derive(Serialize, ToSchema)]
pub struct NewKey {
    pub kid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    pub created_at: String,
}

/// `{"keys": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyOut>,
}

fn kind(m: &KeyMaterial) -> &'static str {
    match m {
        KeyMaterial::Hmac { .. } => "hmac",
        KeyMaterial::PublicPem { .. } => "public_pem",
        KeyMaterial::Jwks { .. } => "jwks",
    }
}

impl From<&KeyRecord> for KeyOut {
    fn from(k: &KeyRecord) -> Self {
        KeyOut {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            kind: kind(&k.material).to_string(),
            public_key_pem: match &k.material {
                KeyMaterial::PublicPem { pem } => Some(pem.clone()),
                _ => None,
            },
            jwks_url: match &k.material {
                KeyMaterial::Jwks { url } => Some(url.clone()),
                _ => None,
            },
            created_at: rfc3339(k.created_at),
        }
    }
}

fn invalid_key(detail: impl Into<String>) -> Problem {
    Problem::new("invalid_key", detail)
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Checks a PEM public key against its algorithm: it must parse for the algorithm's
/// family, and an EC key must be on the algorithm's curve (ES256 = P-256, ES384 = P-384).
fn check_pem(alg: Algorithm, pem: &str) -> Result<(), Problem> {
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
fn check_jwks_url(s: &str) -> Result<(), Problem> {
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

/// Adds a key.
#[utoipa::path(
    post,
    path = "/v1/tenants/{t}/keys",
    tag = "keys",
    params(("t" = String, Path, description = "Tenant id")),
    request_body = CreateKey,
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = NewKey),
        (status = 400, description = "Invalid request, or key material that does not parse or fit its \
            algorithm (`invalid_key`)"),
        (status = 409, description = "A key with this kid exists (`conflict`)")
    )
)]
pub async fn create_key(
    State(st): State<AdminState>,
    access: TenantAccess,
    Body(req): Body<CreateKey>,
) -> Result<Response, Problem> {
    let tenant = access.tenant.id;
    let kid = match req.kid {
        Some(k) if valid_kid(&k) => k,
        Some(_) => return Err(invalid("kid is 1-128 bytes of A-Z a-z 0-9 _ - . : =")),
        None => format!("k_{}", random_token(8)),
    };
    let mut secret = None;
    let (alg, material) = match (req.alg, req.public_key_pem, req.jwks_url) {
        (None, None, Some(url)) => {
            check_jwks_url(&url)?;
            (None, KeyMaterial::Jwks { url })
        }
        (Some(_), None, Some(_)) => {
            return Err(invalid("a JWKS source takes no alg: its keys carry their own"));
        }
        (_, Some(_), Some(_)) => return Err(invalid("give public_key_pem or jwks_url, not both")),
        (None, Some(_), None) => return Err(invalid("public_key_pem needs its alg")),
        (None, None, None) => {
            return Err(invalid("give {alg} (HMAC), {alg, public_key_pem} or {jwks_url}"));
        }
        (Some(a), pem, None) => {
            let alg = parse_algorithm(&a).ok_or_else(|| {
                invalid_key("alg is one of HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 EdDSA")
            })?;
            match pem {
                Some(pem) => {
                    if is_hmac(alg) {
                        return Err(invalid_key("HMAC secrets are generated: send {alg} alone"));
                    }
                    check_pem(alg, &pem)?;
                    (Some(a), KeyMaterial::PublicPem { pem })
                }
                None => {
                    if !is_hmac(alg) {
                        return Err(invalid("a public-key algorithm needs public_key_pem"));
                    }
                    let s = random_token(32);
                    secret = Some(s.clone());
                    (Some(a), KeyMaterial::Hmac { secret: Secret::new(s) })
                }
            }
        }
    };
    let rec = KeyRecord { kid: kid.clone(), alg, material, created_at: now_s() };
    st.store.add_key(&tenant, rec.clone()).await.map_err(|e| match e {
        state::StoreError::Conflict => Problem::new("conflict", format!("key {kid} exists")),
        e => store_err(e),
    })?;
    notify(st.bus.as_ref(), Control::TenantChanged { tenant }, "the key").await?;
    let out = KeyOut::from(&rec);
    let body = NewKey {
        kid: out.kid,
        alg: out.alg,
        kind: out.kind,
        secret,
        public_key_pem: out.public_key_pem,
        jwks_url: out.jwks_url,
        created_at: out.created_at,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Lists keys, never their secrets.
#[utoipa::path(
    get,
    path = "/v1/tenants/{t}/keys",
    tag = "keys",
    params(("t" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's keys", body = KeyList))
)]
pub async fn list_keys(State(st): State<AdminState>, access: TenantAccess) -> Result<Json<KeyList>, Problem> {
    let keys = st.store.list_keys(&access.tenant.id).await.map_err(store_err)?;
    Ok(Json(KeyList { keys: keys.iter().map(KeyOut::from).collect() }))
}

/// Deletes a key: tokens it signed stop verifying on every edge.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{t}/keys/{kid}",
    tag = "keys",
    params(("t" = String, Path, description = "Tenant id"), ("kid" = String, Path, description = "Key id")),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete_key(
    State(st): State<AdminState>,
    access: TenantAccess,
    path: P<(String, String)>,
) -> Result<StatusCode, Problem> {
    let (_, kid) = path.0;
    if !valid_kid(&kid) {
        return Err(invalid("kid is 1-128 bytes of A-Z a-z 0-9 _ - . : ="));
    }
    let tenant = access.tenant.id;
    if !st.store.delete_key(&tenant, &kid).await.map_err(store_err)? {
        return Err(Problem::new("not_found", "no such key"));
    }
    notify(st.bus.as_ref(), Control::TenantChanged { tenant }, "the deletion").await?;
    Ok(StatusCode::NO_CONTENT)
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
}
