//! Producing a bench's input fast: many records in flight at once, failing on the first
//! record the broker refuses.

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// Records in flight at most.
pub(super) const IN_FLIGHT: usize = 4096;

/// Records sent to one topic, up to `limit` unacknowledged at once.
pub(super) struct Flood<'a> {
    producer: &'a FutureProducer,
    topic: &'a str,
    limit: usize,
    pending: FuturesUnordered<BoxFuture<'a, Result<(), KafkaError>>>,
}

impl<'a> Flood<'a> {
    pub(super) fn new(producer: &'a FutureProducer, topic: &'a str, limit: usize) -> Self {
        Self {
            producer,
            topic,
            limit: limit.max(1),
            pending: FuturesUnordered::new(),
        }
    }

    /// Sends one record; waits for an earlier one first when `limit` are in flight.
    pub(super) async fn send(&mut self, key: String, payload: Vec<u8>) -> anyhow::Result<()> {
        let (producer, topic) = (self.producer, self.topic);
        self.pending.push(Box::pin(async move {
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }));
        if self.pending.len() >= self.limit
            && let Some(result) = self.pending.next().await
        {
            result?;
        }
        Ok(())
    }

    /// Waits for every record sent to be acknowledged.
    pub(super) async fn finish(mut self) -> anyhow::Result<()> {
        while let Some(result) = self.pending.next().await {
            result?;
        }
        Ok(())
    }
}
