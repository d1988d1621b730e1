//! `/v1/tenants/{t}/keys`: the keys that verify a tenant's client tokens.
//!
//! Rotation: add a new key, mint or sign new tokens with it (tokens name it by `kid`),
//! delete the old key once its tokens have expired. Both verify in between. Every change
//! tells the edges to reload the tenant's keys.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use policy::{KeyMaterial, KeyRecord};
use problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::TenantAccess;
use crate::extract::{Body, P};
use crate::service::{self, KeyRequest};
use crate::util::{now_s, rfc3339, store_err};

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
        (status = 409, description = "A key with this kid exists (`conflict`), or the tenant belongs to a \
            Kubernetes `Tenant` resource (`managed_by_operator`)")
    )
)]
pub async fn create_key(
    State(st): State<AdminState>,
    access: TenantAccess,
    Body(req): Body<CreateKey>,
) -> Result<Response, Problem> {
    let tenant = access.tenant;
    service::check_writer(&tenant, None)?;
    let req = KeyRequest {
        kid: req.kid,
        alg: req.alg,
        public_key_pem: req.public_key_pem,
        jwks_url: req.jwks_url,
        secret: None,
    };
    let (rec, secret) = service::prepare_key(req, now_s())?;
    service::add_key(st.store.as_ref(), st.bus.as_ref(), None, &tenant, &rec).await?;
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
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "The tenant belongs to a Kubernetes `Tenant` resource (`managed_by_operator`)")
    )
)]
pub async fn delete_key(
    State(st): State<AdminState>,
    access: TenantAccess,
    path: P<(String, String)>,
) -> Result<StatusCode, Problem> {
    let (_, kid) = path.0;
    service::delete_key(st.store.as_ref(), st.bus.as_ref(), None, &access.tenant, &kid).await?;
    Ok(StatusCode::NO_CONTENT)
}
