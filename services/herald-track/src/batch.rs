//! The tracker's loop: take a batch of status records, decode them, write their rows (again and
//! again while the database is away: nothing is committed past an unwritten row, so consumption
//! pauses), then commit the batch's offsets. One batch is written while the next is read and
//! decoded (so the database and the broker both keep busy); batches are committed in order,
//! each only after its rows are written.

use rdkafka::Message;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::Offset;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use herald_contracts::headers::{FALLBACK_CHAIN, REPLAY_HEADERS, SCHEDULED_FOR, STATUS_ID};
use herald_contracts::metric_names::{
    TRACK_CQL_REQUESTS, TRACK_CQL_ROWS, TRACK_STATUSES_WRITTEN, TRACK_UNDECODABLE,
    TRACK_WRITE_FAILURES,
};
use herald_contracts::{Codec, Decoded};
use herald_kafka::HeraldContext;
use herald_kafka::group::{self, MakeConsumer};
use herald_kafka::headers::last_str;
use herald_kafka::transaction::recv;
use herald_store::timeline::{TimelineEntry, TimelineWriter};

use crate::delivery_metrics::DeliveryMetrics;
use crate::{LINGER, MAX_BATCH, TrackError};

/// Waits between attempts to write a batch (or decode a record) while a dependency is away.
const RETRY_BACKOFF: [Duration; 4] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// A status record, owned, as read.
struct Record {
    topic: String,
    partition: i32,
    offset: i64,
    payload: Option<Vec<u8>>,
    links: HashMap<String, String>,
    /// `herald-status-id`: the status's own identity, when a provider may report it twice.
    status_id: Option<String>,
}

impl Record {
    fn of(message: &BorrowedMessage<'_>) -> Self {
        let links = message
            .headers()
            .map(|headers| {
                REPLAY_HEADERS
                    .iter()
                    .chain([&SCHEDULED_FOR, &FALLBACK_CHAIN])
                    .filter_map(|name| {
                        last_str(headers, name).map(|v| ((*name).to_owned(), v.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status_id = message
            .headers()
            .and_then(|headers| last_str(headers, STATUS_ID))
            .map(str::to_owned);
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            payload: message.payload().map(<[u8]>::to_vec),
            links,
            status_id,
        }
    }

    /// What keys the status's timeline row: its identity where it has one (a repeat of it is
    /// the same row), else where it was read.
    fn source(&self) -> String {
        match &self.status_id {
            Some(id) => id.clone(),
            None => format!("{}/{}/{}", self.topic, self.partition, self.offset),
        }
    }
}

/// A batch whose rows are being written.
struct Pending {
    next_offsets: TopicPartitionList,
    entries: Arc<Vec<TimelineEntry>>,
    /// True once written; false when stopped while the database was away.
    written: JoinHandle<bool>,
}

pub(crate) struct Tracker<'a> {
    pub(crate) codec: Codec,
    pub(crate) writer: Arc<TimelineWriter>,
    pub(crate) consumer: StreamConsumer<HeraldContext>,
    pub(crate) make_consumer: &'a MakeConsumer,
    /// `kafka.consumer_rebuild_after`: how long the consumer may sit without partitions and
    /// coordinator before it is replaced.
    pub(crate) rebuild_after: Duration,
    pub(crate) delivery: DeliveryMetrics,
}

impl Tracker<'_> {
    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Result<(), TrackError> {
        let mut pending: Option<Pending> = None;
        loop {
            // With a batch being written, a quiet topic ends the wait soon, so that its commit
            // does not wait for the next record.
            let first_wait = if pending.is_some() {
                LINGER
            } else {
                group::GROUP_CHECK_INTERVAL
            };
            let records = self.take_batch(&shutdown, first_wait).await?;
            let entries = if records.is_empty() {
                None
            } else {
                match self.decode_all(&records, &shutdown).await? {
                    Some(entries) => Some(entries),
                    // Stopped while the registry was away: nothing of this batch is written.
                    None => {
                        self.finish(pending.take(), &shutdown).await?;
                        return Ok(());
                    }
                }
            };
            // The previous batch is committed before this one is written: commits stay in
            // order, and at most one batch is written at a time.
            if !self.finish(pending.take(), &shutdown).await? {
                return Ok(());
            }
            match entries {
                Some(entries) => {
                    pending = Some(self.start_write(entries, &records, &shutdown)?);
                }
                None if shutdown.is_cancelled() => return Ok(()),
                None => {}
            }
        }
    }

    /// Starts writing a batch's rows (retrying while the database is away) in a task of its
    /// own, so that the next batch is read and decoded meanwhile.
    fn start_write(
        &self,
        entries: Vec<TimelineEntry>,
        records: &[Record],
        shutdown: &CancellationToken,
    ) -> Result<Pending, TrackError> {
        let entries = Arc::new(entries);
        let written = tokio::spawn(write(
            Arc::clone(&self.writer),
            Arc::clone(&entries),
            shutdown.clone(),
        ));
        Ok(Pending {
            next_offsets: next_offsets(records)?,
            entries,
            written,
        })
    }

    /// Waits for `pending`'s rows, counts them and commits its offsets. False when stopped
    /// while the database was away: nothing of that batch is committed, and the tracker stops.
    async fn finish(
        &mut self,
        pending: Option<Pending>,
        shutdown: &CancellationToken,
    ) -> Result<bool, TrackError> {
        let Some(pending) = pending else {
            return Ok(true);
        };
        // A write task that panicked is an error of the tracker: nothing of it is committed.
        if !pending.written.await? {
            return Ok(false);
        }
        let entries = &pending.entries;
        metrics::counter!(TRACK_STATUSES_WRITTEN).increment(entries.len() as u64);
        // Counted once written, before the commit: a batch read again after a crash here is
        // counted again (see `delivery_metrics`).
        for entry in entries.iter() {
            self.delivery.record(&entry.status);
        }
        let mode = if shutdown.is_cancelled() {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        if let Err(e) = self.consumer.commit(&pending.next_offsets, mode) {
            // The rows are written; a record read again rewrites the same rows.
            tracing::warn!(error = %e, "cannot commit the tracker's offsets");
        }
        Ok(true)
    }

    /// Up to `MAX_BATCH` records: waits up to `first_wait` for the first (or for shutdown),
    /// then takes what comes within `LINGER`.
    async fn take_batch(
        &mut self,
        shutdown: &CancellationToken,
        first_wait: Duration,
    ) -> Result<Vec<Record>, TrackError> {
        let mut records = Vec::new();
        while records.len() < MAX_BATCH {
            let wait = if records.is_empty() {
                first_wait
            } else {
                LINGER
            };
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                // Waits out brokers down; returns only what a wait cannot cure.
                received = tokio::time::timeout(wait, recv(&self.consumer)) => received,
            };
            match received {
                Ok(Ok(message)) => records.push(Record::of(&message)),
                Ok(Err(e)) => {
                    // A fatal error: the records taken so far are written and committed
                    // first, then the client is replaced.
                    if group::lost(Err::<(), _>(e))? && records.is_empty() {
                        group::rebuild(&mut self.consumer, self.make_consumer)?;
                    }
                    break;
                }
                Err(_elapsed) => {
                    if records.is_empty() && group::is_stuck(&self.consumer, self.rebuild_after) {
                        group::rebuild(&mut self.consumer, self.make_consumer)?;
                    }
                    break;
                }
            }
        }
        Ok(records)
    }

    /// The batch's statuses; records that are not statuses are counted and skipped. `None`
    /// when stopped while the schema registry was away.
    async fn decode_all(
        &self,
        records: &[Record],
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<TimelineEntry>>, TrackError> {
        let mut entries = Vec::with_capacity(records.len());
        for record in records {
            let Some(payload) = &record.payload else {
                skip(record, "undecodable", "no value");
                continue;
            };
            let mut attempt = 0;
            let decoded = loop {
                match self.codec.decode(payload).await {
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "cannot decode a status record yet");
                        if !pause(&mut attempt, shutdown).await {
                            return Ok(None);
                        }
                    }
                    other => break other,
                }
            };
            match decoded {
                Ok(Decoded::Status(status)) => entries.push(TimelineEntry {
                    source: record.source(),
                    status,
                    links: record.links.clone(),
                }),
                Ok(other) => skip(
                    record,
                    "not_a_status",
                    other.schema_name().unwrap_or("an unnamed schema"),
                ),
                Err(e) => skip(record, "undecodable", &e.to_string()),
            }
        }
        Ok(Some(entries))
    }
}

/// Writes the entries, retrying until they are all written (true) or shutdown (false).
async fn write(
    writer: Arc<TimelineWriter>,
    entries: Arc<Vec<TimelineEntry>>,
    shutdown: CancellationToken,
) -> bool {
    let mut attempt = 0;
    loop {
        match writer.write(&entries).await {
            Ok(cost) => {
                metrics::counter!(TRACK_CQL_ROWS).increment(cost.rows as u64);
                metrics::counter!(TRACK_CQL_REQUESTS).increment(cost.requests as u64);
                return true;
            }
            Err(e) => {
                metrics::counter!(TRACK_WRITE_FAILURES).increment(1);
                tracing::warn!(error = %e, records = entries.len(), "cannot write the timeline; retrying");
                if !pause(&mut attempt, &shutdown).await {
                    return false;
                }
            }
        }
    }
}

fn skip(record: &Record, reason: &'static str, detail: &str) {
    metrics::counter!(TRACK_UNDECODABLE, "reason" => reason).increment(1);
    tracing::warn!(
        topic = %record.topic,
        partition = record.partition,
        offset = record.offset,
        reason,
        detail,
        "skipping a record that is not a readable status"
    );
}

/// Sleeps the next backoff step; false when shutdown came first.
async fn pause(attempt: &mut usize, shutdown: &CancellationToken) -> bool {
    let delay = RETRY_BACKOFF[(*attempt).min(RETRY_BACKOFF.len() - 1)];
    *attempt += 1;
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// The offset after the last record of each partition in the batch.
fn next_offsets(records: &[Record]) -> Result<TopicPartitionList, TrackError> {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for record in records {
        let slot = next
            .entry((record.topic.as_str(), record.partition))
            .or_default();
        *slot = (*slot).max(record.offset + 1);
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    Ok(list)
}
