//! The token bucket that keeps a worker within its provider's rate limit.
//!
//! A call reserves a token and waits until the token exists: the bucket refills at `rate` per
//! second up to `burst`, and may go into debt by as many tokens as there are callers waiting,
//! so waiting callers are served in the order they asked and none spins. The worker waits
//! inside its batch, before the send-ledger claim; it fetches nothing more meanwhile, which
//! is the backpressure (DESIGN §3.6). The concurrency cap (`deliver.max_in_flight`) bounds
//! the number of callers waiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_contracts::metric_names::DELIVER_RATE_LIMIT_WAIT_SECONDS;

use super::clock::Clock;
use crate::config::limits::RateLimitConfig;

/// The bucket, with time passed in.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: u32, now: Instant) -> Self {
        Self {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes a token; how long to wait until it is there.
    fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A provider's rate limit; a no-op when `[deliver.rate_limit]` sets no rate.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    provider: &'static str,
    bucket: Option<Mutex<Bucket>>,
    clock: Arc<dyn Clock>,
}

impl TokenBucket {
    pub(crate) fn new(
        provider: &'static str,
        config: &RateLimitConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let bucket = config
            .per_second
            .map(|rate| Mutex::new(Bucket::new(rate, config.burst(), clock.now())));
        Self {
            provider,
            bucket,
            clock,
        }
    }

    /// How long the next call must wait (its token is taken now).
    fn reserve(&self) -> Duration {
        let Some(bucket) = &self.bucket else {
            return Duration::ZERO;
        };
        // Arithmetic only happens under the lock; a poisoned bucket is still a bucket.
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.reserve(self.clock.now())
    }

    /// Waits for a token.
    pub(crate) async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            metrics::histogram!(DELIVER_RATE_LIMIT_WAIT_SECONDS, "provider" => self.provider)
                .record(wait.as_secs_f64());
            tokio::time::sleep(wait).await;
        }
    }

    /// The most calls the limit allows within `span` (burst included), if there is a limit:
    /// the worker keeps its batches to that so that one batch never waits long enough to
    /// outlast the shutdown grace or the consumer's poll interval.
    pub(crate) fn calls_within(&self, span: Duration) -> Option<usize> {
        let bucket = self.bucket.as_ref()?;
        let bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let calls = bucket.burst + bucket.rate * span.as_secs_f64();
        Some((calls.floor() as usize).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::super::clock::manual::ManualClock;
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> (TokenBucket, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let config = RateLimitConfig {
            per_second: Some(per_second),
            burst: Some(burst),
        };
        (TokenBucket::new("test", &config, clock.clone()), clock)
    }

    fn ms(wait: Duration) -> u128 {
        wait.as_millis()
    }

    #[test]
    fn a_full_bucket_serves_its_burst_then_one_call_per_interval() {
        let (limiter, clock) = limiter(10.0, 3);
        for _ in 0..3 {
            assert_eq!(limiter.reserve(), Duration::ZERO);
        }
        // Empty: waiters queue up 100 ms apart.
        assert_eq!(ms(limiter.reserve()), 100);
        assert_eq!(ms(limiter.reserve()), 200);
        // 200 ms later both waiters' tokens exist and the bucket is empty again.
        clock.advance(Duration::from_millis(200));
        assert_eq!(ms(limiter.reserve()), 100);
    }

    #[test]
    fn refills_at_the_rate_up_to_the_burst() {
        let (limiter, clock) = limiter(2.0, 4);
        for _ in 0..4 {
            limiter.reserve();
        }
        clock.advance(Duration::from_secs(1));
        // Two tokens back after a second.
        assert_eq!(limiter.reserve(), Duration::ZERO);
        assert_eq!(limiter.reserve(), Duration::ZERO);
        assert_eq!(ms(limiter.reserve()), 500);
        // A long quiet spell fills the bucket only to the burst.
        clock.advance(Duration::from_secs(60));
        for _ in 0..4 {
            assert_eq!(limiter.reserve(), Duration::ZERO);
        }
        assert_eq!(ms(limiter.reserve()), 500);
    }

    #[test]
    fn no_rate_means_no_wait() {
        let clock = Arc::new(ManualClock::new());
        let limiter = TokenBucket::new("test", &RateLimitConfig::default(), clock);
        for _ in 0..10_000 {
            assert_eq!(limiter.reserve(), Duration::ZERO);
        }
        assert_eq!(limiter.calls_within(Duration::from_secs(10)), None);
    }

    #[test]
    fn batches_are_kept_to_what_the_limit_allows() {
        let (limiter, _clock) = limiter(5.0, 20);
        assert_eq!(limiter.calls_within(Duration::from_secs(10)), Some(70));
        let (limiter, _clock) = super::tests::limiter(0.01, 1);
        assert_eq!(limiter.calls_within(Duration::ZERO), Some(1));
    }
}
