//! Who is calling, and whether it may act on the tenant a route names.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, header};
use policy::validate_tenant_id;
use problem::{Code, Problem};
use state::{Tenant, hash_secret};
use subtle::ConstantTimeEq;

use crate::AdminState;
use crate::util::{invalid, store_err};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator's admin token: every tenant.
    Admin,
    /// A tenant API key: its own tenant only.
    Tenant(String),
}

fn unauthorized(detail: &str) -> Response {
    let mut r = Problem::of(Code::Unauthorized, detail).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn bearer(parts: &Parts) -> Option<&str> {
    let h = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = h.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|t| !t.is_empty())
}

/// Whether `given` is the admin token, in time independent of where they differ: both
/// sides are hashed first so that even their lengths are compared in constant time.
fn is_admin_token(st: &AdminState, given: &str) -> bool {
    let expected = st.admin_token.expose();
    if expected.is_empty() {
        return false;
    }
    let a = hash_secret(given);
    let b = hash_secret(expected);
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Authenticates the request: 401 when there is no credential or it is unknown, 503 when
/// the store cannot say.
pub async fn authenticate(parts: &Parts, st: &AdminState) -> Result<Caller, Response> {
    let Some(given) = bearer(parts) else {
        return Err(unauthorized("send Authorization: Bearer <admin token or tenant API key>"));
    };
    if given.len() > 1024 {
        return Err(unauthorized("invalid credentials"));
    }
    if is_admin_token(st, given) {
        return Ok(Caller::Admin);
    }
    match st.store.find_api_key(&hash_secret(given)).await {
        Ok(Some((tenant, _))) => Ok(Caller::Tenant(tenant)),
        Ok(None) => Err(unauthorized("invalid credentials")),
        Err(e) => Err(store_err(e).into_response()),
    }
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AdminState) -> Result<Self, Response> {
        authenticate(parts, st).await
    }
}

/// The admin token, for routes no tenant key may use (create, list, delete tenants).
pub struct AdminOnly;

impl FromRequestParts<AdminState> for AdminOnly {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AdminState) -> Result<Self, Response> {
        match authenticate(parts, st).await? {
            Caller::Admin => Ok(AdminOnly),
            Caller::Tenant(_) => Err(Problem::of(
                Code::Forbidden,
                "a tenant API key cannot create, list or delete tenants; use the admin token",
            )
            .into_response()),
        }
    }
}

/// The tenant named by the route's `{t}`, loaded, for a caller allowed to act on it.
///
/// Checks run in this order, so that nothing about another tenant leaks to a tenant key:
/// credential (401), the key's scope (403, whether or not the tenant exists or its id is
/// even valid), the id's syntax (400), existence (404).
pub struct TenantAccess {
    pub tenant: Tenant,
}

impl FromRequestParts<AdminState> for TenantAccess {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AdminState) -> Result<Self, Response> {
        let caller = authenticate(parts, st).await?;
        let params = axum::extract::Path::<HashMap<String, String>>::from_request_parts(parts, st)
            .await
            .map_err(|_| invalid("invalid path parameter").into_response())?;
        let Some(t) = params.0.get("t") else {
            return Err(Problem::of(Code::Internal, "route without a tenant").into_response());
        };
        if let Caller::Tenant(own) = &caller
            && own != t
        {
            return Err(
                Problem::of(Code::Forbidden, "this API key belongs to another tenant").into_response()
            );
        }
        if !validate_tenant_id(t) {
            return Err(invalid("tenant ids match [a-z0-9][a-z0-9-]{0,62}").into_response());
        }
        match st.store.get_tenant(t).await {
            Ok(Some(tenant)) => Ok(TenantAccess { tenant }),
            Ok(None) => Err(Problem::of(Code::NotFound, "no such tenant").into_response()),
            Err(e) => Err(store_err(e).into_response()),
        }
    }
}
