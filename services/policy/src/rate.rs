//! A token bucket, for publish rates. Time is passed in (milliseconds), so it is exact in
//! tests and costs no clock read inside the policy.

/// Holds up to `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, now_ms: u64) -> TokenBucket {
        TokenBucket { tokens: f64::from(burst), last_ms: now_ms }
    }

    /// Milliseconds since the bucket was last used.
    pub fn idle_for(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_ms)
    }

    /// Takes one token if there is one. `rate` is per second; the bucket holds at most
    /// `rate` tokens, i.e. one second of burst.
    pub fn try_take(&mut self, rate: u32, now_ms: u64) -> bool {
        let rate = f64::from(rate.max(1));
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last_ms = self.last_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut b = TokenBucket::new(5, 0);
        assert_eq!((0..10).filter(|_| b.try_take(5, 0)).count(), 5);
        assert!(!b.try_take(5, 100));
        assert!(b.try_take(5, 200));
        assert!(!b.try_take(5, 200));
        // A long pause refills to one second of burst, no more.
        assert_eq!((0..20).filter(|_| b.try_take(5, 100_000)).count(), 5);
        // A clock that goes backwards refills nothing.
        assert!(!b.try_take(5, 50));
    }
}
