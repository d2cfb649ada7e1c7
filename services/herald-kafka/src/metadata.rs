//! What the cluster says about a topic.

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use std::time::Duration;

/// The partition ids of `topic`; empty when the cluster does not know the topic (or, just
/// after it was created, does not know it yet).
pub fn partitions_of<C: Consumer<X>, X: ConsumerContext>(
    client: &C,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}
