//! The consume-transform-produce loop (guarantee 2), pipelined: while one batch's dispatch,
//! status and DLQ records and its input offsets commit in one Kafka transaction (on a task of
//! its own), the next batch is collected and routed. A batch closes when it is full, when
//! `commit_interval` has passed since its first record, or as soon as the transaction before
//! it has finished: under a light load a batch waits for nothing, under a heavy one it grows.
//!
//! Routing a batch while the one before it is uncommitted keeps every guarantee: routing
//! writes its state to the database (dedupe ledger, frequency caps, schedule) before its
//! batch commits, so the next batch already sees it; the next batch's records are produced
//! only after the transaction before has committed, so one recipient's records stay in order
//! (guarantee 4); and when that transaction fails, both batches are rewound and routed again,
//! which the ledger's `source` column makes safe (a record finds its own rows).
//!
//! A transient fault aborts, pauses the partitions and rewinds them; a rebalance during
//! collection drops the batch (its records are re-read by whoever owns them now).

use futures::{FutureExt as _, StreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use herald_kafka::group::{self, GROUP_CHECK_INTERVAL, MakeConsumer};
use herald_kafka::transaction::{
    self, CLIENT_TIMEOUT, OffsetRanges, OutRecord, TransactionalId, TxProducer,
    init_producer_patiently, produce_and_commit_as,
};
use herald_kafka::{HeraldContext, KafkaConfig};
use herald_runtime::metric_names::{
    ROUTER_COMMIT_SECONDS, ROUTER_TRANSACTIONS, ROUTER_TRANSIENT_FAULTS,
};

use crate::config::RouterConfig;
use crate::route::{Input, Router, Transient};

const MIN_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

type Consumer_ = StreamConsumer<HeraldContext>;
/// One batch: its records and, per partition, the first and last offsets it holds.
#[derive(Debug, Default)]
struct Batch {
    inputs: Vec<Input>,
    ranges: OffsetRanges,
}

impl Batch {
    fn push(&mut self, input: Input) {
        self.ranges
            .push(&input.topic, input.partition, input.offset);
        self.inputs.push(input);
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

/// What collecting a batch came to.
enum Collected {
    Batch(Batch),
    Shutdown,
    /// The consumer has been without partitions and coordinator for too long.
    GroupLost,
}

/// What collecting and routing the next batch came to.
enum Next {
    /// Routed: its records wait for the next transaction.
    Routed {
        ranges: OffsetRanges,
        outputs: Vec<OutRecord>,
    },
    /// Routing met a fault that waiting cures; nothing of it was produced.
    Failed {
        batch: Batch,
        fault: Transient,
    },
    /// Nothing to route (a batch dropped by a rebalance).
    Empty,
    Shutdown,
    GroupLost,
}

/// A routed batch's transaction, running on a task of its own.
struct Committing {
    ranges: OffsetRanges,
    task: tokio::task::JoinHandle<Result<(), KafkaError>>,
}

/// Runs until `shutdown`; the routed batch is committed first. `make_consumer` makes the
/// consumer, and makes it again if it loses its group for good.
pub async fn run(
    kafka: &KafkaConfig,
    config: &RouterConfig,
    transactional_id: String,
    router: Arc<Router>,
    make_consumer: &MakeConsumer,
    shutdown: CancellationToken,
) -> Result<(), ProcessorError> {
    let mut consumer = make_consumer()?;
    let transactional_id = TransactionalId {
        id: transactional_id,
        timeout: config.transaction_timeout,
    };
    let mut producer = init_producer_patiently(kafka, &transactional_id).await?;
    let mut backoff = MIN_BACKOFF;
    // Shrinks after a transient fault and grows back on success: when the database is merely
    // overloaded, a smaller batch (and so fewer requests at once) can get through where
    // retrying the same large batch would time out again and again.
    let mut batch_limit = config.max_batch;
    // The routed batch waiting for its transaction.
    let mut routed: Option<(OffsetRanges, Vec<OutRecord>)> = None;
    tracing::info!(transactional_id = transactional_id.id, "router processing");

    loop {
        let committing = routed
            .take()
            .map(|(ranges, outputs)| commit(&producer, &consumer, ranges, outputs));
        // Tells the collection below that the pipeline is free: the batch it holds can close.
        let pipeline_free = Notify::new();
        let previous = async {
            let done = match committing {
                Some(Committing { ranges, task }) => Some((
                    ranges,
                    // The task only fails to join if the transaction panicked.
                    task.await.unwrap_or(Err(KafkaError::Canceled)),
                )),
                None => None,
            };
            pipeline_free.notify_one();
            done
        };
        let next = async {
            let collected = collect(
                &consumer,
                kafka,
                config,
                batch_limit,
                &pipeline_free,
                &shutdown,
            )
            .await?;
            let in_flight = config.max_in_flight.min(batch_limit);
            Ok::<_, ProcessorError>(route_collected(&router, in_flight, collected).await)
        };
        let (previous, next) = tokio::join!(previous, next);
        let next = match next {
            Err(ProcessorError::Kafka(e)) if group::cured_by_rebuild(&e) => Next::GroupLost,
            other => other?,
        };

        if let Some((ranges, result)) = previous {
            match result {
                Ok(()) => {
                    metrics::counter!(ROUTER_TRANSACTIONS, "result" => "committed").increment(1);
                    backoff = MIN_BACKOFF;
                    batch_limit = (batch_limit * 2).min(config.max_batch);
                }
                Err(error) => {
                    metrics::counter!(ROUTER_TRANSACTIONS, "result" => "aborted").increment(1);
                    producer =
                        transaction::recover(kafka, &transactional_id, producer, Some(&error))
                            .await?;
                    // The batch routed meanwhile came after the failed one: both go back.
                    let mut rewind = ranges;
                    match &next {
                        Next::Routed { ranges, .. } => rewind.extend(ranges),
                        Next::Failed { batch, .. } => rewind.extend(&batch.ranges),
                        Next::Empty | Next::Shutdown | Next::GroupLost => {}
                    }
                    tracing::warn!(error = %error, backoff_ms = backoff.as_millis() as u64, "transaction aborted; rewinding");
                    let rewound = pause_and_rewind(&consumer, &rewind, backoff, &shutdown).await;
                    let lost = group::lost(rewound)?;
                    backoff = (backoff * 2).min(config.max_backoff);
                    if matches!(next, Next::Shutdown) {
                        break;
                    }
                    if lost || matches!(next, Next::GroupLost) {
                        // The new consumer reads both batches again from the committed offsets.
                        group::rebuild(&mut consumer, make_consumer)?;
                    }
                    continue;
                }
            }
        }

        match next {
            Next::Routed { ranges, outputs } => routed = Some((ranges, outputs)),
            Next::Failed { batch, fault } => {
                // No transaction was begun: routing only reads and writes the database.
                metrics::counter!(ROUTER_TRANSACTIONS, "result" => "aborted").increment(1);
                metrics::counter!(ROUTER_TRANSIENT_FAULTS, "stage" => fault.stage()).increment(1);
                batch_limit = (batch.inputs.len() / 4).max(1);
                tracing::warn!(error = %fault, backoff_ms = backoff.as_millis() as u64, "batch not routed; rewinding");
                let rewound = pause_and_rewind(&consumer, &batch.ranges, backoff, &shutdown).await;
                if group::lost(rewound)? {
                    // The new consumer reads the batch again from the committed offsets.
                    group::rebuild(&mut consumer, make_consumer)?;
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
            Next::Empty => {}
            Next::Shutdown => break,
            Next::GroupLost => group::rebuild(&mut consumer, make_consumer)?,
        }
    }
    tracing::info!("router stopped fetching; leaving the group");
    consumer.unsubscribe();
    Ok(())
}

/// Starts the transaction of a routed batch on a task of its own.
fn commit(
    producer: &TxProducer,
    consumer: &Consumer_,
    ranges: OffsetRanges,
    outputs: Vec<OutRecord>,
) -> Committing {
    let offsets = ranges.next_offsets();
    let group = consumer.group_metadata();
    let producer = producer.clone();
    let commit_seconds = metrics::histogram!(ROUTER_COMMIT_SECONDS);
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let group = group.ok_or(KafkaError::Canceled)?;
        let result = produce_and_commit_as(&producer, group, &outputs, offsets?).await;
        commit_seconds.record(started.elapsed().as_secs_f64());
        result
    });
    Committing { ranges, task }
}

/// Routes a collected batch.
async fn route_collected(router: &Router, max_in_flight: usize, collected: Collected) -> Next {
    let batch = match collected {
        Collected::Batch(batch) => batch,
        Collected::Shutdown => return Next::Shutdown,
        Collected::GroupLost => return Next::GroupLost,
    };
    if batch.inputs.is_empty() {
        return Next::Empty;
    }
    match route(router, max_in_flight, &batch).await {
        Ok(outputs) => Next::Routed {
            ranges: batch.ranges,
            outputs,
        },
        Err(fault) => Next::Failed { batch, fault },
    }
}

/// Collects a batch: waits for a first record, then takes more until the batch holds `limit`
/// records, `commit_interval` has passed, or the pipeline is free (then it takes only what is
/// already at hand). While it waits, it looks at the consumer's group state, and gives up if
/// the group has been lost for `kafka.consumer_rebuild_after`.
async fn collect(
    consumer: &Consumer_,
    kafka: &KafkaConfig,
    config: &RouterConfig,
    limit: usize,
    pipeline_free: &Notify,
    shutdown: &CancellationToken,
) -> Result<Collected, ProcessorError> {
    let mut batch = Batch::default();
    let generation = consumer.context().revocations();
    let first = loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(Collected::Shutdown),
            message = transaction::recv(consumer) => match message {
                Ok(message) => break message,
                Err(e) if group::cured_by_rebuild(&e) => {
                    tracing::warn!(error = %e, "consumer error");
                    return Ok(Collected::GroupLost);
                }
                Err(e) => return Err(e.into()),
            },
            () = tokio::time::sleep(GROUP_CHECK_INTERVAL) => {
                if group::is_stuck(consumer, kafka.consumer_rebuild_after) {
                    return Ok(Collected::GroupLost);
                }
            }
        }
    };
    batch.push(to_input(&first));
    let deadline = Instant::now() + config.commit_interval;
    let mut free = false;
    while batch.inputs.len() < limit {
        let message = if free {
            match transaction::recv(consumer).now_or_never() {
                Some(message) => message,
                None => break,
            }
        } else {
            tokio::select! {
                biased;
                () = pipeline_free.notified() => {
                    free = true;
                    continue;
                }
                message = tokio::time::timeout_at(deadline, transaction::recv(consumer)) => match message {
                    Ok(message) => message,
                    Err(_) => break,
                },
            }
        };
        match message {
            Ok(message) => batch.push(to_input(&message)),
            // The new consumer reads the batch again from the committed offsets.
            Err(e) if group::cured_by_rebuild(&e) => {
                tracing::warn!(error = %e, "consumer error");
                return Ok(Collected::GroupLost);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if consumer.context().revocations() != generation {
        // Some of these partitions may belong to another instance now; rewind what is still
        // ours and let the owners read the rest.
        tracing::info!(
            records = batch.inputs.len(),
            "partitions revoked during collection; batch dropped"
        );
        transaction::rewind_owned(consumer, &batch.ranges)?;
        return Ok(Collected::Batch(Batch::default()));
    }
    Ok(Collected::Batch(batch))
}

/// Routes every record of the batch: the records its transaction is to produce.
async fn route(
    router: &Router,
    max_in_flight: usize,
    batch: &Batch,
) -> Result<Vec<OutRecord>, Transient> {
    // Recipients are routed concurrently; one recipient's records (one key) stay in order
    // (guarantee 4). Keying by recipient rather than by partition matters: a fetch often
    // fills a batch from a single partition.
    // Indices rather than references keep the stream's item type free of lifetimes.
    let by_key = transaction::group_by_key(
        batch
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| (i, input.key.as_deref())),
    );
    let inputs = &batch.inputs;
    let routed: Vec<Result<Vec<OutRecord>, Transient>> = futures::stream::iter(by_key)
        .map(|indices| async move {
            let mut out = Vec::new();
            for i in indices {
                out.extend(router.route(&inputs[i]).await?);
            }
            Ok(out)
        })
        .buffered(max_in_flight)
        .collect()
        .await;
    let mut outputs: Vec<OutRecord> = Vec::new();
    for recipient_output in routed {
        outputs.extend(recipient_output?);
    }
    Ok(outputs)
}

/// Pauses the partitions of `ranges` for `backoff` (still polling, so the group membership
/// stays alive), then rewinds them to their first records and resumes.
async fn pause_and_rewind(
    consumer: &Consumer_,
    ranges: &OffsetRanges,
    backoff: Duration,
    shutdown: &CancellationToken,
) -> Result<(), KafkaError> {
    let partitions = ranges.start_offsets()?;
    consumer.pause(&partitions)?;
    let until = Instant::now() + backoff;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => break,
            _ = shutdown.cancelled() => break,
            // Records of other partitions may still arrive; the rewind below does not cover
            // them, so put them back by seeking to them.
            message = transaction::recv(consumer) => {
                let message = message?;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(message.topic(), message.partition(), Offset::Offset(message.offset()))?;
                consumer.seek_partitions(tpl, CLIENT_TIMEOUT)?;
            }
        }
    }
    transaction::rewind_owned(consumer, ranges)?;
    consumer.resume(&partitions)?;
    Ok(())
}
