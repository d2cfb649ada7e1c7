//! The consume-transform-produce loop (guarantee 2). Records are collected into a batch for up
//! to `commit_interval`; the batch's dispatch, status and DLQ records and its input offsets are
//! committed in one Kafka transaction. A transient fault aborts the transaction, pauses the
//! partitions and rewinds them to the batch's start; a rebalance during collection drops the
//! batch (its records are re-read by whoever owns them now).

use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use herald_kafka::group::{self, GROUP_CHECK_INTERVAL, MakeConsumer};
use herald_kafka::transaction::{
    self, CLIENT_TIMEOUT, OffsetRanges, OutRecord, TransactionalId, TxProducer,
    init_producer_patiently, produce_and_commit,
};
use herald_kafka::{HeraldContext, KafkaConfig};
use herald_runtime::config::RouterConfig;
use herald_runtime::metric_names::{ROUTER_TRANSACTIONS, ROUTER_TRANSIENT_FAULTS};

use crate::route::{Input, Router, Transient};

const MIN_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// Why a batch did not commit.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("{0}")]
    Transient(#[from] Transient),
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

/// Runs until `shutdown`; the open batch is finished and committed first. `make_consumer`
/// makes the consumer, and makes it again if it loses its group for good.
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
    tracing::info!(transactional_id = transactional_id.id, "router processing");

    loop {
        let collected = match collect(&consumer, kafka, config, batch_limit, &shutdown).await {
            Err(ProcessorError::Kafka(e)) if group::cured_by_rebuild(&e) => Collected::GroupLost,
            other => other?,
        };
        let batch = match collected {
            Collected::Batch(batch) => batch,
            Collected::Shutdown => break,
            Collected::GroupLost => {
                group::rebuild(&mut consumer, make_consumer)?;
                continue;
            }
        };
        if batch.inputs.is_empty() {
            continue;
        }
        let in_flight = config.max_in_flight.min(batch_limit);
        match process(&router, in_flight, &producer, &consumer, &batch).await {
            Ok(()) => {
                metrics::counter!(ROUTER_TRANSACTIONS, "result" => "committed").increment(1);
                backoff = MIN_BACKOFF;
                batch_limit = (batch_limit * 2).min(config.max_batch);
            }
            Err(error) => {
                metrics::counter!(ROUTER_TRANSACTIONS, "result" => "aborted").increment(1);
                let kafka_error = match &error {
                    BatchError::Kafka(e) => Some(e),
                    BatchError::Transient(_) => None,
                };
                producer =
                    transaction::recover(kafka, &transactional_id, producer, kafka_error).await?;
                if let BatchError::Transient(t) = &error {
                    metrics::counter!(ROUTER_TRANSIENT_FAULTS, "stage" => t.stage()).increment(1);
                    batch_limit = (batch.inputs.len() / 4).max(1);
                }
                tracing::warn!(error = %error, backoff_ms = backoff.as_millis() as u64, "batch aborted; rewinding");
                let rewound = pause_and_rewind(&consumer, &batch, backoff, &shutdown).await;
                if group::lost(rewound)? {
                    // The new consumer reads the batch again from the committed offsets.
                    group::rebuild(&mut consumer, make_consumer)?;
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
    tracing::info!("router stopped fetching; leaving the group");
    consumer.unsubscribe();
    Ok(())
}

/// Collects a batch: waits for a first record, then takes more until the commit interval
/// passes or the batch holds `limit` records. While it waits, it looks at the consumer's group
/// state, and gives up if the group has been lost for `kafka.consumer_rebuild_after`.
async fn collect(
    consumer: &Consumer_,
    kafka: &KafkaConfig,
    config: &RouterConfig,
    limit: usize,
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
    while batch.inputs.len() < limit {
        match tokio::time::timeout_at(deadline, transaction::recv(consumer)).await {
            Ok(Ok(message)) => batch.push(to_input(&message)),
            // The new consumer reads the batch again from the committed offsets.
            Ok(Err(e)) if group::cured_by_rebuild(&e) => {
                tracing::warn!(error = %e, "consumer error");
                return Ok(Collected::GroupLost);
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => break,
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

/// Routes every record of the batch and commits their output and offsets in one transaction.
async fn process(
    router: &Router,
    max_in_flight: usize,
    producer: &TxProducer,
    consumer: &Consumer_,
    batch: &Batch,
) -> Result<(), BatchError> {
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
    produce_and_commit(producer, consumer, &outputs, batch.ranges.next_offsets()?).await?;
    Ok(())
}

/// Pauses the batch's partitions for `backoff` (still polling, so the group membership stays
/// alive), then rewinds them to the batch's start and resumes.
async fn pause_and_rewind(
    consumer: &Consumer_,
    batch: &Batch,
    backoff: Duration,
    shutdown: &CancellationToken,
) -> Result<(), KafkaError> {
    let partitions = batch.ranges.start_offsets()?;
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
    transaction::rewind_owned(consumer, &batch.ranges)?;
    consumer.resume(&partitions)?;
    Ok(())
}
