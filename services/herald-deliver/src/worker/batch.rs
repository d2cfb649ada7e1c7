//! The worker's loop: records are collected into a batch for up to `commit_interval`, delivered
//! (recipients concurrently, one recipient in order), and the statuses, retry-tier and DLQ
//! records they produce are committed with the batch's input offsets in one Kafka transaction.
//! A transient fault aborts the transaction and rewinds the batch; the send ledger keeps the
//! provider calls already made from being made again.
//!
//! Retry tiers: a tier record that is not yet due stops its partition: the partition is rewound
//! to it and paused until it is due, so other partitions (and the main topics) keep flowing.
//!
//! Priority: within a batch, the priority lane's records are sent before the others are
//! started. The bulk lane is paused while the priority lane has lag: from the start (until
//! the priority lane's lag is measured as zero), and again whenever a batch holds
//! priority-lane records, so a backlog on the priority lane drains first.

use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use herald_contracts::metric_names::{DELIVER_HELD_PARTITIONS, DELIVER_TRANSACTIONS};
use herald_kafka::group::{self, GROUP_CHECK_INTERVAL, MakeConsumer};
use herald_kafka::transaction::{
    self, CLIENT_TIMEOUT, OffsetRanges, OutRecord, TransactionalId, TxProducer,
    init_producer_patiently, produce_and_commit,
};
use herald_kafka::{HeraldContext, KafkaConfig};

use herald_store::send_ledger::BatchClaim;

use super::deliver::{Deliverer, Input, Transient};
use crate::config::DeliverConfig;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// How long reading the priority lane's offsets may take before the lane counts as drained.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a batch may wait for rate-limit tokens: batches are kept to the calls the rate
/// limit allows in this time, well inside the shutdown grace and the consumer's poll interval.
const RATE_LIMITED_BATCH: Duration = Duration::from_secs(10);

type Consumer_ = StreamConsumer<HeraldContext>;

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("{0}")]
    Transient(#[from] Transient),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

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

/// What collecting a batch came to.
enum Collected {
    Batch(Batch),
    Shutdown,
    /// The consumer has been without partitions and coordinator for too long.
    GroupLost,
}

/// One batch: its records and, per partition, the first and last offsets it holds.
#[derive(Debug, Default)]
struct Batch {
    inputs: Vec<Input>,
    ranges: OffsetRanges,
    priority: bool,
}

impl Batch {
    fn push(&mut self, input: Input, source: Source) {
        self.ranges
            .push(&input.topic, input.partition, input.offset);
        self.priority |= source == Source::Priority;
        self.inputs.push(input);
    }
}

/// Retry-tier partitions paused until their next record is due.
#[derive(Debug, Default)]
struct Held(HashMap<(String, i32), (i64, tokio::time::Instant)>);

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
}

fn to_input(message: &rdkafka::message::BorrowedMessage<'_>) -> Input {
    Input {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// What the loop works with.
pub(crate) struct Worker<'a> {
    pub(crate) kafka: &'a KafkaConfig,
    pub(crate) config: &'a DeliverConfig,
    pub(crate) transactional: TransactionalId,
    pub(crate) deliverer: Arc<Deliverer>,
    pub(crate) consumer: Consumer_,
    /// Makes the consumer anew when it has lost its group for good.
    pub(crate) make_consumer: &'a MakeConsumer,
    pub(crate) topics: Topics,
    /// A client of the worker's group that never joins it: reads the priority lane's
    /// watermarks and committed offsets (blocking calls, made on a blocking thread).
    pub(crate) offsets: Arc<BaseConsumer>,
}

impl Worker<'_> {
    /// Runs until `shutdown`; the open batch is delivered and committed first.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Result<(), LoopError> {
        let mut producer = init_producer_patiently(self.kafka, &self.transactional).await?;
        let mut backoff = MIN_BACKOFF;
        let mut held = Held::default();
        // Paused until the priority lane is known to have no lag.
        let mut bulk_paused = true;
        tracing::info!(
            transactional_id = self.transactional.id,
            "delivery worker processing"
        );
        loop {
            let collected = match self.collect(&mut held, bulk_paused, &shutdown).await {
                Err(LoopError::Kafka(e)) if group::cured_by_rebuild(&e) => Collected::GroupLost,
                other => other?,
            };
            let batch = match collected {
                Collected::Batch(batch) => batch,
                Collected::Shutdown => break,
                Collected::GroupLost => {
                    group::rebuild(&mut self.consumer, self.make_consumer)?;
                    // The new consumer starts with nothing paused and nothing held.
                    held = Held::default();
                    bulk_paused = true;
                    continue;
                }
            };
            // Keep the bulk lane paused while the priority lane yields records or has lag.
            let pause = batch.priority || (bulk_paused && self.priority_lag().await);
            if pause || pause != bulk_paused {
                // Also when already paused: partitions assigned since are not paused yet.
                self.pause_bulk(pause);
            }
            bulk_paused = pause;
            if batch.inputs.is_empty() {
                continue;
            }
            match self.process(&producer, &batch).await {
                Ok(()) => {
                    metrics::counter!(DELIVER_TRANSACTIONS, "result" => "committed").increment(1);
                    backoff = MIN_BACKOFF;
                }
                Err(error) => {
                    metrics::counter!(DELIVER_TRANSACTIONS, "result" => "aborted").increment(1);
                    let kafka_error = match &error {
                        BatchError::Kafka(e) => Some(e),
                        BatchError::Transient(_) => None,
                    };
                    producer = transaction::recover(
                        self.kafka,
                        &self.transactional,
                        producer,
                        kafka_error,
                    )
                    .await?;
                    tracing::warn!(error = %error, backoff_ms = backoff.as_millis() as u64, "batch aborted; rewinding");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {}
                    }
                    let rewound = transaction::rewind_owned(&self.consumer, &batch.ranges);
                    if group::lost(rewound)? {
                        // The new consumer reads the batch again from the committed offsets.
                        group::rebuild(&mut self.consumer, self.make_consumer)?;
                        held = Held::default();
                        bulk_paused = true;
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
        tracing::info!("delivery worker stopped fetching; leaving the group");
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Whether an assigned priority-lane partition has records this worker has not read:
    /// its high watermark is past the consumer's position (before this worker has read from
    /// it: past the group's committed offset, or the low watermark when none is committed).
    /// A partition whose offsets cannot be read counts as drained, so an unreachable priority
    /// partition cannot stall the bulk lane.
    async fn priority_lag(&self) -> bool {
        let Ok(positions) = self.consumer.position() else {
            return false;
        };
        let partitions: Vec<(String, i32, Option<i64>)> = positions
            .elements()
            .iter()
            .filter(|e| self.topics.source(e.topic()) == Source::Priority)
            .map(|e| (e.topic().to_owned(), e.partition(), offset(e.offset())))
            .collect();
        if partitions.is_empty() {
            return false;
        }
        let client = self.offsets.clone();
        let lag = tokio::task::spawn_blocking(move || {
            partitions.into_iter().any(|(topic, partition, position)| {
                let read = || -> Result<bool, KafkaError> {
                    let (low, high) =
                        client.fetch_watermarks(&topic, partition, OFFSETS_TIMEOUT)?;
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

    fn pause_bulk(&self, pause: bool) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for bulk in self.topics.bulk() {
            for element in assignment.elements_for_topic(bulk) {
                tpl.add_partition(bulk, element.partition());
            }
        }
        if tpl.count() == 0 {
            return;
        }
        let result = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, pause, "pausing or resuming the bulk lane");
        }
    }

    /// Collects a batch: waits for a first record (or, with the bulk lane paused, at most one
    /// commit interval), then takes more until the commit interval passes or the batch is
    /// full. Tier records not yet due hold their partition. `None` on shutdown.
    async fn collect(
        &self,
        held: &mut Held,
        bulk_paused: bool,
        shutdown: &CancellationToken,
    ) -> Result<Collected, LoopError> {
        let mut batch = Batch::default();
        let max_batch = self
            .deliverer
            .limiter
            .calls_within(RATE_LIMITED_BATCH)
            .map_or(self.config.max_batch, |calls| {
                calls.min(self.config.max_batch)
            });
        let generation = self.consumer.context().revocations();
        let mut deadline: Option<Instant> =
            bulk_paused.then(|| Instant::now() + self.config.commit_interval);
        loop {
            if batch.inputs.len() >= max_batch {
                break;
            }
            held.release_due(&self.consumer);
            let wake = match (deadline, held.next_due()) {
                (Some(d), Some(h)) => Some(d.min(h)),
                (d, h) => d.or(h),
            };
            let message = tokio::select! {
                () = shutdown.cancelled(), if batch.inputs.is_empty() => return Ok(Collected::Shutdown),
                () = tokio::time::sleep(GROUP_CHECK_INTERVAL), if batch.inputs.is_empty() => {
                    if group::is_stuck(&self.consumer, self.kafka.consumer_rebuild_after) {
                        return Ok(Collected::GroupLost);
                    }
                    continue;
                }
                () = sleep_until(wake) => {
                    if deadline.is_some_and(|d| d <= Instant::now()) {
                        break;
                    }
                    continue;
                }
                // Waits out brokers down and topics not yet in the metadata (topics just
                // created by `herald topics apply` take a moment to appear).
                message = transaction::recv(&self.consumer) => match message {
                    Ok(message) => message,
                    Err(e) if group::cured_by_rebuild(&e) => {
                        // What was collected is read again by the new consumer, from the
                        // committed offsets.
                        tracing::warn!(error = %e, "consumer error");
                        return Ok(Collected::GroupLost);
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            let input = to_input(&message);
            drop(message);
            if held.holds(&input.topic, input.partition) {
                // Fetched before the partition was paused.
                continue;
            }
            let source = self.topics.source(&input.topic);
            if source == Source::Tier
                && let Some(due) = input.due_at()
            {
                let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
                if !wait.is_zero() {
                    held.hold(&self.consumer, &input, Instant::now() + wait)?;
                    continue;
                }
            }
            batch.push(input, source);
            deadline.get_or_insert_with(|| Instant::now() + self.config.commit_interval);
        }
        if self.consumer.context().revocations() != generation {
            tracing::info!(
                records = batch.inputs.len(),
                "partitions revoked during collection; batch dropped"
            );
            transaction::rewind_owned(&self.consumer, &batch.ranges)?;
            return Ok(Collected::Batch(Batch::default()));
        }
        Ok(Collected::Batch(batch))
    }

    /// Delivers `inputs[indices]`: one recipient's (one key's) dispatches in order,
    /// recipients concurrently (guarantee 4), at most max_in_flight provider calls at once.
    async fn deliver_all(
        &self,
        inputs: &[Input],
        indices: Vec<usize>,
        claim: &BatchClaim,
    ) -> Result<Vec<OutRecord>, Transient> {
        let by_key =
            transaction::group_by_key(indices.into_iter().map(|i| (i, inputs[i].key.as_deref())));
        let deliverer = &self.deliverer;
        let delivered: Vec<Result<Vec<OutRecord>, Transient>> = futures::stream::iter(by_key)
            .map(|indices| async move {
                let mut out = Vec::new();
                for i in indices {
                    out.extend(deliverer.deliver(&inputs[i], claim).await?);
                }
                Ok(out)
            })
            .buffer_unordered(self.config.max_in_flight)
            .collect()
            .await;
        let mut outputs = Vec::new();
        for recipient in delivered {
            outputs.extend(recipient?);
        }
        Ok(outputs)
    }

    /// Delivers every record of the batch and commits their output and offsets in one
    /// transaction.
    async fn process(&self, producer: &TxProducer, batch: &Batch) -> Result<(), BatchError> {
        // The priority lane's records are sent before the rest of the batch is started, so a
        // batch that caught both lanes still serves the priority lane first.
        let (priority, rest): (Vec<usize>, Vec<usize>) = (0..batch.inputs.len())
            .partition(|i| self.topics.source(&batch.inputs[*i].topic) == Source::Priority);
        let claim = self
            .deliverer
            .claim_batch(&batch.ranges)
            .await
            .map_err(Transient::Store)?;
        let mut outputs = self.deliver_all(&batch.inputs, priority, &claim).await?;
        outputs.extend(self.deliver_all(&batch.inputs, rest, &claim).await?);
        produce_and_commit(
            producer,
            &self.consumer,
            &outputs,
            batch.ranges.next_offsets()?,
        )
        .await?;
        Ok(())
    }
}

/// The offset number, if `offset` is one.
fn offset(offset: Offset) -> Option<i64> {
    match offset {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
