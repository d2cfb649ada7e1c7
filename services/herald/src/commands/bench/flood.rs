//! Producing a bench's input fast: many records in flight at once, failing on the first
//! record the broker refuses.

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Records in flight at most.
pub(super) const IN_FLIGHT: usize = 4096;
/// How long to wait when the producer's queue is full and nothing of ours is in flight.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);

/// Records sent to one topic, up to `limit` unacknowledged at once.
pub(super) struct Flood<'a> {
    producer: &'a FutureProducer,
    topic: &'a str,
    limit: usize,
    pending: FuturesUnordered<BoxFuture<'static, Result<(), KafkaError>>>,
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

    /// Sends one record; waits for an earlier one first when `limit` are in flight. The record
    /// is in the producer's queue when this returns: a steady-load bench stamps `created_at`
    /// just before, and a record left unsent until its future is first polled would count
    /// time spent in the bench as the router's.
    pub(super) async fn send(&mut self, key: String, payload: Vec<u8>) -> anyhow::Result<()> {
        let delivery = loop {
            let record = FutureRecord::to(self.topic).key(&key).payload(&payload);
            match self.producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match self.pending.next().await {
                        Some(result) => result?,
                        None => tokio::time::sleep(QUEUE_FULL_PAUSE).await,
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        };
        self.pending.push(Box::pin(async move {
            match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e),
                Err(_canceled) => Err(KafkaError::Canceled),
            }
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
