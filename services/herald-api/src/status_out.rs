//! Statuses the API itself observes (provider callbacks, opens and clicks) go to
//! `notifications.status` like every other stage's, keyed `tenant:user_id`, and count as
//! recorded only once Kafka acknowledged them: a handler answers success only after `publish`
//! returned `Ok`, so a provider or browser that is told to retry loses nothing.

use std::sync::Arc;

use herald_contracts::headers::STATUS_ID;
use herald_contracts::{Codec, StatusEvent};
use herald_runtime::metric_names::API_STATUSES;

use crate::acked::AckedProducer;
use crate::problem::Problem;

/// Publishes status events to `notifications.status`.
#[derive(Debug, Clone)]
pub struct StatusPublisher {
    producer: AckedProducer,
    codec: Arc<Codec>,
    topic: String,
}

impl StatusPublisher {
    pub fn new(producer: AckedProducer, codec: Arc<Codec>, topic: String) -> Self {
        Self {
            producer,
            codec,
            topic,
        }
    }

    /// Encodes and produces `status`; `Ok` only once Kafka acknowledged it. The error is the
    /// 503 (or 500, for a status the registry refuses) the handler should answer.
    pub async fn publish(&self, status: &StatusEvent) -> Result<(), Problem> {
        self.publish_identified(status, None).await
    }

    /// As `publish`, for a status a provider may report again: `status_id` (the
    /// `herald-status-id` header) makes the repeat the same timeline row.
    pub async fn publish_identified(
        &self,
        status: &StatusEvent,
        status_id: Option<&str>,
    ) -> Result<(), Problem> {
        let payload = self.codec.encode_status(status).await.map_err(|e| {
            if e.is_transient() {
                tracing::warn!(error = %e, "cannot encode a status");
                Problem::unavailable("the schema registry did not answer; nothing was recorded")
            } else {
                tracing::error!(error = %e, event_id = %status.event_id, "cannot encode a status");
                Problem::internal()
            }
        })?;
        let identity: Vec<(&str, &str)> = status_id.map(|id| (STATUS_ID, id)).into_iter().collect();
        let outcome = self
            .producer
            .produce(&self.topic, &status.key(), &payload, &identity)
            .await;
        let status_label = status.status.symbol().to_ascii_lowercase();
        match outcome {
            Ok(()) => {
                metrics::counter!(API_STATUSES, "status" => status_label, "result" => "acked")
                    .increment(1);
                Ok(())
            }
            Err(e) => {
                metrics::counter!(API_STATUSES, "status" => status_label, "result" => "unavailable")
                    .increment(1);
                tracing::warn!(error = %e, event_id = %status.event_id, "Kafka did not acknowledge a status");
                Err(Problem::unavailable(
                    "Kafka did not acknowledge the status in time; retry",
                ))
            }
        }
    }
}
