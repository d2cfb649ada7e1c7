//! `[deliver]`: the delivery worker's section of the configuration file (`herald deliver
//! --channel <channel>`), with its breaker and rate limit ([`limits`]) and its providers
//! ([`providers`]).

pub mod limits;
pub mod providers;

use serde::Deserialize;

/// What a delivery worker does with a dispatch that may or may not have been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmbiguousSend {
    Resend,
    Report,
}

impl AmbiguousSend {
    /// The policy `channel` gets unless `deliver.ambiguous_send` says otherwise.
    pub fn default_for(channel: herald_contracts::Channel) -> Self {
        use herald_contracts::Channel;
        match channel {
            Channel::Sms | Channel::Push => AmbiguousSend::Report,
            Channel::Email | Channel::Webhook | Channel::Inapp => AmbiguousSend::Resend,
        }
    }
}

/// `herald deliver --channel <channel>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverConfig {
    /// Consumer group base name; the worker's group is `<prefix><group_id>-<channel>`, one
    /// group per channel so each channel is consumed (and scaled) on its own.
    #[serde(default = "default_deliver_group")]
    pub group_id: String,
    /// This instance's stable name; the transactional id is `<group>-<instance_id>`.
    /// Default: `<hostname>-<pid>`.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The most provider calls in flight at once (one recipient's dispatches stay in order).
    #[serde(default = "default_deliver_in_flight")]
    pub max_in_flight: usize,
    /// The most records in one batch (one Kafka transaction).
    #[serde(default = "default_deliver_batch")]
    pub max_batch: usize,
    /// How long a batch collects records before it is sent and committed.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: std::time::Duration,
    /// Kafka transaction timeout; longer than the slowest batch of provider calls.
    #[serde(
        default = "default_deliver_transaction_timeout",
        with = "humantime_serde"
    )]
    pub transaction_timeout: std::time::Duration,
    /// The delay of each retry tier, one per tier (`notifications.retry.<channel>.<n>`): the
    /// cap of the full-jitter backoff before attempt n + 1. At most 3 tiers.
    #[serde(default = "default_retry_delays", deserialize_with = "durations")]
    pub retry_delays: Vec<std::time::Duration>,
    /// How long a per-dispatch send-ledger claim written by an older worker holds before
    /// another may take the dispatch over. Partition claims (what workers write now) are taken
    /// over at once by the partition's next owner.
    #[serde(default = "default_ledger_lease", with = "humantime_serde")]
    pub ledger_lease: std::time::Duration,
    /// What to do with an ambiguous dispatch: one that another worker began sending and
    /// recorded no result for (it died mid-call). `resend` sends it again, so the receiver may
    /// get it twice; `report` records a call before each provider call, and on such a dispatch
    /// emits `unknown` (reason `ambiguous_send`) instead of sending it. Default per channel:
    /// `report` for sms and push, where a duplicate reaches a person at once; `resend` for
    /// webhook (receivers deduplicate by `webhook-id`), inapp (the inbox row is idempotent) and
    /// email.
    #[serde(default)]
    pub ambiguous_send: Option<AmbiguousSend>,
    /// Longest wait between retries while ScyllaDB, the registry or Kafka is unreachable.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: std::time::Duration,
    /// How long a shutdown may take to finish the sends in flight and commit.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: std::time::Duration,
    /// The circuit breaker in front of the provider (`[deliver.breaker]`).
    #[serde(default)]
    pub breaker: limits::BreakerConfig,
    /// The provider's rate limit (`[deliver.rate_limit]`); off by default.
    #[serde(default)]
    pub rate_limit: limits::RateLimitConfig,
    /// The provider adapters (`[deliver.providers.smtp]`, `[deliver.providers.webhook]`, ...);
    /// a worker builds only the one its channel needs.
    #[serde(default)]
    pub providers: providers::ProvidersConfig,
    /// How long a provider message id is remembered for status callbacks that name only it
    /// (Twilio's `MessageSid`): a callback later than this after the send is unmatched.
    #[serde(default = "default_provider_message_ttl", with = "humantime_serde")]
    pub provider_message_ttl: std::time::Duration,
}

fn default_provider_message_ttl() -> std::time::Duration {
    std::time::Duration::from_secs(30 * 24 * 3600)
}

fn default_deliver_group() -> String {
    "herald-deliver".into()
}
fn default_deliver_in_flight() -> usize {
    // As many as a batch holds: a call's wait is mostly the provider's and the database's,
    // not this process's CPU (measured with `herald bench deliver`: 64 → 2,500/s, 500 → 3,200/s).
    500
}
fn default_deliver_batch() -> usize {
    500
}
fn default_deliver_transaction_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}
fn default_retry_delays() -> Vec<std::time::Duration> {
    [10, 60, 600].map(std::time::Duration::from_secs).to_vec()
}
/// A list of human-readable durations (`["10s", "1m", "10m"]`).
fn durations<'de, D>(deserializer: D) -> Result<Vec<std::time::Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let list: Vec<humantime_serde::Serde<std::time::Duration>> =
        Deserialize::deserialize(deserializer)?;
    Ok(list
        .into_iter()
        .map(humantime_serde::Serde::into_inner)
        .collect())
}

fn default_commit_interval() -> std::time::Duration {
    std::time::Duration::from_millis(100)
}
fn default_max_backoff() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}
fn default_grace() -> std::time::Duration {
    std::time::Duration::from_secs(20)
}
fn default_ledger_lease() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

impl DeliverConfig {
    /// The processing engine's settings.
    pub fn engine(&self) -> herald_kafka::engine::EngineConfig {
        herald_kafka::engine::EngineConfig {
            max_batch: self.max_batch,
            max_in_flight: self.max_in_flight,
            commit_interval: self.commit_interval,
            max_backoff: self.max_backoff,
            metrics: crate::worker::METRICS,
        }
    }

    /// What deserializing cannot check, naming the key; the providers' required settings are
    /// checked when the worker builds its provider ([`crate::build_provider`]).
    pub fn validate(&self) -> Result<(), String> {
        if self.max_batch == 0 || self.max_in_flight == 0 {
            return Err("deliver.max_batch and deliver.max_in_flight must be at least 1".into());
        }
        if self.retry_delays.len() > usize::from(herald_contracts::topics::RETRY_TIERS) {
            return Err(format!(
                "deliver.retry_delays has {} delays; there are {} retry tiers",
                self.retry_delays.len(),
                herald_contracts::topics::RETRY_TIERS
            ));
        }
        if self.transaction_timeout < std::time::Duration::from_secs(2) {
            return Err("deliver.transaction_timeout must be at least 2s".into());
        }
        if !(std::time::Duration::from_secs(60)..=herald_store::provider_messages::MAX_TTL)
            .contains(&self.provider_message_ttl)
        {
            return Err(
                "deliver.provider_message_ttl must be between 1m and 20 years (CQL's longest TTL)"
                    .into(),
            );
        }
        self.breaker.validate()?;
        self.providers.inapp.validate()?;
        self.rate_limit.validate()
    }

    /// The consumer group of `channel`'s workers, before the topic prefix.
    pub fn group(&self, channel: herald_contracts::Channel) -> String {
        format!("{}-{channel}", self.group_id)
    }

    /// The Kafka transactional id of this instance within `group` (prefix applied).
    pub fn transactional_id(&self, group: &str) -> String {
        format!(
            "{group}-{}",
            self.instance_id
                .clone()
                .unwrap_or_else(herald_runtime::instance::default_id)
        )
    }
}

impl Default for DeliverConfig {
    fn default() -> Self {
        Self {
            group_id: default_deliver_group(),
            instance_id: None,
            max_in_flight: default_deliver_in_flight(),
            max_batch: default_deliver_batch(),
            commit_interval: default_commit_interval(),
            transaction_timeout: default_deliver_transaction_timeout(),
            retry_delays: default_retry_delays(),
            ledger_lease: default_ledger_lease(),
            ambiguous_send: None,
            max_backoff: default_max_backoff(),
            shutdown_grace: default_grace(),
            breaker: limits::BreakerConfig::default(),
            rate_limit: limits::RateLimitConfig::default(),
            providers: providers::ProvidersConfig::default(),
            provider_message_ttl: default_provider_message_ttl(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_contracts::Channel;
    use std::time::Duration;

    #[test]
    fn defaults_are_valid_and_each_bad_value_is_named() {
        DeliverConfig::default().validate().unwrap();
        let cases = [
            (
                DeliverConfig {
                    max_batch: 0,
                    ..DeliverConfig::default()
                },
                "deliver.max_batch",
            ),
            (
                DeliverConfig {
                    retry_delays: [1, 2, 3, 4].map(Duration::from_secs).to_vec(),
                    ..DeliverConfig::default()
                },
                "deliver.retry_delays",
            ),
            (
                DeliverConfig {
                    transaction_timeout: Duration::from_secs(1),
                    ..DeliverConfig::default()
                },
                "deliver.transaction_timeout",
            ),
            (
                DeliverConfig {
                    provider_message_ttl: Duration::from_secs(59),
                    ..DeliverConfig::default()
                },
                "deliver.provider_message_ttl",
            ),
            (
                DeliverConfig {
                    breaker: limits::BreakerConfig {
                        failure_ratio: 2.0,
                        ..limits::BreakerConfig::default()
                    },
                    ..DeliverConfig::default()
                },
                "deliver.breaker.failure_ratio",
            ),
        ];
        for (config, key) in cases {
            let error = config.validate().unwrap_err();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn each_channel_has_its_group_and_its_ambiguous_send_policy() {
        let config = DeliverConfig {
            instance_id: Some("w-1".into()),
            ..DeliverConfig::default()
        };
        assert_eq!(config.group(Channel::Sms), "herald-deliver-sms");
        assert_eq!(
            config.transactional_id("t.herald-deliver-sms"),
            "t.herald-deliver-sms-w-1"
        );
        assert_eq!(
            AmbiguousSend::default_for(Channel::Sms),
            AmbiguousSend::Report
        );
        assert_eq!(
            AmbiguousSend::default_for(Channel::Email),
            AmbiguousSend::Resend
        );
    }
}
