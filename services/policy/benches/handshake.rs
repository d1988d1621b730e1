//! What one handshake decision costs, per algorithm: `find_credential` on a Socket.IO
//! CONNECT auth payload, `verify_token` of the token it finds, and one `Caps::allows`
//! check; and `Caps::allows` alone on a realistic map (10 exact + 5 prefix patterns).
//!
//! `cargo bench -p policy --bench handshake -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use policy::{
    Caps, Credential, CredentialSource, HandshakeRequest, KeyMaterial, KeyRecord, KeyRing, Right, Secret,
    TenantPolicy, find_credential, verify_token,
};
use serde_json::json;

const NOW: i64 = 1_760_000_000;
const TENANT: &str = "acme";
const SECRET: &str = "bench-secret-0123456789abcdef-0123456789abcdef";

fn ring() -> KeyRing {
    let rec = |kid: &str, alg: &str, material: KeyMaterial| KeyRecord {
        kid: kid.into(),
        alg: Some(alg.into()),
        material,
        created_at: 0,
    };
    let pem = |p: &str| KeyMaterial::PublicPem { pem: p.into() };
    let (ring, errors) = KeyRing::from_records(&[
        rec("hs256", "HS256", KeyMaterial::Hmac { secret: Secret::new(SECRET) }),
        rec("rs256", "RS256", pem(include_str!("../fixtures/rsa2048-public.pem"))),
        rec("es256", "ES256", pem(include_str!("../fixtures/ec-p256-public.pem"))),
        rec("ed", "EdDSA", pem(include_str!("../fixtures/ed25519-public.pem"))),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    ring
}

fn signing_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 => Ok(EncodingKey::from_secret(SECRET.as_bytes())),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa2048-private.pem")),
        Algorithm::ES256 => EncodingKey::from_ec_pem(include_bytes!("../fixtures/ec-p256-private.pem")),
        _ => EncodingKey::from_ed_pem(include_bytes!("../fixtures/ed25519-private.pem")),
    }
    .expect("fixture key")
}

/// A typical client token: a few caps, a little presence meta.
fn token(alg: Algorithm, kid: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let claims = json!({
        "aud": TENANT,
        "sub": "user-4711",
        "iat": NOW - 10,
        "exp": NOW + 3600,
        "jti": "0f8e3c1a-7d55-4d8e-9d4f-3b1c2a9e6f10",
        "caps": {"chat": ["subscribe", "publish"], "team:42:*": ["subscribe", "publish", "presence"], "*": ["presence"]},
        "meta": {"name": "Ada Lovelace", "avatar": "https://cdn.example.com/a/4711.png"},
    });
    jsonwebtoken::encode(&header, &claims, &signing_key(alg)).expect("signs")
}

fn handshake(c: &mut Criterion) {
    let ring = ring();
    let policy = TenantPolicy::default();
    let mut group = c.benchmark_group("handshake");
    for (alg, kid, name) in [
        (Algorithm::HS256, "hs256", "HS256"),
        (Algorithm::RS256, "rs256", "RS256"),
        (Algorithm::ES256, "es256", "ES256"),
        (Algorithm::EdDSA, "ed", "EdDSA"),
    ] {
        let auth = json!({"token": token(alg, kid)});
        let req = HandshakeRequest {
            auth: Some(&auth),
            authorization: None,
            cookie: Some("theme=dark; lang=en"),
            origin: Some("https://app.example.com"),
            query: Some("EIO=4&transport=websocket"),
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let cred = find_credential(&policy, black_box(&req)).expect("credential");
                let Credential::Token { source, token } = cred else { unreachable!("a token") };
                let id = verify_token(&token, TENANT, &ring, &policy, source, black_box(NOW))
                    .expect("valid token");
                assert_eq!(id.source, CredentialSource::Auth);
                black_box(id.caps.allows(black_box("team:42:general"), Right::Publish))
            })
        });
    }
    group.finish();
}

fn caps(c: &mut Criterion) {
    let mut m = serde_json::Map::new();
    for i in 0..10 {
        m.insert(format!("room-{i}"), json!(["subscribe", "publish"]));
    }
    for p in ["team:1:*", "team:2:*", "user:4711:*", "news:", "ops/*"] {
        m.insert(format!("{}*", p.trim_end_matches('*')), json!(["subscribe"]));
    }
    let caps = Caps::from_json(&serde_json::Value::Object(m)).expect("valid caps");
    let mut group = c.benchmark_group("caps_allows");
    for (case, room, right, want) in [
        ("exact_hit", "room-7", Right::Publish, true),
        ("prefix_hit", "user:4711:inbox", Right::Subscribe, true),
        ("miss", "team:3:general", Right::Subscribe, false),
    ] {
        assert_eq!(caps.allows(room, right), want, "{case}");
        group.bench_function(case, |b| b.iter(|| caps.allows(black_box(room), black_box(right))));
    }
    group.finish();
}

criterion_group!(benches, handshake, caps);
criterion_main!(benches);
