//! The schedule of deferred notifications (quiet hours, send-at): rows bucketed by minute and
//! spread over a fixed number of shards, so a scheduler reads "what is due now" one small
//! partition at a time.
//!
//! Releasing is claim → publish → delete. The claim is a lightweight transaction, so of several
//! schedulers sweeping the same bucket one wins each item; a claim older than its lease may be
//! taken over, so an item claimed by a scheduler that crashed is released by another. A crash
//! between publish and delete publishes the item again: the router deduplicates releases by
//! (event id, due time), which makes the release exactly-once end to end.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::{StoreConfig, StoreError};

/// Shards per minute bucket. Fixed: items are found by (bucket, shard), so changing it would
/// hide the items already written under the old count.
pub const SHARDS: i32 = 16;

/// The cursor row's name in `schedule_cursor`.
const CURSOR: &str = "schedule";

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

/// The shard of an event id: a stable FNV-1a hash, the same in every process and release.
pub fn shard_of(event_id: &str) -> i32 {
    let hash = event_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // Below SHARDS (16), so the cast cannot truncate.
    (hash % SHARDS.unsigned_abs() as u64) as i32
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
    insert: PreparedStatement,
    due: PreparedStatement,
    claim_free: PreparedStatement,
    claim_stale: PreparedStatement,
    delete: PreparedStatement,
    read_cursor: PreparedStatement,
    init_cursor: PreparedStatement,
    write_cursor: PreparedStatement,
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
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("schedule");
        let cursor = config.table("schedule_cursor");
        let key = "bucket = ? AND shard = ? AND due_at = ? AND event_id = ?";
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} (bucket, shard, due_at, event_id, tenant, user_id, payload, \
                 headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?;
        let due = session
            .prepare(format!(
                "SELECT bucket, shard, due_at, event_id, tenant, user_id, payload, headers, \
                 claimed_by FROM {table} WHERE bucket = ? AND shard = ? AND due_at <= ?"
            ))
            .await?;
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
        Ok(Self {
            session,
            insert,
            due,
            claim_free,
            claim_stale,
            delete,
            read_cursor,
            init_cursor,
            write_cursor,
        })
    }

    /// Makes sure the sweep cursor exists, starting at `now` if it did not. Call before
    /// deferring anything: an item is never written to a bucket before the cursor.
    pub async fn init_cursor(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.init_cursor, (CURSOR, minute_of(now)))
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
        let bucket = minute_of(item.due_at.max(now));
        self.session
            .execute_unpaged(
                &self.insert,
                (
                    bucket,
                    shard_of(&item.event_id),
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

    /// The items in (`bucket`, `shard`) due at or before `now`, claimed or not.
    pub async fn due(
        &self,
        bucket: i64,
        shard: i32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScheduledItem>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.due, (bucket, shard, now))
            .await?
            .into_rows_result()?;
        let mut items = Vec::new();
        for row in rows.rows::<DueRow>()? {
            let (bucket, shard, due_at, event_id, tenant, user_id, payload, headers, claimed_by) =
                row?;
            items.push(ScheduledItem {
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
            });
        }
        Ok(items)
    }

    /// Claims `item` for `owner` if nobody holds it, or if its holder's claim is older than
    /// `lease`. Returns the claim marker to release it with, or None if someone else holds it.
    pub async fn claim(
        &self,
        item: &ScheduledItem,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<String>, StoreError> {
        let marker = claim_marker(owner, now);
        let key = (
            item.bucket,
            item.shard,
            item.item.due_at,
            &item.item.event_id,
        );
        let result = match &item.claimed_by {
            None => {
                self.session
                    .execute_unpaged(
                        &self.claim_free,
                        (&marker, key.0, key.1, key.2, key.3, &item.item.tenant),
                    )
                    .await?
            }
            Some(held) => {
                let lease = chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
                // A marker that does not parse is nobody's live claim.
                let stale = claimed_at(held).is_none_or(|at| now - at > lease);
                if !stale {
                    return Ok(None);
                }
                self.session
                    .execute_unpaged(
                        &self.claim_stale,
                        (&marker, key.0, key.1, key.2, key.3, held),
                    )
                    .await?
            }
        };
        Ok(applied(result)?.then_some(marker))
    }

    /// Deletes a released item, if `marker` still holds it.
    pub async fn remove(&self, item: &ScheduledItem, marker: &str) -> Result<bool, StoreError> {
        let result = self
            .session
            .execute_unpaged(
                &self.delete,
                (
                    item.bucket,
                    item.shard,
                    item.item.due_at,
                    &item.item.event_id,
                    marker,
                ),
            )
            .await?;
        applied(result)
    }
}

/// The `[applied]` column of a lightweight transaction's answer.
fn applied(result: scylla::response::query_result::QueryResult) -> Result<bool, StoreError> {
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
        assert_eq!(shard_of("evt-1"), shard_of("evt-1"));
        let shards: std::collections::HashSet<i32> =
            (0..1000).map(|i| shard_of(&format!("evt-{i}"))).collect();
        assert!(shards.iter().all(|s| (0..SHARDS).contains(s)));
        assert_eq!(shards.len(), SHARDS as usize, "every shard gets used");
    }

    #[test]
    fn minutes_floor_instants() {
        let at = DateTime::from_timestamp(119, 0).unwrap();
        assert_eq!(minute_of(at), 1);
        let before_epoch = DateTime::from_timestamp(-1, 0).unwrap();
        assert_eq!(minute_of(before_epoch), -1);
    }

    #[test]
    fn claim_markers_carry_their_time() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let marker = claim_marker("router-a@host", at);
        assert_eq!(claimed_at(&marker), Some(at));
        assert_eq!(claimed_at("garbage"), None);
    }
}
