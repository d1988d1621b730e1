//! Fuzzes the handshake parsers: `find_credential` and `verify_token`.
//!
//! The input is split on `0xFF` (a byte no UTF-8 text holds) into
//! `flags`, `token`, `auth`, `query`, `cookie`, `authorization`, `origin`:
//! - the first byte of `flags` picks the policy (bits 0-4: which credential sources are
//!   on; bit 5: origins `*` or an explicit list) and bit 6 says whether `token` is
//!   claims JSON to sign with the ring's HS256 key, so that the claim rules are reached
//!   behind a valid signature, rather than a token as is;
//! - `auth` is parsed as JSON when it is JSON, else sent as a JSON string.
//!
//! A panic, or a result that breaks the rules asserted below, is a finding. Its CI-run
//! twin is `tests/parsers_prop.rs`.

#![no_main]

use std::borrow::Cow;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use policy::{
    Credential, CredentialSource, HandshakeRequest, KeyMaterial, KeyRecord, KeyRing, Refusal, Secret,
    TenantPolicy, find_credential, verify_token,
};

const NOW: i64 = 1_760_000_000;
const TENANT: &str = "acme";
const SECRET: &str = "fuzz-secret-0123456789abcdef";

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    let rec = |kid: &str, alg: &str, material: KeyMaterial| KeyRecord {
        kid: kid.into(),
        alg: Some(alg.into()),
        material,
        created_at: 0,
    };
    let pem = |p: &str| KeyMaterial::PublicPem { pem: p.into() };
    let (ring, errors) = KeyRing::from_records(&[
        rec("hs256", "HS256", KeyMaterial::Hmac { secret: Secret::new(SECRET) }),
        rec("rs256", "RS256", pem(include_str!("../../fixtures/rsa2048-public.pem"))),
        rec("es256", "ES256", pem(include_str!("../../fixtures/ec-p256-public.pem"))),
        rec("es384", "ES384", pem(include_str!("../../fixtures/ec-p384-public.pem"))),
        rec("ed", "EdDSA", pem(include_str!("../../fixtures/ed25519-public.pem"))),
    ]);
    assert!(errors.is_empty());
    ring
});

static HS_KEY: LazyLock<EncodingKey> = LazyLock::new(|| EncodingKey::from_secret(SECRET.as_bytes()));

const SOURCES: [CredentialSource; 5] = [
    CredentialSource::Auth,
    CredentialSource::Header,
    CredentialSource::Ticket,
    CredentialSource::Cookie,
    CredentialSource::Query,
];

fn policy(flags: u8) -> TenantPolicy {
    TenantPolicy {
        credential_sources: SOURCES
            .iter()
            .enumerate()
            .filter(|(i, _)| flags & (1 << i) != 0)
            .map(|(_, s)| *s)
            .collect(),
        allowed_origins: if flags & 0x20 != 0 {
            vec!["*".into()]
        } else {
            vec!["https://app.example.com".into(), "https://*.corp.example".into()]
        },
        ..TenantPolicy::default()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `claims` signed with the ring's HS256 key, header chosen by `flags`.
fn signed(claims: &[u8], flags: u8) -> String {
    let header: &[u8] =
        if flags & 0x80 != 0 { br#"{"alg":"HS256"}"# } else { br#"{"alg":"HS256","kid":"hs256"}"# };
    let message = format!("{}.{}", b64(header), b64(claims));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &HS_KEY, Algorithm::HS256).expect("HMAC signs");
    format!("{message}.{sig}")
}

fn check_identity(policy: &TenantPolicy, r: &Result<policy::Identity, Refusal>, source: CredentialSource) {
    match r {
        Ok(id) => {
            assert!(id.exp > NOW);
            assert!(!id.sub.is_empty() && id.sub.len() <= 256);
            assert!(
                i128::from(id.exp) - i128::from(id.iat.unwrap_or(NOW))
                    <= i128::from(policy.max_token_ttl_seconds)
            );
            assert!(
                id.meta
                    .as_ref()
                    .is_none_or(|m| m.is_object() && m.to_string().len() <= policy::MAX_META_BYTES)
            );
            assert_eq!(id.source, source);
        }
        Err(r) => {
            assert!(matches!(r, Refusal::InvalidToken | Refusal::TokenExpired | Refusal::TokenNotYetValid))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xFF);
    let mut next = || parts.next().map(String::from_utf8_lossy);
    let flags = next().and_then(|f| f.bytes().next()).unwrap_or(0);
    let token = next().unwrap_or(Cow::Borrowed(""));
    let auth = next();
    let query = next();
    let cookie = next();
    let authorization = next();
    let origin = next();

    let policy = policy(flags);
    let token = if flags & 0x40 != 0 { signed(token.as_bytes(), flags) } else { token.into_owned() };
    let r = verify_token(&token, TENANT, &RING, &policy, CredentialSource::Auth, NOW);
    check_identity(&policy, &r, CredentialSource::Auth);
    let _ = (policy::token_kid(&token), policy::token_audience(&token));

    let auth =
        auth.map(|a| serde_json::from_str(&a).unwrap_or_else(|_| serde_json::Value::String(a.into_owned())));
    let req = HandshakeRequest {
        auth: auth.as_ref(),
        authorization: authorization.as_deref(),
        cookie: cookie.as_deref(),
        origin: origin.as_deref(),
        query: query.as_deref(),
    };
    match find_credential(&policy, &req) {
        Ok(Credential::Token { source, token }) => {
            assert!(policy.allows_source(source));
            assert!(!token.is_empty());
            if source == CredentialSource::Cookie {
                assert!(!policy.any_origin() && req.origin.is_some());
            }
            let r = verify_token(&token, TENANT, &RING, &policy, source, NOW);
            check_identity(&policy, &r, source);
        }
        Ok(Credential::Ticket(t)) => {
            assert!(policy.allows_source(CredentialSource::Ticket));
            assert!(!t.is_empty());
        }
        Err(r) => assert!(matches!(
            r,
            Refusal::MissingCredentials
                | Refusal::InvalidToken
                | Refusal::TicketInvalid
                | Refusal::CredentialSourceDisabled
                | Refusal::QueryTokenDisabled
                | Refusal::OriginNotAllowed
        )),
    }
});
