//! The copy itself. The replay's group (`herald-replay-<id>`) is assigned the plan's partitions
//! at its committed offsets (the plan's start the first time); each batch of copies is produced
//! in one Kafka transaction that also commits the group's offsets past the batch, under the
//! transactional id of the group, so that:
//! - a crash or Ctrl-C loses at most the open transaction, which is aborted, and `--resume`
//!   starts after the last committed batch: nothing copied twice, nothing skipped;
//! - a second process resuming the same replay fences the first (`init_transactions`).
//!
//! A partition is finished at the plan's end offset, or at its end (the plan's end was at most
//! the last stable offset when the plan was made, so reaching the end means every committed
//! record below it was read).

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use herald_contracts::{Codec, Decoded, headers};
use herald_kafka::transaction::{
    CONSUMER_ERROR_PAUSE, OffsetRanges, OutRecord, TransactionalId, init_producer_patiently,
    produce_and_commit, recover, recovers_by_itself, rewind_owned,
};
use herald_kafka::{HeraldContext, KafkaConfig};

use crate::ReplayError;
use crate::filter::{BodyFacts, Facts, split_key};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::report::{EXAMPLES, Report, left};
use crate::rewrite::{Mode, RewriteError, Source, copy_headers, resend_value};

/// Records per transaction, at most.
const BATCH: usize = 2000;
/// How long a batch waits to fill up.
const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// Failed batches in a row before the replay gives up (it can be resumed).
const MAX_FAILURES: u32 = 10;
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(30);

/// One run of a replay's plan.
#[derive(Debug)]
pub struct Copy<'a> {
    pub kafka: &'a KafkaConfig,
    pub codec: &'a Codec,
    pub plan: &'a Plan,
    /// Read and filter, write nothing (not even offsets).
    pub dry_run: bool,
    /// Records copied per second, at most.
    pub rate: Option<NonZeroU32>,
    pub progress: Progress,
    /// Cancelled on Ctrl-C / SIGTERM: the open batch is committed, then the run stops.
    pub shutdown: CancellationToken,
}

/// Runs `job` to the end of its plan (or until shutdown); what it found and did.
pub async fn copy(mut job: Copy<'_>) -> Result<Report, ReplayError> {
    let started = Instant::now();
    let plan = job.plan;
    let group = plan.group(job.kafka);
    let consumer: StreamConsumer<HeraldContext> = job
        .kafka
        .consumer_config(&group)
        .set("enable.partition.eof", "true")
        .create_with_context(HeraldContext::default())?;
    let txn = TransactionalId {
        id: group.clone(),
        timeout: TRANSACTION_TIMEOUT,
    };
    // The producer first: initialising it fences a predecessor and settles its open
    // transaction, so the committed offsets read next are final.
    let mut producer = if job.dry_run {
        None
    } else {
        Some(init_producer_patiently(job.kafka, &txn).await?)
    };
    let positions = if job.dry_run {
        plan.range
            .partitions
            .iter()
            .map(|p| (p.partition, p.start))
            .collect()
    } else {
        committed_positions(&consumer, plan)?
    };

    let mut open: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for range in &plan.range.partitions {
        let position = positions
            .get(&range.partition)
            .copied()
            .unwrap_or(range.start);
        if position < range.end {
            open.insert(range.partition, range.end);
            assignment.add_partition_offset(
                &plan.source,
                range.partition,
                Offset::Offset(position),
            )?;
        }
    }
    consumer.assign(&assignment)?;

    let mut report = Report {
        replay_id: plan.id.clone(),
        dry_run: job.dry_run,
        source: plan.source.clone(),
        mode: plan.mode.as_str().to_owned(),
        ..Report::default()
    };
    let batch_cap = job
        .rate
        .map_or(BATCH, |r| (r.get() as usize / 10).clamp(1, BATCH));
    let mut pace = job.rate.map(Pace::new);
    let mut failures = 0;
    let evaluator = Evaluator {
        codec: job.codec,
        plan,
        dlq: job.kafka.topics().dlq(),
        decode_always: job.dry_run || plan.mode == Mode::Resend || plan.filter.needs_body(),
        dry_run: job.dry_run,
        superseded: match plan.max_redrives {
            Some(_) => crate::dlq::redriven(job.kafka).await?,
            None => HashSet::new(),
        },
    };

    while !open.is_empty() {
        if job.shutdown.is_cancelled() {
            report.interrupted = true;
            break;
        }
        let (batch, finished) = collect(&consumer, &open, batch_cap, &job.shutdown).await?;
        let mut ranges = OffsetRanges::default();
        let mut tally = Report::default();
        let mut out = Vec::new();
        let mut transient = None;
        for message in &batch {
            ranges.push(&plan.source, message.partition(), message.offset());
            match evaluator.evaluate(message, &mut tally).await {
                Ok(Some(record)) => out.push(record),
                Ok(None) => {}
                Err(e) => {
                    transient = Some(e);
                    break;
                }
            }
        }
        let result = match (transient, &producer) {
            (Some(e), _) => Err(BatchError::Registry(e)),
            (None, _) if job.dry_run || batch.is_empty() => Ok(()),
            (None, Some(producer)) => {
                if let Some(pace) = &mut pace {
                    pace.wait_for(out.len()).await;
                }
                produce_and_commit(producer, &consumer, &out, ranges.next_offsets()?)
                    .await
                    .map_err(BatchError::Kafka)
            }
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => {
                failures = 0;
                if !job.dry_run {
                    tally.written = out.len() as u64;
                }
                report.absorb(tally);
                for partition in &finished {
                    open.remove(partition);
                }
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(error = %error, failures, "replay batch failed; retrying it");
                if failures >= MAX_FAILURES {
                    return Err(ReplayError::GaveUp {
                        attempts: failures,
                        last: error.to_string(),
                    });
                }
                if let Some(current) = producer.take() {
                    let kafka_error = match &error {
                        BatchError::Kafka(e) => Some(e),
                        BatchError::Registry(_) => None,
                    };
                    producer = Some(recover(job.kafka, &txn, current, kafka_error).await?);
                }
                rewind_owned(&consumer, &ranges)?;
                // A partition finished by its end is finished still, unless it had records in
                // the batch: those are read again, and its end with them.
                let rewound: BTreeSet<i32> = ranges.starts().map(|(_, p, _)| p).collect();
                for partition in finished.iter().filter(|p| !rewound.contains(p)) {
                    open.remove(partition);
                }
                tokio::time::sleep(CONSUMER_ERROR_PAUSE * failures).await;
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        job.progress.update(&report);
    }
    job.progress.finish();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("kafka: {0}")]
    Kafka(KafkaError),
    #[error("{0}")]
    Registry(RewriteError),
}

/// The group's committed offsets for the plan's partitions (absent where it has none yet).
fn committed_positions(
    consumer: &StreamConsumer<HeraldContext>,
    plan: &Plan,
) -> Result<BTreeMap<i32, i64>, ReplayError> {
    let mut tpl = TopicPartitionList::new();
    for range in &plan.range.partitions {
        tpl.add_partition(&plan.source, range.partition);
    }
    let committed = consumer.committed_offsets(tpl, OFFSETS_TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// Up to `cap` records below their partition's end, waiting at most [`BATCH_WINDOW`] once the
/// first is in; and the partitions found finished on the way.
pub(crate) async fn collect(
    consumer: &StreamConsumer<HeraldContext>,
    open: &BTreeMap<i32, i64>,
    cap: usize,
    shutdown: &CancellationToken,
) -> Result<(Vec<OwnedMessage>, BTreeSet<i32>), ReplayError> {
    let mut batch = Vec::new();
    let mut finished = BTreeSet::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    while batch.len() < cap && finished.len() < open.len() {
        let next = tokio::select! {
            _ = shutdown.cancelled(), if deadline.is_none() => break,
            next = async {
                match deadline {
                    Some(at) => tokio::time::timeout_at(at, consumer.recv()).await.ok(),
                    None => Some(consumer.recv().await),
                }
            } => next,
        };
        let Some(next) = next else { break };
        match next {
            Ok(message) => {
                let partition = message.partition();
                let Some(end) = open.get(&partition) else {
                    continue;
                };
                if finished.contains(&partition) {
                    continue;
                }
                if message.offset() >= *end {
                    finished.insert(partition);
                    continue;
                }
                if message.offset() + 1 >= *end {
                    finished.insert(partition);
                }
                batch.push(message.detach());
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + BATCH_WINDOW);
            }
            Err(KafkaError::PartitionEOF(partition)) => {
                if open.contains_key(&partition) {
                    finished.insert(partition);
                }
            }
            Err(e) if recovers_by_itself(&e) => {
                tracing::warn!(error = %e, "consumer error; waiting for the client to recover");
                tokio::time::sleep(CONSUMER_ERROR_PAUSE).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((batch, finished))
}

/// Decides, record by record, what the plan copies and how.
struct Evaluator<'a> {
    codec: &'a Codec,
    plan: &'a Plan,
    dlq: String,
    decode_always: bool,
    dry_run: bool,
    /// A redrive: DLQ records already redriven once (a later DLQ record names them as its
    /// replay source), which are not redriven again.
    superseded: HashSet<(i32, i64)>,
}

impl Evaluator<'_> {
    /// The copy of `message`, if the plan copies it; counts it in `tally` either way. An error
    /// only when waiting can cure it (the registry is down).
    async fn evaluate(
        &self,
        message: &OwnedMessage,
        tally: &mut Report,
    ) -> Result<Option<OutRecord>, RewriteError> {
        tally.scanned += 1;
        let plan = self.plan;
        if !plan.range.admits(message.timestamp().to_millis()) {
            return Ok(None);
        }
        let record_headers: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let header = |name: &str| {
            record_headers
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let (tenant, user) = split_key(message.key());
        let body = match (self.decode_always, message.payload()) {
            (true, Some(bytes)) => match self.codec.decode(bytes).await {
                Ok(decoded) => Some(decoded),
                Err(e) if e.is_transient() => return Err(RewriteError::Unavailable(e)),
                Err(_) => None,
            },
            _ => None,
        };
        let facts = Facts {
            tenant,
            user,
            stage: header(headers::ERROR_STAGE),
            class: header(headers::ERROR_CLASS),
            body: body.as_ref(),
        };
        if !plan.filter.matches(&facts) {
            return Ok(None);
        }
        count_match(tally, message, tenant, body.as_ref());

        let destination = match (&plan.into, plan.source == self.dlq) {
            (Some(into), _) => into.clone(),
            (None, true) => match header(headers::ORIGINAL_TOPIC) {
                Some(topic) => topic.to_owned(),
                None => return Ok(leave(tally, left::NO_ORIGINAL_TOPIC)),
            },
            (None, false) => plan.source.clone(),
        };
        let mut extra = Vec::new();
        if let Some(max) = plan.max_redrives {
            if self
                .superseded
                .contains(&(message.partition(), message.offset()))
            {
                return Ok(leave(tally, left::REDRIVEN_BEFORE));
            }
            let redriven: u32 = header(headers::REDRIVE_COUNT)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            if redriven >= max {
                return Ok(leave(tally, left::MAX_REDRIVES));
            }
            extra.push((headers::REDRIVE_COUNT, (redriven + 1).to_string()));
        }
        let payload = match (plan.mode, &body) {
            (Mode::Recover, _) => message.payload().unwrap_or_default().to_vec(),
            (Mode::Resend, Some(Decoded::Request(_) | Decoded::Dispatch(_))) if self.dry_run => {
                Vec::new()
            }
            (Mode::Resend, Some(decoded)) => {
                match resend_value(self.codec, decoded, &plan.id).await {
                    Ok(payload) => payload,
                    Err(RewriteError::NoId(_)) => return Ok(leave(tally, left::NO_ID)),
                    Err(e) => return Err(e),
                }
            }
            (Mode::Resend, None) => return Ok(leave(tally, left::NO_ID)),
        };
        *tally.by_destination.entry(destination.clone()).or_default() += 1;
        if self.dry_run {
            tally.written += 1;
            return Ok(None);
        }
        let source = Source {
            topic: &plan.source,
            partition: message.partition(),
            offset: message.offset(),
        };
        Ok(Some(OutRecord {
            topic: destination,
            key: message.key().map(<[u8]>::to_vec),
            payload,
            headers: copy_headers(&record_headers, &plan.id, plan.mode, source, &extra),
        }))
    }
}

fn leave(tally: &mut Report, reason: &str) -> Option<OutRecord> {
    *tally.left.entry(reason.to_owned()).or_default() += 1;
    None
}

fn count_match(
    tally: &mut Report,
    message: &OwnedMessage,
    tenant: Option<&str>,
    body: Option<&Decoded>,
) {
    tally.matched += 1;
    *tally.by_partition.entry(message.partition()).or_default() += 1;
    *tally
        .by_tenant
        .entry(tenant.unwrap_or("(no key)").to_owned())
        .or_default() += 1;
    let facts = body.map(BodyFacts::of).unwrap_or_default();
    if let Some(category) = &facts.category {
        *tally.by_category.entry(category.clone()).or_default() += 1;
    }
    for channel in &facts.channels {
        *tally
            .by_channel
            .entry(channel.as_str().to_owned())
            .or_default() += 1;
    }
    if tally.examples.len() < EXAMPLES {
        tally.examples.push(serde_json::json!({
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp": message.timestamp().to_millis(),
            "key": message.key().map(String::from_utf8_lossy),
            "event_id": facts.event_id,
            "category": facts.category,
        }));
    }
}

/// Keeps copies under `--rate` records per second, over the whole run.
#[derive(Debug)]
struct Pace {
    per_second: f64,
    started: tokio::time::Instant,
    sent: u64,
}

impl Pace {
    fn new(rate: NonZeroU32) -> Self {
        Self {
            per_second: f64::from(rate.get()),
            started: tokio::time::Instant::now(),
            sent: 0,
        }
    }

    /// Waits until `n` more copies keep within the rate.
    async fn wait_for(&mut self, n: usize) {
        self.sent += n as u64;
        let due = self.started + Duration::from_secs_f64(self.sent as f64 / self.per_second);
        tokio::time::sleep_until(due).await;
    }
}
