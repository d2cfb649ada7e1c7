//! `[deliver.breaker]` and `[deliver.rate_limit]`: how a delivery worker protects its provider
//! (and itself) from a provider that fails or that limits how fast it may be called.

use serde::Deserialize;
use std::time::Duration;

/// `[deliver.breaker]`: the circuit breaker in front of the worker's provider.
///
/// Closed, it counts provider calls over a sliding `window`; once the window holds at least
/// `min_calls` calls and the share of transient failures among them reaches `failure_ratio`,
/// it opens. Open, no call is made: dispatches are deferred to a retry tier without spending
/// an attempt. After `open_for` it lets `half_open_probes` calls through; if they all succeed
/// it closes, if one fails it opens again. Permanent failures (a 4xx) are the sender's problem,
/// not the provider's, and count as answered calls. A dispatch is deferred for at most
/// `max_deferral` in all; after that it takes the path of a failed attempt (its next retry
/// tier, or the dead-letter topic and its fallback channel).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// `false` turns the breaker off: every dispatch calls the provider.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// How far back calls are counted.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// The fewest calls in the window before the ratio is judged (a few failures of a few
    /// calls say little).
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
    /// The share of transient failures (0 < ratio ≤ 1) that opens the breaker.
    #[serde(default = "default_failure_ratio")]
    pub failure_ratio: f64,
    /// How long the breaker stays open before it lets probes through.
    #[serde(default = "default_open_for", with = "humantime_serde")]
    pub open_for: Duration,
    /// Calls let through while half-open; all must succeed for the breaker to close.
    #[serde(default = "default_probes")]
    pub half_open_probes: u32,
    /// How long one dispatch may be deferred by an open breaker, counted from its first
    /// deferral, before it is treated as a failed attempt.
    #[serde(default = "default_max_deferral", with = "humantime_serde")]
    pub max_deferral: Duration,
}

fn default_enabled() -> bool {
    true
}
fn default_window() -> Duration {
    Duration::from_secs(30)
}
fn default_min_calls() -> u32 {
    20
}
fn default_failure_ratio() -> f64 {
    0.5
}
fn default_open_for() -> Duration {
    Duration::from_secs(30)
}
fn default_probes() -> u32 {
    3
}
fn default_max_deferral() -> Duration {
    Duration::from_secs(15 * 60)
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            window: default_window(),
            min_calls: default_min_calls(),
            failure_ratio: default_failure_ratio(),
            open_for: default_open_for(),
            half_open_probes: default_probes(),
            max_deferral: default_max_deferral(),
        }
    }
}

impl BreakerConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return Err(format!(
                "deliver.breaker.failure_ratio must be above 0 and at most 1, not {}",
                self.failure_ratio
            ));
        }
        if self.window.is_zero() || self.open_for.is_zero() {
            return Err(
                "deliver.breaker.window and deliver.breaker.open_for must be above 0".into(),
            );
        }
        if self.min_calls == 0 || self.half_open_probes == 0 {
            return Err(
                "deliver.breaker.min_calls and deliver.breaker.half_open_probes must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `[deliver.rate_limit]`: a token bucket in front of the worker's provider. Off unless
/// `per_second` is set. The limit is per worker process: with n replicas of a channel's
/// worker, the provider sees up to n times the rate.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Provider calls per second, on average. Absent: no limit.
    #[serde(default)]
    pub per_second: Option<f64>,
    /// Calls that may be made at once after a quiet spell. Default: one second's worth
    /// (at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateLimitConfig {
    /// The bucket's size when the limit is on.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or_else(|| {
            // A configured rate is validated to be finite and positive, so this fits.
            let per_second = self
                .per_second
                .unwrap_or(1.0)
                .ceil()
                .min(f64::from(u32::MAX));
            (per_second as u32).max(1)
        })
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(rate) = self.per_second
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!(
                "deliver.rate_limit.per_second must be above 0, not {rate}"
            ));
        }
        if self.burst == Some(0) {
            return Err("deliver.rate_limit.burst must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_defaults_to_one_second_of_calls() {
        let limit = |per_second, burst| RateLimitConfig { per_second, burst };
        assert_eq!(limit(Some(50.0), None).burst(), 50);
        assert_eq!(limit(Some(0.2), None).burst(), 1);
        assert_eq!(limit(Some(50.0), Some(5)).burst(), 5);
        assert!(limit(Some(0.0), None).validate().is_err());
        assert!(limit(Some(f64::NAN), None).validate().is_err());
        assert!(limit(Some(1.0), Some(0)).validate().is_err());
        assert!(limit(None, None).validate().is_ok());
    }

    #[test]
    fn breaker_bounds_are_checked() {
        assert!(BreakerConfig::default().validate().is_ok());
        let ratio = |failure_ratio| BreakerConfig {
            failure_ratio,
            ..BreakerConfig::default()
        };
        assert!(ratio(0.0).validate().is_err());
        assert!(ratio(1.5).validate().is_err());
        assert!(ratio(1.0).validate().is_ok());
        let probes = BreakerConfig {
            half_open_probes: 0,
            ..BreakerConfig::default()
        };
        assert!(probes.validate().is_err());
    }
}
