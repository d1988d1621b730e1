use serde_json::json;

use super::*;
use crate::{RevocationRule, mint_hmac};

const NOW: i64 = 1_760_000_000;
const SECRET: &str = "decide-secret-0123456789abcdef-0123456789abcdef";

fn key(kid: &str, alg: &str, created_at: i64) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        alg: Some(alg.into()),
        material: KeyMaterial::Hmac { secret: Secret::new(SECRET) },
        created_at,
    }
}

fn ring() -> KeyRing {
    KeyRing::from_records([&key("k1", "HS256", 1)]).0
}

fn token(sub: &str, jti: &str, exp: i64) -> String {
    let claims = json!({"aud": "acme", "sub": sub, "iat": NOW - 10, "exp": exp, "jti": jti});
    mint_hmac(Algorithm::HS256, Some("k1"), &Secret::new(SECRET), &claims).expect("signs")
}

fn ident(sub: &str, source: CredentialSource) -> Identity {
    Identity {
        sub: sub.into(),
        jti: None,
        iat: None,
        exp: NOW + 60,
        caps: Caps::from_json(&json!({"chat:*": ["subscribe"]})).expect("caps"),
        meta: None,
        source,
    }
}

fn revoke_jti(jti: &str) -> Revocation {
    Revocation::new("r".into(), RevocationRule::Jti { jti: jti.into() }, NOW, 60)
}

fn grant(exp: i64) -> TicketGrant {
    TicketGrant { sub: "u".into(), caps: Caps::all(), meta: None, exp, jti: Some("j".into()), iat: Some(NOW) }
}

#[test]
fn tickets_become_identities_until_their_session_would_be_over() {
    assert_eq!(check_ticket(&"a".repeat(MAX_TICKET_BYTES)), Ok(()));
    assert_eq!(check_ticket(&"a".repeat(MAX_TICKET_BYTES + 1)), Err(Refusal::TicketInvalid));
    assert_eq!(ticket_identity(None, NOW).err(), Some(Refusal::TicketInvalid));
    assert_eq!(ticket_identity(Some(grant(NOW)), NOW).err(), Some(Refusal::TokenExpired));
    let id = ticket_identity(Some(grant(NOW + 1)), NOW).expect("valid");
    assert_eq!((id.sub.as_str(), id.jti.as_deref(), id.iat, id.exp), ("u", Some("j"), Some(NOW), NOW + 1));
    assert_eq!(id.source, CredentialSource::Ticket);
}

#[test]
fn admission_counts_or_lets_in_uncounted() {
    assert_eq!(admit(Count::Counted(true)), Ok(Admitted::Registered));
    assert_eq!(admit(Count::Counted(false)), Err(Refusal::OverCapacity));
    assert_eq!(admit(Count::Unreachable), Ok(Admitted::Unregistered));
}

#[test]
fn revocations_match_any() {
    let mut id = ident("u", CredentialSource::Auth);
    id.jti = Some("j2".into());
    assert!(!is_revoked(&[], &id));
    assert!(!is_revoked(&[revoke_jti("j1")], &id));
    assert!(is_revoked(&[revoke_jti("j1"), revoke_jti("j2")], &id));
    assert_eq!(check_revocations(&[revoke_jti("j2")], &id), Err(Refusal::TokenRevoked));
}

#[test]
fn refresh_keeps_the_user_and_the_source() {
    let pol = TenantPolicy::default();
    let current = ident("u", CredentialSource::Cookie);
    let fresh = refresh(&current, &token("u", "j", NOW + 600), "acme", &ring(), &pol, &[], NOW).expect("ok");
    assert_eq!(fresh.exp, NOW + 600);
    assert_eq!(fresh.source, CredentialSource::Cookie);
    let other = refresh(&current, &token("v", "j", NOW + 600), "acme", &ring(), &pol, &[], NOW);
    assert_eq!(other.err(), Some(EventError::InvalidToken));
    let expired = refresh(&current, &token("u", "j", NOW), "acme", &ring(), &pol, &[], NOW);
    assert_eq!(expired.err(), Some(EventError::TokenExpired));
    let revoked =
        refresh(&current, &token("u", "j", NOW + 600), "acme", &ring(), &pol, &[revoke_jti("j")], NOW);
    assert_eq!(revoked.err(), Some(EventError::TokenRevoked));
    let junk = refresh(&current, "junk", "acme", &ring(), &pol, &[], NOW);
    assert_eq!(junk.err(), Some(EventError::InvalidToken));
}

#[test]
fn resume_needs_the_same_user_and_granted_rooms() {
    let id = ident("u", CredentialSource::Auth);
    assert!(may_resume(&id, "u", ["chat:1", "chat:2"].into_iter()));
    assert!(may_resume(&id, "u", std::iter::empty()));
    assert!(!may_resume(&id, "v", ["chat:1"].into_iter()));
    assert!(!may_resume(&id, "u", ["chat:1", "news"].into_iter()));
    let many: Vec<String> = (0..=MAX_RESUME_ROOMS).map(|i| format!("chat:{i}")).collect();
    assert!(!may_resume(&id, "u", many.iter().map(String::as_str)));
    assert!(may_resume(&id, "u", many[..MAX_RESUME_ROOMS].iter().map(String::as_str)));
}

#[test]
fn presence_events_stop_above_the_threshold_for_join_and_leave_alike() {
    use PresenceChange::{Join, Leave};
    // A join with 3 members after it and its leave with 2 after it are the same room size.
    assert!(presence_event(Join, true, 3, Some(3)));
    assert!(presence_event(Leave, true, 2, Some(3)));
    assert!(!presence_event(Join, true, 4, Some(3)));
    assert!(!presence_event(Leave, true, 3, Some(3)));
    assert!(!presence_event(Join, false, 1, Some(3)));
    assert!(!presence_event(Leave, false, 0, Some(3)));
    assert!(!presence_event(Join, true, 1, None));
    assert!(!presence_event(Leave, true, 0, None));
    assert!(!presence_event(Leave, true, u64::MAX, Some(u32::MAX)));
}

#[test]
fn ticket_requests_follow_the_handshake_rules() {
    let t = token("u", "j", NOW + 600);
    assert_eq!(ticket_request(None).err(), Some(Refusal::MissingCredentials));
    assert_eq!(ticket_request(Some("Basic abc")).err(), Some(Refusal::MissingCredentials));
    assert_eq!(ticket_request(Some("Bearer junk")).err(), Some(Refusal::InvalidToken));
    let (token_back, tenant) = ticket_request(Some(&format!("Bearer {t}"))).expect("parses");
    assert_eq!((token_back.as_str(), tenant.as_str()), (t.as_str(), "acme"));

    let pol = TenantPolicy::default();
    let g = grant_ticket(&t, "acme", &ring(), &pol, &[], None, NOW).expect("granted");
    assert_eq!((g.sub.as_str(), g.exp, g.jti.as_deref()), ("u", NOW + 600, Some("j")));
    assert_eq!(
        grant_ticket(&t, "acme", &ring(), &pol, &[revoke_jti("j")], None, NOW).err(),
        Some(Refusal::TokenRevoked)
    );
    let mut no_tickets = TenantPolicy::default();
    no_tickets.credential_sources.retain(|s| *s != CredentialSource::Ticket);
    assert_eq!(
        grant_ticket(&t, "acme", &ring(), &no_tickets, &[], None, NOW).err(),
        Some(Refusal::CredentialSourceDisabled)
    );
    let strict = TenantPolicy { allowed_origins: vec!["https://a.example".into()], ..Default::default() };
    assert_eq!(
        grant_ticket(&t, "acme", &ring(), &strict, &[], Some("https://b.example"), NOW).err(),
        Some(Refusal::OriginNotAllowed)
    );
}

#[test]
fn issued_tickets_default_to_the_policy() {
    let pol = TenantPolicy::default();
    let g = issued_ticket_grant("u".into(), None, None, &pol, NOW);
    assert_eq!(g.caps, pol.default_caps);
    assert_eq!(g.exp, NOW + i64::try_from(pol.max_token_ttl_seconds).expect("fits"));
    assert_eq!((g.jti, g.iat), (None, Some(NOW)));
    let g = issued_ticket_grant("u".into(), Some(Caps::all()), None, &pol, NOW);
    assert_eq!(g.caps, Caps::all());
}

#[test]
fn minted_tokens_ttl_and_key() {
    let pol = TenantPolicy::default();
    let max = pol.max_token_ttl_seconds;
    assert_eq!(token_ttl(None, &pol), Some(max));
    assert_eq!(token_ttl(Some(1), &pol), Some(1));
    assert_eq!(token_ttl(Some(max), &pol), Some(max));
    assert_eq!(token_ttl(Some(0), &pol), None);
    assert_eq!(token_ttl(Some(max + 1), &pol), None);

    assert!(signing_key(&[]).is_none());
    let pem = KeyRecord {
        kid: "p".into(),
        alg: Some("RS256".into()),
        material: KeyMaterial::PublicPem { pem: String::new() },
        created_at: 9,
    };
    let keys = [key("old", "HS256", 1), key("new", "HS512", 5), pem, key("bad", "nope", 7)];
    let (k, alg, _) = signing_key(&keys).expect("an HMAC key");
    assert_eq!((k.kid.as_str(), alg), ("new", Algorithm::HS512));

    let (c, exp) = mint_claims("acme", "u", NOW, 60, "j", Some(json!({"*": ["publish"]})), None);
    assert_eq!(exp, NOW + 60);
    assert_eq!(
        c,
        json!({"aud": "acme", "sub": "u", "iat": NOW, "exp": NOW + 60, "jti": "j", "caps": {"*": ["publish"]}})
    );
}
