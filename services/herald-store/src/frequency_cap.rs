//! Frequency caps per user, category and channel over fixed windows. An event is allowed when
//! fewer than `cap` events were allowed before it (by record offset) in its window; allowed
//! events are recorded. Deciding by offset rather than by a running counter makes the answer
//! the same when an aborted batch is processed again.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;

use crate::{StoreConfig, StoreError};

/// One cap: at most `count` events per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub count: i32,
    pub window_seconds: i32,
}

/// Who and what an event is counted against.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub tenant: &'a str,
    pub user_id: &'a str,
    pub category: &'a str,
    pub channel: &'a str,
}

/// The start of the window holding `at_seconds`.
pub fn window_start(at_seconds: i64, window_seconds: i32) -> i64 {
    let window = i64::from(window_seconds.max(1));
    at_seconds.div_euclid(window) * window
}

#[derive(Debug, Clone)]
pub struct FrequencyCap {
    session: Arc<Session>,
    count_before: PreparedStatement,
    record: PreparedStatement,
}

impl FrequencyCap {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("rate_events");
        let count_before = session
            .prepare(format!(
                "SELECT COUNT(*) FROM {table} WHERE tenant = ? AND user_id = ? AND category = ? \
                 AND channel = ? AND window_start = ? AND record_offset < ?"
            ))
            .await?;
        let record = session
            .prepare(format!(
                "INSERT INTO {table} (tenant, user_id, category, channel, window_start, \
                 record_offset, event_id) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?;
        Ok(Self {
            session,
            count_before,
            record,
        })
    }

    /// Whether the event at `record_offset` is within `cap` at `at_seconds`; records it if so.
    pub async fn allow(
        &self,
        subject: Subject<'_>,
        cap: Cap,
        at_seconds: i64,
        record_offset: i64,
        event_id: &str,
    ) -> Result<bool, StoreError> {
        let start = window_start(at_seconds, cap.window_seconds);
        let key = (
            subject.tenant,
            subject.user_id,
            subject.category,
            subject.channel,
            start,
        );
        let (before,): (i64,) = self
            .session
            .execute_unpaged(
                &self.count_before,
                (key.0, key.1, key.2, key.3, key.4, record_offset),
            )
            .await?
            .into_rows_result()?
            .single_row::<(i64,)>()?;
        if before >= i64::from(cap.count) {
            return Ok(false);
        }
        // Kept for two windows: long enough to be counted, short enough to stay small.
        let ttl = cap.window_seconds.saturating_mul(2).max(1);
        self.session
            .execute_unpaged(
                &self.record,
                (
                    key.0,
                    key.1,
                    key.2,
                    key.3,
                    key.4,
                    record_offset,
                    event_id,
                    ttl,
                ),
            )
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::window_start;

    #[test]
    fn windows_are_aligned() {
        assert_eq!(window_start(3_601, 3_600), 3_600);
        assert_eq!(window_start(3_599, 3_600), 0);
        assert_eq!(window_start(-1, 60), -60);
    }
}
