//! JWKS documents for tenants whose keys live at a URL: fetched, cached, and refetched
//! when a token names a `kid` the cached set lacks — at most once per
//! [`MIN_REFETCH`] per URL, so that tokens with made-up `kid`s cannot make the edge
//! hammer the issuer.
//!
//! The fetching itself is IO behind [`JwksFetcher`]: [`HttpFetcher`] in the product,
//! [`MemoryFetcher`] (its in-memory twin) in tests of the caching rules.

use std::collections::HashMap;
use std::sync::Arc;
#[cfg(test)]
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use parking_lot::Mutex;

/// A fetched set is used this long before it is fetched again.
pub const TTL: Duration = Duration::from_secs(600);
/// The shortest interval between two fetches of one URL.
pub const MIN_REFETCH: Duration = Duration::from_secs(1);
/// Largest JWKS document accepted.
const MAX_BYTES: usize = 256 * 1024;

struct Entry {
    set: Option<JwkSet>,
    fetched_at: Instant,
}

/// Where JWK sets come from.
#[async_trait]
pub trait JwksFetcher: Send + Sync + 'static {
    /// The JWK set at `url`; the error is a message for the log.
    async fn fetch(&self, url: &str) -> Result<JwkSet, String>;
}

/// Fetches over HTTP: no redirects, 3 s to connect, 5 s in all, at most 256 KiB.
pub struct HttpFetcher {
    client: reqwest::Client,
}

impl Default for HttpFetcher {
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        HttpFetcher { client }
    }
}

#[async_trait]
impl JwksFetcher for HttpFetcher {
    async fn fetch(&self, url: &str) -> Result<JwkSet, String> {
        let mut r = self.client.get(url).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("status {}", r.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BYTES {
                return Err("document too large".into());
            }
        }
        serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))
    }
}

/// The in-memory twin: serves the sets put into it, counts fetches, and can be made to
/// fail. (Only the edge's own tests use it so far.)
#[cfg(test)]
#[derive(Default)]
pub struct MemoryFetcher {
    sets: Mutex<HashMap<String, JwkSet>>,
    fetches: AtomicUsize,
    failing: AtomicBool,
}

#[cfg(test)]
impl MemoryFetcher {
    /// Serves `set` at `url` from now on.
    pub fn put(&self, url: &str, set: JwkSet) {
        self.sets.lock().insert(url.to_string(), set);
    }

    /// Makes every fetch fail (`true`) or work again.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Fetches asked for so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
#[async_trait]
impl JwksFetcher for MemoryFetcher {
    async fn fetch(&self, url: &str) -> Result<JwkSet, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err("failing (test)".into());
        }
        self.sets.lock().get(url).cloned().ok_or_else(|| "status 404 Not Found".into())
    }
}

pub struct Jwks {
    fetcher: Arc<dyn JwksFetcher>,
    cache: Mutex<HashMap<String, Entry>>,
}

impl Default for Jwks {
    fn default() -> Self {
        Jwks::new()
    }
}

impl Jwks {
    /// Fetching over HTTP.
    pub fn new() -> Jwks {
        Jwks::with_fetcher(Arc::new(HttpFetcher::default()))
    }

    pub fn with_fetcher(fetcher: Arc<dyn JwksFetcher>) -> Jwks {
        Jwks { fetcher, cache: Mutex::new(HashMap::new()) }
    }

    /// The key set at `url`: cached while fresh; fetched when stale, or when `refresh` is
    /// asked and the last fetch is older than [`MIN_REFETCH`]. A failed fetch keeps the
    /// last good set.
    pub async fn get(&self, url: &str, refresh: bool) -> Option<JwkSet> {
        let cached = {
            let c = self.cache.lock();
            c.get(url).map(|e| (e.set.clone(), e.fetched_at.elapsed()))
        };
        if let Some((set, age)) = &cached {
            let fresh = *age < TTL && !(refresh && *age >= MIN_REFETCH);
            if fresh || *age < MIN_REFETCH {
                return set.clone();
            }
        }
        let fetched = self.fetcher.fetch(url).await;
        let mut c = self.cache.lock();
        let prev = c.remove(url).and_then(|e| e.set);
        let set = match fetched {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(url, error = %e, "JWKS fetch failed; keeping the last good set");
                prev
            }
        };
        c.insert(url.to_string(), Entry { set: set.clone(), fetched_at: Instant::now() });
        set
    }

    /// Whether `get(url, true)` would fetch now.
    pub fn may_refetch(&self, url: &str) -> bool {
        self.cache.lock().get(url).is_none_or(|e| e.fetched_at.elapsed() >= MIN_REFETCH)
    }

    /// Makes every cached set look `by` older (tests only).
    #[cfg(test)]
    pub fn age_for_tests(&self, by: Duration) {
        for e in self.cache.lock().values_mut() {
            e.fetched_at = e.fetched_at.checked_sub(by).unwrap_or(e.fetched_at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kid: &str) -> JwkSet {
        serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "oct", "kid": kid, "alg": "HS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
        }]}))
        .expect("a JWK set")
    }

    fn kids(s: &Option<JwkSet>) -> Vec<String> {
        s.iter().flat_map(|s| s.keys.iter().filter_map(|k| k.common.key_id.clone())).collect()
    }

    #[tokio::test]
    async fn caches_refetches_at_most_once_per_interval_and_keeps_the_last_good_set() {
        let f = Arc::new(MemoryFetcher::default());
        f.put("https://i/jwks", set("a"));
        let jwks = Jwks::with_fetcher(f.clone());
        assert_eq!(kids(&jwks.get("https://i/jwks", false).await), ["a"]);
        assert_eq!(kids(&jwks.get("https://i/jwks", true).await), ["a"]);
        assert_eq!(f.fetches(), 1, "a refresh within MIN_REFETCH is answered from the cache");
        assert!(!jwks.may_refetch("https://i/jwks"));

        f.put("https://i/jwks", set("b"));
        jwks.age_for_tests(MIN_REFETCH);
        assert!(jwks.may_refetch("https://i/jwks"));
        assert_eq!(kids(&jwks.get("https://i/jwks", false).await), ["a"], "fresh: no refresh asked");
        assert_eq!(kids(&jwks.get("https://i/jwks", true).await), ["b"]);
        assert_eq!(f.fetches(), 2);

        f.set_failing(true);
        jwks.age_for_tests(TTL);
        assert_eq!(
            kids(&jwks.get("https://i/jwks", false).await),
            ["b"],
            "a failed fetch keeps the last set"
        );
        assert_eq!(f.fetches(), 3);
        assert_eq!(jwks.get("https://other/jwks", false).await.map(|s| s.keys.len()), None);
    }
}
