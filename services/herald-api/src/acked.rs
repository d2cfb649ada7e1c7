//! Producing one record and waiting for Kafka's acknowledgement (idempotent producer,
//! `acks=all`): what every write the API answers for goes through, so that a success answer is
//! never given for a record the broker did not take.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use std::time::Duration;

use herald_kafka::RenewingProducer;

/// How long a produce may wait for room in the producer's queue before it gives up.
const QUEUE_WAIT: Duration = Duration::from_millis(100);

/// Kafka did not acknowledge a record: it may or may not have been written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotAcked(String);

/// A producer whose records are answered by the broker within `produce_timeout`.
#[derive(Clone)]
pub struct AckedProducer {
    producer: RenewingProducer,
    produce_timeout: Duration,
}

impl std::fmt::Debug for AckedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckedProducer")
            .field("produce_timeout", &self.produce_timeout)
            .finish_non_exhaustive()
    }
}

impl AckedProducer {
    /// `producer` must have `message.timeout.ms` set to `produce_timeout`.
    pub fn new(producer: RenewingProducer, produce_timeout: Duration) -> Self {
        Self {
            producer,
            produce_timeout,
        }
    }

    /// Produces one record with `headers` (name, value); `Ok` only once Kafka acknowledged it.
    /// A failure replaces the producer client when the error says a new one would help.
    pub async fn produce(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), NotAcked> {
        let lease = self.producer.lease();
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        if !headers.is_empty() {
            let owned = headers
                .iter()
                .fold(OwnedHeaders::new(), |all, (key, value)| {
                    all.insert(Header {
                        key,
                        value: Some(value.as_bytes()),
                    })
                });
            record = record.headers(owned);
        }
        // librdkafka answers every record within message.timeout.ms (produce_timeout); the outer
        // bound only guards against a delivery report that never comes.
        let delivery = tokio::time::timeout(
            self.produce_timeout + Duration::from_secs(2),
            lease.producer.send(record, Timeout::After(QUEUE_WAIT)),
        )
        .await;
        match delivery {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((error, _))) => {
                if let Err(e) = self.producer.failed(&lease, &error) {
                    tracing::warn!(error = %e, "cannot create a new Kafka producer client");
                }
                Err(NotAcked(error.to_string()))
            }
            Err(_) => Err(NotAcked("no delivery report".to_owned())),
        }
    }
}
