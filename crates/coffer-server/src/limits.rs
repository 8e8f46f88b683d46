//! Per-identity rate limiting: a token bucket per token accessor (or
//! certificate identity), refilled continuously. And the budget of request
//! data held at once across all requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;
use crate::core::lock;
use crate::error::{ApiError, ApiResult};

/// Request bodies and the JSON parsed from them, counted in KiB across all requests.
pub(crate) struct Budget {
    semaphore: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Self {
        Budget {
            semaphore: Arc::new(Semaphore::new(kib(limits.max_inflight_bytes))),
            total: limits.max_inflight_bytes,
        }
    }

    /// An empty share, grown with [`Share::cover`].
    pub(crate) fn share(&self) -> Share {
        Share {
            budget: self.semaphore.clone(),
            total: self.total,
            permit: None,
        }
    }
}

/// What one request holds of the budget; given back when dropped.
pub(crate) struct Share {
    budget: Arc<Semaphore>,
    total: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Share {
    /// Holds enough for `bytes` in all; `Busy` if the budget has no room now,
    /// 413 if it never could (a retry would not help).
    pub(crate) fn cover(&mut self, bytes: usize) -> ApiResult<()> {
        if bytes > self.total {
            return Err(ApiError::OverBudget { limit: self.total });
        }
        let held = self.permit.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        let more = kib(bytes).saturating_sub(held);
        if more == 0 {
            return Ok(());
        }
        let more = u32::try_from(more).map_err(|_| ApiError::Busy)?;
        let p = self
            .budget
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| ApiError::Busy)?;
        match &mut self.permit {
            Some(held) => held.merge(p),
            None => self.permit = Some(p),
        }
        Ok(())
    }
}

fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024).min(Semaphore::MAX_PERMITS)
}

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

    pub(crate) fn enabled(&self) -> bool {
        self.rate > 0.0
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

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let b = Budget::new(&Limits {
            max_inflight_bytes: 10 * 1024,
            ..Limits::default()
        });
        let mut one = b.share();
        one.cover(3000).unwrap();
        one.cover(6 * 1024).unwrap();
        let mut two = b.share();
        two.cover(4 * 1024).unwrap();
        assert!(matches!(two.cover(4 * 1024 + 1), Err(ApiError::Busy)), "10 KiB in all");
        drop(one);
        two.cover(10 * 1024).unwrap();
        assert!(
            matches!(b.share().cover(10 * 1024 + 1), Err(ApiError::OverBudget { .. })),
            "never fits"
        );
    }

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
