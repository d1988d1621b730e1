//! `/v1/tenants` and `/v1/tenants/{t}`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use policy::TenantPolicy;
use problem::Problem;
use serde::{Deserialize, Serialize};
use state::Tenant;
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::{AdminOnly, TenantAccess};
use crate::extract::Body;
use crate::openapi::PolicyDoc;
use crate::service::{self, NewTenant, TenantPatch};
use crate::util::{now_s, rfc3339, store_err};

/// A tenant.
#[derive(Serialize, ToSchema)]
pub struct TenantOut {
    #[schema(example = "acme")]
    pub id: String,
    #[schema(example = "Acme Inc.")]
    pub name: String,
    /// Webhook and subscribe hook secrets show as `"<redacted>"`.
    #[schema(value_type = PolicyDoc)]
    pub policy: serde_json::Value,
    /// RFC 3339.
    #[schema(example = "2026-01-01T00:00:00Z")]
    pub created_at: String,
}

impl From<Tenant> for TenantOut {
    fn from(t: Tenant) -> Self {
        TenantOut { id: t.id, name: t.name, policy: redacted(&t.policy), created_at: rfc3339(t.created_at) }
    }
}

/// What a secret shows as in answers.
pub const REDACTED: &str = "<redacted>";

/// The policy as JSON with its hook secrets replaced by [`REDACTED`]: they are given once,
/// never read back (a merge patch of `webhooks` that leaves `secrets` out keeps them).
pub fn redacted(p: &TenantPolicy) -> serde_json::Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    if let Some(s) = v.pointer_mut("/webhooks/secrets").and_then(serde_json::Value::as_array_mut) {
        s.iter_mut().for_each(|x| *x = serde_json::Value::from(REDACTED));
    }
    if let Some(s) = v.pointer_mut("/subscribe_hook/secret") {
        *s = serde_json::Value::from(REDACTED);
    }
    v
}

/// `{"tenants": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantOut>,
}

/// A new tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// `[a-z0-9][a-z0-9-]{0,62}`.
    #[schema(example = "acme", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub id: String,
    /// Defaults to the id.
    pub name: Option<String>,
    /// Fields not given take their defaults.
    #[schema(value_type = Option<PolicyDoc>)]
    pub policy: Option<serde_json::Value>,
}

/// A change to a tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenant {
    pub name: Option<String>,
    /// A JSON merge patch (RFC 7386) of the policy: given fields replace, `null` resets a
    /// field to its default.
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
}

/// Creates a tenant (admin token only).
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = TenantOut),
        (status = 409, description = "A tenant with this id exists (`conflict`)")
    )
)]
pub async fn create_tenant(
    State(st): State<AdminState>,
    _admin: AdminOnly,
    Body(req): Body<CreateTenant>,
) -> Result<Response, Problem> {
    let new = NewTenant { id: req.id, name: req.name, policy: req.policy, managed_by: None };
    let t = service::prepare_tenant(new, now_s())?;
    service::create_tenant(st.store.as_ref(), &t).await?;
    Ok((StatusCode::CREATED, Json(TenantOut::from(t))).into_response())
}

/// Lists tenants (admin token only).
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    responses((status = 200, description = "Every tenant", body = TenantList))
)]
pub async fn list_tenants(
    State(st): State<AdminState>,
    _admin: AdminOnly,
) -> Result<Json<TenantList>, Problem> {
    let v = st.store.list_tenants().await.map_err(store_err)?;
    Ok(Json(TenantList { tenants: v.into_iter().map(TenantOut::from).collect() }))
}

/// A tenant.
#[utoipa::path(
    get,
    path = "/v1/tenants/{t}",
    tag = "tenants",
    params(("t" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant", body = TenantOut))
)]
pub async fn get_tenant(access: TenantAccess) -> Json<TenantOut> {
    Json(TenantOut::from(access.tenant))
}

/// Changes a tenant's name and merges a patch into its policy; edges drop cached copies.
#[utoipa::path(
    patch,
    path = "/v1/tenants/{t}",
    tag = "tenants",
    params(("t" = String, Path, description = "Tenant id")),
    request_body = PatchTenant,
    responses(
        (status = 200, description = "The tenant as changed", body = TenantOut),
        (status = 409, description = "The tenant belongs to a Kubernetes `Tenant` resource (`managed_by_operator`)")
    )
)]
pub async fn patch_tenant(
    State(st): State<AdminState>,
    access: TenantAccess,
    Body(req): Body<PatchTenant>,
) -> Result<Json<TenantOut>, Problem> {
    let current = access.tenant;
    service::check_writer(&current, None)?;
    let t = service::patched(current.clone(), TenantPatch { name: req.name, policy: req.policy })?;
    service::update_tenant(st.store.as_ref(), st.bus.as_ref(), None, &current, &t).await?;
    Ok(Json(TenantOut::from(t)))
}

/// Deletes a tenant and everything under it (admin token only); its live sessions end
/// with `session_end {code: "tenant_deleted"}` on every node.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{t}",
    tag = "tenants",
    params(("t" = String, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "The tenant belongs to a Kubernetes `Tenant` resource (`managed_by_operator`)")
    )
)]
pub async fn delete_tenant(
    State(st): State<AdminState>,
    _admin: AdminOnly,
    crate::extract::P(t): crate::extract::P<String>,
) -> Result<StatusCode, Problem> {
    service::delete_tenant(st.store.as_ref(), st.bus.as_ref(), None, &t).await?;
    Ok(StatusCode::NO_CONTENT)
}
