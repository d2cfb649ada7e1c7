//! When a producer client must be replaced rather than retried, and a producer that replaces
//! itself.
//!
//! librdkafka (2.12.1, and still 2.14.1) can leave a partition without a leader for good once a
//! produce response has named leader -1, which is what a KRaft broker answers while its
//! controller fences it for a moment, as after a GC pause or a stall longer than its session
//! timeout (confluentinc/librdkafka#5430). Every later record for that partition then waits in
//! the client until it times out, while a new client, which reads full metadata, delivers at
//! once. So a record that timed out means: build a new client.

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use std::sync::{Arc, PoisonError, RwLock};

use crate::HeraldContext;

/// Whether the client that returned `error` cannot be trusted to deliver again: it timed out
/// records (and may have stopped delivering to a partition), was fenced by a newer producer
/// with its transactional id, or failed fatally.
pub fn needs_new_client(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => {
            e.is_fatal() || !e.txn_requires_abort() || stopped_delivering(e.code())
        }
        e => e.rdkafka_error_code().is_some_and(|code| {
            stopped_delivering(code)
                || matches!(
                    code,
                    RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::Fatal
                )
        }),
    }
}

fn stopped_delivering(code: RDKafkaErrorCode) -> bool {
    code == RDKafkaErrorCode::MessageTimedOut
}

/// An idempotent producer for sends outside a transaction, replaced by a new client when a
/// send fails in a way [`needs_new_client`] names. Clones share the client.
#[derive(Clone)]
pub struct RenewingProducer {
    config: ClientConfig,
    current: Arc<RwLock<Generation>>,
}

struct Generation {
    number: u64,
    producer: FutureProducer<HeraldContext>,
}

/// The client a send used; hand it back to [`RenewingProducer::failed`] with the error.
#[derive(Clone)]
pub struct Lease {
    generation: u64,
    pub producer: FutureProducer<HeraldContext>,
}

impl RenewingProducer {
    pub fn new(config: ClientConfig) -> Result<Self, KafkaError> {
        let producer = config.create_with_context(HeraldContext::default())?;
        Ok(Self {
            config,
            current: Arc::new(RwLock::new(Generation {
                number: 0,
                producer,
            })),
        })
    }

    /// The current client.
    pub fn lease(&self) -> Lease {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Lease {
            generation: current.number,
            producer: current.producer.clone(),
        }
    }

    /// Reports a failed send. Builds a new client when the error calls for one and no other
    /// failure of the same client has done so already; returns whether it did.
    pub fn failed(&self, lease: &Lease, error: &KafkaError) -> Result<bool, KafkaError> {
        if !needs_new_client(error) {
            return Ok(false);
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.number != lease.generation {
            return Ok(false);
        }
        let producer = self.config.create_with_context(HeraldContext::default())?;
        tracing::warn!(error = %error, "replacing the Kafka producer client");
        *current = Generation {
            number: current.number + 1,
            producer,
        };
        Ok(true)
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RenewingProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let generation = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .number;
        f.debug_struct("RenewingProducer")
            .field("generation", &generation)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode as Code;

    #[test]
    fn timed_out_fenced_and_fatal_clients_are_replaced_and_others_retried() {
        for code in [Code::MessageTimedOut, Code::ProducerFenced, Code::Fatal] {
            assert!(
                needs_new_client(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
        for code in [
            Code::QueueFull,
            Code::NotEnoughReplicas,
            Code::BrokerTransportFailure,
            Code::MessageSizeTooLarge,
        ] {
            assert!(
                !needs_new_client(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
        assert!(!needs_new_client(&KafkaError::Canceled));
    }

    #[test]
    fn one_failure_replaces_the_client_once() {
        // No broker is contacted until a record is sent.
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        let producer = RenewingProducer::new(config).unwrap();
        let first = producer.lease();
        let timed_out = KafkaError::MessageProduction(Code::MessageTimedOut);
        assert!(
            !producer
                .failed(&first, &KafkaError::MessageProduction(Code::QueueFull))
                .unwrap()
        );
        assert!(producer.failed(&first, &timed_out).unwrap());
        // A second send of the same client that failed the same way finds it replaced.
        assert!(!producer.failed(&first, &timed_out).unwrap());
        let second = producer.lease();
        assert_eq!(second.generation, first.generation + 1);
        assert!(producer.failed(&second, &timed_out).unwrap());
    }
}
