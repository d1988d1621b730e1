//! `/v1/tenants/{t}/api-keys`: credentials for a tenant's backends, confined to the
//! tenant. The key is shown once and stored only as its hash.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use problem::{Code, Problem};
use serde::{Deserialize, Serialize};
use state::{ApiKeyRecord, hash_secret, random_token};
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::TenantAccess;
use crate::extract::{Body, P};
use crate::util::{check_name, invalid, now_s, rfc3339, store_err, valid_record_id};

/// A new API key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What it is for; 1-200 bytes.
    #[schema(example = "chat backend")]
    pub name: String,
}

/// An API key just created: `key` is shown this once.
#[derive(Serialize, ToSchema)]
pub struct NewApiKey {
    #[schema(example = "ak_3f2a9c0d1e4b5a6f")]
    pub id: String,
    pub name: String,
    /// `sbk_...`: send it as `Authorization: Bearer <key>`.
    pub key: String,
    pub created_at: String,
}

/// An API key as listed: never the key.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

/// `{"api_keys": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyOut>,
}

/// Creates an API key for the tenant.
#[utoipa::path(
    post,
    path = "/v1/tenants/{t}/api-keys",
    tag = "api-keys",
    params(("t" = String, Path, description = "Tenant id")),
    request_body = CreateApiKey,
    responses((status = 201, description = "Created; `key` is shown only now", body = NewApiKey))
)]
pub async fn create_api_key(
    State(st): State<AdminState>,
    access: TenantAccess,
    Body(req): Body<CreateApiKey>,
) -> Result<Response, Problem> {
    check_name("name", &req.name)?;
    let key = format!("sbk_{}", random_token(32));
    let rec = ApiKeyRecord {
        id: format!("ak_{}", random_token(8)),
        name: req.name,
        hash: hash_secret(&key),
        created_at: now_s(),
    };
    st.store.add_api_key(&access.tenant.id, rec.clone()).await.map_err(store_err)?;
    let out = NewApiKey { id: rec.id, name: rec.name, key, created_at: rfc3339(rec.created_at) };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Lists the tenant's API keys, never the keys themselves.
#[utoipa::path(
    get,
    path = "/v1/tenants/{t}/api-keys",
    tag = "api-keys",
    params(("t" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's API keys", body = ApiKeyList))
)]
pub async fn list_api_keys(
    State(st): State<AdminState>,
    access: TenantAccess,
) -> Result<Json<ApiKeyList>, Problem> {
    let v = st.store.list_api_keys(&access.tenant.id).await.map_err(store_err)?;
    Ok(Json(ApiKeyList {
        api_keys: v
            .into_iter()
            .map(|k| ApiKeyOut { id: k.id, name: k.name, created_at: rfc3339(k.created_at) })
            .collect(),
    }))
}

/// Deletes an API key; it stops working at once.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{t}/api-keys/{id}",
    tag = "api-keys",
    params(("t" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "API key id")),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete_api_key(
    State(st): State<AdminState>,
    access: TenantAccess,
    path: P<(String, String)>,
) -> Result<StatusCode, Problem> {
    let (_, id) = path.0;
    if !valid_record_id(&id) {
        return Err(invalid("API key ids are 1-64 bytes of A-Z a-z 0-9 _ -"));
    }
    if !st.store.delete_api_key(&access.tenant.id, &id).await.map_err(store_err)? {
        return Err(Problem::of(Code::NotFound, "no such API key"));
    }
    Ok(StatusCode::NO_CONTENT)
}
