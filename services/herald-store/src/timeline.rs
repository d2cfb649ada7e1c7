//! Notification timelines, written by `herald track` from `notifications.status`.
//!
//! A timeline row is keyed by the status record's source (topic/partition/offset, or the
//! provider's own event id for a callback a provider may send twice), so writing a record a
//! second time (a re-read after a crash) rewrites the same row with the same values:
//! at-least-once reading gives each record exactly one row. A user's index holds one row per
//! notification, which every status of it would write alike; the writer skips the ones it wrote
//! lately. A dispatch's latest state is computed from its rows ([`state_rank`]).

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::MaybeUnset;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use herald_contracts::{Status, StatusEvent};

use crate::{StoreConfig, StoreError, unlogged};

/// The rank of a dispatch's state: a dispatch's latest state is its status of highest rank (of
/// two of one rank, the later), so a status that arrives after one of a higher rank does not
/// move the state backwards. Failures before the send rank below `sent`: a dead-lettered
/// dispatch can still be redriven and sent. A failure the provider reports about a message it
/// had accepted (one with the provider's message id: a bounce, a complaint, an undelivered SMS)
/// is its verdict after the send and ranks with `delivered`.
pub fn state_rank(status: Status, provider_message_id: Option<&str>) -> i32 {
    match status {
        Status::Accepted => 0,
        Status::Scheduled => 1,
        Status::Routed => 2,
        Status::Failed if provider_message_id.is_some_and(|id| !id.is_empty()) => 6,
        Status::Failed => 3,
        Status::DeadLettered | Status::Unknown => 4,
        Status::Sent | Status::Suppressed => 5,
        Status::Delivered => 6,
        Status::Opened | Status::Seen | Status::Read => 7,
        Status::Clicked | Status::Archived => 8,
    }
}

/// One status record to write.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    /// The status's identity (`herald-status-id`) where it has one, else the record's
    /// `topic/partition/offset`.
    pub source: String,
    pub status: StatusEvent,
    /// The record's link headers (replay, fallback chain, schedule release), by header name.
    pub links: HashMap<String, String>,
}

/// What a write cost: rows written and requests sent (both also counted by the tracker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCost {
    pub rows: usize,
    pub requests: usize,
}

/// User index rows remembered as written, so that a notification's later statuses skip its
/// row (about 32 bytes each).
const RECENTLY_INDEXED: usize = 200_000;

#[derive(Debug)]
pub struct TimelineWriter {
    session: Arc<Session>,
    timeline: PreparedStatement,
    user: PreparedStatement,
    indexed: Mutex<RecentKeys>,
}

impl TimelineWriter {
    /// Prepares the statements.
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let timeline = session
            .prepare(format!(
                "INSERT INTO {} (tenant, event_id, at, source, dispatch_id, channel, status, \
                 reason, provider, provider_message_id, attempt, links) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                config.table("timeline")
            ))
            .await?;
        let user = session
            .prepare(format!(
                "INSERT INTO {} (tenant, user_id, created_at, event_id, category) \
                 VALUES (?, ?, ?, ?, ?)",
                config.table("notifications_by_user")
            ))
            .await?;
        Ok(Self {
            session,
            timeline,
            user,
            indexed: Mutex::new(RecentKeys::new(RECENTLY_INDEXED)),
        })
    }

    /// Writes every entry's timeline row and, once per notification, the user's index row, as
    /// unlogged batches sent all at once. An error means some rows may be missing: the caller
    /// writes the whole batch again (every row is keyed by its record, so that is harmless).
    pub async fn write(&self, entries: &[TimelineEntry]) -> Result<WriteCost, StoreError> {
        // Rows of one partition side by side, so that a batch touches few partitions: the
        // database then applies a batch's rows of one partition as one mutation.
        let mut by_event: Vec<&TimelineEntry> = entries.iter().collect();
        by_event.sort_by(|a, b| {
            (&a.status.tenant, &a.status.event_id).cmp(&(&b.status.tenant, &b.status.event_id))
        });
        let timeline: Vec<_> = by_event.iter().map(|e| timeline_row(e)).collect();
        let mut index = self.index_rows(entries);
        index.sort_by(|(_, a), (_, b)| (a.0, a.1).cmp(&(b.0, b.1)));
        let users: Vec<UserRow<'_>> = index.iter().map(|(_, row)| *row).collect();
        let (timeline_requests, user_requests) = futures::future::try_join(
            unlogged::write_grouped(&self.session, &self.timeline, &timeline, |r| (r.0, r.1)),
            unlogged::write_grouped(&self.session, &self.user, &users, |r| (r.0, r.1)),
        )
        .await?;
        let mut indexed = self.indexed.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, _) in &index {
            indexed.insert(*key);
        }
        Ok(WriteCost {
            rows: timeline.len() + users.len(),
            requests: timeline_requests + user_requests,
        })
    }

    /// The index rows of the entries' notifications not written lately, each once.
    fn index_rows<'a>(&self, entries: &'a [TimelineEntry]) -> Vec<(u128, UserRow<'a>)> {
        let indexed = self.indexed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut here = HashSet::new();
        entries
            .iter()
            .filter_map(|entry| {
                let row = user_row(entry)?;
                let key = index_key(&row);
                (!indexed.contains(key) && here.insert(key)).then_some((key, row))
            })
            .collect()
    }
}

/// Absent values are bound unset, not null: in Cassandra and ScyllaDB a null written by an
/// INSERT is a tombstone (a cell to store, compact and read past), and a collection written
/// whole is a range tombstone first. A rewrite carries the same values, so unset is the same.
type TimelineRow<'a> = (
    &'a str,
    &'a str,
    DateTime<Utc>,
    &'a str,
    MaybeUnset<&'a str>,
    MaybeUnset<&'static str>,
    &'static str,
    MaybeUnset<&'a str>,
    MaybeUnset<&'a str>,
    MaybeUnset<&'a str>,
    i32,
    MaybeUnset<&'a HashMap<String, String>>,
);

fn timeline_row(entry: &TimelineEntry) -> TimelineRow<'_> {
    let s = &entry.status;
    (
        &s.tenant,
        &s.event_id,
        s.at,
        &entry.source,
        MaybeUnset::from_option(s.dispatch_id.as_deref()),
        MaybeUnset::from_option(s.channel.map(|c| c.as_str())),
        s.status.symbol(),
        MaybeUnset::from_option(s.reason.as_deref()),
        MaybeUnset::from_option(s.provider.as_deref()),
        MaybeUnset::from_option(s.provider_message_id.as_deref()),
        s.attempt,
        MaybeUnset::from_option(Some(&entry.links).filter(|links| !links.is_empty())),
    )
}

/// (tenant, user id, created at, event id, category), the category unset when unknown.
type UserRow<'a> = (
    &'a str,
    &'a str,
    DateTime<Utc>,
    &'a str,
    MaybeUnset<&'a str>,
);

/// The notification's row in its user's index. Every status of a notification carries the
/// request's creation time, so they all give the same row; a status without one (a request the
/// router dead-lettered before reading it) is the notification's only status and is indexed
/// at its own time. A dispatch status without one (written before statuses carried it) adds
/// nothing: its notification was indexed by its router status.
fn user_row(entry: &TimelineEntry) -> Option<UserRow<'_>> {
    let s = &entry.status;
    let created_at = match (s.created_at, &s.dispatch_id) {
        (Some(created_at), _) => created_at,
        (None, None) => s.at,
        (None, Some(_)) => return None,
    };
    Some((
        &s.tenant,
        &s.user_id,
        created_at,
        &s.event_id,
        MaybeUnset::from_option(s.category.as_deref()),
    ))
}

/// A 128-bit digest of an index row's key: two SipHash passes under different prefixes, so that
/// two notifications sharing a digest (and one missing its row) is not a practical concern.
fn index_key(row: &UserRow<'_>) -> u128 {
    let half = |salt: u8| {
        let mut hasher = DefaultHasher::new();
        (salt, row.0, row.1, row.2.timestamp_micros(), row.3).hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// A bounded set that forgets its oldest keys first.
#[derive(Debug)]
struct RecentKeys {
    keys: HashSet<u128>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl RecentKeys {
    fn new(capacity: usize) -> Self {
        Self {
            keys: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn contains(&self, key: u128) -> bool {
        self.keys.contains(&key)
    }

    fn insert(&mut self, key: u128) {
        if !self.keys.insert(key) {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.keys.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dispatch_never_moves_back_from_sent_or_delivered() {
        let order = [
            Status::Scheduled,
            Status::Routed,
            Status::Failed,
            Status::DeadLettered,
            Status::Sent,
            Status::Delivered,
            Status::Opened,
            Status::Clicked,
        ];
        for pair in order.windows(2) {
            assert!(
                state_rank(pair[0], None) < state_rank(pair[1], None),
                "{:?} must rank below {:?}",
                pair[0],
                pair[1]
            );
        }
        // A redriven dead-lettered dispatch that is then sent is sent.
        assert!(state_rank(Status::Sent, None) > state_rank(Status::DeadLettered, None));
    }

    #[test]
    fn a_bounce_reported_after_the_send_is_the_latest_state() {
        let sent = state_rank(Status::Sent, Some("m-1"));
        let bounced = state_rank(Status::Failed, Some("m-1"));
        assert!(bounced > sent);
        assert_eq!(bounced, state_rank(Status::Delivered, Some("m-1")));
        // A failed attempt (no message accepted) stays below sent.
        assert!(state_rank(Status::Failed, None) < sent);
        assert!(state_rank(Status::Failed, Some("")) < sent);
    }

    fn entry(status: Status, dispatch: Option<&str>, created: Option<i64>) -> TimelineEntry {
        TimelineEntry {
            source: "s/0/1".into(),
            status: StatusEvent {
                event_id: "e1".into(),
                tenant: "acme".into(),
                user_id: "ana".into(),
                dispatch_id: dispatch.map(str::to_owned),
                status,
                at: DateTime::from_timestamp_millis(2_000).unwrap(),
                created_at: created.and_then(DateTime::from_timestamp_millis),
                ..Default::default()
            },
            links: HashMap::new(),
        }
    }

    #[test]
    fn every_status_of_a_notification_gives_the_same_index_row() {
        let routed = entry(Status::Routed, Some("e1:email"), Some(1_000));
        let sent = entry(Status::Sent, Some("e1:email"), Some(1_000));
        let (a, b) = (user_row(&routed).unwrap(), user_row(&sent).unwrap());
        assert_eq!((a.0, a.1, a.2, a.3), (b.0, b.1, b.2, b.3));
        assert_eq!(index_key(&a), index_key(&b));
        assert_eq!(a.2.timestamp_millis(), 1_000);
        // A router dead letter of an unreadable request: indexed at its own time.
        let dead = entry(Status::DeadLettered, None, None);
        assert_eq!(user_row(&dead).unwrap().2.timestamp_millis(), 2_000);
        // A dispatch status without the creation time adds nothing.
        assert!(user_row(&entry(Status::Sent, Some("e1:email"), None)).is_none());
        let later = entry(Status::Routed, Some("e1:email"), Some(1_001));
        assert_ne!(index_key(&a), index_key(&user_row(&later).unwrap()));
    }

    #[test]
    fn recent_keys_forget_the_oldest_first() {
        let mut recent = RecentKeys::new(2);
        for key in [1, 2, 2, 3] {
            recent.insert(key);
        }
        assert!(!recent.contains(1));
        assert!(recent.contains(2) && recent.contains(3));
        assert_eq!(recent.order.len(), 2);
    }
}
