//! The rdkafka client context every Herald client uses: librdkafka's logs and errors go to
//! `tracing`, and end-of-partition notices (which `enable.partition.eof` asks for) are not
//! reported as errors.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::consumer::Rebalance;
use rdkafka::error::KafkaError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Default)]
pub struct HeraldContext {
    revocations: Arc<AtomicU64>,
}

impl HeraldContext {
    /// How many times partitions were taken from this consumer (or a rebalance failed). A
    /// batch collected across a change of this number may hold records of partitions that
    /// are no longer ours; an assignment alone does not matter.
    pub fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::SeqCst)
    }
}

impl ClientContext for HeraldContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_)
            | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF) => {}
            error => tracing::error!(error = %error, "librdkafka: {reason}"),
        }
    }
}

impl ConsumerContext for HeraldContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                self.revocations.fetch_add(1, Ordering::SeqCst);
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(e) => {
                self.revocations.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(error = %e, "rebalance error");
            }
        }
    }
}
