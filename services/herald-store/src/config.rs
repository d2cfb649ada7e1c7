//! How every Herald process reaches ScyllaDB.

use serde::Deserialize;
use std::time::Duration;

use herald_contracts::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Contact points, `host:port`.
    #[serde(default = "default_nodes")]
    pub nodes: Vec<String>,
    /// The keyspace Herald's tables live in.
    #[serde(default = "default_keyspace")]
    pub keyspace: String,
    /// Replication used when `herald db migrate` creates the keyspace: SimpleStrategy with this
    /// factor, or NetworkTopologyStrategy with it in `datacenter` when that is set.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: u32,
    #[serde(default)]
    pub datacenter: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long one request may take before it fails (and the caller backs off and retries).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_nodes() -> Vec<String> {
    vec!["127.0.0.1:9042".into()]
}

fn default_keyspace() -> String {
    "herald".into()
}

fn default_replication_factor() -> u32 {
    1
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            nodes: default_nodes(),
            keyspace: default_keyspace(),
            replication_factor: default_replication_factor(),
            datacenter: None,
            username: None,
            password: None,
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
        }
    }
}

impl StoreConfig {
    /// The keyspace's replication map in CQL.
    pub fn replication_cql(&self) -> String {
        match &self.datacenter {
            Some(dc) => format!(
                "{{'class': 'NetworkTopologyStrategy', '{dc}': {}}}",
                self.replication_factor
            ),
            None => format!(
                "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
                self.replication_factor
            ),
        }
    }

    /// A table name qualified with the keyspace, for statement text.
    pub fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.keyspace)
    }

    /// Keyspace and datacenter names end up inside CQL text, so only plain identifiers pass.
    pub fn validate(&self) -> Result<(), String> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 48
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !plain(&self.keyspace) {
            return Err(format!(
                "store.keyspace `{}` must be 1-48 letters, digits or underscores",
                self.keyspace
            ));
        }
        if let Some(dc) = &self.datacenter
            && !dc
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        {
            return Err(format!("store.datacenter `{dc}` is not a datacenter name"));
        }
        if self.nodes.is_empty() {
            return Err("store.nodes is empty".into());
        }
        if self.replication_factor == 0 {
            return Err("store.replication_factor must be at least 1".into());
        }
        Ok(())
    }
}
