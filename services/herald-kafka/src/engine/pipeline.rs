//! The engine's loop, pipelined: while one batch's output and input offsets commit in one
//! Kafka transaction (on a task of its own), the next batch is collected and applied. A batch
//! closes when it is full, when `commit_interval` has passed since its first record, or as
//! soon as the transaction before it has finished: under a light load a batch waits for
//! nothing, under a heavy one it grows.
//!
//! Applying a batch while the one before it is uncommitted keeps every guarantee: a step
//! writes its state to the database (dedupe ledger, frequency caps, send ledger) before its
//! batch commits, so the next batch already sees it; the next batch's records are produced
//! only after the transaction before has committed, so one key's records stay in order
//! (guarantee 4); and when that transaction fails, both batches are rewound and applied
//! again, which the steps' ledgers make safe (a record finds its own rows).
//!
//! A transient fault pauses the partitions (still polling, so the group membership stays
//! alive), rewinds them and shrinks the batch; a rebalance during collection drops the batch
//! (its records are re-read by whoever owns them now).

use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use rdkafka::error::KafkaError;

use super::input::Batch;
use super::log::{InputLog, KafkaInput, KafkaTransactions, Transactions};
use super::{Collect, EngineConfig, EngineMetrics, Step};
use crate::KafkaConfig;
use crate::group::{self, GROUP_CHECK_INTERVAL, MakeConsumer};
use crate::transaction::{OffsetRanges, OutRecord, TransactionalId};

const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// What collecting a batch came to.
enum Collected {
    Batch(Batch),
    Shutdown,
    /// The consumer has been without partitions and coordinator for too long, or failed in a
    /// way only a new consumer cures.
    GroupLost,
}

/// What collecting and applying the next batch came to.
enum Next<F> {
    /// Applied: its records wait for the next transaction.
    Applied {
        ranges: OffsetRanges,
        outputs: Vec<OutRecord>,
    },
    /// The step met a fault that waiting cures; nothing of it was produced.
    Failed {
        batch: Batch,
        fault: F,
    },
    /// Nothing to apply (an empty batch, or one dropped by a rebalance).
    Empty,
    Shutdown,
    GroupLost,
}

/// An applied batch's transaction, running on a task of its own.
struct Committing {
    ranges: OffsetRanges,
    task: tokio::task::JoinHandle<Result<(), KafkaError>>,
}

/// Runs until `shutdown`; the applied batch is committed first. Returns the errors no wait
/// cures (authorisation, a bad configuration).
pub async fn run<L, T, S, C>(
    log: &mut L,
    mut transactions: T,
    step: &S,
    mut collect: C,
    config: EngineConfig,
    shutdown: &CancellationToken,
) -> Result<(), KafkaError>
where
    L: InputLog,
    T: Transactions<Group = L::Group>,
    S: Step,
    C: Collect<L>,
{
    let metrics = config.metrics;
    let min_backoff = MIN_BACKOFF.min(config.max_backoff);
    let mut backoff = min_backoff;
    // Shrinks after a transient fault and grows back on success: when the database is merely
    // overloaded, a smaller batch (and so fewer requests at once) can get through where
    // retrying the same large batch would time out again and again.
    let mut batch_limit = config.max_batch.max(1);
    // The applied batch waiting for its transaction.
    let mut applied: Option<(OffsetRanges, Vec<OutRecord>)> = None;

    loop {
        let committing = applied
            .take()
            .map(|(ranges, outputs)| commit(&transactions, &*log, ranges, outputs, metrics));
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
        let log_ref = &*log;
        let collect_ref = &mut collect;
        let next = async {
            let collected = collect_batch(
                log_ref,
                collect_ref,
                &config,
                batch_limit,
                &pipeline_free,
                shutdown,
            )
            .await?;
            let in_flight = config.max_in_flight.min(batch_limit);
            Ok::<_, KafkaError>(apply_collected(step, in_flight, collected).await)
        };
        let (previous, next) = tokio::join!(previous, next);
        let next = match next {
            Err(e) if group::cured_by_rebuild(&e) => Next::GroupLost,
            other => other?,
        };

        if let Some((ranges, result)) = previous {
            match result {
                Ok(()) => {
                    metrics::counter!(metrics.transactions, "result" => "committed").increment(1);
                    backoff = min_backoff;
                    batch_limit = (batch_limit * 2).min(config.max_batch.max(1));
                }
                Err(error) => {
                    metrics::counter!(metrics.transactions, "result" => "aborted").increment(1);
                    transactions = transactions.recover(&error).await?;
                    // The batch applied meanwhile came after the failed one: both go back.
                    let mut rewind = ranges;
                    match &next {
                        Next::Applied { ranges, .. } => rewind.extend(ranges),
                        Next::Failed { batch, .. } => rewind.extend(&batch.ranges),
                        Next::Empty | Next::Shutdown | Next::GroupLost => {}
                    }
                    tracing::warn!(error = %error, backoff_ms = backoff.as_millis() as u64, "transaction aborted; rewinding");
                    let rewound = pause_and_rewind(&*log, &rewind, backoff, shutdown).await;
                    collect.rewound(&rewind);
                    let lost = group::lost(rewound)?;
                    backoff = (backoff * 2).min(config.max_backoff);
                    if matches!(next, Next::Shutdown) {
                        break;
                    }
                    if lost || matches!(next, Next::GroupLost) {
                        // The new consumer reads both batches again from the committed offsets.
                        log.rebuild()?;
                        collect.rebuilt();
                    }
                    continue;
                }
            }
        }

        match next {
            Next::Applied { ranges, outputs } => applied = Some((ranges, outputs)),
            Next::Failed { batch, fault } => {
                // No transaction was begun: a step only reads and writes the database.
                metrics::counter!(metrics.transactions, "result" => "aborted").increment(1);
                metrics::counter!(metrics.transient_faults, "stage" => S::stage(&fault))
                    .increment(1);
                batch_limit = (batch.len() / 4).max(1);
                tracing::warn!(error = %fault, backoff_ms = backoff.as_millis() as u64, "batch not applied; rewinding");
                let rewound = pause_and_rewind(&*log, &batch.ranges, backoff, shutdown).await;
                collect.rewound(&batch.ranges);
                if group::lost(rewound)? {
                    // The new consumer reads the batch again from the committed offsets.
                    log.rebuild()?;
                    collect.rebuilt();
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
            Next::Empty => {}
            Next::Shutdown => break,
            Next::GroupLost => {
                log.rebuild()?;
                collect.rebuilt();
            }
        }
    }
    tracing::info!("stopped fetching; leaving the group");
    log.leave();
    Ok(())
}

/// [`run`] against Kafka: the consumer `make_consumer` makes (and makes again when it loses
/// its group for good) and the transactional producer `transactional`, started first.
pub async fn run_on_kafka<S, C>(
    kafka: &KafkaConfig,
    make_consumer: &MakeConsumer,
    transactional: TransactionalId,
    step: &S,
    collect: C,
    config: EngineConfig,
    shutdown: &CancellationToken,
) -> Result<(), KafkaError>
where
    S: Step,
    C: for<'a> Collect<KafkaInput<'a>>,
{
    let mut input = KafkaInput::new(make_consumer, kafka.consumer_rebuild_after)?;
    let id = transactional.id.clone();
    let transactions = KafkaTransactions::start(kafka, transactional).await?;
    tracing::info!(transactional_id = id, "processing");
    run(&mut input, transactions, step, collect, config, shutdown).await
}

/// Starts the transaction of an applied batch on a task of its own.
fn commit<L: InputLog, T: Transactions<Group = L::Group>>(
    transactions: &T,
    log: &L,
    ranges: OffsetRanges,
    outputs: Vec<OutRecord>,
    metrics: EngineMetrics,
) -> Committing {
    let commit_seconds = metrics::histogram!(metrics.commit_seconds);
    let task = match log.group() {
        Some(group) => {
            let transaction = transactions.commit(group, outputs, &ranges);
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let result = transaction.await;
                commit_seconds.record(started.elapsed().as_secs_f64());
                result
            })
        }
        // No group to commit as (the consumer is between generations): the batch goes back.
        None => tokio::spawn(async { Err(KafkaError::Canceled) }),
    };
    Committing { ranges, task }
}

/// Applies a collected batch.
async fn apply_collected<S: Step>(
    step: &S,
    max_in_flight: usize,
    collected: Collected,
) -> Next<S::Fault> {
    let batch = match collected {
        Collected::Batch(batch) => batch,
        Collected::Shutdown => return Next::Shutdown,
        Collected::GroupLost => return Next::GroupLost,
    };
    if batch.is_empty() {
        return Next::Empty;
    }
    match step.apply(&batch, max_in_flight).await {
        Ok(outputs) => Next::Applied {
            ranges: batch.ranges,
            outputs,
        },
        Err(fault) => Next::Failed { batch, fault },
    }
}

/// Collects a batch: waits for a first record, then takes more until the batch holds its
/// limit, `commit_interval` has passed, or the pipeline is free (then it takes only what is
/// already at hand). While it waits, it looks at the consumer's group state.
async fn collect_batch<L: InputLog, C: Collect<L>>(
    log: &L,
    collect: &mut C,
    config: &EngineConfig,
    engine_limit: usize,
    pipeline_free: &Notify,
    shutdown: &CancellationToken,
) -> Result<Collected, KafkaError> {
    let mut batch = Batch::default();
    let limit = collect.limit(engine_limit).max(1);
    let generation = log.revocations();
    let first_deadline = collect.first_wait().map(|wait| Instant::now() + wait);
    // The first record: as long as it takes (or the role's first wait).
    while batch.is_empty() {
        collect.tick(log);
        let wake = earliest(first_deadline, collect.wake_at());
        let received = tokio::select! {
            () = shutdown.cancelled() => return Ok(Collected::Shutdown),
            received = log.next() => received,
            () = tokio::time::sleep(GROUP_CHECK_INTERVAL) => {
                if log.stuck() {
                    return Ok(Collected::GroupLost);
                }
                continue;
            }
            () = sleep_until(wake) => {
                if first_deadline.is_some_and(|d| d <= Instant::now()) {
                    break;
                }
                continue;
            }
        };
        take(log, collect, &mut batch, received)?;
    }
    if batch.is_empty() {
        collect.collected(log, &batch).await;
        return Ok(Collected::Batch(batch));
    }
    let deadline = Instant::now() + config.commit_interval;
    let mut free = false;
    while batch.len() < limit {
        collect.tick(log);
        let received = if free {
            match log.ready() {
                Some(received) => received,
                None => break,
            }
        } else {
            let wake = earliest(Some(deadline), collect.wake_at());
            tokio::select! {
                biased;
                () = pipeline_free.notified() => {
                    free = true;
                    continue;
                }
                () = sleep_until(wake) => {
                    if deadline <= Instant::now() {
                        break;
                    }
                    continue;
                }
                received = log.next() => received,
            }
        };
        take(log, collect, &mut batch, received)?;
    }
    if log.revocations() != generation {
        // Some of these partitions may belong to another instance now; rewind what is still
        // ours and let the owners read the rest.
        tracing::info!(
            records = batch.len(),
            "partitions revoked during collection; batch dropped"
        );
        log.rewind_owned(&batch.ranges)?;
        batch = Batch::default();
    }
    collect.collected(log, &batch).await;
    Ok(Collected::Batch(batch))
}

/// Adds a received record to the batch if the role admits it. A consumer error that a new
/// consumer cures is passed on for the loop to rebuild it; the new consumer reads the batch
/// again from the committed offsets.
fn take<L: InputLog, C: Collect<L>>(
    log: &L,
    collect: &mut C,
    batch: &mut Batch,
    received: Result<super::Input, KafkaError>,
) -> Result<(), KafkaError> {
    let input = received.inspect_err(|e| {
        if group::cured_by_rebuild(e) {
            tracing::warn!(error = %e, "consumer error");
        }
    })?;
    if collect.admit(log, &input)? {
        batch.push(input);
    }
    Ok(())
}

/// Pauses the partitions of `ranges` for `backoff` (still polling, so the group membership
/// stays alive), then rewinds them to their first records and resumes them.
async fn pause_and_rewind<L: InputLog>(
    log: &L,
    ranges: &OffsetRanges,
    backoff: Duration,
    shutdown: &CancellationToken,
) -> Result<(), KafkaError> {
    log.pause(ranges)?;
    let until = Instant::now() + backoff;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            () = shutdown.cancelled() => break,
            // Records of other partitions may still arrive; the rewind below does not cover
            // them, so put them back by seeking to them.
            received = log.next() => {
                let input = received?;
                log.seek(&input.topic, input.partition, input.offset)?;
            }
        }
    }
    log.rewind_owned(ranges)?;
    log.resume(ranges)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
