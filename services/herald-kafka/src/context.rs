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
    /// Partitions assigned now, counted from the rebalance events (which, with the
    /// cooperative protocol, name what is added or taken away). Not read back from the client:
    /// asking it inside a rebalance callback deadlocks while the consumer closes.
    assigned: Arc<AtomicU64>,
    /// Since when the consumer has had neither partitions nor a group coordinator, per its
    /// statistics; `None` while it has one or the other.
    group_lost_since: Arc<Mutex<Option<std::time::Instant>>>,
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

    /// How long the consumer has been without partitions and without a group coordinator
    /// (not in the `up` state), as its statistics last said; `None` while it has either.
    pub fn group_lost_for(&self) -> Option<std::time::Duration> {
        lock(&self.group_lost_since).map(|since| since.elapsed())
    }

    /// Forgets the group state: for a consumer created anew with this context (which starts
    /// with no partitions).
    pub fn reset_group_state(&self) {
        *lock(&self.group_lost_since) = None;
    }

    /// Forgets the partitions counted as assigned: the consumer holding them is gone.
    pub fn forget_assignment(&self) {
        self.assigned.store(0, Ordering::SeqCst);
        metrics::gauge!(CONSUMER_ASSIGNED_PARTITIONS).set(0.0);
    }

    fn observe_group(&self, assigned: i32, state: &str, now: std::time::Instant) {
        let mut since = lock(&self.group_lost_since);
        *since = group_lost(*since, assigned, state, now);
    }
}

/// The new "lost since" after a report of `assigned` partitions in group state `state`.
fn group_lost(
    since: Option<std::time::Instant>,
    assigned: i32,
    state: &str,
    now: std::time::Instant,
) -> Option<std::time::Instant> {
    // "up": the coordinator is known and answering; a member can own no partition (more
    // members than partitions) and still be fine.
    if assigned > 0 || state == "up" {
        None
    } else {
        Some(since.unwrap_or(now))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        if let Some(group) = &statistics.cgrp {
            self.observe_group(
                group.assignment_size,
                &group.state,
                std::time::Instant::now(),
            );
        }
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
        let mut last = lock(&self.lag_reported);
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
                let now = self
                    .assigned
                    .fetch_add(tpl.count() as u64, Ordering::SeqCst)
                    + tpl.count() as u64;
                metrics::gauge!(CONSUMER_ASSIGNED_PARTITIONS).set(now as f64);
                if now > 0 {
                    self.reset_group_state();
                }
            }
            Rebalance::Revoke(tpl) => {
                self.revocations.fetch_add(1, Ordering::SeqCst);
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                let taken = tpl.count() as u64;
                let before = self
                    .assigned
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        Some(n.saturating_sub(taken))
                    })
                    .unwrap_or(0);
                metrics::gauge!(CONSUMER_ASSIGNED_PARTITIONS)
                    .set(before.saturating_sub(taken) as f64);
            }
            Rebalance::Error(e) => {
                self.revocations.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(error = %e, "rebalance error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_group_is_lost_only_without_partitions_and_without_a_coordinator() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            group_lost(None, 0, "up", t0),
            None,
            "a member without partitions"
        );
        assert_eq!(
            group_lost(None, 3, "wait-coord", t0),
            None,
            "still owns partitions"
        );
        assert_eq!(group_lost(None, 0, "wait-coord", t0), Some(t0));
        // Counted from the first report that said so.
        assert_eq!(group_lost(Some(t0), 0, "query-coord", later), Some(t0));
        assert_eq!(group_lost(Some(t0), 0, "up", later), None);
    }

    #[test]
    fn a_rebuilt_consumer_starts_with_a_clean_state() {
        let context = HeraldContext::default();
        context.observe_group(0, "wait-coord", Instant::now());
        assert!(context.group_lost_for().is_some());
        context.reset_group_state();
        assert_eq!(context.group_lost_for(), None);
    }
}
