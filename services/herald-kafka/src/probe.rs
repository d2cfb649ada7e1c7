//! A metadata-only client for readiness checks: it asks the cluster about one topic, which any
//! broker answers while it is reachable.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use std::sync::Arc;
use std::time::Duration;

use crate::{HeraldContext, KafkaConfig};

#[derive(Clone)]
pub struct MetadataProbe {
    client: Arc<BaseConsumer<HeraldContext>>,
    topic: String,
}

impl std::fmt::Debug for MetadataProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataProbe")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl MetadataProbe {
    /// A client of its own (no group): the role's consumer stays untouched by the checks.
    pub fn new(config: &KafkaConfig, topic: String) -> Result<Self, KafkaError> {
        let client = config
            .client_config()
            .create_with_context(HeraldContext::default())?;
        Ok(Self {
            client: Arc::new(client),
            topic,
        })
    }

    /// Fetches the topic's metadata within `timeout`.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        let client = self.client.clone();
        let topic = self.topic.clone();
        // librdkafka's metadata call blocks its thread.
        tokio::task::spawn_blocking(move || {
            client
                .fetch_metadata(Some(&topic), timeout)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("metadata check stopped: {e}"))?
    }
}
