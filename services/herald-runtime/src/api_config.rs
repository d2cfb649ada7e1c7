//! `[api]`: the HTTP API role (`herald api`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the API (`/v1/...`) is served. The admin endpoints stay on `admin.listen`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes; a larger one is answered 413.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// How long one request may take before it is answered 503 (with `Retry-After`).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a send waits for Kafka to acknowledge its record (librdkafka's
    /// `message.timeout.ms`) before it is answered 503. Below `request_timeout`, so that a
    /// send always learns its record's fate before the request gives up.
    #[serde(default = "default_produce_timeout", with = "humantime_serde")]
    pub produce_timeout: Duration,
    /// How long a verified API key is remembered: a revoked key stops working within this.
    #[serde(default = "default_key_cache_ttl", with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// How long a shutdown may take to finish the requests in flight.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_body_limit() -> usize {
    1024 * 1024
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_produce_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_key_cache_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(15)
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            body_limit: default_body_limit(),
            request_timeout: default_request_timeout(),
            produce_timeout: default_produce_timeout(),
            key_cache_ttl: default_key_cache_ttl(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

impl ApiConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1024..=64 * 1024 * 1024).contains(&self.body_limit) {
            return Err(format!(
                "api.body_limit is {}; it must be between 1024 and 67108864 (64 MiB)",
                self.body_limit
            ));
        }
        if self.produce_timeout < Duration::from_secs(1) {
            return Err("api.produce_timeout must be at least 1s".into());
        }
        // librdkafka checks message timeouts about once a second: leave it room to answer.
        if self.produce_timeout + Duration::from_secs(2) > self.request_timeout {
            return Err(format!(
                "api.produce_timeout ({:?}) must be at least 2s below api.request_timeout ({:?}), \
                 so that a send learns its record's fate before the request times out",
                self.produce_timeout, self.request_timeout
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_a_produce_timeout_near_the_request_timeout_is_not() {
        ApiConfig::default().validate().unwrap();
        let config = ApiConfig {
            produce_timeout: Duration::from_secs(9),
            ..ApiConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error.contains("api.produce_timeout"), "{error}");
        let config = ApiConfig {
            body_limit: 10,
            ..ApiConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("api.body_limit"));
    }
}
