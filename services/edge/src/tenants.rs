//! The tenant cache: policy, parsed key ring and active revocations, so that a handshake
//! with a plain token costs no store round trip in steady state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use policy::{KeyMaterial, KeyRing, Revocation};
use state::{Store, StoreError, Tenant};

/// One tenant as the edge uses it.
pub struct TenantCtx {
    pub tenant: Tenant,
    pub ring: KeyRing,
    pub revocations: Vec<Revocation>,
    /// The tenant's JWKS URLs, if it has any.
    pub jwks_urls: Vec<String>,
}

struct Entry {
    ctx: Option<Arc<TenantCtx>>,
    at: Instant,
}

/// Unknown tenants are remembered briefly too, so that a client hammering a made-up
/// namespace does not hammer the store.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// While the store is down, how long a stale tenant is used before the store is tried again.
const STALE_RETRY: Duration = Duration::from_secs(2);
/// Most cached entries; past it the cache is cleared (tenants are few, junk names many).
const MAX_ENTRIES: usize = 10_000;

pub struct TenantCache {
    store: Arc<dyn Store>,
    jwks: crate::jwks::Jwks,
    ttl: Duration,
    map: RwLock<HashMap<String, Entry>>,
    cors: parking_lot::Mutex<(Option<Instant>, Vec<String>)>,
}

/// How long the list of every tenant's CORS headers is used before it is read again.
const CORS_REFRESH: Duration = Duration::from_secs(5);

impl TenantCache {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> TenantCache {
        TenantCache {
            store,
            jwks: crate::jwks::Jwks::new(),
            ttl,
            map: RwLock::new(HashMap::new()),
            cors: parking_lot::Mutex::new((None, Vec::new())),
        }
    }

    /// The tenant, from the cache or the store.
    pub async fn get(&self, id: &str) -> Result<Option<Arc<TenantCtx>>, StoreError> {
        if let Some(e) = self.map.read().get(id) {
            let ttl = if e.ctx.is_some() { self.ttl } else { NEGATIVE_TTL };
            if e.at.elapsed() < ttl {
                return Ok(e.ctx.clone());
            }
        }
        match self.load(id, false).await {
            Ok(ctx) => {
                self.put(id, ctx.clone());
                Ok(ctx)
            }
            // The store is down: a tenant we knew keeps working from its last copy (tokens
            // keep verifying, known revocations keep applying) until the store is back.
            Err(e) => {
                // The read guard must be gone before the write below: a temporary in a
                // `match` scrutinee lives to the end of the match, and parking_lot's
                // locks are not reentrant (this deadlocked an edge whenever Redis went
                // down with a tenant's cache entry expired).
                let stale = self.map.read().get(id).and_then(|e| e.ctx.clone());
                self.serve_stale(id, stale, e)
            }
        }
    }

    fn serve_stale(
        &self,
        id: &str,
        stale: Option<Arc<TenantCtx>>,
        e: StoreError,
    ) -> Result<Option<Arc<TenantCtx>>, StoreError> {
        {
            match stale {
                Some(stale) => {
                    tracing::debug!(tenant = id, error = %e, "store unavailable; using the cached tenant");
                    // Try the store again after a short while, not on every handshake.
                    if let Some(entry) = self.map.write().get_mut(id) {
                        entry.at = Instant::now()
                            .checked_sub(self.ttl.saturating_sub(STALE_RETRY))
                            .unwrap_or_else(Instant::now);
                    }
                    Ok(Some(stale))
                }
                None => Err(e),
            }
        }
    }

    /// The tenant, able to verify a token naming `kid`: when its key sets come from JWKS
    /// URLs and none holds `kid`, the sets are refetched (rate-limited per URL) first.
    pub async fn get_for_kid(
        &self,
        id: &str,
        kid: Option<&str>,
    ) -> Result<Option<Arc<TenantCtx>>, StoreError> {
        let ctx = self.get(id).await?;
        let Some(c) = &ctx else { return Ok(None) };
        match kid {
            Some(k) if !c.ring.contains(k) && c.jwks_urls.iter().any(|u| self.jwks.may_refetch(u)) => {
                let fresh = self.load(id, true).await?;
                self.put(id, fresh.clone());
                Ok(fresh)
            }
            _ => Ok(ctx),
        }
    }

    fn put(&self, id: &str, ctx: Option<Arc<TenantCtx>>) {
        let mut m = self.map.write();
        if m.len() >= MAX_ENTRIES {
            m.clear();
        }
        m.insert(id.to_string(), Entry { ctx, at: Instant::now() });
    }

    async fn load(&self, id: &str, refresh_jwks: bool) -> Result<Option<Arc<TenantCtx>>, StoreError> {
        let Some(tenant) = self.store.get_tenant(id).await? else { return Ok(None) };
        let keys = match self.store.list_keys(id).await {
            Err(StoreError::NotFound) => return Ok(None),
            r => r?,
        };
        let revocations = match self.store.list_revocations(id).await {
            Err(StoreError::NotFound) => return Ok(None),
            r => r?,
        };
        let (mut ring, errors) = KeyRing::from_records(&keys);
        for (kid, e) in errors {
            tracing::warn!(tenant = id, kid, error = %e, "tenant key skipped");
        }
        let jwks_urls: Vec<String> = keys
            .iter()
            .filter_map(|k| match &k.material {
                KeyMaterial::Jwks { url } => Some(url.clone()),
                _ => None,
            })
            .collect();
        for url in &jwks_urls {
            let Some(set) = self.jwks.get(url, refresh_jwks).await else { continue };
            for jwk in &set.keys {
                if let Err(e) = ring.add_jwk(jwk) {
                    tracing::warn!(tenant = id, url, kid = ?jwk.common.key_id, error = %e, "JWK skipped");
                }
            }
        }
        Ok(Some(Arc::new(TenantCtx { tenant, ring, revocations, jwks_urls })))
    }

    /// Forgets a tenant so that the next handshake reads it again.
    pub fn invalidate(&self, id: &str) {
        self.map.write().remove(id);
        self.invalidate_cors();
    }

    /// Every tenant's `cors_allowed_headers`, for preflights answered before the tenant is
    /// known. Read from the store at most every [`CORS_REFRESH`]; while the store is down,
    /// the last list stands.
    pub async fn cors_headers(&self) -> Vec<String> {
        {
            let c = self.cors.lock();
            if c.0.is_some_and(|at| at.elapsed() < CORS_REFRESH) {
                return c.1.clone();
            }
        }
        match self.store.list_tenants().await {
            Ok(tenants) => {
                let mut v: Vec<String> = tenants
                    .iter()
                    .flat_map(|t| t.policy.cors_allowed_headers.iter().map(|h| h.to_ascii_lowercase()))
                    .collect();
                v.sort();
                v.dedup();
                *self.cors.lock() = (Some(Instant::now()), v.clone());
                v
            }
            Err(_) => {
                let mut c = self.cors.lock();
                c.0 = Some(Instant::now());
                c.1.clone()
            }
        }
    }

    /// Forgets the CORS header list, so that the next preflight reads it again.
    pub fn invalidate_cors(&self) {
        self.cors.lock().0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use policy::{CredentialSource, KeyRecord, TenantPolicy};
    use state::MemoryStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const RSA: &str = include_str!("../../policy/fixtures/rsa2048-private.pem");
    const RSA2: &str = include_str!("../../policy/fixtures/rsa2048-other-private.pem");

    fn jwk(pem: &str, kid: &str) -> Jwk {
        let mut j = Jwk::from_encoding_key(
            &EncodingKey::from_rsa_pem(pem.as_bytes()).expect("pem"),
            Algorithm::RS256,
        )
        .expect("jwk");
        j.common.key_id = Some(kid.into());
        j
    }

    fn token(pem: &str, kid: &str) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        let now = crate::clock::now_s();
        let claims = serde_json::json!({"aud": "t", "sub": "u", "exp": now + 60, "iat": now});
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_pem(pem.as_bytes()).expect("pem"))
            .expect("sign")
    }

    /// Serves a JWKS document whose keys the test changes, counting fetches.
    async fn jwks_server(set: Arc<RwLock<JwkSet>>, hits: Arc<AtomicUsize>) -> String {
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let set = set.clone();
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(set.read().clone())
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}/jwks.json")
    }

    #[test]
    fn an_expired_tenant_is_served_stale_while_the_store_is_down() {
        // On its own thread and runtime, so that a deadlock fails the test instead of
        // hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let r = rt.block_on(async {
                let store = Arc::new(state::testing::Flaky::default());
                store.create_tenant(state::testing::tenant("t")).await.expect("tenant");
                // A zero TTL: every read finds the entry expired and asks the store.
                let cache = TenantCache::new(store.clone(), Duration::ZERO);
                assert!(cache.get("t").await.expect("store up").is_some());
                store.set_down(true);
                let stale = cache.get("t").await.expect("the last copy, not an error");
                let unknown = cache.get("nope").await;
                (stale.map(|c| c.tenant.id.clone()), unknown.map(|u| u.is_some()))
            });
            let _ = tx.send(r);
        });
        let (stale, unknown) = rx.recv_timeout(Duration::from_secs(10)).expect("no deadlock");
        assert_eq!(stale.as_deref(), Some("t"));
        assert!(
            matches!(unknown, Err(StoreError::Unavailable(_))),
            "an unknown tenant is an outage: {unknown:?}"
        );
    }

    #[tokio::test]
    async fn jwks_keys_are_fetched_cached_and_refetched_for_new_kids() {
        let set = Arc::new(RwLock::new(JwkSet { keys: vec![jwk(RSA, "k1")] }));
        let hits = Arc::new(AtomicUsize::new(0));
        let url = jwks_server(set.clone(), hits.clone()).await;
        let store = Arc::new(MemoryStore::new());
        store.create_tenant(state::testing::tenant("t")).await.expect("tenant");
        store
            .add_key(
                "t",
                KeyRecord {
                    kid: "jwks".into(),
                    alg: None,
                    material: KeyMaterial::Jwks { url },
                    created_at: 0,
                },
            )
            .await
            .expect("key");
        let cache = TenantCache::new(store, Duration::from_secs(60));
        let pol = TenantPolicy::default();
        let now = crate::clock::now_s();

        let ctx = cache.get_for_kid("t", Some("k1")).await.expect("store").expect("tenant");
        assert!(
            policy::verify_token(&token(RSA, "k1"), "t", &ctx.ring, &pol, CredentialSource::Auth, now)
                .is_ok()
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Cached: no second fetch for a known kid.
        cache.get_for_kid("t", Some("k1")).await.expect("store");
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        // The issuer rotates in k2. An unknown kid triggers a refetch only once the
        // minimum interval has passed, so a flood of made-up kids cannot hammer it.
        set.write().keys.push(jwk(RSA2, "k2"));
        for _ in 0..20 {
            cache.get_for_kid("t", Some("made-up")).await.expect("store");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "refetches are rate-limited");
        // Pretend the last fetch is old enough.
        cache.jwks.age_for_tests(crate::jwks::MIN_REFETCH);
        let ctx = cache.get_for_kid("t", Some("k2")).await.expect("store").expect("tenant");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert!(
            policy::verify_token(&token(RSA2, "k2"), "t", &ctx.ring, &pol, CredentialSource::Auth, now)
                .is_ok()
        );
        assert!(
            policy::verify_token(&token(RSA, "k1"), "t", &ctx.ring, &pol, CredentialSource::Auth, now)
                .is_ok()
        );
    }
}
