//! The configuration file: every role's section in the one layout an operator writes
//! (`[kafka] [registry] [store] [telemetry] [admin] [router] [deliver] [api] [unsubscribe]
//! [tracking]`), with `HERALD_<SECTION>__<KEY>` variables over it. Each section's type, its
//! defaults and its checks belong to the crate of the role that reads it; the file is put
//! together here, the one crate that sees every role.

use serde::Deserialize;
use std::path::Path;

use herald_api::ApiConfig;
use herald_contracts::registry::RegistryConfig;
use herald_contracts::tracking::TrackingConfig;
use herald_contracts::unsubscribe::UnsubscribeConfig;
use herald_deliver::DeliverConfig;
use herald_kafka::KafkaConfig;
use herald_router::RouterConfig;
use herald_runtime::CommonConfig;
use herald_runtime::admin::AdminConfig;
use herald_runtime::config::{ConfigError, Validate};
use herald_runtime::telemetry::TelemetryConfig;
use herald_store::StoreConfig;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeraldConfig {
    #[serde(default)]
    pub(crate) kafka: KafkaConfig,
    #[serde(default)]
    pub(crate) registry: RegistryConfig,
    #[serde(default)]
    pub(crate) store: StoreConfig,
    #[serde(default)]
    pub(crate) telemetry: TelemetryConfig,
    #[serde(default)]
    pub(crate) admin: AdminConfig,
    #[serde(default)]
    pub(crate) router: RouterConfig,
    #[serde(default)]
    pub(crate) deliver: DeliverConfig,
    #[serde(default)]
    pub(crate) api: ApiConfig,
    /// One-click unsubscribe links: shared by the email worker and `herald api`.
    #[serde(default)]
    pub(crate) unsubscribe: UnsubscribeConfig,
    /// Open and click tracking links: shared by the email worker and `herald api`.
    #[serde(default)]
    pub(crate) tracking: TrackingConfig,
}

impl HeraldConfig {
    /// Defaults, then `file` (if given), then the environment.
    pub(crate) fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        herald_runtime::config::load(file)
    }

    /// The sections every role runs with.
    pub(crate) fn common(&self) -> CommonConfig {
        CommonConfig {
            kafka: self.kafka.clone(),
            registry: self.registry.clone(),
            store: self.store.clone(),
            admin: self.admin.clone(),
        }
    }
}

impl Validate for HeraldConfig {
    fn validate(&self) -> Result<(), String> {
        self.store.validate()?;
        self.kafka.validate()?;
        self.registry.validate()?;
        self.router.validate()?;
        self.deliver.validate()?;
        self.api.validate()?;
        self.unsubscribe.validate()?;
        self.tracking.validate()?;
        self.telemetry.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    // figment's Jail fixes the closure's error type to figment::Error.
    #[allow(clippy::result_large_err)]
    fn load_in_jail(toml: &str, env: &[(&str, &str)]) -> Result<HeraldConfig, String> {
        let mut out = Err(String::new());
        Jail::expect_with(|jail| {
            jail.create_file("herald.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            out = HeraldConfig::load(Some(Path::new("herald.toml"))).map_err(|e| e.to_string());
            Ok(())
        });
        out
    }

    #[test]
    fn file_then_environment() {
        let config = load_in_jail(
            "[kafka]\nbootstrap_servers = \"file:9092\"\ntopic_prefix = \"t.\"\n[registry]\ntimeout = \"2s\"\n",
            &[
                ("HERALD_KAFKA__BOOTSTRAP_SERVERS", "env:9092"),
                ("HERALD_CACHE", "/not/a/key"),
            ],
        )
        .unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "env:9092");
        assert_eq!(config.kafka.topic_prefix, "t.");
        assert_eq!(config.registry.timeout, std::time::Duration::from_secs(2));
    }

    #[test]
    fn environment_text_stays_text_and_numbers_lists_and_booleans_still_read() {
        let config = load_in_jail(
            "",
            &[
                ("HERALD_STORE__PASSWORD", "0123"),
                ("HERALD_STORE__USERNAME", "42"),
                ("HERALD_ROUTER__INSTANCE_ID", "7"),
                ("HERALD_DELIVER__PROVIDERS__TWILIO__ACCOUNT_SID", "AC1"),
                ("HERALD_DELIVER__PROVIDERS__TWILIO__AUTH_TOKEN", "000"),
                ("HERALD_DELIVER__PROVIDERS__TWILIO__FROM", "+15005550006"),
                ("HERALD_STORE__NODES", "[\"a:9042\", \"b:9042\"]"),
                ("HERALD_STORE__REPLICATION_FACTOR", "3"),
                ("HERALD_DELIVER__MAX_IN_FLIGHT", "64"),
                ("HERALD_DELIVER__BREAKER__ENABLED", "false"),
            ],
        )
        .unwrap();
        let password = config
            .store
            .password
            .as_ref()
            .map(|p| p.expose().to_owned());
        assert_eq!(password.as_deref(), Some("0123"));
        assert_eq!(config.store.username.as_deref(), Some("42"));
        assert_eq!(config.router.instance_id.as_deref(), Some("7"));
        let twilio = config.deliver.providers.twilio.unwrap();
        assert_eq!(twilio.auth_token.as_ref().map(|t| t.expose()), Some("000"));
        assert_eq!(twilio.from.as_deref(), Some("+15005550006"));
        assert_eq!(config.store.nodes, ["a:9042", "b:9042"]);
        assert_eq!(config.store.replication_factor, 3);
        assert_eq!(config.deliver.max_in_flight, 64);
        assert!(!config.deliver.breaker.enabled);
        let err = load_in_jail("", &[("HERALD_DELIVER__MAX_IN_FLIGHT", "many")]).unwrap_err();
        assert!(err.contains("deliver.max_in_flight"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = load_in_jail("[kafka]\nbootstrap = \"x\"\n", &[]).unwrap_err();
        assert!(err.contains("bootstrap"), "{err}");
        let err = load_in_jail("", &[("HERALD_STORE__KEYSPACE", "no-dashes")]).unwrap_err();
        assert!(err.contains("store.keyspace"), "{err}");
        let err = load_in_jail("[registry]\ntimeout = \"soon\"\n", &[]).unwrap_err();
        assert!(err.contains("registry.timeout"), "{err}");
        let err = load_in_jail("", &[("HERALD_ADMIN__LISTEN", "not-an-address")]).unwrap_err();
        assert!(err.contains("admin.listen"), "{err}");
    }

    #[test]
    fn deliver_section_with_providers() {
        let config = load_in_jail(
            "[deliver]\nretry_delays = [\"1s\", \"2m\"]\nmax_in_flight = 8\n\
             [deliver.providers.webhook]\nallow = [\"127.0.0.1/32\"]\n",
            &[("HERALD_DELIVER__LEDGER_LEASE", "5s")],
        )
        .unwrap();
        assert_eq!(
            config.deliver.retry_delays,
            [1, 120].map(std::time::Duration::from_secs)
        );
        assert_eq!(config.deliver.max_in_flight, 8);
        assert_eq!(
            config.deliver.ledger_lease,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(config.deliver.providers.webhook.allow, ["127.0.0.1/32"]);
        let defaults = load_in_jail("", &[]).unwrap().deliver;
        assert_eq!(
            defaults.retry_delays,
            [10, 60, 600].map(std::time::Duration::from_secs)
        );
        let err = load_in_jail(
            "[deliver]\nretry_delays = [\"1s\", \"2s\", \"3s\", \"4s\"]\n",
            &[],
        )
        .unwrap_err();
        assert!(err.contains("deliver.retry_delays"), "{err}");
        let err = load_in_jail("[deliver.providers.webhook]\nallw = []\n", &[]).unwrap_err();
        assert!(err.contains("deliver.providers.webhook"), "{err}");
    }

    #[test]
    fn deliver_breaker_and_rate_limit() {
        let defaults = load_in_jail("", &[]).unwrap().deliver;
        assert!(defaults.breaker.enabled);
        assert_eq!(defaults.breaker.min_calls, 20);
        assert_eq!(defaults.rate_limit.per_second, None);
        let config = load_in_jail(
            "[deliver.breaker]\nwindow = \"5s\"\nmin_calls = 4\nopen_for = \"2s\"\n\
             [deliver.rate_limit]\nper_second = 20.0\n",
            &[("HERALD_DELIVER__BREAKER__FAILURE_RATIO", "0.25")],
        )
        .unwrap()
        .deliver;
        assert_eq!(config.breaker.window, std::time::Duration::from_secs(5));
        assert_eq!(config.breaker.min_calls, 4);
        assert_eq!(config.breaker.failure_ratio, 0.25);
        assert_eq!(config.breaker.half_open_probes, 3);
        assert_eq!(config.rate_limit.burst(), 20);
        let err = load_in_jail("[deliver.breaker]\nfailure_ratio = 2.0\n", &[]).unwrap_err();
        assert!(err.contains("deliver.breaker.failure_ratio"), "{err}");
        let err = load_in_jail("[deliver.rate_limit]\nrate = 2.0\n", &[]).unwrap_err();
        assert!(err.contains("deliver.rate_limit"), "{err}");
    }
}
