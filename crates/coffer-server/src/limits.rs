//! Per-identity rate limiting: a token bucket per token accessor (or
//! certificate identity), refilled continuously.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::Limits;
use crate::core::lock;

/// Buckets kept before idle, full ones are dropped.
const PRUNE_ABOVE: usize = 50_000;

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub(crate) struct RateLimiter {
    /// Tokens per second; 0 disables the limiter.
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        let burst = limits
            .rate_limit_burst
            .map_or(limits.rate_limit.ceil().max(1.0), f64::from);
        RateLimiter {
            rate: limits.rate_limit,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `who`'s bucket; `Err(seconds)` says when to retry.
    pub(crate) fn check(&self, who: &str) -> Result<(), u64> {
        self.check_at(who, Instant::now())
    }

    fn check_at(&self, who: &str, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = lock(&self.buckets);
        if buckets.len() > PRUNE_ABOVE {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(who.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.rate;
            // Whole seconds for Retry-After, at least one.
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limiter(rate: f64, burst: Option<u32>) -> RateLimiter {
        RateLimiter::new(&Limits {
            rate_limit: rate,
            rate_limit_burst: burst,
            ..Limits::default()
        })
    }

    #[test]
    fn off_by_default() {
        let l = limiter(0.0, None);
        for _ in 0..10_000 {
            assert!(l.check("a").is_ok());
        }
    }

    #[test]
    fn burst_then_refusal_then_refill_per_identity() {
        let l = limiter(2.0, Some(3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("a", t0).is_ok());
        }
        assert_eq!(l.check_at("a", t0), Err(1));
        // Another identity has its own bucket.
        assert!(l.check_at("b", t0).is_ok());
        // Half a second at 2/s refills one request.
        assert!(l.check_at("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(l.check_at("a", t0 + Duration::from_millis(500)).is_err());
        // A slow rate asks for a longer wait.
        let slow = limiter(0.1, Some(1));
        assert!(slow.check_at("a", t0).is_ok());
        assert_eq!(slow.check_at("a", t0), Err(10));
    }
}
