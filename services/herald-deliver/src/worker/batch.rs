//! The worker on the engine (`herald_kafka::engine`): its step, which claims the batch's
//! partitions in the send ledger and delivers the batch (recipients concurrently, one
//! recipient in order), and how it collects a batch, which the worker's two lanes and retry
//! tiers shape. The statuses, retry-tier and DLQ records a batch produces are committed with
//! its input offsets in one Kafka transaction; on a fault the batch is read again, and the
//! send ledger keeps the provider calls already made from being made again.
//!
//! Retry tiers: a tier record that is not yet due stops its partition: the partition is rewound
//! to it and paused until it is due, so other partitions (and the main topics) keep flowing.
//!
//! Priority: within a batch, the priority lane's records are sent before the others are
//! started. The bulk lane is paused while the priority lane has lag: from the start (until
//! the priority lane's lag is measured as zero), and again whenever a batch holds
//! priority-lane records, so a backlog on the priority lane drains first.

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use herald_contracts::metric_names::{
    DELIVER_COMMIT_SECONDS, DELIVER_HELD_PARTITIONS, DELIVER_TRANSACTIONS, DELIVER_TRANSIENT_FAULTS,
};
use herald_kafka::HeraldContext;
use herald_kafka::engine::{Batch, Collect, EngineMetrics, Input, KafkaInput, Step, apply_by_key};
use herald_kafka::transaction::{CLIENT_TIMEOUT, OffsetRanges, OutRecord};

use super::deliver::{Deliverer, DispatchRecord as _, Transient};

/// How long reading the priority lane's offsets may take before the lane counts as drained.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a batch may wait for rate-limit tokens: batches are kept to the calls the rate
/// limit allows in this time, well inside the shutdown grace and the consumer's poll interval.
const RATE_LIMITED_BATCH: Duration = Duration::from_secs(10);

/// The engine's metrics, under the worker's names.
pub(crate) const METRICS: EngineMetrics = EngineMetrics {
    transactions: DELIVER_TRANSACTIONS,
    commit_seconds: DELIVER_COMMIT_SECONDS,
    transient_faults: DELIVER_TRANSIENT_FAULTS,
};

type Consumer_ = StreamConsumer<HeraldContext>;

/// Which of the worker's topics a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Bulk,
    Priority,
    Tier,
}

/// The worker's topics and what each is.
#[derive(Debug, Clone)]
pub(crate) struct Topics(pub(crate) HashMap<String, Source>);

impl Topics {
    fn source(&self, topic: &str) -> Source {
        self.0.get(topic).copied().unwrap_or(Source::Bulk)
    }

    fn bulk(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, s)| **s == Source::Bulk)
            .map(|(t, _)| t.as_str())
    }
}

/// The worker's step: a batch's dispatches delivered, the priority lane's first.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) deliverer: Arc<Deliverer>,
    pub(crate) topics: Topics,
}

impl Step for Delivery {
    type Fault = Transient;

    async fn apply(
        &self,
        batch: &Batch,
        max_in_flight: usize,
    ) -> Result<Vec<OutRecord>, Transient> {
        // The priority lane's records are sent before the rest of the batch is started, so a
        // batch that caught both lanes still serves the priority lane first.
        let (priority, rest): (Vec<usize>, Vec<usize>) = (0..batch.len())
            .partition(|i| self.topics.source(&batch.inputs[*i].topic) == Source::Priority);
        let claim = self
            .deliverer
            .claim_batch(&batch.ranges)
            .await
            .map_err(Transient::Store)?;
        let deliver = |input| self.deliverer.deliver(input, &claim);
        let mut outputs = apply_by_key(&batch.inputs, priority, max_in_flight, deliver).await?;
        outputs.extend(apply_by_key(&batch.inputs, rest, max_in_flight, deliver).await?);
        Ok(outputs)
    }

    fn stage(fault: &Transient) -> &'static str {
        fault.class()
    }
}

/// Retry-tier partitions paused until their next record is due.
#[derive(Debug, Default)]
struct Held(HashMap<(String, i32), (i64, Instant)>);

impl Held {
    fn holds(&self, topic: &str, partition: i32) -> bool {
        self.0.contains_key(&(topic.to_owned(), partition))
    }

    fn next_due(&self) -> Option<Instant> {
        self.0.values().map(|(_, due)| *due).min()
    }

    /// Rewinds the partition to the record at `offset` and pauses it until `due`.
    fn hold(
        &mut self,
        consumer: &Consumer_,
        input: &Input,
        due: Instant,
    ) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&input.topic, input.partition, Offset::Offset(input.offset))?;
        consumer.seek_partitions(tpl.clone(), CLIENT_TIMEOUT)?;
        consumer.pause(&tpl)?;
        self.0
            .insert((input.topic.clone(), input.partition), (input.offset, due));
        metrics::gauge!(DELIVER_HELD_PARTITIONS).set(self.0.len() as f64);
        Ok(())
    }

    /// Resumes the partitions that are due. A partition no longer assigned is forgotten.
    fn release_due(&mut self, consumer: &Consumer_) {
        let now = Instant::now();
        let due: Vec<(String, i32)> = self
            .0
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        for (topic, partition) in due {
            self.0.remove(&(topic.clone(), partition));
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, partition);
            if let Err(e) = consumer.resume(&tpl) {
                tracing::debug!(topic, partition, error = %e, "resuming a held partition");
            }
        }
        metrics::gauge!(DELIVER_HELD_PARTITIONS).set(self.0.len() as f64);
    }

    /// Forgets the holds of partitions the engine rewound (and resumed): each is read again
    /// from before its held record, which is held again when it comes.
    fn forget(&mut self, ranges: &OffsetRanges) {
        for (topic, partition, _) in ranges.starts() {
            self.0.remove(&(topic.to_owned(), partition));
        }
        metrics::gauge!(DELIVER_HELD_PARTITIONS).set(self.0.len() as f64);
    }
}

/// How the worker collects a batch: held retry tiers, the bulk lane paused while the
/// priority lane has lag, and batches no larger than the rate limit allows.
pub(crate) struct Lanes {
    topics: Topics,
    deliverer: Arc<Deliverer>,
    commit_interval: Duration,
    held: Held,
    /// Paused until the priority lane is known to have no lag.
    bulk_paused: bool,
    /// A client of the worker's group that never joins it: reads the priority lane's
    /// watermarks and committed offsets (blocking calls, made on a blocking thread).
    offsets: Arc<BaseConsumer>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("held", &self.held)
            .field("bulk_paused", &self.bulk_paused)
            .finish_non_exhaustive()
    }
}

impl Lanes {
    pub(crate) fn new(
        topics: Topics,
        deliverer: Arc<Deliverer>,
        commit_interval: Duration,
        offsets: Arc<BaseConsumer>,
    ) -> Self {
        Self {
            topics,
            deliverer,
            commit_interval,
            held: Held::default(),
            bulk_paused: true,
            offsets,
        }
    }
}

impl<'a> Collect<KafkaInput<'a>> for Lanes {
    fn limit(&self, engine_limit: usize) -> usize {
        self.deliverer
            .limiter
            .calls_within(RATE_LIMITED_BATCH)
            .map_or(engine_limit, |calls| calls.min(engine_limit))
    }

    fn first_wait(&self) -> Option<Duration> {
        // With the bulk lane paused, look at the priority lane's lag again after a while.
        self.bulk_paused.then_some(self.commit_interval)
    }

    fn wake_at(&self) -> Option<Instant> {
        self.held.next_due()
    }

    fn tick(&mut self, log: &KafkaInput<'a>) {
        self.held.release_due(log.consumer());
    }

    fn admit(&mut self, log: &KafkaInput<'a>, input: &Input) -> Result<bool, KafkaError> {
        if self.held.holds(&input.topic, input.partition) {
            // Fetched before the partition was paused.
            return Ok(false);
        }
        if self.topics.source(&input.topic) == Source::Tier
            && let Some(due) = input.due_at()
        {
            let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
            if !wait.is_zero() {
                self.held
                    .hold(log.consumer(), input, Instant::now() + wait)?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn collected(&mut self, log: &KafkaInput<'a>, batch: &Batch) {
        // Keep the bulk lane paused while the priority lane yields records or has lag.
        let priority = batch
            .inputs
            .iter()
            .any(|i| self.topics.source(&i.topic) == Source::Priority);
        let pause = priority
            || (self.bulk_paused
                && priority_lag(log.consumer(), &self.topics, self.offsets.clone()).await);
        if pause || pause != self.bulk_paused {
            // Also when already paused: partitions assigned since are not paused yet.
            pause_bulk(log.consumer(), &self.topics, pause);
        }
        self.bulk_paused = pause;
    }

    fn rewound(&mut self, ranges: &OffsetRanges) {
        self.held.forget(ranges);
    }

    fn rebuilt(&mut self) {
        // The new consumer starts with nothing paused and nothing held.
        self.held = Held::default();
        self.bulk_paused = true;
    }
}

/// Whether an assigned priority-lane partition has records this worker has not read: its
/// high watermark is past the consumer's position (before this worker has read from it: past
/// the group's committed offset, or the low watermark when none is committed). A partition
/// whose offsets cannot be read counts as drained, so an unreachable priority partition
/// cannot stall the bulk lane.
async fn priority_lag(consumer: &Consumer_, topics: &Topics, client: Arc<BaseConsumer>) -> bool {
    let Ok(positions) = consumer.position() else {
        return false;
    };
    let partitions: Vec<(String, i32, Option<i64>)> = positions
        .elements()
        .iter()
        .filter(|e| topics.source(e.topic()) == Source::Priority)
        .map(|e| (e.topic().to_owned(), e.partition(), offset(e.offset())))
        .collect();
    if partitions.is_empty() {
        return false;
    }
    let lag = tokio::task::spawn_blocking(move || {
        partitions.into_iter().any(|(topic, partition, position)| {
            let read = || -> Result<bool, KafkaError> {
                let (low, high) = client.fetch_watermarks(&topic, partition, OFFSETS_TIMEOUT)?;
                let from = match position {
                    Some(position) => position,
                    None => {
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(&topic, partition);
                        let committed = client.committed_offsets(tpl, OFFSETS_TIMEOUT)?;
                        committed
                            .find_partition(&topic, partition)
                            .and_then(|e| offset(e.offset()))
                            .unwrap_or(low)
                    }
                };
                Ok(high > from)
            };
            read().unwrap_or_else(|e| {
                tracing::debug!(topic, partition, error = %e, "priority-lane offsets");
                false
            })
        })
    })
    .await;
    lag.unwrap_or(false)
}

fn pause_bulk(consumer: &Consumer_, topics: &Topics, pause: bool) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    for bulk in topics.bulk() {
        for element in assignment.elements_for_topic(bulk) {
            tpl.add_partition(bulk, element.partition());
        }
    }
    if tpl.count() == 0 {
        return;
    }
    let result = if pause {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, pause, "pausing or resuming the bulk lane");
    }
}

/// The offset number, if `offset` is one.
fn offset(offset: Offset) -> Option<i64> {
    match offset {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}
