//! `herald replay` and `herald dlq redrive`: copy a range of a Herald topic back into the
//! pipeline, filtered, in a Kafka transaction per batch that also commits the replay's own
//! consumer-group offsets, so a replay copies each record once however often it is interrupted
//! and resumed (guarantee 7).
//!
//! One idea per module: [`range`] (what `--from`/`--to` mean), [`filter`] (which records),
//! [`rewrite`] (ids and headers of a copy), [`dlq`] (reading the DLQ), [`plan`] (what is kept for `--resume`), [`copy`] (the
//! transactional loop), [`report`] and [`progress`] (what the operator sees).

pub mod copy;
pub mod dlq;
pub mod filter;
pub mod plan;
pub mod progress;
pub mod range;
pub mod report;
pub mod rewrite;

pub use copy::{Copy, copy};
pub use filter::Filter;
pub use plan::Plan;
pub use report::Report;
pub use rewrite::Mode;

/// Why a replay did not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The arguments or the plan do not make sense; nothing was written (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("replay plan: {0}")]
    Plan(String),
    #[error("gave up after {attempts} failed batches in a row: {last}")]
    GaveUp { attempts: u32, last: String },
}
