//! The decisions the edge, the admin API and the operator carry out, as pure functions:
//! callers gather inputs (and do the IO before or after), these say what happens.
//!
//! - a handshake's last steps: [`ticket_identity`] (a taken ticket becomes an identity),
//!   [`check_revocations`], [`admit`] (the store's count, or no count at all);
//! - `refresh` ([`refresh`]), resume eligibility ([`may_resume`]), whether a presence
//!   change is announced ([`presence_event`]);
//! - tickets: the `POST /v1/tickets` decision ([`ticket_request`], [`grant_ticket`]) and
//!   the admin API's grant ([`issued_ticket_grant`]);
//! - minted tokens: [`token_ttl`], [`signing_key`], [`mint_claims`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::caps::Caps;
use crate::error::{EventError, Refusal};
use crate::handshake::{Credential, CredentialSource, HandshakeRequest, check_origin, find_credential};
use crate::names::validate_tenant_id;
use crate::revocation::Revocation;
use crate::tenant::TenantPolicy;
use crate::token::{
    Identity, KeyMaterial, KeyRecord, KeyRing, Secret, parse_algorithm, token_audience, verify_token,
};
use crate::{Algorithm, Right};

/// Longest ticket accepted; real ones are 64 hex characters. Longer ones are refused
/// before the store is asked.
pub const MAX_TICKET_BYTES: usize = 256;
/// Most rooms one resume may name (and a stored session may hold to be resumed).
pub const MAX_RESUME_ROOMS: usize = 256;

/// What a ticket grants: the identity it was issued for. Stored by `state`, decided here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketGrant {
    pub sub: String,
    pub caps: Caps,
    pub meta: Option<Value>,
    /// When the session it opens ends unless refreshed (unix seconds).
    pub exp: i64,
    pub jti: Option<String>,
    pub iat: Option<i64>,
}

/// Whether a presented ticket is worth asking the store for.
pub fn check_ticket(ticket: &str) -> Result<(), Refusal> {
    if ticket.len() > MAX_TICKET_BYTES { Err(Refusal::TicketInvalid) } else { Ok(()) }
}

/// A ticket taken from the store (`None`: unknown or used) as the identity it opens,
/// at `now` (unix seconds). A grant whose session would already be over is refused as
/// expired.
pub fn ticket_identity(grant: Option<TicketGrant>, now: i64) -> Result<Identity, Refusal> {
    let g = grant.ok_or(Refusal::TicketInvalid)?;
    if g.exp <= now {
        return Err(Refusal::TokenExpired);
    }
    Ok(Identity {
        sub: g.sub,
        jti: g.jti,
        iat: g.iat,
        exp: g.exp,
        caps: g.caps,
        meta: g.meta,
        source: CredentialSource::Ticket,
    })
}

/// Whether any of the tenant's revocations matches the identity. The one place the
/// handshake, `refresh` and the ticket endpoint ask.
pub fn is_revoked(revocations: &[Revocation], id: &Identity) -> bool {
    revocations.iter().any(|r| r.matches(id))
}

/// [`is_revoked`] as a refusal.
pub fn check_revocations(revocations: &[Revocation], id: &Identity) -> Result<(), Refusal> {
    if is_revoked(revocations, id) { Err(Refusal::TokenRevoked) } else { Ok(()) }
}

/// What the store said when asked to count a verified connection against the tenant's
/// `max_connections` and `max_connections_per_user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// The store counted it: `true` when under both limits.
    Counted(bool),
    /// The store could not be reached.
    Unreachable,
}

/// How an admitted connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Counted and recorded.
    Registered,
    /// Let in without counting: the store was down. The caller records it once the store
    /// is back, so that listings and limits count it.
    Unregistered,
}

/// Admission under the tenant's connection limits. Without the store the limits cannot
/// be counted; a verified credential still gets in rather than the whole tenant going
/// dark while Redis restarts.
pub fn admit(count: Count) -> Result<Admitted, Refusal> {
    match count {
        Count::Counted(true) => Ok(Admitted::Registered),
        Count::Counted(false) => Err(Refusal::OverCapacity),
        Count::Unreachable => Ok(Admitted::Unregistered),
    }
}

/// A `refresh {token}` on a socket holding `current`: the new token must pass the
/// handshake's token checks, name the same user and not be revoked. The answer is the
/// socket's new identity: the new token's `exp`, `caps` and `meta`, the socket's source.
pub fn refresh(
    current: &Identity,
    token: &str,
    tenant: &str,
    ring: &KeyRing,
    policy: &TenantPolicy,
    revocations: &[Revocation],
    now: i64,
) -> Result<Identity, EventError> {
    let fresh = verify_token(token, tenant, ring, policy, CredentialSource::Auth, now)?;
    if fresh.sub != current.sub {
        return Err(EventError::InvalidToken);
    }
    if is_revoked(revocations, &fresh) {
        return Err(EventError::TokenRevoked);
    }
    Ok(Identity { source: current.source, ..fresh })
}

/// Whether a socket holding `id` may resume a stored session of `session_sub` with
/// `rooms`: the same user, at most [`MAX_RESUME_ROOMS`] rooms, every one still granted.
pub fn may_resume<'a>(
    id: &Identity,
    session_sub: &str,
    rooms: impl ExactSizeIterator<Item = &'a str>,
) -> bool {
    if session_sub != id.sub || rooms.len() > MAX_RESUME_ROOMS {
        return false;
    }
    let mut rooms = rooms;
    rooms.all(|room| id.caps.allows(room, Right::Subscribe))
}

/// A presence change in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    Join,
    Leave,
}

/// Whether a presence change is announced (`presence:join` / `presence:leave`).
/// `user_changed`: it was the user's first connection joining or last one leaving;
/// `members`: the room's members after the change, as the store counts them. Rooms with
/// more than `max_members` members (with the user in them) send none, for a join and
/// its leave alike; `None` (the tenant unknown) sends none.
pub fn presence_event(
    change: PresenceChange,
    user_changed: bool,
    members: u64,
    max_members: Option<u32>,
) -> bool {
    // The count with the user in the room: after a join, before a leave.
    let with_user = match change {
        PresenceChange::Join => members,
        PresenceChange::Leave => members.saturating_add(1),
    };
    user_changed && with_user <= u64::from(max_members.unwrap_or(0))
}

/// The first half of `POST /v1/tickets`: the client token from `Authorization: Bearer`
/// and the tenant it names (its `aud`), before the tenant is read.
pub fn ticket_request(authorization: Option<&str>) -> Result<(String, String), Refusal> {
    let req = HandshakeRequest { authorization, ..Default::default() };
    let token = match find_credential(&TenantPolicy::default(), &req) {
        Ok(Credential::Token { token, .. }) => token.into_owned(),
        _ => return Err(Refusal::MissingCredentials),
    };
    let tenant = token_audience(&token).ok_or(Refusal::InvalidToken)?;
    if !validate_tenant_id(&tenant) {
        return Err(Refusal::InvalidToken);
    }
    Ok((token, tenant))
}

/// The second half of `POST /v1/tickets`, once the tenant is known: the origin, whether
/// the tenant takes tickets, the token (as a header credential) and revocations decide;
/// the ticket grants what the token granted.
pub fn grant_ticket(
    token: &str,
    tenant: &str,
    ring: &KeyRing,
    policy: &TenantPolicy,
    revocations: &[Revocation],
    origin: Option<&str>,
    now: i64,
) -> Result<TicketGrant, Refusal> {
    check_origin(policy, origin)?;
    if !policy.allows_source(CredentialSource::Ticket) {
        return Err(Refusal::CredentialSourceDisabled);
    }
    let id = verify_token(token, tenant, ring, policy, CredentialSource::Header, now)?;
    check_revocations(revocations, &id)?;
    Ok(TicketGrant { sub: id.sub, caps: id.caps, meta: id.meta, exp: id.exp, jti: id.jti, iat: id.iat })
}

/// The grant of a ticket a tenant's backend asks for (`POST /v1/tenants/{t}/tickets`):
/// `caps` absent means the policy's `default_caps`; the session lives as long as the
/// longest token the tenant allows.
pub fn issued_ticket_grant(
    sub: String,
    caps: Option<Caps>,
    meta: Option<Value>,
    policy: &TenantPolicy,
    now: i64,
) -> TicketGrant {
    TicketGrant {
        sub,
        caps: caps.unwrap_or_else(|| policy.default_caps.clone()),
        meta,
        exp: now.saturating_add(i64::try_from(policy.max_token_ttl_seconds).unwrap_or(i64::MAX)),
        jti: None,
        iat: Some(now),
    }
}

/// The lifetime of a token minted by the admin API: `requested`, or the tenant's
/// `max_token_ttl_seconds` when absent; `None` outside 1 to that maximum.
pub fn token_ttl(requested: Option<u64>, policy: &TenantPolicy) -> Option<u64> {
    let max = policy.max_token_ttl_seconds;
    let ttl = requested.unwrap_or(max);
    (ttl != 0 && ttl <= max).then_some(ttl)
}

/// The key the admin API signs minted tokens with: the tenant's newest HMAC key.
pub fn signing_key(keys: &[KeyRecord]) -> Option<(&KeyRecord, Algorithm, &Secret)> {
    keys.iter()
        .filter_map(|k| match (&k.material, k.alg.as_deref().and_then(parse_algorithm)) {
            (KeyMaterial::Hmac { secret }, Some(alg)) => Some((k, alg, secret)),
            _ => None,
        })
        .max_by_key(|(k, _, _)| k.created_at)
}

/// The claims of a minted token, valid `ttl` seconds from `now`, and its `exp`.
pub fn mint_claims(
    tenant: &str,
    sub: &str,
    now: i64,
    ttl: u64,
    jti: &str,
    caps: Option<Value>,
    meta: Option<Value>,
) -> (Value, i64) {
    let exp = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
    let mut claims = json!({"aud": tenant, "sub": sub, "iat": now, "exp": exp, "jti": jti});
    if let Some(c) = caps {
        claims["caps"] = c;
    }
    if let Some(m) = meta {
        claims["meta"] = m;
    }
    (claims, exp)
}

#[cfg(test)]
mod tests;
