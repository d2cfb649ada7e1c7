//! `[router]`: `herald router`'s section of the configuration file.

use serde::Deserialize;

/// `herald router`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Consumer group shared by every router instance (`kafka.topic_prefix` is prepended).
    #[serde(default = "default_router_group")]
    pub group_id: String,
    /// This instance's stable name; the transactional id is `<group_id>-<instance_id>`. A
    /// restarted instance with the same name fences its predecessor and aborts its open
    /// transaction at once, instead of leaving it to block `read_committed` readers until
    /// `transaction_timeout`. Default: `<hostname>-<pid>` (stable in a container, where the
    /// pid is 1).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Kafka transaction timeout: how long an abandoned transaction can hold back readers.
    #[serde(default = "default_transaction_timeout", with = "humantime_serde")]
    pub transaction_timeout: std::time::Duration,
    /// The longest a batch collects records; it closes sooner when the transaction before it
    /// has committed.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: std::time::Duration,
    /// The most records in one transaction.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Recipients routed at once within a batch (each recipient's events stay in order).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Profiles and category defaults cached per instance (entries), and for how long.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: std::time::Duration,
    /// Compiled templates cached per instance.
    #[serde(default = "default_template_cache")]
    pub template_cache_capacity: usize,
    /// The locale used when neither the request nor the user has one.
    #[serde(default = "default_locale")]
    pub default_locale: String,
    /// The largest `data` a request may carry, in bytes of encoded JSON. `herald produce`
    /// refuses a larger one; the router dead-letters it (class `data_too_large`, with a
    /// `dead_lettered` status). At most 900 KiB: the whole record must fit Kafka's 1 MiB.
    #[serde(default = "default_max_data_bytes")]
    pub max_data_bytes: usize,
    /// Longest wait between retries while ScyllaDB or the registry is unreachable.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: std::time::Duration,
    /// How long a shutdown may take to finish the open transaction.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: std::time::Duration,
    /// How often the scheduler looks for deferred notifications that are due.
    #[serde(default = "default_scheduler_interval", with = "humantime_serde")]
    pub scheduler_interval: std::time::Duration,
    /// How long a scheduler's claim on a due item holds before another may take it over
    /// (the claimant is presumed dead). Longer than a publish can take.
    #[serde(default = "default_schedule_claim_lease", with = "humantime_serde")]
    pub schedule_claim_lease: std::time::Duration,
    /// Shards per minute of the schedule (1 to 1024): more spreads a minute's deferred items
    /// over more, smaller partitions, and every sweep reads each shard of the open minutes.
    /// Safe to change on a running system: sweeps read every shard below the largest count
    /// any router has used.
    #[serde(default = "default_schedule_shards")]
    pub schedule_shards: u16,
}

fn default_max_data_bytes() -> usize {
    herald_contracts::request::MAX_DATA_BYTES
}
fn default_router_group() -> String {
    "herald-router".into()
}
fn default_transaction_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(15)
}
fn default_commit_interval() -> std::time::Duration {
    std::time::Duration::from_millis(100)
}
fn default_max_batch() -> usize {
    1000
}
fn default_max_in_flight() -> usize {
    // As many as a batch holds: lookups of concurrent recipients are answered together, so
    // more in flight means fewer, larger database requests.
    1000
}
fn default_cache_capacity() -> usize {
    100_000
}
fn default_cache_ttl() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}
fn default_template_cache() -> usize {
    1000
}
fn default_locale() -> String {
    "en".into()
}
fn default_max_backoff() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}
fn default_grace() -> std::time::Duration {
    std::time::Duration::from_secs(20)
}
fn default_scheduler_interval() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}
fn default_schedule_claim_lease() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}
fn default_schedule_shards() -> u16 {
    herald_store::schedule::DEFAULT_SHARDS
}

impl RouterConfig {
    /// The processing engine's settings.
    pub fn engine(&self) -> herald_kafka::engine::EngineConfig {
        herald_kafka::engine::EngineConfig {
            max_batch: self.max_batch,
            max_in_flight: self.max_in_flight,
            commit_interval: self.commit_interval,
            max_backoff: self.max_backoff,
            metrics: crate::step::METRICS,
        }
    }

    /// What deserializing cannot check, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.transaction_timeout < std::time::Duration::from_secs(2) {
            return Err("router.transaction_timeout must be at least 2s".into());
        }
        if self.max_batch == 0 || self.max_in_flight == 0 {
            return Err("router.max_batch and router.max_in_flight must be at least 1".into());
        }
        if !(1..=900 * 1024).contains(&self.max_data_bytes) {
            return Err(format!(
                "router.max_data_bytes is {}; it must be between 1 and 921600 (900 KiB), so \
                 that a request fits Kafka's default 1 MiB record",
                self.max_data_bytes
            ));
        }
        if !(1..=herald_store::schedule::MAX_SHARDS).contains(&self.schedule_shards) {
            return Err(format!(
                "router.schedule_shards is {}; it must be between 1 and {}",
                self.schedule_shards,
                herald_store::schedule::MAX_SHARDS
            ));
        }
        Ok(())
    }

    /// The Kafka transactional id of this instance, within consumer group `group` (the
    /// group id with the topic prefix applied).
    pub fn transactional_id(&self, group: &str) -> String {
        let instance = self
            .instance_id
            .clone()
            .unwrap_or_else(herald_runtime::instance::default_id);
        format!("{group}-{instance}")
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            group_id: default_router_group(),
            instance_id: None,
            transaction_timeout: default_transaction_timeout(),
            commit_interval: default_commit_interval(),
            max_batch: default_max_batch(),
            max_in_flight: default_max_in_flight(),
            cache_capacity: default_cache_capacity(),
            cache_ttl: default_cache_ttl(),
            template_cache_capacity: default_template_cache(),
            default_locale: default_locale(),
            max_data_bytes: default_max_data_bytes(),
            max_backoff: default_max_backoff(),
            shutdown_grace: default_grace(),
            scheduler_interval: default_scheduler_interval(),
            schedule_claim_lease: default_schedule_claim_lease(),
            schedule_shards: default_schedule_shards(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bad_value_is_named() {
        RouterConfig::default().validate().unwrap();
        let cases = [
            (
                RouterConfig {
                    transaction_timeout: std::time::Duration::from_secs(1),
                    ..RouterConfig::default()
                },
                "router.transaction_timeout",
            ),
            (
                RouterConfig {
                    max_in_flight: 0,
                    ..RouterConfig::default()
                },
                "router.max_in_flight",
            ),
            (
                RouterConfig {
                    max_data_bytes: 900 * 1024 + 1,
                    ..RouterConfig::default()
                },
                "router.max_data_bytes",
            ),
            (
                RouterConfig {
                    schedule_shards: 0,
                    ..RouterConfig::default()
                },
                "router.schedule_shards",
            ),
        ];
        for (config, key) in cases {
            let error = config.validate().unwrap_err();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn the_transactional_id_is_the_group_and_the_instance() {
        let config = RouterConfig {
            instance_id: Some("router-0".into()),
            ..RouterConfig::default()
        };
        assert_eq!(
            config.transactional_id("t.herald-router"),
            "t.herald-router-router-0"
        );
    }
}
