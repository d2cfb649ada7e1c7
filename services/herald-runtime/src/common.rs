//! The sections every role runs with, whatever else it needs.

use herald_contracts::registry::RegistryConfig;
use herald_kafka::KafkaConfig;
use herald_store::StoreConfig;

use crate::admin::AdminConfig;

/// `[kafka]`, `[registry]`, `[store]` and `[admin]`: where a role finds Kafka, the schema
/// registry and the database, and where it serves `/healthz`, `/readyz` and `/metrics`. Every
/// role reads them and none owns them. Owned rather than borrowed, so that a role's future can
/// be spawned.
#[derive(Debug, Clone, Default)]
pub struct CommonConfig {
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
}
