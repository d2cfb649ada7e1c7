//! Typed configuration: compiled-in defaults, then a TOML file, then `HERALD_` environment
//! variables with `__` between levels (`HERALD_KAFKA__BOOTSTRAP_SERVERS=broker:9092`). Unknown
//! keys and bad values fail at start with the key named.

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::path::Path;

use crate::env_text::EnvText;

/// The environment prefix. Only variables with a `__` after it are configuration, so that
/// `HERALD_CONFIG` (the file path) and the dev scripts' own variables are not mistaken for keys.
pub const ENV_PREFIX: &str = "HERALD_";

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
    pub breaker: crate::deliver_limits::BreakerConfig,
    /// The provider's rate limit (`[deliver.rate_limit]`); off by default.
    #[serde(default)]
    pub rate_limit: crate::deliver_limits::RateLimitConfig,
    /// The provider adapters (`[deliver.providers.smtp]`, `[deliver.providers.webhook]`, ...);
    /// a worker builds only the one its channel needs.
    #[serde(default)]
    pub providers: crate::providers::ProvidersConfig,
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
    /// What deserializing cannot check, naming the key; the providers' required settings are
    /// checked when the worker builds its provider (`herald_deliver::build_provider`).
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
                .unwrap_or_else(crate::instance::default_id)
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
            breaker: crate::deliver_limits::BreakerConfig::default(),
            rate_limit: crate::deliver_limits::RateLimitConfig::default(),
            providers: crate::providers::ProvidersConfig::default(),
            provider_message_ttl: default_provider_message_ttl(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `json` (default) or `text`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,herald_kafka=debug`. `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// OTLP/HTTP endpoint for traces (e.g. `http://otel-collector:4318/v1/traces`); none: no export.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` on exported spans; the role is appended (`herald-router`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

fn default_log_level() -> String {
    "info".into()
}

fn default_service_name() -> String {
    "herald".into()
}

impl TelemetryConfig {
    /// What deserializing cannot check, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map(drop)
            .map_err(|e| {
                format!(
                    "telemetry.log_level `{}` is not a filter: {e}",
                    self.log_level
                )
            })
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_level: default_log_level(),
            otlp_endpoint: None,
            service_name: default_service_name(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// A configuration file's type: checks what deserializing cannot (ranges, and settings that
/// only make sense together), naming the key of the first problem found.
pub trait Validate {
    fn validate(&self) -> Result<(), String>;
}

/// Defaults (the `#[serde(default)]`s of `T`), then `file` (if given), then the environment;
/// then [`Validate::validate`].
pub fn load<T: DeserializeOwned + Validate>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_from(file, Env::prefixed(ENV_PREFIX))
}

fn load_from<T: DeserializeOwned + Validate>(
    file: Option<&Path>,
    env: Env,
) -> Result<T, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        // Toml::file ignores a missing file; a typo in the path must not fall back to defaults.
        if !path.is_file() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment.merge(EnvText(
        env.filter(|key| key.as_str().contains("__")).split("__"),
    ));
    let config: T = figment.extract_lossy().map_err(describe)?;
    config.validate().map_err(ConfigError::Invalid)?;
    Ok(config)
}

/// Every problem figment found, each with the key it is about.
fn describe(error: figment::Error) -> ConfigError {
    let messages: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("key `{key}`: {}{source}", e.kind)
            }
        })
        .collect();
    ConfigError::Invalid(messages.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;
    use std::time::Duration;

    /// A configuration shaped like Herald's: sections of typed keys.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        section: Section,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[serde(default)]
        text: String,
        #[serde(default)]
        count: u32,
        #[serde(default)]
        list: Vec<String>,
        #[serde(default)]
        on: bool,
        #[serde(default, with = "humantime_serde")]
        wait: Duration,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), String> {
            if self.section.count > 100 {
                return Err("section.count must be at most 100".into());
            }
            Ok(())
        }
    }

    // figment's Jail fixes the closure's error type to figment::Error.
    #[allow(clippy::result_large_err)]
    fn sample_in_jail(toml: &str, env: &[(&str, &str)]) -> Result<Sample, String> {
        let mut out = Err(String::new());
        Jail::expect_with(|jail| {
            jail.create_file("herald.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            out = load(Some(Path::new("herald.toml"))).map_err(|e: ConfigError| e.to_string());
            Ok(())
        });
        out
    }

    #[test]
    fn the_environment_overrides_the_file_and_its_text_stays_text() {
        let config = sample_in_jail(
            "[section]\ntext = \"file\"\ncount = 1\nwait = \"2s\"\n",
            &[
                ("HERALD_SECTION__TEXT", "0123"),
                ("HERALD_SECTION__COUNT", "7"),
                ("HERALD_SECTION__LIST", "[\"a\", \"b\"]"),
                ("HERALD_SECTION__ON", "true"),
                // Not a key: no `__`.
                ("HERALD_CACHE", "/not/a/key"),
            ],
        )
        .unwrap();
        let section = config.section;
        assert_eq!(section.text, "0123");
        assert_eq!(section.count, 7);
        assert_eq!(section.list, ["a", "b"]);
        assert!(section.on);
        assert_eq!(section.wait, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_bad_values_and_failed_checks_are_named() {
        let err = sample_in_jail("[section]\ntxt = \"x\"\n", &[]).unwrap_err();
        assert!(err.contains("txt"), "{err}");
        let err = sample_in_jail("", &[("HERALD_SECTION__COUNT", "many")]).unwrap_err();
        assert!(err.contains("key `section.count`"), "{err}");
        let err = sample_in_jail("[section]\nwait = \"soon\"\n", &[]).unwrap_err();
        assert!(err.contains("section.wait"), "{err}");
        let err = sample_in_jail("[section]\ncount = 101\n", &[]).unwrap_err();
        assert_eq!(err, "configuration: section.count must be at most 100");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/herald.toml"))).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}
