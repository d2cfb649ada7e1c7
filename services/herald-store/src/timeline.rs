//! Notification timelines, written by `herald track` from `notifications.status`.
//!
//! Every write is keyed by the status record's source (topic/partition/offset) or by a rank that
//! only depends on the record, so writing a record a second time (a re-read after a crash)
//! rewrites the same rows with the same values: at-least-once reading gives each record exactly
//! one row of each table.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::sync::Arc;

use herald_contracts::{Status, StatusEvent};

use crate::{StoreConfig, StoreError};

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
    concurrency: usize,
}

impl TimelineWriter {
    /// Prepares the statements; `concurrency` bounds the entries written at once.
    pub async fn prepare(
        session: Arc<Session>,
        config: &StoreConfig,
        concurrency: usize,
    ) -> Result<Self, StoreError> {
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
            concurrency: concurrency.max(1),
        })
    }

    /// Writes every entry (its timeline row, its dispatch state and its user index row), at
    /// most `concurrency` entries at once. An error means some rows may be missing: the caller
    /// writes the whole batch again.
    pub async fn write(&self, entries: &[TimelineEntry]) -> Result<(), StoreError> {
        let mut writes = futures::stream::iter(entries.iter().map(|entry| self.write_one(entry)))
            .buffer_unordered(self.concurrency);
        while let Some(result) = writes.next().await {
            result?;
        }
        Ok(())
    }

    async fn write_one(&self, entry: &TimelineEntry) -> Result<(), StoreError> {
        let s = &entry.status;
        let symbol = s.status.symbol();
        let channel = s.channel.map(|c| c.as_str());
        let at: DateTime<Utc> = s.at;
        let timeline = self.session.execute_unpaged(
            &self.timeline,
            (
                &s.tenant,
                &s.event_id,
                at,
                &entry.source,
                &s.dispatch_id,
                channel,
                symbol,
                &s.reason,
                &s.provider,
                &s.provider_message_id,
                s.attempt,
                &entry.links,
            ),
        );
        let state = self.session.execute_unpaged(
            &self.state,
            (
                &s.tenant,
                &s.event_id,
                s.dispatch_id.as_deref().unwrap_or(""),
                state_rank(s.status),
                symbol,
                channel,
                &s.reason,
                at,
                &entry.source,
                at.timestamp_micros(),
            ),
        );
        let user = self.session.execute_unpaged(
            &self.user,
            (
                &s.tenant,
                &s.user_id,
                at,
                &s.event_id,
                &entry.source,
                symbol,
            ),
        );
        futures::future::try_join3(timeline, state, user).await?;
        Ok(())
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
