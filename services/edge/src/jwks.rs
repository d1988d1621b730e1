//! JWKS documents for tenants whose keys live at a URL: fetched, cached, and refetched
//! when a token names a `kid` the cached set lacks — at most once per
//! [`MIN_REFETCH`] per URL, so that tokens with made-up `kid`s cannot make the edge
//! hammer the issuer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

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

pub struct Jwks {
    client: reqwest::Client,
    cache: Mutex<HashMap<String, Entry>>,
}

impl Default for Jwks {
    fn default() -> Self {
        Jwks::new()
    }
}

impl Jwks {
    pub fn new() -> Jwks {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Jwks { client, cache: Mutex::new(HashMap::new()) }
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
        let fetched = self.fetch(url).await;
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
