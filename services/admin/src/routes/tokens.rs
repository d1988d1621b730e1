//! Credentials: minted tokens, tickets and revocations.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bus::Control;
use http::StatusCode;
use policy::{Caps, Revocation, RevocationRule, check_meta, mint_hmac};
use problem::{Code, Problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use state::random_token;
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::TenantAccess;
use crate::extract::{Body, P};
use crate::openapi::CapsDoc;
use crate::util::{check_id_claim, invalid, notify, now_s, rfc3339, store_err, valid_record_id};

/// A token to mint.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintToken {
    /// The user id; 1-256 bytes.
    #[schema(example = "user-42")]
    pub sub: String,
    /// Absent: the policy's `default_caps` apply when the token is used.
    #[schema(value_type = Option<CapsDoc>)]
    pub caps: Option<Value>,
    /// An object of at most 1 KiB, shown to others in presence.
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
    /// 1 to the policy's `max_token_ttl_seconds` (the default).
    pub ttl_seconds: Option<u64>,
}

/// A minted token.
#[derive(Serialize, ToSchema)]
pub struct TokenOut {
    /// A JWT signed with the tenant's newest HMAC key.
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    /// The `exp` claim (unix seconds).
    pub exp: i64,
    /// The `jti` claim, to revoke this token alone.
    pub jti: String,
    /// The key that signed it.
    pub kid: String,
}

/// A ticket to issue.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTicket {
    #[schema(example = "user-42")]
    pub sub: String,
    /// Absent: the policy's `default_caps`.
    #[schema(value_type = Option<CapsDoc>)]
    pub caps: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
}

/// An issued ticket: single use, valid `expires_in` seconds.
#[derive(Serialize, ToSchema)]
pub struct TicketOut {
    pub ticket: String,
    pub expires_in: u64,
}

/// A revocation: `{jti}`, `{sub}` (every token of the user issued until now, and those
/// without `iat`) or `{sub, issued_before}` (those with an earlier `iat`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRevocation {
    pub jti: Option<String>,
    pub sub: Option<String>,
    /// Unix seconds.
    pub issued_before: Option<i64>,
}

/// A stored revocation.
#[derive(Serialize, ToSchema)]
pub struct RevocationOut {
    #[schema(example = "rv_0c1d2e3f4a5b6c7d")]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<i64>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: when no token it can match is still valid, and it is dropped.
    pub expires_at: String,
}

impl From<&Revocation> for RevocationOut {
    fn from(r: &Revocation) -> Self {
        let (jti, sub, issued_before) = match &r.rule {
            RevocationRule::Jti { jti } => (Some(jti.clone()), None, None),
            RevocationRule::Sub { sub } => (None, Some(sub.clone()), None),
            RevocationRule::SubBefore { sub, issued_before } => {
                (None, Some(sub.clone()), Some(*issued_before))
            }
        };
        RevocationOut {
            id: r.id.clone(),
            jti,
            sub,
            issued_before,
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
        }
    }
}

/// `{"revocations": [...]}`.
#[derive(Serialize, ToSchema)]
pub struct RevocationList {
    pub revocations: Vec<RevocationOut>,
}

fn parse_caps(v: &Value) -> Result<Caps, Problem> {
    Caps::from_json(v).map_err(|e| invalid(format!("invalid caps: {e}")))
}

fn parse_meta(v: Option<Value>) -> Result<Option<Value>, Problem> {
    check_meta(v).map_err(|_| invalid("meta must be an object of at most 1024 bytes"))
}

/// Mints a client token with the tenant's newest HMAC key.
#[utoipa::path(
    post,
    path = "/v1/tenants/{t}/tokens",
    tag = "credentials",
    params(("t" = String, Path, description = "Tenant id")),
    request_body = MintToken,
    responses(
        (status = 201, description = "Minted", body = TokenOut),
        (status = 409, description = "The tenant has no HMAC key to sign with (`no_signing_key`)")
    )
)]
pub async fn mint_token(
    State(st): State<AdminState>,
    access: TenantAccess,
    Body(req): Body<MintToken>,
) -> Result<Response, Problem> {
    let t = access.tenant;
    check_id_claim("sub", &req.sub)?;
    let Some(ttl) = policy::token_ttl(req.ttl_seconds, &t.policy) else {
        let max = t.policy.max_token_ttl_seconds;
        return Err(invalid(format!("ttl_seconds is 1-{max} (the tenant's max_token_ttl_seconds)")));
    };
    let caps = req.caps.filter(|c| !c.is_null());
    if let Some(c) = &caps {
        parse_caps(c)?;
    }
    let meta = parse_meta(req.meta)?;

    let keys = st.store.list_keys(&t.id).await.map_err(store_err)?;
    let signing = policy::signing_key(&keys);
    let Some((key, alg, secret)) = signing else {
        return Err(Problem::of(
            Code::NoSigningKey,
            "the tenant has no HMAC key to sign with: add one with POST /v1/tenants/{t}/keys {\"alg\": \"HS256\"}",
        ));
    };

    let now = now_s();
    let jti = random_token(16);
    let (claims, exp) = policy::mint_claims(&t.id, &req.sub, now, ttl, &jti, caps, meta);
    let token = mint_hmac(alg, Some(&key.kid), secret, &claims).map_err(|e| {
        tracing::error!(tenant = %t.id, kid = %key.kid, error = %e, "could not sign a token");
        Problem::of(Code::Internal, "the token could not be signed")
    })?;
    let out = TokenOut { token, expires_at: rfc3339(exp), exp, jti, kid: key.kid.clone() };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Issues a single-use ticket (SPEC 3.3) so a backend can let a browser connect without
/// handing it a token.
#[utoipa::path(
    post,
    path = "/v1/tenants/{t}/tickets",
    tag = "credentials",
    params(("t" = String, Path, description = "Tenant id")),
    request_body = CreateTicket,
    responses((status = 201, description = "Issued", body = TicketOut))
)]
pub async fn create_ticket(
    State(st): State<AdminState>,
    access: TenantAccess,
    Body(req): Body<CreateTicket>,
) -> Result<Response, Problem> {
    let t = access.tenant;
    check_id_claim("sub", &req.sub)?;
    let caps = req.caps.filter(|c| !c.is_null()).map(|c| parse_caps(&c)).transpose()?;
    let meta = parse_meta(req.meta)?;
    let grant = policy::issued_ticket_grant(req.sub, caps, meta, &t.policy, now_s());
    let ticket = random_token(32);
    st.store.put_ticket(&t.id, &ticket, grant, t.policy.ticket_ttl_seconds).await.map_err(store_err)?;
    let out = TicketOut { ticket, expires_in: t.policy.ticket_ttl_seconds };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Revokes tokens: matching live sockets on every node get `session_end {code:
/// "token_revoked"}`; later handshakes with matching tokens are refused.
#[utoipa::path(
    post,
    path = "/v1/tenants/{t}/revocations",
    tag = "credentials",
    params(("t" = String, Path, description = "Tenant id")),
    request_body = CreateRevocation,
    responses((status = 201, description = "Revoked", body = RevocationOut))
)]
pub async fn create_revocation(
    State(st): State<AdminState>,
    access: TenantAccess,
    Body(req): Body<CreateRevocation>,
) -> Result<Response, Problem> {
    let t = access.tenant;
    let rule = match (req.jti, req.sub, req.issued_before) {
        (Some(jti), None, None) => {
            check_id_claim("jti", &jti)?;
            RevocationRule::Jti { jti }
        }
        (None, Some(sub), None) => {
            check_id_claim("sub", &sub)?;
            RevocationRule::Sub { sub }
        }
        (None, Some(sub), Some(issued_before)) => {
            check_id_claim("sub", &sub)?;
            if issued_before < 0 {
                return Err(invalid("issued_before is unix seconds"));
            }
            RevocationRule::SubBefore { sub, issued_before }
        }
        _ => return Err(invalid("give {jti}, {sub} or {sub, issued_before}")),
    };
    let r = Revocation::new(format!("rv_{}", random_token(8)), rule, now_s(), t.policy.max_token_ttl_seconds);
    st.store.add_revocation(&t.id, r.clone()).await.map_err(store_err)?;
    let c = Control::Revoked { tenant: t.id.clone(), revocation: r.clone() };
    notify(st.bus.as_ref(), c, &format!("revocation {}", r.id)).await?;
    Ok((StatusCode::CREATED, Json(RevocationOut::from(&r))).into_response())
}

/// Lists the tenant's revocations still in force.
#[utoipa::path(
    get,
    path = "/v1/tenants/{t}/revocations",
    tag = "credentials",
    params(("t" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "Revocations in force", body = RevocationList))
)]
pub async fn list_revocations(
    State(st): State<AdminState>,
    access: TenantAccess,
) -> Result<Json<RevocationList>, Problem> {
    let v = st.store.list_revocations(&access.tenant.id).await.map_err(store_err)?;
    Ok(Json(RevocationList { revocations: v.iter().map(RevocationOut::from).collect() }))
}

/// Lifts a revocation: matching tokens are accepted again.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{t}/revocations/{id}",
    tag = "credentials",
    params(("t" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "Revocation id")),
    responses((status = 204, description = "Lifted"))
)]
pub async fn delete_revocation(
    State(st): State<AdminState>,
    access: TenantAccess,
    path: P<(String, String)>,
) -> Result<StatusCode, Problem> {
    let (_, id) = path.0;
    if !valid_record_id(&id) {
        return Err(invalid("revocation ids are 1-64 bytes of A-Z a-z 0-9 _ -"));
    }
    let tenant = access.tenant.id;
    if !st.store.delete_revocation(&tenant, &id).await.map_err(store_err)? {
        return Err(Problem::of(Code::NotFound, "no such revocation"));
    }
    notify(st.bus.as_ref(), Control::TenantChanged { tenant }, "the lifted revocation").await?;
    Ok(StatusCode::NO_CONTENT)
}
