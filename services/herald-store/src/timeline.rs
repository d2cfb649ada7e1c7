//! Notification timelines, written by `herald track` from `notifications.status`.
//!
//! Every write is keyed by the status record's source (topic/partition/offset) or by a rank that
//! only depends on the record, so writing a record a second time (a re-read after a crash)
//! rewrites the same rows with the same values: at-least-once reading gives each record exactly
//! one row of each table.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::sync::Arc;

use herald_contracts::{Status, StatusEvent};

use crate::{StoreConfig, StoreError, unlogged};

/// The rank of a dispatch's state: a dispatch's latest state is its status of highest rank, so
/// a status that arrives after one of a higher rank does not move the state backwards. Failures
/// rank below `sent`: a dead-lettered dispatch can still be redriven and sent.
pub fn state_rank(status: Status) -> i32 {
    match status {
        Status::Accepted => 0,
        Status::Scheduled => 1,
        Status::Routed => 2,
        Status::Failed => 3,
        Status::DeadLettered | Status::Unknown => 4,
        Status::Sent | Status::Suppressed => 5,
        Status::Delivered => 6,
        Status::Opened | Status::Read => 7,
        Status::Clicked => 8,
    }
}

/// One status record to write.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    /// `topic/partition/offset` of the status record.
    pub source: String,
    pub status: StatusEvent,
    /// The record's link headers (replay, fallback chain, schedule release), by header name.
    pub links: HashMap<String, String>,
}

/// CQL statements one entry costs: its timeline row, its dispatch state, its user index row.
pub const STATEMENTS_PER_ENTRY: usize = 3;

#[derive(Debug, Clone)]
pub struct TimelineWriter {
    session: Arc<Session>,
    timeline: PreparedStatement,
    state: PreparedStatement,
    user: PreparedStatement,
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
        // The write time is the status's own time: of two statuses of one rank (two failed
        // attempts), the later one stays, whichever was written last.
        let state = session
            .prepare(format!(
                "INSERT INTO {} (tenant, event_id, dispatch_id, rank, status, channel, reason, \
                 at, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
                config.table("dispatch_states")
            ))
            .await?;
        let user = session
            .prepare(format!(
                "INSERT INTO {} (tenant, user_id, at, event_id, source, status) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                config.table("user_notifications")
            ))
            .await?;
        Ok(Self {
            session,
            timeline,
            state,
            user,
        })
    }

    /// Writes every entry (its timeline row, its dispatch state and its user index row) as
    /// unlogged batches sent all at once. An error means some rows may be missing: the caller
    /// writes the whole batch again (every row is keyed by its record, so that is harmless).
    pub async fn write(&self, entries: &[TimelineEntry]) -> Result<(), StoreError> {
        // Rows of one partition side by side, so that a batch touches few partitions: the
        // database then applies a batch's rows of one partition as one mutation.
        let mut by_event: Vec<&TimelineEntry> = entries.iter().collect();
        by_event.sort_by(|a, b| {
            (&a.status.tenant, &a.status.event_id).cmp(&(&b.status.tenant, &b.status.event_id))
        });
        let mut by_user = by_event.clone();
        by_user.sort_by(|a, b| {
            (&a.status.tenant, &a.status.user_id).cmp(&(&b.status.tenant, &b.status.user_id))
        });
        let timeline: Vec<_> = by_event.iter().map(|e| timeline_row(e)).collect();
        let states: Vec<_> = by_event.iter().map(|e| state_row(e)).collect();
        let users: Vec<_> = by_user.iter().map(|e| user_row(e)).collect();
        futures::future::try_join3(
            unlogged::write_all(&self.session, &self.timeline, &timeline),
            unlogged::write_all(&self.session, &self.state, &states),
            unlogged::write_all(&self.session, &self.user, &users),
        )
        .await?;
        Ok(())
    }
}

type TimelineRow<'a> = (
    &'a str,
    &'a str,
    DateTime<Utc>,
    &'a str,
    Option<&'a str>,
    Option<&'static str>,
    &'static str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    i32,
    &'a HashMap<String, String>,
);

fn timeline_row(entry: &TimelineEntry) -> TimelineRow<'_> {
    let s = &entry.status;
    (
        &s.tenant,
        &s.event_id,
        s.at,
        &entry.source,
        s.dispatch_id.as_deref(),
        s.channel.map(|c| c.as_str()),
        s.status.symbol(),
        s.reason.as_deref(),
        s.provider.as_deref(),
        s.provider_message_id.as_deref(),
        s.attempt,
        &entry.links,
    )
}

type StateRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    i32,
    &'static str,
    Option<&'static str>,
    Option<&'a str>,
    DateTime<Utc>,
    &'a str,
    i64,
);

/// The write time is the status's own time (`USING TIMESTAMP`, the last value).
fn state_row(entry: &TimelineEntry) -> StateRow<'_> {
    let s = &entry.status;
    (
        &s.tenant,
        &s.event_id,
        s.dispatch_id.as_deref().unwrap_or(""),
        state_rank(s.status),
        s.status.symbol(),
        s.channel.map(|c| c.as_str()),
        s.reason.as_deref(),
        s.at,
        &entry.source,
        s.at.timestamp_micros(),
    )
}

type UserRow<'a> = (
    &'a str,
    &'a str,
    DateTime<Utc>,
    &'a str,
    &'a str,
    &'static str,
);

fn user_row(entry: &TimelineEntry) -> UserRow<'_> {
    let s = &entry.status;
    (
        &s.tenant,
        &s.user_id,
        s.at,
        &s.event_id,
        &entry.source,
        s.status.symbol(),
    )
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
                state_rank(pair[0]) < state_rank(pair[1]),
                "{:?} must rank below {:?}",
                pair[0],
                pair[1]
            );
        }
        // A redriven dead-lettered dispatch that is then sent is sent.
        assert!(state_rank(Status::Sent) > state_rank(Status::DeadLettered));
    }
}
