//! Tokens: tenant keys, the key ring a tenant's tokens are verified with, and the claim
//! rules of SPEC 3.2.
//!
//! Algorithm confusion is impossible by construction: a key is stored with its algorithm,
//! the token's `kid` selects the key, and the token's `alg` must equal the key's. `none`
//! is not an [`Algorithm`] at all, so it can never be selected.

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use serde::{Deserialize, Serialize};

use crate::caps::Caps;
use crate::error::Refusal;
use crate::handshake::CredentialSource;
use crate::tenant::TenantPolicy;

/// Longest token accepted, in bytes: far above any real JWT, far below what hurts.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Largest `meta` claim, serialised, in bytes.
pub const MAX_META_BYTES: usize = 1024;
/// Leeway for `nbf` and `iat`, for issuers' clock skew. `exp` has none.
pub const TIME_LEEWAY_SECONDS: i64 = 30;
/// Longest `sub` or `jti`, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself; every call site is a place the secret leaves this type.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The algorithms SPEC 3.2 allows, by their JOSE names.
pub fn parse_algorithm(s: &str) -> Option<Algorithm> {
    Some(match s {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Where a key's verifying material comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyMaterial {
    /// An HMAC secret; the key is the secret's UTF-8 bytes (SPEC 3.2).
    Hmac { secret: Secret },
    /// A PEM public key (RSA, EC or Ed25519).
    PublicPem { pem: String },
    /// A JWKS URL; its keys are fetched by the edge and added with [`KeyRing::add_jwk`].
    Jwks { url: String },
}

/// A tenant key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: String,
    /// `None` only for a JWKS source, whose keys carry their own algorithms.
    pub alg: Option<String>,
    pub material: KeyMaterial,
    /// Unix seconds.
    pub created_at: i64,
}

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported algorithm")]
    Algorithm,
    #[error("the key material does not fit its algorithm")]
    Mismatch,
    #[error("invalid PEM public key")]
    Pem,
    #[error("invalid JWK")]
    Jwk,
}

struct RingKey {
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

/// The verifying keys of one tenant, parsed once and reused for every handshake.
#[derive(Default)]
pub struct KeyRing {
    keys: HashMap<String, RingKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

/// The DER bytes inside a PEM document's first block.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let mut b64 = String::new();
    let mut inside = false;
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            inside = true;
        } else if line.starts_with("-----END ") {
            break;
        } else if inside {
            b64.push_str(line);
        }
    }
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// DER of the named-curve OIDs of P-256 (1.2.840.10045.3.1.7) and P-384 (1.3.132.0.34).
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Largest PEM accepted (an RSA-8192 public key is under 1.5 KiB).
pub const MAX_PEM_BYTES: usize = 16 * 1024;

/// Parses the verifying material of a key for `alg`, refusing material that could never
/// verify a token: another family, an EC key on the other curve, or a private key pasted
/// where the public one belongs (it would also be shown back as "public").
pub fn decoding_key(alg: Algorithm, material: &KeyMaterial) -> Result<Option<DecodingKey>, KeyError> {
    match material {
        KeyMaterial::Hmac { secret } => {
            if !is_hmac(alg) {
                return Err(KeyError::Mismatch);
            }
            Ok(Some(DecodingKey::from_secret(secret.expose().as_bytes())))
        }
        KeyMaterial::PublicPem { pem } => {
            if pem.len() > MAX_PEM_BYTES || pem.contains("PRIVATE KEY") {
                return Err(KeyError::Pem);
            }
            let curve = match alg {
                Algorithm::ES256 => Some(OID_P256),
                Algorithm::ES384 => Some(OID_P384),
                _ => None,
            };
            if let Some(oid) = curve {
                let der = pem_der(pem).ok_or(KeyError::Pem)?;
                if !der.windows(oid.len()).any(|w| w == oid) {
                    return Err(KeyError::Pem);
                }
            }
            let bytes = pem.as_bytes();
            let k = match alg {
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => DecodingKey::from_rsa_pem(bytes),
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(bytes),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(bytes),
                _ => return Err(KeyError::Mismatch),
            };
            k.map(Some).map_err(|_| KeyError::Pem)
        }
        KeyMaterial::Jwks { .. } => Ok(None),
    }
}

impl KeyRing {
    /// Builds the ring from stored records. A record that cannot be parsed is skipped and
    /// reported, so that one broken key does not lock a tenant out.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a KeyRecord>,
    ) -> (KeyRing, Vec<(String, KeyError)>) {
        let mut ring = KeyRing::default();
        let mut errors = Vec::new();
        for r in records {
            let parsed =
                r.alg.as_deref().map(|a| parse_algorithm(a).ok_or(KeyError::Algorithm)).transpose().and_then(
                    |alg| match (alg, &r.material) {
                        (Some(alg), m) => decoding_key(alg, m).map(|k| k.map(|k| (alg, k))),
                        (None, KeyMaterial::Jwks { .. }) => Ok(None),
                        // Only a JWKS source may leave the algorithm to its keys.
                        (None, _) => Err(KeyError::Algorithm),
                    },
                );
            match parsed {
                Ok(Some((alg, key))) => ring.insert(r.kid.clone(), alg, key),
                Ok(None) => {}
                Err(e) => errors.push((r.kid.clone(), e)),
            }
        }
        (ring, errors)
    }

    fn insert(&mut self, kid: String, alg: Algorithm, key: DecodingKey) {
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        // The clock is ours: `exp`, `nbf` and `iat` are checked in `verify_token` against
        // the `now` the caller passes, so jsonwebtoken must not read the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        self.keys.insert(kid, RingKey { alg, key, validation });
    }

    /// Adds a key fetched from a JWKS document. The JWK must name its algorithm or have a
    /// key type that implies exactly one.
    pub fn add_jwk(&mut self, jwk: &Jwk) -> Result<(), KeyError> {
        let kid = jwk.common.key_id.clone().ok_or(KeyError::Jwk)?;
        let alg = match jwk.common.key_algorithm {
            Some(a) => parse_algorithm(&format!("{a}")).ok_or(KeyError::Algorithm)?,
            None => match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    jsonwebtoken::jwk::EllipticCurve::P256 => Algorithm::ES256,
                    jsonwebtoken::jwk::EllipticCurve::P384 => Algorithm::ES384,
                    _ => return Err(KeyError::Algorithm),
                },
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                _ => return Err(KeyError::Algorithm),
            },
        };
        // Symmetric keys are never taken from a URL: anyone who can read it could sign.
        // And the named algorithm must fit the key type, so that the ring holds no key it
        // could never verify with.
        use jsonwebtoken::jwk::{AlgorithmParameters as P, EllipticCurve as C};
        let fits = match (&jwk.algorithm, alg) {
            (P::RSA(_), Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512) => true,
            (P::EllipticCurve(ec), Algorithm::ES256) => ec.curve == C::P256,
            (P::EllipticCurve(ec), Algorithm::ES384) => ec.curve == C::P384,
            (P::OctetKeyPair(_), Algorithm::EdDSA) => true,
            _ => false,
        };
        if is_hmac(alg) || !fits {
            return Err(KeyError::Algorithm);
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| KeyError::Jwk)?;
        self.insert(kid, alg, key);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The key a token header selects. Without a `kid`, the tenant's only key of the
    /// token's algorithm is used, so that `sign(claims, secret)` works with a single key;
    /// with two such keys (a rotation) a `kid` is required.
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Option<&RingKey> {
        match kid {
            Some(kid) => self.keys.get(kid),
            None => {
                let mut it = self.keys.values().filter(|k| k.alg == alg);
                let first = it.next()?;
                it.next().is_none().then_some(first)
            }
        }
    }
}

/// The claims of SPEC 3.2. Times are read as numbers (integer or not) and floored.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub aud: serde_json::Value,
    pub sub: serde_json::Value,
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
    pub jti: Option<serde_json::Value>,
    pub caps: Option<serde_json::Value>,
    pub meta: Option<serde_json::Value>,
}

/// Who a socket is and what it may do: the outcome of a successful credential check.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub sub: String,
    pub jti: Option<String>,
    /// Unix seconds, when the token said.
    pub iat: Option<i64>,
    /// Unix seconds after which the session ends unless refreshed.
    pub exp: i64,
    pub caps: Caps,
    pub meta: Option<serde_json::Value>,
    pub source: CredentialSource,
}

fn num(v: Option<f64>) -> Result<Option<i64>, Refusal> {
    match v {
        None => Ok(None),
        Some(f) if f.is_finite() => Ok(Some(f.floor() as i64)),
        Some(_) => Err(Refusal::InvalidToken),
    }
}

fn id_string(v: &serde_json::Value) -> Result<String, Refusal> {
    match v.as_str() {
        Some(s) if crate::names::valid_id_claim(s) => Ok(s.to_string()),
        _ => Err(Refusal::InvalidToken),
    }
}

/// Checks `meta`: an object of at most [`MAX_META_BYTES`] serialised.
pub fn check_meta(meta: Option<serde_json::Value>) -> Result<Option<serde_json::Value>, Refusal> {
    match meta {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(m @ serde_json::Value::Object(_)) => {
            let len = serde_json::to_vec(&m).map(|v| v.len()).unwrap_or(usize::MAX);
            if len > MAX_META_BYTES { Err(Refusal::InvalidToken) } else { Ok(Some(m)) }
        }
        Some(_) => Err(Refusal::InvalidToken),
    }
}

/// Verifies a token for `tenant` at time `now` (unix seconds) and returns the identity
/// it grants. Refusals carry only a SPEC code: which check failed beyond that is not told.
pub fn verify_token(
    token: &str,
    tenant: &str,
    ring: &KeyRing,
    policy: &TenantPolicy,
    source: CredentialSource,
    now: i64,
) -> Result<Identity, Refusal> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::InvalidToken);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::InvalidToken)?;
    let key = ring.select(header.kid.as_deref(), header.alg).ok_or(Refusal::InvalidToken)?;
    if key.alg != header.alg {
        return Err(Refusal::InvalidToken);
    }
    let data = jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation)
        .map_err(|_| Refusal::InvalidToken)?;
    let c = data.claims;

    // `aud` is the tenant id, as a string or inside an array.
    let aud_ok = match &c.aud {
        serde_json::Value::String(a) => a == tenant,
        serde_json::Value::Array(a) => a.len() <= 16 && a.iter().any(|x| x.as_str() == Some(tenant)),
        _ => false,
    };
    if !aud_ok {
        return Err(Refusal::InvalidToken);
    }
    let sub = id_string(&c.sub)?;
    let exp = num(c.exp)?.ok_or(Refusal::InvalidToken)?;
    let nbf = num(c.nbf)?;
    let iat = num(c.iat)?;
    let jti = c.jti.as_ref().map(id_string).transpose()?;

    if exp <= now {
        return Err(Refusal::TokenExpired);
    }
    if nbf.is_some_and(|n| n > now + TIME_LEEWAY_SECONDS)
        || iat.is_some_and(|i| i > now + TIME_LEEWAY_SECONDS)
    {
        return Err(Refusal::TokenNotYetValid);
    }
    let ttl = i64::try_from(policy.max_token_ttl_seconds).unwrap_or(i64::MAX);
    if exp.saturating_sub(iat.unwrap_or(now)) > ttl {
        return Err(Refusal::InvalidToken);
    }
    let caps = match &c.caps {
        None | Some(serde_json::Value::Null) => policy.default_caps.clone(),
        Some(v) => Caps::from_json(v).map_err(|_| Refusal::InvalidToken)?,
    };
    let meta = check_meta(c.meta)?;
    Ok(Identity { sub, jti, iat, exp, caps, meta, source })
}

/// The tenant a token is addressed to, read **without verifying it**: only to pick the
/// tenant whose keys then verify it (for `POST /v1/tickets`, which has no namespace).
pub fn token_audience(token: &str) -> Option<String> {
    use base64::Engine as _;
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match v.get("aud")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => a.iter().find_map(|x| x.as_str()).map(str::to_string),
        _ => None,
    }
}

/// Signs `claims` with an HMAC key: how `switchboard token` and the admin API mint client
/// tokens. Public-key tenants mint their own tokens; we never hold their private keys.
pub fn mint_hmac(
    alg: Algorithm,
    kid: Option<&str>,
    secret: &Secret,
    claims: &serde_json::Value,
) -> Result<String, KeyError> {
    if !is_hmac(alg) {
        return Err(KeyError::Mismatch);
    }
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()))
        .map_err(|_| KeyError::Mismatch)
}

/// Signs `claims` with a PEM private key (PKCS#1 or PKCS#8 RSA, PKCS#8 EC or Ed25519) for
/// an asymmetric algorithm, the counterpart of a tenant key added with `public_key_pem`.
pub fn mint_pem(
    alg: Algorithm,
    kid: Option<&str>,
    private_pem: &[u8],
    claims: &serde_json::Value,
) -> Result<String, KeyError> {
    use jsonwebtoken::EncodingKey;
    let key = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => EncodingKey::from_rsa_pem(private_pem),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(private_pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem),
        _ => return Err(KeyError::Mismatch),
    }
    .map_err(|_| KeyError::Pem)?;
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    // A key of another kind (an EC key given for RS256, a P-384 key for ES256) fails here.
    jsonwebtoken::encode(&header, claims, &key).map_err(|_| KeyError::Mismatch)
}

/// The `kid` a token's header names, read without verifying anything: to tell whether a
/// tenant with a JWKS source should refetch it before verifying.
pub fn token_kid(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    jsonwebtoken::decode_header(token).ok()?.kid
}
