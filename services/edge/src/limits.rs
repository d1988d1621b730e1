//! Handshake rate limits per client IP and per tenant (`rate_limited`). The buckets are
//! `policy::TokenBucket`s; this module only keeps them, and forgets idle ones.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use parking_lot::Mutex;
use policy::TokenBucket;

/// Buckets by key, each refilled at `rate` per second with a burst of `rate`.
pub struct Limiter<K> {
    rate: u32,
    map: Mutex<HashMap<K, TokenBucket>>,
}

/// Past this many keys the map is swept of keys idle long enough to be full again.
const SWEEP_AT: usize = 50_000;

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `rate == 0` disables the limit.
    pub fn new(rate: u32) -> Limiter<K> {
        Limiter { rate, map: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`; false when the key is over its rate.
    pub fn allow(&self, key: &K, now_ms: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let mut m = self.map.lock();
        if m.len() >= SWEEP_AT {
            // A bucket untouched for two seconds has refilled: dropping it changes nothing.
            m.retain(|_, b| b.idle_for(now_ms) <= 2_000);
        }
        m.entry(key.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, now_ms))
            .try_take(self.rate, now_ms)
    }
}

/// The edge's handshake limits.
pub struct HandshakeLimits {
    pub per_ip: Limiter<IpAddr>,
    pub per_tenant: Limiter<String>,
}

impl HandshakeLimits {
    pub fn new(per_ip: u32, per_tenant: u32) -> HandshakeLimits {
        HandshakeLimits { per_ip: Limiter::new(per_ip), per_tenant: Limiter::new(per_tenant) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_disabled() {
        let l = Limiter::<u8>::new(3);
        assert_eq!((0..10).filter(|_| l.allow(&1, 0)).count(), 3);
        assert!(l.allow(&2, 0), "other keys have their own bucket");
        assert!(l.allow(&1, 400), "refilled");
        let off = Limiter::<u8>::new(0);
        assert!((0..1000).all(|_| off.allow(&1, 0)));
    }
}
