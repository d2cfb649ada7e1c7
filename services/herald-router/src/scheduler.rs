//! The scheduler: every router instance sweeps the schedule for deferred notifications that are
//! due and publishes each back to `notifications.requested`, marked with the time it was due.
//! The router then routes it like any event, except that it deduplicates it under
//! (event id, due time) and evaluates policy at the due time.
//!
//! Exactly once, with several instances and crashes: an item is claimed (lightweight
//! transaction, one for a page of a shard's rows) before it is published and deleted after
//! (one more for the page); a crash between the two leaves a
//! claim that another instance takes over once its lease runs out, and the second publication
//! is dropped by the router's deduplication.
//!
//! Nothing behind a failure waits for it: a sweep works through every shard of every minute
//! bucket from the cursor to now, a page of rows at a time, several shards and releases at
//! once. A shard whose read or release fails is recorded for retry (in the database, so any
//! instance retries it, after a restart too) and the cursor moves on past it; every sweep
//! reads the recorded shards again until one empties them.

use chrono::{DateTime, Utc};
use futures::{StreamExt, future, stream};
use rdkafka::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_contracts::headers;
use herald_kafka::RenewingProducer;
use herald_runtime::metric_names::{
    SCHEDULER_AMBIGUOUS_PUBLISHES, SCHEDULER_BUCKET_FAILURES, SCHEDULER_RELEASE_DELAY_SECONDS,
    SCHEDULER_RELEASED, SCHEDULER_RETRY_BUCKETS, SCHEDULER_SWEEP_ERRORS,
};
use herald_store::StoreError;
use herald_store::schedule::{Schedule, ScheduledItem, ShardBucket, held_by_another, minute_of};

/// The most minute buckets one sweep reads; a scheduler catching up after downtime advances
/// this far per tick, so a tick stays short and shutdown stays prompt.
const MAX_BUCKETS_PER_SWEEP: i64 = 120;

/// How long publishing one release may take, queued and in flight; a release that takes longer
/// is retried on the next tick (and replaces the producer client, see `RenewingProducer`).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Shards one sweep reads at once. Within a shard, releases go a page at a time: the page's
/// rows are claimed in one lightweight transaction, published together, and deleted in one
/// more. Lightweight transactions on one partition contend with each other (past the
/// contention timeout they fail), so a scheduler never has two on a shard at once. At most
/// `SHARDS_IN_FLIGHT * RELEASES_PER_PAGE` releases are in flight per instance.
const SHARDS_IN_FLIGHT: usize = 8;
const RELEASES_PER_PAGE: usize = 32;

/// Failed reads and releases after which a sweep starts no more work: that many at once is an
/// outage of Kafka or the database rather than bad items, and each failed publish takes up to
/// `PUBLISH_TIMEOUT`. What is left is swept on the next tick.
const FAILURES_PER_SWEEP: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

pub struct Scheduler {
    schedule: Schedule,
    producer: RenewingProducer,
    requested_topic: String,
    owner: String,
    interval: Duration,
    lease: Duration,
    /// Items this instance published but could not delete (the delete failed or timed out),
    /// by row, with the claim marker they were published under: a later sweep that finds one
    /// still claimed with that marker only deletes it; publishing it again would be a second
    /// copy.
    published: Mutex<HashMap<RowKey, Published>>,
}

/// A schedule row's primary key.
type RowKey = (i64, i32, DateTime<Utc>, String);

fn row_key(item: &ScheduledItem) -> RowKey {
    (
        item.bucket,
        item.shard,
        item.item.due_at,
        item.item.event_id.clone(),
    )
}

#[derive(Debug)]
struct Published {
    item: ScheduledItem,
    marker: String,
    at: DateTime<Utc>,
}

/// Attempts at deleting a released item, and the pause before the second (doubling after).
const REMOVE_ATTEMPTS: u32 = 4;
const REMOVE_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long a published-but-not-deleted entry is kept: a delete that failed may have been
/// applied, and then no sweep finds the row again to clear the entry.
const PUBLISHED_MEMORY: chrono::TimeDelta = chrono::TimeDelta::hours(1);

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("owner", &self.owner)
            .field("requested_topic", &self.requested_topic)
            .finish_non_exhaustive()
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    pub released: usize,
    /// Due items another scheduler holds.
    pub held_elsewhere: usize,
    /// Shards of minute buckets whose read or releases failed (recorded for retry once their
    /// minute has closed).
    pub failed: usize,
    /// Shards recorded as failed by an earlier sweep that this one emptied.
    pub recovered: usize,
}

/// What sweeping one shard of a minute bucket did.
#[derive(Debug, Default)]
struct ShardSweep {
    released: usize,
    held_elsewhere: usize,
    /// The first error, if a read or a release failed.
    error: Option<String>,
    /// Read to its end; false when the sweep stopped before every row was taken.
    complete: bool,
}

impl ShardSweep {
    /// Everything due in it was released by this sweep: a closed minute's shard stays empty.
    fn emptied(&self) -> bool {
        self.complete && self.held_elsewhere == 0 && self.error.is_none()
    }

    /// `releases` failed with `error` (the first one is kept).
    fn failed(&mut self, brake: &Brake<'_>, releases: usize, error: &SchedulerError) {
        brake.failed(releases);
        if self.error.is_none() {
            self.error = Some(error.to_string());
        }
    }

    /// Counts the outcome of one release's delete.
    fn count(&mut self, brake: &Brake<'_>, removed: Result<bool, SchedulerError>) {
        match removed {
            Ok(true) => self.released += 1,
            Ok(false) => self.held_elsewhere += 1,
            Err(e) => self.failed(brake, 1, &e),
        }
    }
}

/// Stops a sweep from starting more work: on shutdown, or once too much has failed.
#[derive(Debug)]
struct Brake<'a> {
    shutdown: &'a CancellationToken,
    failures: AtomicUsize,
}

impl Brake<'_> {
    fn engaged(&self) -> bool {
        self.shutdown.is_cancelled() || self.failures.load(Ordering::Relaxed) >= FAILURES_PER_SWEEP
    }

    fn failed(&self, releases: usize) {
        self.failures.fetch_add(releases, Ordering::Relaxed);
    }
}

impl Scheduler {
    /// `producer` is the configuration of the producer it publishes with.
    pub fn new(
        schedule: Schedule,
        mut producer: ClientConfig,
        requested_topic: String,
        owner: String,
        interval: Duration,
        lease: Duration,
    ) -> Result<Self, SchedulerError> {
        producer.set(
            "message.timeout.ms",
            PUBLISH_TIMEOUT.as_millis().to_string(),
        );
        Ok(Self {
            schedule,
            producer: RenewingProducer::new(producer)?,
            requested_topic,
            owner,
            interval,
            lease,
            published: Mutex::new(HashMap::new()),
        })
    }

    /// Sweeps every `interval` until `shutdown`. A sweep that fails as a whole (the cursor or
    /// the list of failed shards cannot be read) is logged and tried again on the next tick:
    /// nothing is released twice or lost by a failed sweep.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
            if let Err(e) = self.sweep_until(Utc::now(), &shutdown).await {
                metrics::counter!(SCHEDULER_SWEEP_ERRORS).increment(1);
                tracing::warn!(error = %e, "schedule sweep failed; retrying on the next tick");
            }
        }
    }

    /// Releases every item due at `now`, from the cursor's bucket to `now`'s and in the shards
    /// recorded as failed, and moves the cursor past the buckets it emptied or recorded.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<Sweep, SchedulerError> {
        self.sweep_until(now, &CancellationToken::new()).await
    }

    /// [`Self::sweep`], starting no more work once `shutdown` is cancelled (what is in
    /// flight finishes, so no release is cut off between its publish and its delete).
    async fn sweep_until(
        &self,
        now: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<Sweep, SchedulerError> {
        let finished = self.finish_published(now).await;
        let Some(cursor) = self.schedule.cursor().await? else {
            self.schedule.init_cursor(now).await?;
            return Ok(Sweep::default());
        };
        // Read after `now` was taken: an instance with more shards records its count before
        // it writes an item, so an item of its in a bucket this sweep closes is counted here.
        let shards = self.schedule.shards_to_sweep().await?;
        let recorded: BTreeSet<ShardBucket> =
            self.schedule.failed_buckets().await?.into_iter().collect();
        metrics::gauge!(SCHEDULER_RETRY_BUCKETS).set(recorded.len() as f64);
        let current = minute_of(now);
        let last = current.min(cursor.saturating_add(MAX_BUCKETS_PER_SWEEP));
        let forward = |unit: &ShardBucket| (cursor..=last).contains(&unit.bucket);

        // Oldest bucket first; within a bucket, shards in an order of this sweep's own, so
        // that instances sweeping at once mostly work on different shards.
        let mut seed = sweep_seed(&self.owner);
        let mut units: Vec<ShardBucket> = Vec::new();
        for bucket in cursor..=last {
            units.extend(
                shuffled((0..shards).collect(), &mut seed)
                    .into_iter()
                    .map(|shard| ShardBucket { bucket, shard }),
            );
        }
        // Then the shards recorded as failed, in a new order each sweep: if more of them fail
        // than `FAILURES_PER_SWEEP`, each still gets its turn.
        units.extend(shuffled(
            recorded
                .iter()
                .filter(|u| !(forward(u) && u.shard < shards))
                .copied()
                .collect(),
            &mut seed,
        ));

        let brake = Brake {
            shutdown,
            failures: AtomicUsize::new(0),
        };
        let swept: Vec<(ShardBucket, ShardSweep)> = stream::iter(units)
            .take_while(|_| future::ready(!brake.engaged()))
            .map(|unit| {
                let brake = &brake;
                async move { (unit, self.sweep_shard(unit, now, brake).await) }
            })
            .buffer_unordered(SHARDS_IN_FLIGHT)
            .collect()
            .await;

        let mut done = Sweep {
            released: finished,
            ..Sweep::default()
        };
        // Per forward bucket, the shards that need no more reading from the cursor's side:
        // emptied, or failed and recorded for retry.
        let mut settled: HashMap<i64, i32> = HashMap::new();
        for (unit, result) in swept {
            done.released += result.released;
            done.held_elsewhere += result.held_elsewhere;
            // The minute just ended may still get items (a router's clock, a slow write), so
            // only buckets older than that are closed.
            let closed = unit.bucket < current - 1;
            let was_recorded = recorded.contains(&unit);
            let is_settled = if result.emptied() {
                if was_recorded {
                    done.recovered += 1;
                    tracing::info!(
                        bucket = unit.bucket,
                        shard = unit.shard,
                        "a schedule shard that had failed is released"
                    );
                    if let Err(e) = self.schedule.clear_failed(unit).await {
                        // It stays recorded: the next sweep reads it, finds it empty and
                        // tries again.
                        tracing::warn!(bucket = unit.bucket, shard = unit.shard, error = %e, "cannot clear a schedule shard's failure");
                    }
                }
                true
            } else if let Some(error) = &result.error {
                done.failed += 1;
                metrics::counter!(SCHEDULER_BUCKET_FAILURES).increment(1);
                tracing::warn!(bucket = unit.bucket, shard = unit.shard, %error, "schedule shard failed; it is retried on every sweep until it succeeds");
                // Recorded before the cursor can pass it, or the cursor stops before it.
                closed
                    && match self.schedule.record_failed(unit, now, error).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(bucket = unit.bucket, shard = unit.shard, error = %e, "cannot record a failed schedule shard; the cursor waits for it");
                            false
                        }
                    }
            } else {
                // Held by another scheduler (released by it, or taken over once its lease
                // runs out), or not read to its end: the cursor waits for it.
                false
            };
            if is_settled && forward(&unit) {
                *settled.entry(unit.bucket).or_default() += 1;
            }
        }
        // The cursor passes a bucket once it is closed and every shard of it is settled.
        let mut empty_until = cursor;
        for bucket in cursor..=last {
            if bucket >= current - 1 || settled.get(&bucket) != Some(&shards) {
                break;
            }
            empty_until = bucket + 1;
        }
        if empty_until > cursor {
            self.schedule.set_cursor(empty_until).await?;
        }
        Ok(done)
    }

    /// Releases what is due in one shard of a minute bucket, a page of rows at a time. A failed
    /// read or release does not stop the others: an item that cannot be released never holds
    /// back the ones after it.
    async fn sweep_shard(
        &self,
        unit: ShardBucket,
        now: DateTime<Utc>,
        brake: &Brake<'_>,
    ) -> ShardSweep {
        let mut result = ShardSweep::default();
        let rows = match self.schedule.due_pages(unit.bucket, unit.shard, now).await {
            Ok(rows) => rows,
            Err(e) => {
                brake.failed(1);
                result.error = Some(e.to_string());
                return result;
            }
        };
        let mut pages = std::pin::pin!(rows.chunks(RELEASES_PER_PAGE));
        result.complete = loop {
            let Some(page) = pages.next().await else {
                break true;
            };
            if brake.engaged() {
                break false;
            }
            let mut items = Vec::with_capacity(page.len());
            for row in page {
                match row {
                    Ok(item) => items.push(item),
                    Err(e) => result.failed(brake, 1, &e.into()),
                }
            }
            self.release_page(&items, now, brake, &mut result).await;
        };
        result
    }

    /// Claims, publishes and deletes a page of rows of one shard, counting what it did in
    /// `result`. Every release started is awaited to its end, so none is cut off between its
    /// publish and its delete.
    async fn release_page(
        &self,
        items: &[ScheduledItem],
        now: DateTime<Utc>,
        brake: &Brake<'_>,
        result: &mut ShardSweep,
    ) {
        // The clock now, not the sweep's start: a long sweep would otherwise write claims that
        // look older than the lease to the other schedulers, which would take them over while
        // this one publishes (a double release, seen with 50,000 items due at once).
        let claimed_at = Utc::now().max(now);
        let mut to_claim = Vec::with_capacity(items.len());
        for item in items {
            if let Some(marker) = self.published_under(item) {
                // Published by an earlier sweep of ours whose delete failed: only the delete
                // is left.
                let removed = self.remove(item, &marker, now, true).await;
                result.count(brake, removed);
            } else if held_by_another(item, &self.owner, claimed_at, self.lease) {
                result.held_elsewhere += 1;
            } else {
                to_claim.push(item);
            }
        }
        let claimed = self.claim(&to_claim, claimed_at, brake, result).await;

        let published = future::join_all(claimed.iter().map(|(item, marker)| async move {
            self.publish(item).await.map(|()| (*item, marker.as_str()))
        }))
        .await;
        let mut by_marker: HashMap<&str, Vec<&ScheduledItem>> = HashMap::new();
        for outcome in published {
            match outcome {
                Ok((item, marker)) => by_marker.entry(marker).or_default().push(item),
                Err(e) => result.failed(brake, 1, &e),
            }
        }
        for (marker, items) in by_marker {
            match self.schedule.remove_all(&items, marker).await {
                Ok(true) => {
                    for item in items {
                        self.released(item, now);
                        result.released += 1;
                    }
                }
                // One was taken over meanwhile: one at a time, to learn which.
                Ok(false) => {
                    for item in items {
                        let removed = self.remove(item, marker, now, false).await;
                        result.count(brake, removed);
                    }
                }
                // Applied or not, the database is failing: the next sweep deletes them first
                // (deleting them one at a time now would wait out a timeout for each).
                Err(e) => {
                    for item in &items {
                        self.remember_published(item, marker);
                    }
                    result.failed(brake, items.len(), &e.into());
                }
            }
        }
    }

    /// Claims `items` (rows of one shard, none held by another scheduler), all in one
    /// lightweight transaction, or one at a time if that fails because one was taken or gone
    /// meanwhile. Returns the items claimed, with their markers.
    async fn claim<'a>(
        &self,
        items: &[&'a ScheduledItem],
        claimed_at: DateTime<Utc>,
        brake: &Brake<'_>,
        result: &mut ShardSweep,
    ) -> Vec<(&'a ScheduledItem, String)> {
        match self
            .schedule
            .claim_all(items, &self.owner, claimed_at, self.lease)
            .await
        {
            Ok(Some(marker)) => {
                return items.iter().map(|item| (*item, marker.clone())).collect();
            }
            Ok(None) => {}
            Err(e) => {
                // It may have been applied: our own claims are ours to retake next time.
                result.failed(brake, items.len(), &e.into());
                return Vec::new();
            }
        }
        let mut claimed = Vec::with_capacity(items.len());
        for item in items {
            match self
                .schedule
                .claim(item, &self.owner, claimed_at, self.lease)
                .await
            {
                Ok(Some(marker)) => claimed.push((*item, marker)),
                Ok(None) => result.held_elsewhere += 1,
                Err(e) => result.failed(brake, 1, &e.into()),
            }
        }
        claimed
    }

    /// Publishes an item to the requested topic, marked with the time it was due.
    async fn publish(&self, item: &ScheduledItem) -> Result<(), SchedulerError> {
        let due = &item.item;
        let due_millis = due.due_at.timestamp_millis().to_string();
        let record_headers = due
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([(headers::SCHEDULED_FOR, due_millis.as_str())])
            .fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(value),
                })
            });
        // The requested topic's key, so the release lands on the partition of the user's
        // other events.
        let key = format!("{}:{}", due.tenant, due.user_id);
        let record = FutureRecord::to(&self.requested_topic)
            .key(&key)
            .payload(&due.payload)
            .headers(record_headers);
        let client = self.producer.lease();
        if let Err((e, _)) = client.producer.send(record, PUBLISH_TIMEOUT).await {
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) {
                // It may have been written: the retry may publish a second copy, which the
                // router drops (it deduplicates releases by event id and due time).
                metrics::counter!(SCHEDULER_AMBIGUOUS_PUBLISHES).increment(1);
                tracing::warn!(event_id = %due.event_id, "a release's publish timed out and may have been written; it is published again");
            }
            self.producer.failed(&client, &e)?;
            return Err(e.into());
        }
        Ok(())
    }

    /// Deletes a published item under the claim it was published with, trying again at once
    /// on a failure: until the delete lands, the item's claim ages, and another scheduler
    /// takes it over (and publishes it again) once the claim is older than the lease. A delete
    /// that still fails is remembered, and tried again at the start of every sweep.
    async fn remove(
        &self,
        item: &ScheduledItem,
        marker: &str,
        now: DateTime<Utc>,
        maybe_applied: bool,
    ) -> Result<bool, SchedulerError> {
        let due = &item.item;
        // After an attempt that failed (here, or a batch that included it), the row may be
        // gone because that attempt landed.
        let mut failed_before = maybe_applied;
        let mut pause = REMOVE_RETRY_PAUSE;
        for attempt in 1.. {
            match self.schedule.remove(item, marker).await {
                Ok(true) => break,
                // After a failed attempt, the row may be gone because that attempt landed.
                Ok(false) if failed_before => break,
                Ok(false) => {
                    // Taken over meanwhile: the other scheduler publishes it again, and the
                    // router drops that second copy.
                    tracing::warn!(event_id = %due.event_id, "schedule claim was taken over during release");
                    break;
                }
                Err(e) if attempt >= REMOVE_ATTEMPTS => {
                    self.remember_published(item, marker);
                    return Err(e.into());
                }
                Err(e) => {
                    tracing::debug!(event_id = %due.event_id, error = %e, "deleting a released item failed; trying again");
                    failed_before = true;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        self.forget_published(item);
        self.released(item, now);
        Ok(true)
    }

    /// Counts a release whose delete landed.
    fn released(&self, item: &ScheduledItem, now: DateTime<Utc>) {
        let due = &item.item;
        metrics::counter!(SCHEDULER_RELEASED).increment(1);
        metrics::histogram!(SCHEDULER_RELEASE_DELAY_SECONDS)
            .record((now - due.due_at).as_seconds_f64().max(0.0));
        tracing::debug!(event_id = %due.event_id, due_at = %due.due_at, "released a deferred notification");
    }

    /// Deletes the items this instance published but could not delete, before a sweep reads
    /// the schedule again, and counts them. Stops at the first failure (the database is still
    /// failing).
    async fn finish_published(&self, now: DateTime<Utc>) -> usize {
        let pending: Vec<(ScheduledItem, String)> = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|p| (p.item.clone(), p.marker.clone()))
            .collect();
        let mut finished = 0;
        for (item, marker) in pending {
            if self.remove(&item, &marker, now, true).await.is_err() {
                break;
            }
            finished += 1;
        }
        finished
    }

    /// The claim marker this instance published the item under, if it did and the row still
    /// carries that claim.
    fn published_under(&self, item: &ScheduledItem) -> Option<String> {
        let published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = published.get(&row_key(item))?;
        (item.claimed_by.as_deref() == Some(entry.marker.as_str())).then(|| entry.marker.clone())
    }

    fn remember_published(&self, item: &ScheduledItem, marker: &str) {
        let now = Utc::now();
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        published.retain(|_, p| now - p.at < PUBLISHED_MEMORY);
        published.insert(
            row_key(item),
            Published {
                item: item.clone(),
                marker: marker.to_owned(),
                at: now,
            },
        );
    }

    fn forget_published(&self, item: &ScheduledItem) {
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !published.is_empty() {
            published.remove(&row_key(item));
        }
    }
}

/// A seed for this sweep's shard order: differs between instances and between sweeps.
fn sweep_seed(owner: &str) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    owner.bytes().fold(nanos as u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `items` in a pseudo-random order drawn from `seed` (Fisher–Yates with splitmix64): only
/// to spread instances over shards, so nothing depends on its quality.
fn shuffled<T>(mut items: Vec<T>, seed: &mut u64) -> Vec<T> {
    for i in (1..items.len()).rev() {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // `i + 1` fits a u64 and the remainder is at most `i`, so both casts are exact.
        let j = (z % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffling_keeps_every_item_and_varies_with_the_seed() {
        let mut seed = 7;
        let first = shuffled((0..64).collect::<Vec<i32>>(), &mut seed);
        let second = shuffled((0..64).collect::<Vec<i32>>(), &mut seed);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..64).collect::<Vec<_>>());
        assert_ne!(first, second);
        assert!(shuffled(Vec::<i32>::new(), &mut seed).is_empty());
    }

    #[test]
    fn a_shard_is_emptied_only_when_read_to_its_end_without_a_failure_or_a_held_item() {
        let emptied = ShardSweep {
            released: 3,
            complete: true,
            ..ShardSweep::default()
        };
        assert!(emptied.emptied());
        let cut_off = ShardSweep {
            complete: false,
            ..ShardSweep::default()
        };
        assert!(!cut_off.emptied());
        let held = ShardSweep {
            held_elsewhere: 1,
            complete: true,
            ..ShardSweep::default()
        };
        assert!(!held.emptied());
        let failed = ShardSweep {
            error: Some("refused".into()),
            complete: true,
            ..ShardSweep::default()
        };
        assert!(!failed.emptied());
    }
}
