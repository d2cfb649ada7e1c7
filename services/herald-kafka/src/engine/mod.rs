//! The consume-transform-produce engine both processing roles run on (guarantee 2): it
//! collects a batch, has the role's [`Step`] turn it into output records, and commits that
//! output with the batch's input offsets in one Kafka transaction, pipelined (see
//! [`pipeline`]). Faults abort, pause, rewind and retry with backoff, with smaller batches.
//!
//! A role supplies its [`Step`] and, where it collects differently (the worker's held retry
//! tiers and priority lane), a [`Collect`]. Kafka is reached through [`InputLog`] and
//! [`Transactions`], which the engine's tests fake in memory.

mod input;
mod log;
mod pipeline;

#[cfg(test)]
mod fake;

use rdkafka::error::KafkaError;
use std::time::Duration;
use tokio::time::Instant;

pub use input::{Batch, Input, apply_by_key};
pub use log::{InputLog, KafkaInput, KafkaTransactions, Transactions};
pub use pipeline::{run, run_on_kafka};

use crate::transaction::{OffsetRanges, OutRecord};

/// What a role does with a batch.
pub trait Step: Send + Sync {
    /// A fault that waiting cures (the database or the registry is unavailable): nothing of
    /// the batch is produced, and it is read again after a backoff.
    type Fault: std::fmt::Display + Send;

    /// The records the batch's transaction is to produce. Records of one key must be applied
    /// in order ([`apply_by_key`] does that).
    fn apply(
        &self,
        batch: &Batch,
        max_in_flight: usize,
    ) -> impl Future<Output = Result<Vec<OutRecord>, Self::Fault>> + Send;

    /// The fault's stage, as labelled in the transient-fault metric.
    fn stage(fault: &Self::Fault) -> &'static str;
}

/// What a role adds to collecting a batch. The defaults take every record as it comes.
pub trait Collect<L: InputLog>: Send {
    /// The largest batch to collect now, given the engine's current limit.
    fn limit(&self, engine_limit: usize) -> usize {
        engine_limit
    }

    /// How long to wait for a batch's first record before handing over an empty batch, so
    /// that [`Collect::collected`] looks again; `None` waits for as long as it takes.
    fn first_wait(&self) -> Option<Duration> {
        None
    }

    /// When collection must wake though no record came (a held partition falls due).
    fn wake_at(&self) -> Option<Instant> {
        None
    }

    /// Runs before each record is awaited and whenever collection wakes.
    fn tick(&mut self, _log: &L) {}

    /// Whether `input` joins the batch; a record left out is one this hook has taken care of
    /// (its partition rewound to it and held until it is due).
    fn admit(&mut self, _log: &L, _input: &Input) -> Result<bool, KafkaError> {
        Ok(true)
    }

    /// After a batch is collected (perhaps empty), before it is applied.
    fn collected(&mut self, _log: &L, _batch: &Batch) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The partitions of `ranges` were rewound to their first records and resumed.
    fn rewound(&mut self, _ranges: &OffsetRanges) {}

    /// The consumer was replaced: nothing is paused or held any more.
    fn rebuilt(&mut self) {}
}

/// Collects as records come.
#[derive(Debug, Clone, Copy, Default)]
pub struct TakeAll;

impl<L: InputLog> Collect<L> for TakeAll {}

/// The engine's settings, from the role's configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The most records in one batch.
    pub max_batch: usize,
    /// The most keys applied at once.
    pub max_in_flight: usize,
    /// The longest a batch stays open after its first record.
    pub commit_interval: Duration,
    /// The longest pause after a fault (pauses double from 100 ms up to this).
    pub max_backoff: Duration,
    pub metrics: EngineMetrics,
}

/// The metrics the engine records, named by the role (names are declared once, in
/// `herald_contracts::metric_names`).
#[derive(Debug, Clone, Copy)]
pub struct EngineMetrics {
    /// Counter of transactions by `result` (`committed`, `aborted`).
    pub transactions: &'static str,
    /// Histogram of seconds from beginning a transaction to its commit or failure.
    pub commit_seconds: &'static str,
    /// Counter of transient faults by `stage`.
    pub transient_faults: &'static str,
}
