//! The schedule of deferred notifications (quiet hours, send-at): rows bucketed by minute and
//! spread over `router.schedule_shards` shards, so a scheduler reads "what is due now" one
//! (minute, shard) partition at a time, a page at a time.
//!
//! Releasing is claim → publish → delete. The claim is a lightweight transaction (a conditional
//! batch for a page of one partition's rows: transactions on one partition contend), so of
//! several schedulers sweeping the same bucket one wins each item; a claim older than its lease may be
//! taken over, so an item claimed by a scheduler that crashed is released by another. A crash
//! between publish and delete publishes the item again: the router deduplicates releases by
//! (event id, due time), which makes the release exactly-once end to end.
//!
//! Changing the shard count never hides an item: every router records the count it writes with
//! (`schedule_shards`) before it defers anything, and a sweep reads every shard below the largest
//! count ever recorded. An item's shard is below the count it was written with, so it is read
//! whatever the count is now. (The alternative, the count in each row's key, would need a new
//! schedule table; reading a few empty partitions after lowering the count costs less.)
//!
//! A (minute, shard) partition a sweep could not empty after its minute closed is recorded in
//! `schedule_retry`, and every sweep, of any instance, reads it again until one empties it; the
//! sweep cursor moves on past it meanwhile.

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

use crate::{StoreConfig, StoreError};

/// Shards per minute bucket unless `router.schedule_shards` says otherwise.
pub const DEFAULT_SHARDS: u16 = 64;

/// The most shards per minute bucket: every sweep reads each shard of every open minute.
pub const MAX_SHARDS: u16 = 1024;

/// Rows per page of a due read. A page is held in memory with its payloads (requested events,
/// a few KiB each, at most 1 MiB), so this bounds what one read buffers.
const DUE_PAGE_SIZE: i32 = 500;

/// The name of the schedule's rows in `schedule_cursor`, `schedule_shards` and
/// `schedule_retry` (migration 0005 writes it too, recording the count of 16 shards that
/// routers used before the count could be set).
const CURSOR: &str = "schedule";

/// One shard of a minute bucket: one partition of the schedule, what a sweep reads (and
/// retries) as a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardBucket {
    /// Epoch minutes.
    pub bucket: i64,
    pub shard: i32,
}

/// A notification to release at `due_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    pub due_at: DateTime<Utc>,
    pub event_id: String,
    pub tenant: String,
    pub user_id: String,
    /// The requested event exactly as consumed (Confluent-framed Avro).
    pub payload: Vec<u8>,
    /// Headers to publish with it (trace context).
    pub headers: HashMap<String, String>,
}

/// A row of the schedule: where it lives, who holds it, and what it releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledItem {
    pub bucket: i64,
    pub shard: i32,
    pub claimed_by: Option<String>,
    pub item: Deferred,
}

/// Epoch minutes of `at`: the bucket an instant falls in.
pub fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// The shard of an event id among `shards` (0 counts as 1): a stable FNV-1a hash, the same in
/// every process and release.
pub fn shard_of(event_id: &str, shards: u16) -> i32 {
    let hash = event_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // Below `shards`, a u16, so it fits an i32.
    i32::from(u16::try_from(hash % u64::from(shards.max(1))).unwrap_or(0))
}

/// A claim marker: the claimant and when it claimed, `<owner>@<epoch millis>`.
fn claim_marker(owner: &str, at: DateTime<Utc>) -> String {
    format!("{owner}@{}", at.timestamp_millis())
}

/// When a claim marker was written, if it is one.
fn claimed_at(marker: &str) -> Option<DateTime<Utc>> {
    let (_, millis) = marker.rsplit_once('@')?;
    DateTime::from_timestamp_millis(millis.parse().ok()?)
}

#[derive(Debug, Clone)]
pub struct Schedule {
    session: Arc<Session>,
    /// The shard count this instance writes items with.
    shards: u16,
    /// Set once this instance's shard count is recorded in `schedule_shards`.
    registered: Arc<OnceCell<()>>,
    insert: PreparedStatement,
    due: PreparedStatement,
    claim_free: PreparedStatement,
    claim_stale: PreparedStatement,
    delete: PreparedStatement,
    read_cursor: PreparedStatement,
    init_cursor: PreparedStatement,
    write_cursor: PreparedStatement,
    register_shards: PreparedStatement,
    read_shards: PreparedStatement,
    read_failed: PreparedStatement,
    record_failed: PreparedStatement,
    clear_failed: PreparedStatement,
}

type DueRow = (
    i64,
    i32,
    DateTime<Utc>,
    String,
    String,
    String,
    Vec<u8>,
    Option<HashMap<String, String>>,
    Option<String>,
);

impl Schedule {
    /// The schedule, writing items over [`DEFAULT_SHARDS`] shards (see [`Self::with_shards`]).
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("schedule");
        let cursor = config.table("schedule_cursor");
        let shard_counts = config.table("schedule_shards");
        let retry = config.table("schedule_retry");
        let key = "bucket = ? AND shard = ? AND due_at = ? AND event_id = ?";
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} (bucket, shard, due_at, event_id, tenant, user_id, payload, \
                 headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?;
        let mut due = session
            .prepare(format!(
                "SELECT bucket, shard, due_at, event_id, tenant, user_id, payload, headers, \
                 claimed_by FROM {table} WHERE bucket = ? AND shard = ? AND due_at <= ?"
            ))
            .await?;
        due.set_page_size(DUE_PAGE_SIZE);
        // `tenant = ?` makes the condition false for a row already deleted, so a late claim
        // cannot resurrect it as an empty row.
        let claim_free = session
            .prepare(format!(
                "UPDATE {table} SET claimed_by = ? WHERE {key} IF claimed_by = null AND tenant = ?"
            ))
            .await?;
        let claim_stale = session
            .prepare(format!(
                "UPDATE {table} SET claimed_by = ? WHERE {key} IF claimed_by = ?"
            ))
            .await?;
        let delete = session
            .prepare(format!("DELETE FROM {table} WHERE {key} IF claimed_by = ?"))
            .await?;
        let read_cursor = session
            .prepare(format!("SELECT swept_minute FROM {cursor} WHERE name = ?"))
            .await?;
        let init_cursor = session
            .prepare(format!(
                "INSERT INTO {cursor} (name, swept_minute) VALUES (?, ?) IF NOT EXISTS"
            ))
            .await?;
        let write_cursor = session
            .prepare(format!(
                "UPDATE {cursor} SET swept_minute = ? WHERE name = ?"
            ))
            .await?;
        let register_shards = session
            .prepare(format!(
                "INSERT INTO {shard_counts} (name, shard_count) VALUES (?, ?)"
            ))
            .await?;
        let read_shards = session
            .prepare(format!(
                "SELECT shard_count FROM {shard_counts} WHERE name = ?"
            ))
            .await?;
        let read_failed = session
            .prepare(format!("SELECT bucket, shard FROM {retry} WHERE name = ?"))
            .await?;
        let record_failed = session
            .prepare(format!(
                "INSERT INTO {retry} (name, bucket, shard, failed_at, error) VALUES (?, ?, ?, ?, ?)"
            ))
            .await?;
        let clear_failed = session
            .prepare(format!(
                "DELETE FROM {retry} WHERE name = ? AND bucket = ? AND shard = ?"
            ))
            .await?;
        Ok(Self {
            session,
            shards: DEFAULT_SHARDS,
            registered: Arc::new(OnceCell::new()),
            insert,
            due,
            claim_free,
            claim_stale,
            delete,
            read_cursor,
            init_cursor,
            write_cursor,
            register_shards,
            read_shards,
            read_failed,
            record_failed,
            clear_failed,
        })
    }

    /// This schedule writing items over `shards` shards per minute bucket (1 to
    /// [`MAX_SHARDS`]).
    pub fn with_shards(mut self, shards: u16) -> Result<Self, StoreError> {
        if !(1..=MAX_SHARDS).contains(&shards) {
            return Err(StoreError::Config(format!(
                "the schedule's shard count is {shards}; it must be between 1 and {MAX_SHARDS}"
            )));
        }
        if shards != self.shards {
            self.shards = shards;
            self.registered = Arc::new(OnceCell::new());
        }
        Ok(self)
    }

    /// The shard count this instance writes items with.
    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// Makes sure the sweep cursor exists, starting at `now` if it did not, and that sweeps
    /// read the shards this instance writes to. Call before deferring anything: an item is
    /// never written to a bucket before the cursor.
    pub async fn init_cursor(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.register_shards().await?;
        self.session
            .execute_unpaged(&self.init_cursor, (CURSOR, minute_of(now)))
            .await?;
        Ok(())
    }

    /// Records this instance's shard count in `schedule_shards`, once per instance, before it
    /// writes any item: from then on every sweep reads that many shards at least.
    async fn register_shards(&self) -> Result<(), StoreError> {
        self.registered
            .get_or_try_init(|| async {
                self.session
                    .execute_unpaged(&self.register_shards, (CURSOR, i32::from(self.shards)))
                    .await
                    .map(|_| ())
            })
            .await?;
        Ok(())
    }

    /// How many shards of each minute bucket a sweep must read: the most any instance has
    /// written with (this one included), so an item written before the count was changed is
    /// still found.
    pub async fn shards_to_sweep(&self) -> Result<i32, StoreError> {
        let recorded: Vec<(i32,)> = self
            .session
            .execute_iter(self.read_shards.clone(), (CURSOR,))
            .await
            .map_err(request_error)?
            .rows_stream::<(i32,)>()
            .map_err(answer_error)?
            .try_collect()
            .await
            .map_err(request_error)?;
        Ok(recorded
            .into_iter()
            .map(|(count,)| count)
            .fold(i32::from(self.shards), i32::max))
    }

    /// The shards of minute buckets a sweep could not empty and recorded for retry.
    pub async fn failed_buckets(&self) -> Result<Vec<ShardBucket>, StoreError> {
        let rows: Vec<(i64, i32)> = self
            .session
            .execute_iter(self.read_failed.clone(), (CURSOR,))
            .await
            .map_err(request_error)?
            .rows_stream::<(i64, i32)>()
            .map_err(answer_error)?
            .try_collect()
            .await
            .map_err(request_error)?;
        Ok(rows
            .into_iter()
            .map(|(bucket, shard)| ShardBucket { bucket, shard })
            .collect())
    }

    /// Records that `failed` could not be emptied (`error` says why), so that every sweep
    /// reads it again until one empties it. Must succeed before the cursor passes it.
    pub async fn record_failed(
        &self,
        failed: ShardBucket,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.record_failed,
                (CURSOR, failed.bucket, failed.shard, now, error),
            )
            .await?;
        Ok(())
    }

    /// Forgets a recorded failure: a sweep read `emptied` to its end and released everything
    /// in it (a minute bucket that has closed gets no new items).
    pub async fn clear_failed(&self, emptied: ShardBucket) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.clear_failed, (CURSOR, emptied.bucket, emptied.shard))
            .await?;
        Ok(())
    }

    /// The first minute bucket that may still hold items.
    pub async fn cursor(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .session
            .execute_unpaged(&self.read_cursor, (CURSOR,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<i64>,)>()?
            .and_then(|(minute,)| minute))
    }

    /// Moves the cursor to `minute`: every bucket before it is empty.
    pub async fn set_cursor(&self, minute: i64) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.write_cursor, (minute, CURSOR))
            .await?;
        Ok(())
    }

    /// Writes `item` to the schedule. It goes to the bucket of its due time, or of `now` if
    /// that is later, so that it is never behind the sweep cursor. Writing the same item
    /// twice in one minute writes one row; in different minutes, two rows whose releases the
    /// router deduplicates.
    pub async fn defer(&self, item: &Deferred, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.register_shards().await?;
        let bucket = minute_of(item.due_at.max(now));
        self.session
            .execute_unpaged(
                &self.insert,
                (
                    bucket,
                    shard_of(&item.event_id, self.shards),
                    item.due_at,
                    &item.event_id,
                    &item.tenant,
                    &item.user_id,
                    &item.payload,
                    &item.headers,
                ),
            )
            .await?;
        Ok(())
    }

    /// The items in (`bucket`, `shard`) due at or before `now`, claimed or not, all at once.
    pub async fn due(
        &self,
        bucket: i64,
        shard: i32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScheduledItem>, StoreError> {
        self.due_pages(bucket, shard, now)
            .await?
            .try_collect()
            .await
    }

    /// The items in (`bucket`, `shard`) due at or before `now`, claimed or not, read a page at
    /// a time as the stream is polled. A row that cannot be read is an error in its place;
    /// the rows after it still follow.
    pub async fn due_pages(
        &self,
        bucket: i64,
        shard: i32,
        now: DateTime<Utc>,
    ) -> Result<impl Stream<Item = Result<ScheduledItem, StoreError>> + Send + use<>, StoreError>
    {
        let rows = self
            .session
            .execute_iter(self.due.clone(), (bucket, shard, now))
            .await
            .map_err(request_error)?
            .rows_stream::<DueRow>()
            .map_err(answer_error)?;
        Ok(rows.map(|row| {
            let (bucket, shard, due_at, event_id, tenant, user_id, payload, headers, claimed_by) =
                row.map_err(request_error)?;
            Ok(ScheduledItem {
                bucket,
                shard,
                claimed_by,
                item: Deferred {
                    due_at,
                    event_id,
                    tenant,
                    user_id,
                    payload,
                    headers: headers.unwrap_or_default(),
                },
            })
        }))
    }

    /// Claims `item` for `owner` if nobody holds it, if its holder's claim is older than
    /// `lease`, or if the claim is `owner`'s own (an earlier attempt of its that failed).
    /// Returns the claim marker to release it with, or None if someone else holds it.
    pub async fn claim(
        &self,
        item: &ScheduledItem,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<String>, StoreError> {
        let Some(claim) = self.claim_of(item, owner, now, lease) else {
            return Ok(None);
        };
        let marker = claim_marker(owner, now);
        let result = self
            .session
            .execute_unpaged(claim.statement, claim.values(&marker))
            .await?;
        Ok(applied(result)?.then_some(marker))
    }

    /// Claims every one of `items` for `owner` in one lightweight transaction (a conditional
    /// batch), all or none: each must be free or held past `lease`, and all must be rows of one
    /// (minute, shard) partition. Returns the marker they are all claimed under, or None if
    /// one of them was held or gone (claim them one at a time then, to learn which).
    ///
    /// Concurrent lightweight transactions on one partition contend (each round of Paxos can
    /// preempt the others, and past the contention timeout they fail), so a scheduler claims a
    /// page of a partition at once rather than each row on its own.
    pub async fn claim_all(
        &self,
        items: &[&ScheduledItem],
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<String>, StoreError> {
        if one_partition(items)?.is_none() {
            return Ok(Some(claim_marker(owner, now)));
        }
        let mut claims = Vec::with_capacity(items.len());
        for item in items {
            match self.claim_of(item, owner, now, lease) {
                Some(claim) => claims.push(claim),
                None => return Ok(None),
            }
        }
        let marker = claim_marker(owner, now);
        let mut batch = Batch::new(BatchType::Logged);
        for claim in &claims {
            batch.append_statement(claim.statement.clone());
        }
        let values: Vec<_> = claims.iter().map(|c| c.values(&marker)).collect();
        let result = self.session.batch(&batch, values).await?;
        Ok(applied(result)?.then_some(marker))
    }

    /// How `item` can be claimed at `now`: from nobody, or from a holder whose claim is older
    /// than `lease`. None while someone holds it.
    fn claim_of<'a>(
        &'a self,
        item: &'a ScheduledItem,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Option<Claim<'a>> {
        if held_by_another(item, owner, now, lease) {
            return None;
        }
        let (statement, expected) = match &item.claimed_by {
            // `tenant = ?` makes the condition false for a row already deleted.
            None => (&self.claim_free, item.item.tenant.as_str()),
            Some(held) => (&self.claim_stale, held.as_str()),
        };
        Some(Claim {
            statement,
            item,
            expected,
        })
    }

    /// Deletes a released item, if `marker` still holds it.
    pub async fn remove(&self, item: &ScheduledItem, marker: &str) -> Result<bool, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.delete, removal(item, marker))
            .await?;
        applied(result)
    }

    /// Deletes every one of `items`, released under `marker`, in one lightweight transaction,
    /// all or none: true if `marker` still held each of them. The items must be rows of one
    /// (minute, shard) partition (see [`Self::claim_all`]).
    pub async fn remove_all(
        &self,
        items: &[&ScheduledItem],
        marker: &str,
    ) -> Result<bool, StoreError> {
        if one_partition(items)?.is_none() {
            return Ok(true);
        }
        let mut batch = Batch::new(BatchType::Logged);
        for _ in items {
            batch.append_statement(self.delete.clone());
        }
        let values: Vec<_> = items.iter().map(|item| removal(item, marker)).collect();
        applied(self.session.batch(&batch, values).await?)
    }
}

/// Whether someone other than `owner` holds `item` at `now` under a claim younger than `lease`.
/// A claim of `owner`'s own is always its to retake, and a marker that does not parse is
/// nobody's live claim.
pub fn held_by_another(
    item: &ScheduledItem,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> bool {
    let Some(held) = &item.claimed_by else {
        return false;
    };
    let Some((holder, _)) = held.rsplit_once('@') else {
        return false;
    };
    if holder == owner {
        return false;
    }
    let lease = chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
    claimed_at(held).is_some_and(|at| now - at <= lease)
}

/// A claim of one row: the conditional update and the value its condition expects.
struct Claim<'a> {
    statement: &'a PreparedStatement,
    item: &'a ScheduledItem,
    /// The row's tenant (a free row) or the stale claim it replaces.
    expected: &'a str,
}

impl<'a> Claim<'a> {
    fn values(&self, marker: &'a str) -> (&'a str, i64, i32, DateTime<Utc>, &'a str, &'a str) {
        let item = self.item;
        (
            marker,
            item.bucket,
            item.shard,
            item.item.due_at,
            &item.item.event_id,
            self.expected,
        )
    }
}

/// The values of a conditional delete of `item` under `marker`.
fn removal<'a>(
    item: &'a ScheduledItem,
    marker: &'a str,
) -> (i64, i32, DateTime<Utc>, &'a str, &'a str) {
    (
        item.bucket,
        item.shard,
        item.item.due_at,
        &item.item.event_id,
        marker,
    )
}

/// The one partition every item is a row of (None for no items): a conditional batch may not
/// span partitions.
fn one_partition(items: &[&ScheduledItem]) -> Result<Option<ShardBucket>, StoreError> {
    let Some(first) = items.first() else {
        return Ok(None);
    };
    let partition = ShardBucket {
        bucket: first.bucket,
        shard: first.shard,
    };
    if items
        .iter()
        .any(|item| item.bucket != partition.bucket || item.shard != partition.shard)
    {
        return Err(StoreError::Request(
            "a conditional batch of schedule rows must stay within one (minute, shard) partition"
                .into(),
        ));
    }
    Ok(Some(partition))
}

/// A failed request, or a row that could not be fetched or read.
fn request_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Request(e.to_string())
}

/// An answer whose columns are not what the statement's reader expects.
fn answer_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Answer(e.to_string())
}

/// The `[applied]` column of a lightweight transaction's answer.
pub(crate) fn applied(
    result: scylla::response::query_result::QueryResult,
) -> Result<bool, StoreError> {
    let row = result.into_rows_result()?.first_row::<Row>()?;
    Ok(matches!(
        row.columns.first(),
        Some(Some(CqlValue::Boolean(true)))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_in_range() {
        for count in [1, 16, DEFAULT_SHARDS, MAX_SHARDS] {
            assert_eq!(shard_of("evt-1", count), shard_of("evt-1", count));
            let shards: std::collections::HashSet<i32> = (0..20_000)
                .map(|i| shard_of(&format!("evt-{i}"), count))
                .collect();
            assert!(shards.iter().all(|s| (0..i32::from(count)).contains(s)));
            assert_eq!(shards.len(), usize::from(count), "every shard gets used");
        }
        assert_eq!(shard_of("evt-1", 0), 0);
    }

    #[test]
    fn minutes_floor_instants() {
        let at = DateTime::from_timestamp(119, 0).unwrap();
        assert_eq!(minute_of(at), 1);
        let before_epoch = DateTime::from_timestamp(-1, 0).unwrap();
        assert_eq!(minute_of(before_epoch), -1);
    }

    #[test]
    fn only_a_live_claim_of_another_owner_holds_an_item() {
        let now = DateTime::from_timestamp_millis(1_700_000_060_000).unwrap();
        let lease = Duration::from_secs(30);
        let with_claim = |claimed_by: Option<String>| ScheduledItem {
            bucket: minute_of(now),
            shard: 0,
            claimed_by,
            item: Deferred {
                due_at: now,
                event_id: "evt-1".into(),
                tenant: "acme".into(),
                user_id: "u".into(),
                payload: Vec::new(),
                headers: HashMap::new(),
            },
        };
        let fresh = claim_marker("router-b@host", now - chrono::TimeDelta::seconds(10));
        let stale = claim_marker("router-b@host", now - chrono::TimeDelta::seconds(31));
        let own = claim_marker("router-a@host", now - chrono::TimeDelta::seconds(1));
        assert!(!held_by_another(
            &with_claim(None),
            "router-a@host",
            now,
            lease
        ));
        assert!(held_by_another(
            &with_claim(Some(fresh)),
            "router-a@host",
            now,
            lease
        ));
        assert!(!held_by_another(
            &with_claim(Some(stale)),
            "router-a@host",
            now,
            lease
        ));
        assert!(!held_by_another(
            &with_claim(Some(own)),
            "router-a@host",
            now,
            lease
        ));
        assert!(!held_by_another(
            &with_claim(Some("garbage".into())),
            "router-a@host",
            now,
            lease
        ));
    }

    #[test]
    fn claim_markers_carry_their_time() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let marker = claim_marker("router-a@host", at);
        assert_eq!(claimed_at(&marker), Some(at));
        assert_eq!(claimed_at("garbage"), None);
    }
}
