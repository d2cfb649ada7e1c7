//! The rdkafka client context every Herald client uses: librdkafka's logs and errors go to
//! `tracing`, and end-of-partition notices (which `enable.partition.eof` asks for) are not
//! reported as errors.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::consumer::Rebalance;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use herald_contracts::metric_names::{CONSUMER_ASSIGNED_PARTITIONS, CONSUMER_LAG};

#[derive(Debug, Clone, Default)]
pub struct HeraldContext {
    revocations: Arc<AtomicU64>,
    /// The partitions whose lag was last reported, so a partition that moved to another
    /// consumer stops showing its old lag here.
    lag_reported: Arc<Mutex<HashSet<(String, i32)>>>,
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

    /// Consumer lag per fetched partition, every `statistics.interval.ms`.
    fn stats(&self, statistics: Statistics) {
        let mut reported = HashSet::new();
        for (topic, stats) in &statistics.topics {
            for (&partition, p) in &stats.partitions {
                // Partition -1 is librdkafka's internal "unassigned" one; producers' partitions
                // are never "active".
                if partition < 0 || p.fetch_state != "active" {
                    continue;
                }
                // read_committed consumers stop at the last stable offset.
                let end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                // Nothing consumed or committed yet: reading starts at the log start
                // (`auto.offset.reset=earliest`).
                let position = [p.app_offset, p.committed_offset, p.lo_offset]
                    .into_iter()
                    .find(|offset| *offset >= 0)
                    .unwrap_or(-1);
                if end < 0 || position < 0 {
                    continue;
                }
                metrics::gauge!(CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                    .set((end - position).max(0) as f64);
                reported.insert((topic.clone(), partition));
            }
        }
        let mut last = self
            .lag_reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (topic, partition) in last.difference(&reported) {
            metrics::gauge!(CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                .set(0.0);
        }
        *last = reported;
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

    fn post_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        _rebalance: &Rebalance<'_>,
    ) {
        use rdkafka::consumer::Consumer as _;
        // The whole assignment, whatever the protocol handed over incrementally.
        if let Ok(assignment) = consumer.assignment() {
            metrics::gauge!(CONSUMER_ASSIGNED_PARTITIONS).set(assignment.count() as f64);
        }
    }
}
