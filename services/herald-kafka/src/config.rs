//! How every Herald process reaches Kafka.

use rdkafka::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

use herald_contracts::TopicNames;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    #[serde(default = "default_bootstrap")]
    pub bootstrap_servers: String,
    /// Prepended to every Herald topic name and consumer group, so several environments can
    /// share a cluster.
    #[serde(default)]
    pub topic_prefix: String,
    /// Any librdkafka property (`security.protocol`, `sasl.mechanism`, `ssl.ca.location`, ...),
    /// applied to every client after Herald's own settings.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A consumer that has had no partitions and no group coordinator for this long is closed
    /// and created anew: after a broker outage a client can stay stuck so (as producers can,
    /// librdkafka#5430), and readiness is false meanwhile.
    #[serde(default = "default_consumer_rebuild_after", with = "humantime_serde")]
    pub consumer_rebuild_after: std::time::Duration,
}

fn default_consumer_rebuild_after() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

fn default_bootstrap() -> String {
    "127.0.0.1:9092".into()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: default_bootstrap(),
            topic_prefix: String::new(),
            properties: BTreeMap::new(),
            consumer_rebuild_after: default_consumer_rebuild_after(),
        }
    }
}

/// Property names whose values are credentials.
fn is_sensitive(key: &str) -> bool {
    ["password", "secret", "key", "token", "jaas"]
        .iter()
        .any(|word| key.contains(word))
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_sensitive(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic_prefix", &self.topic_prefix)
            .field("properties", &properties)
            .field("consumer_rebuild_after", &self.consumer_rebuild_after)
            .finish()
    }
}

impl KafkaConfig {
    /// What deserializing cannot check, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err("kafka.bootstrap_servers is empty".into());
        }
        Ok(())
    }

    pub fn topics(&self) -> TopicNames {
        TopicNames::new(self.topic_prefix.clone())
    }

    /// A consumer group name with the prefix applied.
    pub fn group(&self, base: &str) -> String {
        format!("{}{base}", self.topic_prefix)
    }

    /// A client configuration with the bootstrap servers and the pass-through properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config.set("client.id", "herald");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// For producers that must not lose or reorder records: idempotence and acks from all
    /// in-sync replicas. lz4, not zstd: librdkafka builds and zeroes a zstd context for every
    /// message set, and with small sets (the API's single requests, a router's batch over many
    /// partitions) that was ~10% of `herald api`'s CPU in a profile at 5,000 requests/s.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// For consumers: committed reads only (guarantee 2), offsets stored by the application.
    ///
    /// Statistics are on: create the consumer with [`HeraldContext`](crate::HeraldContext),
    /// which turns them into the lag gauge, and poll it. A consumer with rdkafka's default
    /// context hands each report to a fallback that logs it at INFO, and one that is never
    /// polled (used only for offset lookups) keeps every report queued until it is dropped;
    /// give such a client [`client_config`](Self::client_config) with a `group.id` instead.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", group_id)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // Feeds the consumer-lag gauge (HeraldContext::stats).
            .set("statistics.interval.ms", "5000")
            // Records fetched ahead of the loop, 16 MiB rather than librdkafka's 64: seconds of
            // input at any rate a role keeps up with, and 48 MiB less resident memory per role.
            .set("queued.max.messages.kbytes", "16384");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let mut config = KafkaConfig::default();
        config
            .properties
            .insert("sasl.password".into(), "hunter2".into());
        config
            .properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("SASL_SSL"));
    }

    #[test]
    fn pass_through_properties_win() {
        let mut config = KafkaConfig::default();
        config.properties.insert("acks".into(), "1".into());
        assert_eq!(config.producer_config().get("acks"), Some("1"));
        assert_eq!(
            config.consumer_config("g").get("isolation.level"),
            Some("read_committed")
        );
    }
}
