//! Marks reach the other replicas' streams as inbox events on `notifications.inbox`, published
//! by the request that made the mark and acknowledged by Kafka before it answers.

use std::sync::Arc;

use herald_contracts::{Codec, InboxEvent};

use crate::acked::AckedProducer;
use crate::problem::Problem;

#[derive(Debug, Clone)]
pub struct InboxPublisher {
    producer: AckedProducer,
    codec: Arc<Codec>,
    topic: String,
}

impl InboxPublisher {
    pub fn new(producer: AckedProducer, codec: Arc<Codec>, topic: String) -> Self {
        Self {
            producer,
            codec,
            topic,
        }
    }

    /// Encodes and produces `event`; `Ok` only once Kafka acknowledged it.
    pub async fn publish(&self, event: &InboxEvent) -> Result<(), Problem> {
        let payload = self.codec.encode_inbox(event).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot encode an inbox event");
            Problem::unavailable("the schema registry did not answer; nothing was changed")
        })?;
        self.producer
            .produce(&self.topic, &event.key(), &payload, &[])
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "Kafka did not acknowledge an inbox event");
                Problem::unavailable("Kafka did not acknowledge the change in time; retry")
            })
    }
}
