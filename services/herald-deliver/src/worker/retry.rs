//! Retry tiers: which tier a failed attempt goes to, and when it is due.
//!
//! Attempt n (counted from 1) that fails transiently goes to tier n, whose configured delay is
//! the cap of a full-jitter backoff (`due = now + uniform(0, delay)`, never before the
//! provider's `Retry-After`). The configured delays grow (10 s, 1 min, 10 min by default), so
//! the schedule is exponential; the jitter spreads a burst of failures (a provider outage) so
//! that they do not all come back at once. After the last tier the dispatch is dead-lettered.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// Where a transiently failed attempt goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// To retry tier `tier` (1-based), due at `due`, as attempt `attempt`.
    Tier {
        tier: u8,
        attempt: i32,
        due: DateTime<Utc>,
    },
    /// Every tier was tried.
    Exhausted,
}

/// The next step after attempt `attempt` failed transiently at `now`. `jitter` is a uniform
/// random number in [0, 1].
pub(crate) fn next_step(
    delays: &[Duration],
    attempt: i32,
    retry_after: Option<Duration>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Next {
    let Some(index) = usize::try_from(attempt.max(1) - 1)
        .ok()
        .filter(|i| *i < delays.len())
    else {
        return Next::Exhausted;
    };
    let cap = delays[index];
    let delay = cap
        .mul_f64(jitter.clamp(0.0, 1.0))
        .max(retry_after.unwrap_or_default());
    // At most 3 tiers (validated at start), so the index fits.
    let tier = u8::try_from(index + 1).unwrap_or(u8::MAX);
    Next::Tier {
        tier,
        attempt: attempt.max(1) + 1,
        due: now + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::MAX),
    }
}

/// Where a dispatch goes that the circuit breaker refused: back to the tier it came from (the
/// first tier for a record from a dispatch topic), as the same attempt. It is due when the
/// breaker admits calls again (`wait`) plus a full jitter over the tier's delay, at most
/// `spread` (the breaker's open time), so a deferred backlog comes back spread out rather than
/// all at the first probe.
pub(crate) fn deferral(
    delays: &[Duration],
    tier: Option<u8>,
    wait: Duration,
    spread: Duration,
    now: DateTime<Utc>,
    jitter: f64,
) -> (u8, DateTime<Utc>) {
    let tier = tier.unwrap_or(1).max(1);
    let cap = delays
        .get(usize::from(tier) - 1)
        .copied()
        .unwrap_or(spread)
        .min(spread);
    let delay = wait + cap.mul_f64(jitter.clamp(0.0, 1.0));
    let due = now + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::MAX);
    (tier, due)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays() -> Vec<Duration> {
        [10, 60, 600].map(Duration::from_secs).to_vec()
    }

    #[test]
    fn each_attempt_goes_one_tier_further_then_is_exhausted() {
        let now = Utc::now();
        for (attempt, tier) in [(1, 1), (2, 2), (3, 3)] {
            match next_step(&delays(), attempt, None, now, 1.0) {
                Next::Tier {
                    tier: t,
                    attempt: a,
                    due,
                } => {
                    assert_eq!((t, a), (tier, attempt + 1));
                    assert_eq!(
                        due - now,
                        chrono::TimeDelta::from_std(delays()[t as usize - 1]).unwrap()
                    );
                }
                Next::Exhausted => panic!("attempt {attempt}"),
            }
        }
        assert_eq!(next_step(&delays(), 4, None, now, 0.5), Next::Exhausted);
        assert_eq!(next_step(&[], 1, None, now, 0.5), Next::Exhausted);
    }

    #[test]
    fn full_jitter_stays_under_the_cap_and_honours_retry_after() {
        let now = Utc::now();
        let due = |jitter, retry_after| match next_step(&delays(), 2, retry_after, now, jitter) {
            Next::Tier { due, .. } => (due - now).num_milliseconds(),
            Next::Exhausted => panic!(),
        };
        assert_eq!(due(0.0, None), 0);
        assert_eq!(due(0.5, None), 30_000);
        assert_eq!(due(0.1, Some(Duration::from_secs(20))), 20_000);
        assert_eq!(due(1.0, Some(Duration::from_secs(20))), 60_000);
        // Retry-After beyond the tier's cap is still honoured.
        assert_eq!(due(1.0, Some(Duration::from_secs(120))), 120_000);
    }

    #[test]
    fn a_deferral_stays_at_its_tier_and_is_due_after_the_breaker_opens_again() {
        let now = Utc::now();
        let secs = Duration::from_secs;
        let delay = |(tier, due): (u8, DateTime<Utc>)| (tier, (due - now).num_milliseconds());
        // From a dispatch topic: tier 1, due after the wait plus up to the tier's delay.
        assert_eq!(
            delay(deferral(&delays(), None, secs(20), secs(30), now, 0.5)),
            (1, 25_000)
        );
        // From tier 3: tier 3 again, the jitter capped by the breaker's open time.
        assert_eq!(
            delay(deferral(&delays(), Some(3), secs(20), secs(30), now, 1.0)),
            (3, 50_000)
        );
        // No tiers configured: tier 1, spread over the open time.
        assert_eq!(
            delay(deferral(&[], None, Duration::ZERO, secs(30), now, 0.5)),
            (1, 15_000)
        );
    }
}
