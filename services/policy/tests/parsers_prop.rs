//! Property tests of the handshake parsers, the CI-run twin of the cargo-fuzz target in
//! `fuzz/fuzz_targets/handshake.rs`:
//!
//! - `verify_token` and `find_credential` never panic, whatever the strings and JSON;
//! - `verify_token` on validly signed, arbitrary claims agrees with a plain reading of
//!   SPEC 3.2's claim rules;
//! - `find_credential` agrees with a plain reading of SPEC 3.2's order rules, and a
//!   credential it finds is one the policy allows.

use std::borrow::Cow;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use policy::{
    Caps, Credential, CredentialSource, HandshakeRequest, KeyMaterial, KeyRecord, KeyRing, MAX_META_BYTES,
    Refusal, Secret, TenantPolicy, find_credential, verify_token,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: i64 = 1_760_000_000;
const TENANT: &str = "acme";
const SECRET: &str = "proptest-secret-0123456789abcdef";
const RSA_PUBLIC: &str = include_str!("../fixtures/rsa2048-public.pem");
const P256_PUBLIC: &str = include_str!("../fixtures/ec-p256-public.pem");
const ED_PUBLIC: &str = include_str!("../fixtures/ed25519-public.pem");
const ORIGIN: &str = "https://app.example.com";

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    let rec = |kid: &str, alg: &str, material: KeyMaterial| KeyRecord {
        kid: kid.into(),
        alg: Some(alg.into()),
        material,
        created_at: 0,
    };
    let (ring, errors) = KeyRing::from_records(&[
        rec("hs256", "HS256", KeyMaterial::Hmac { secret: Secret::new(SECRET) }),
        rec("rs256", "RS256", KeyMaterial::PublicPem { pem: RSA_PUBLIC.into() }),
        rec("es256", "ES256", KeyMaterial::PublicPem { pem: P256_PUBLIC.into() }),
        rec("ed", "EdDSA", KeyMaterial::PublicPem { pem: ED_PUBLIC.into() }),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    ring
});

static HS_KEY: LazyLock<EncodingKey> = LazyLock::new(|| EncodingKey::from_secret(SECRET.as_bytes()));

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HS256 over exactly `payload`'s bytes, with a kid or not.
fn signed(payload: &[u8], kid: bool) -> String {
    let header = if kid { r#"{"alg":"HS256","kid":"hs256"}"# } else { r#"{"alg":"HS256"}"# };
    let message = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &HS_KEY, Algorithm::HS256).expect("signs");
    format!("{message}.{sig}")
}

fn verify(token: &str, policy: &TenantPolicy) -> Result<policy::Identity, Refusal> {
    verify_token(token, TENANT, &RING, policy, CredentialSource::Auth, NOW)
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (NOW - 200_000..NOW + 200_000).prop_map(Value::from),
        ".{0,16}".prop_map(Value::String),
        Just(json!(TENANT)),
        Just(json!("subscribe")),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(".{0,8}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A claim: usually plausible, sometimes absent, sometimes anything at all.
fn claim(plausible: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![16 => plausible.prop_map(Some), 1 => Just(None), 1 => json_value().prop_map(Some)].boxed()
}

fn caps_value() -> BoxedStrategy<Value> {
    let right = prop_oneof![Just("subscribe"), Just("publish"), Just("presence"), Just("admin")];
    prop_oneof![
        Just(json!({"chat": ["subscribe"]})),
        Just(json!({"*": ["publish", "presence"], "team:*": ["subscribe"]})),
        btree_map("[a-c:*]{0,4}", vec(right, 0..4), 0..5).prop_map(|m| json!(m)),
        Just(Value::Null),
    ]
    .boxed()
}

/// Claims near the valid ones, so that every rule is reached, not only the first.
fn claims() -> impl Strategy<Value = Value> {
    let times = |lo: i64, hi: i64| {
        prop_oneof![(lo..hi).prop_map(Value::from), (lo as f64..hi as f64).prop_map(Value::from)].boxed()
    };
    (
        (
            claim(
                prop_oneof![6 => Just(json!(TENANT)), 2 => Just(json!(["x", TENANT])), 1 => Just(json!("other"))]
                    .boxed(),
            ),
            claim(prop_oneof![9 => "[a-z0-9:-]{1,12}", 1 => "[a-z\u{7}]{0,3}"].prop_map(Value::String).boxed()),
            claim(prop_oneof![3 => times(NOW + 1, NOW + 4000), 1 => times(NOW - 40, NOW + 40)].boxed()),
            claim(prop_oneof![3 => times(NOW - 4000, NOW), 1 => times(NOW, NOW + 60)].boxed()),
            claim(prop_oneof![3 => times(NOW - 4000, NOW), 1 => times(NOW, NOW + 60)].boxed()),
        ),
        (
            claim("[a-z0-9]{0,8}".prop_map(Value::String).boxed()),
            claim(caps_value()),
            claim(btree_map("[a-z]{1,4}", json_value(), 0..4).prop_map(|m| json!(m)).boxed()),
            btree_map("[a-z]{1,4}", json_value(), 0..3),
        ),
    )
        .prop_map(|((aud, sub, exp, nbf, iat), (jti, caps, meta, extra))| {
            let mut m = serde_json::Map::new();
            for (k, v) in
                [("aud", aud), ("sub", sub), ("exp", exp), ("nbf", nbf), ("iat", iat), ("jti", jti), ("caps", caps), ("meta", meta)]
            {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            for (k, v) in extra {
                m.entry(k).or_insert(v);
            }
            Value::Object(m)
        })
}

fn policy_strategy() -> impl Strategy<Value = TenantPolicy> {
    (
        vec(any::<bool>(), 5),
        prop_oneof![
            Just(vec!["*"]),
            Just(vec![ORIGIN]),
            Just(vec!["*", ORIGIN]),
            Just(vec![]),
            Just(vec!["https://*.example.com"]),
        ],
        prop_oneof![Just("sb_token"), Just("rt")],
        prop_oneof![Just(json!({})), Just(json!({"lobby": ["subscribe"]}))],
        prop_oneof![Just(86_400u64), Just(3600), 1u64..5000],
    )
        .prop_map(|(on, origins, cookie, default_caps, ttl)| {
            let all = [
                CredentialSource::Auth,
                CredentialSource::Header,
                CredentialSource::Ticket,
                CredentialSource::Cookie,
                CredentialSource::Query,
            ];
            TenantPolicy {
                credential_sources: all.into_iter().zip(on).filter(|(_, on)| *on).map(|(s, _)| s).collect(),
                allowed_origins: origins.into_iter().map(Into::into).collect(),
                cookie_name: cookie.into(),
                default_caps: Caps::from_json(&default_caps).expect("valid caps"),
                max_token_ttl_seconds: ttl,
                ..TenantPolicy::default()
            }
        })
}

// ---------------------------------------------------------------------------------------
// A plain reading of SPEC 3.2's claim rules
// ---------------------------------------------------------------------------------------

/// What `verify_token` should answer for validly signed `claims`, read from SPEC 3.2
/// (and the documented bounds: `sub`/`jti` 1-256 bytes without control characters, at
/// most 16 audiences, times floored to whole seconds).
fn expected(claims: &Value, policy: &TenantPolicy) -> Result<(), Refusal> {
    const INVALID: Result<(), Refusal> = Err(Refusal::InvalidToken);
    let Some(c) = claims.as_object() else { return INVALID };
    let get = |k: &str| c.get(k).filter(|v| !v.is_null());
    let time = |k: &str| -> Result<Option<i64>, Refusal> {
        match get(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(|f| Some(f.floor() as i64)).ok_or(Refusal::InvalidToken),
        }
    };
    let id_ok = |v: &Value| {
        v.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control))
    };

    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => a == TENANT,
        Some(Value::Array(a)) => a.len() <= 16 && a.iter().any(|x| x == TENANT),
        _ => false,
    };
    if !aud_ok || !c.get("sub").is_some_and(id_ok) {
        return INVALID;
    }
    let Some(exp) = time("exp")? else { return INVALID };
    let (nbf, iat) = (time("nbf")?, time("iat")?);
    if get("jti").is_some_and(|j| !id_ok(j)) {
        return INVALID;
    }
    if exp <= NOW {
        return Err(Refusal::TokenExpired);
    }
    if nbf.is_some_and(|n| n > NOW + 30) || iat.is_some_and(|i| i > NOW + 30) {
        return Err(Refusal::TokenNotYetValid);
    }
    let from = iat.unwrap_or(NOW);
    if i128::from(exp) - i128::from(from) > i128::from(policy.max_token_ttl_seconds) {
        return INVALID;
    }
    if get("caps").is_some_and(|caps| Caps::from_json(caps).is_err()) {
        return INVALID;
    }
    match get("meta") {
        None => Ok(()),
        Some(m @ Value::Object(_)) if serde_json::to_vec(m).expect("json").len() <= MAX_META_BYTES => Ok(()),
        Some(_) => INVALID,
    }
}

// ---------------------------------------------------------------------------------------
// A plain reading of SPEC 3.2's source order
// ---------------------------------------------------------------------------------------

/// A string field of the auth payload as generated.
#[derive(Debug, Clone)]
enum Field {
    Absent,
    Null,
    Empty,
    Str(String),
    /// Not a string: a malformed credential.
    Other(Value),
}

impl Field {
    fn insert(&self, m: &mut serde_json::Map<String, Value>, name: &str) {
        let v = match self {
            Field::Absent => return,
            Field::Null => Value::Null,
            Field::Empty => json!(""),
            Field::Str(s) => json!(s),
            Field::Other(v) => v.clone(),
        };
        m.insert(name.into(), v);
    }
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        3 => Just(Field::Absent),
        1 => Just(Field::Null),
        1 => Just(Field::Empty),
        4 => "[A-Za-z0-9._-]{1,8}".prop_map(Field::Str),
        1 => prop_oneof![
            any::<i64>().prop_map(Value::from),
            Just(json!([])),
            Just(json!(["t"])),
            Just(json!({"token": "t"})),
            any::<bool>().prop_map(Value::Bool),
        ]
        .prop_map(Field::Other),
    ]
}

/// A handshake as generated, before it is written out as strings.
#[derive(Debug, Clone)]
struct Shape {
    /// `None`: no auth payload; `Some(None)`: a payload that is not an object.
    auth: Option<Option<(Field, Field)>>,
    /// (scheme, separator, token).
    authorization: Option<(&'static str, &'static str, String)>,
    cookie: Option<Vec<(&'static str, String)>>,
    origin: Option<&'static str>,
    query: Option<Vec<(&'static str, String)>>,
}

fn value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{0,6}"
}

fn shape() -> impl Strategy<Value = Shape> {
    let auth = prop_oneof![
        1 => Just(None),
        1 => Just(Some(None)),
        4 => (field(), field()).prop_map(|f| Some(Some(f))),
    ];
    let authorization = proptest::option::of((
        prop_oneof![Just("Bearer"), Just("bearer"), Just("BEARER"), Just("Basic"), Just("Token"), Just("")],
        prop_oneof![Just(" "), Just("  "), Just("\t")],
        value(),
    ));
    let cookie =
        proptest::option::of(vec((prop_oneof![Just("sb_token"), Just("rt"), Just("x")], value()), 0..4));
    let origin = proptest::option::of(prop_oneof![
        Just(ORIGIN),
        Just("https://evil.example"),
        Just("https://a.example.com"),
    ]);
    let query = proptest::option::of(vec(
        (prop_oneof![Just("token"), Just("ticket"), Just("EIO"), Just("transport"), Just("t")], value()),
        0..5,
    ));
    (auth, authorization, cookie, origin, query).prop_map(|(auth, authorization, cookie, origin, query)| {
        Shape { auth, authorization, cookie, origin, query }
    })
}

/// The strings the edge would hand to `find_credential`.
struct Written {
    auth: Option<Value>,
    authorization: Option<String>,
    cookie: Option<String>,
    query: Option<String>,
}

fn write(s: &Shape) -> Written {
    let auth = s.auth.as_ref().map(|a| match a {
        None => json!(["not", "an", "object"]),
        Some((token, ticket)) => {
            let mut m = serde_json::Map::new();
            m.insert("other".into(), json!(1));
            token.insert(&mut m, "token");
            ticket.insert(&mut m, "ticket");
            Value::Object(m)
        }
    });
    Written {
        auth,
        authorization: s.authorization.as_ref().map(|(scheme, sep, t)| format!("{scheme}{sep}{t}")),
        cookie: s
            .cookie
            .as_ref()
            .map(|c| c.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")),
        query: s
            .query
            .as_ref()
            .map(|q| q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")),
    }
}

fn first<'a>(pairs: &'a Option<Vec<(&'static str, String)>>, name: &str) -> Option<&'a str> {
    // The first pair of that name decides; an empty value is no credential.
    pairs.as_ref()?.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// Whether an origin is on the explicit allow-list (exact or `https://*.example.com`).
fn listed(policy: &TenantPolicy, origin: &str) -> bool {
    policy.allowed_origins.iter().any(|e| {
        e == origin
            || (e == "https://*.example.com"
                && origin.starts_with("https://")
                && origin.ends_with(".example.com"))
    })
}

/// SPEC 3.2: `auth`, `header`, `ticket`, `cookie`, `query`, in that order; the first one
/// that holds a credential and is switched on wins; otherwise the first refusal.
fn expected_credential(s: &Shape, p: &TenantPolicy) -> Result<Credential<'static>, Refusal> {
    let on = |src| p.credential_sources.contains(&src);
    let tok = |source, t: &str| Ok(Credential::Token { source, token: Cow::Owned(t.to_string()) });
    let (token, ticket) = match &s.auth {
        Some(Some((a, b))) => (a.clone(), b.clone()),
        _ => (Field::Absent, Field::Absent),
    };
    let mut refusal = None;

    match token {
        Field::Other(_) => return Err(Refusal::InvalidToken),
        Field::Str(t) if on(CredentialSource::Auth) => return tok(CredentialSource::Auth, &t),
        Field::Str(_) => {
            refusal.get_or_insert(Refusal::CredentialSourceDisabled);
        }
        _ => {}
    }
    if let Some((scheme, sep, t)) = &s.authorization
        && scheme.eq_ignore_ascii_case("bearer")
        && sep.starts_with(' ')
        && !t.is_empty()
    {
        if on(CredentialSource::Header) {
            return tok(CredentialSource::Header, t);
        }
        refusal.get_or_insert(Refusal::CredentialSourceDisabled);
    }
    let ticket = match ticket {
        Field::Other(_) => return Err(Refusal::TicketInvalid),
        Field::Str(t) => Some(t),
        _ => first(&s.query, "ticket").map(str::to_string),
    };
    if let Some(t) = ticket {
        if on(CredentialSource::Ticket) {
            return Ok(Credential::Ticket(Cow::Owned(t)));
        }
        refusal.get_or_insert(Refusal::CredentialSourceDisabled);
    }
    if let Some(c) = first(&s.cookie, &p.cookie_name) {
        if !on(CredentialSource::Cookie) {
            refusal.get_or_insert(Refusal::CredentialSourceDisabled);
        } else if !p.allowed_origins.iter().any(|o| o == "*") && s.origin.is_some_and(|o| listed(p, o)) {
            return tok(CredentialSource::Cookie, c);
        } else {
            refusal.get_or_insert(Refusal::OriginNotAllowed);
        }
    }
    if let Some(q) = first(&s.query, "token") {
        if on(CredentialSource::Query) {
            return tok(CredentialSource::Query, q);
        }
        refusal.get_or_insert(Refusal::QueryTokenDisabled);
    }
    Err(refusal.unwrap_or(Refusal::MissingCredentials))
}

/// What any result of `find_credential` must satisfy, whatever the input.
fn check_found(p: &TenantPolicy, req: &HandshakeRequest<'_>, found: &Result<Credential<'_>, Refusal>) {
    match found {
        Ok(Credential::Token { source, token }) => {
            assert!(p.allows_source(*source), "{source:?} is off");
            assert!(!token.is_empty());
            if *source == CredentialSource::Cookie {
                assert!(!p.any_origin() && req.origin.is_some(), "cookie under * or without Origin");
            }
            // Whatever was found, verifying it never panics.
            let _ = verify_token(token, TENANT, &RING, p, *source, NOW);
        }
        Ok(Credential::Ticket(t)) => {
            assert!(p.allows_source(CredentialSource::Ticket));
            assert!(!t.is_empty());
        }
        Err(r) => assert!(
            matches!(
                r,
                Refusal::MissingCredentials
                    | Refusal::InvalidToken
                    | Refusal::TicketInvalid
                    | Refusal::CredentialSourceDisabled
                    | Refusal::QueryTokenDisabled
                    | Refusal::OriginNotAllowed
            ),
            "{r:?}"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any string at all, and JWT-looking ones, are refused without a panic.
    #[test]
    fn verify_token_never_panics_on_strings(
        token in prop_oneof![any::<String>(), "[A-Za-z0-9_=+/.-]{0,400}", "(e[A-Za-z0-9_-]{0,60}\\.){0,4}[A-Za-z0-9_-]{0,60}"],
        tenant in prop_oneof![Just(TENANT.to_string()), ".{0,12}"],
    ) {
        let r = verify_token(&token, &tenant, &RING, &TenantPolicy::default(), CredentialSource::Query, NOW);
        prop_assert_eq!(r, Err(Refusal::InvalidToken));
        let _ = (policy::token_kid(&token), policy::token_audience(&token));
    }

    /// Arbitrary JSON header and payload, base64url-encoded, with any signature.
    #[test]
    fn verify_token_never_panics_on_arbitrary_parts(
        header in prop_oneof![
            json_value(),
            (prop_oneof![Just("HS256"), Just("RS256"), Just("ES256"), Just("EdDSA"), Just("none"), Just("PS256")],
             proptest::option::of(prop_oneof![Just("hs256"), Just("rs256"), Just("es256"), Just("ed"), Just("x")]))
                .prop_map(|(alg, kid)| json!({"alg": alg, "kid": kid})),
        ],
        payload in prop_oneof![json_value(), claims()],
        sig in "[A-Za-z0-9_-]{0,100}",
    ) {
        let token = format!("{}.{}.{sig}", b64(header.to_string()), b64(payload.to_string()));
        prop_assert_eq!(verify(&token, &TenantPolicy::default()), Err(Refusal::InvalidToken));
        // The unverified readers never panic either.
        let _ = (policy::token_kid(&token), policy::token_audience(&token));
    }

    /// Validly signed, arbitrary claims: the verdict is exactly SPEC 3.2's, and a token
    /// that passes yields an identity within the rules.
    #[test]
    fn verify_token_follows_the_claim_rules(claims in claims(), policy in policy_strategy(), kid in any::<bool>()) {
        let token = signed(claims.to_string().as_bytes(), kid);
        let got = verify(&token, &policy);
        prop_assert_eq!(got.as_ref().map(|_| ()).map_err(|r| *r), expected(&claims, &policy), "{}", claims);
        if let Ok(id) = got {
            prop_assert!(id.exp > NOW);
            prop_assert!(!id.sub.is_empty() && id.sub.len() <= 256);
            prop_assert!(i128::from(id.exp) - i128::from(id.iat.unwrap_or(NOW)) <= i128::from(policy.max_token_ttl_seconds));
            prop_assert!(id.meta.as_ref().is_none_or(|m| m.is_object() && m.to_string().len() <= MAX_META_BYTES));
            match claims.get("caps").filter(|c| !c.is_null()) {
                None => prop_assert_eq!(&id.caps, &policy.default_caps),
                Some(c) => prop_assert_eq!(Ok(id.caps), Caps::from_json(c)),
            }
        }
    }

    /// Signed payloads that are any bytes at all.
    #[test]
    fn verify_token_never_panics_on_signed_bytes(payload in vec(any::<u8>(), 0..512)) {
        prop_assert_eq!(verify(&signed(&payload, true), &TenantPolicy::default()), Err(Refusal::InvalidToken));
    }

    /// Arbitrary auth payloads, headers, cookies, origins and queries.
    #[test]
    fn find_credential_never_panics(
        auth in proptest::option::of(prop_oneof![
            json_value(),
            (json_value(), json_value()).prop_map(|(t, k)| json!({"token": t, "ticket": k})),
        ]),
        authorization in proptest::option::of(prop_oneof![any::<String>(), "(?i:bearer)[ \t]{0,3}.{0,20}"]),
        cookie in proptest::option::of(prop_oneof![any::<String>(), "((sb_token|rt|x)=[^;]{0,10}; ?){0,4}"]),
        origin in proptest::option::of(prop_oneof![any::<String>(), Just(ORIGIN.to_string())]),
        query in proptest::option::of(prop_oneof![any::<String>(), "((token|ticket|EIO)=[%A-Za-z0-9+]{0,10}&?){0,4}"]),
        policy in policy_strategy(),
    ) {
        let req = HandshakeRequest {
            auth: auth.as_ref(),
            authorization: authorization.as_deref(),
            cookie: cookie.as_deref(),
            origin: origin.as_deref(),
            query: query.as_deref(),
        };
        let found = find_credential(&policy, &req);
        check_found(&policy, &req, &found);
    }

    /// The source order and switches of SPEC 3.2, against a plain reading of them.
    #[test]
    fn find_credential_follows_the_order_rules(s in shape(), policy in policy_strategy()) {
        let w = write(&s);
        let req = HandshakeRequest {
            auth: w.auth.as_ref(),
            authorization: w.authorization.as_deref(),
            cookie: w.cookie.as_deref(),
            origin: s.origin,
            query: w.query.as_deref(),
        };
        let found = find_credential(&policy, &req);
        check_found(&policy, &req, &found);
        prop_assert_eq!(found, expected_credential(&s, &policy), "{:?}", s);
    }

    /// A real token put in a random source: when it is found it verifies, and the
    /// identity names the source it came from.
    #[test]
    fn found_tokens_verify_with_their_source(
        source in prop_oneof![
            Just(CredentialSource::Auth),
            Just(CredentialSource::Header),
            Just(CredentialSource::Cookie),
            Just(CredentialSource::Query),
        ],
        origin in proptest::option::of(Just(ORIGIN)),
        policy in policy_strategy(),
    ) {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("hs256".into());
        let claims = json!({"aud": TENANT, "sub": "u", "exp": NOW + 1, "iat": NOW});
        let token = jsonwebtoken::encode(&header, &claims, &HS_KEY).expect("signs");
        let auth = json!({"token": token});
        let bearer = format!("Bearer {token}");
        let cookie = format!("theme=dark; {}={token}", policy.cookie_name);
        let query = format!("EIO=4&transport=websocket&token={token}");
        let req = match source {
            CredentialSource::Auth => HandshakeRequest { auth: Some(&auth), ..HandshakeRequest::default() },
            CredentialSource::Header => HandshakeRequest { authorization: Some(&bearer), ..HandshakeRequest::default() },
            CredentialSource::Cookie => HandshakeRequest { cookie: Some(&cookie), ..HandshakeRequest::default() },
            _ => HandshakeRequest { query: Some(&query), ..HandshakeRequest::default() },
        };
        let req = HandshakeRequest { origin, ..req };
        match find_credential(&policy, &req) {
            Ok(Credential::Token { source: found, token: t }) => {
                prop_assert_eq!(found, source);
                let id = verify_token(&t, TENANT, &RING, &policy, found, NOW).expect("valid token");
                prop_assert_eq!(id.source, source);
                prop_assert_eq!(id.sub, "u");
            }
            Ok(Credential::Ticket(_)) => prop_assert!(false, "a token is not a ticket"),
            Err(r) => prop_assert!(!policy.allows_source(source) || source == CredentialSource::Cookie, "{:?}", r),
        }
    }
}
