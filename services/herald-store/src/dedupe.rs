//! The deduplication ledger: which event ids were already routed, and from which record.
//!
//! One recipient's events share a key and so a partition, and one router processes a partition
//! at a time, so a read-then-write needs no lightweight transaction. The `source` column makes
//! the ledger safe under Kafka transactions: a batch that is aborted and re-read finds its own
//! rows and goes on, while a second record carrying the same event id is a duplicate.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;

use crate::{StoreConfig, StoreError};

/// What the ledger says about an event id seen in a given record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: recorded now.
    First,
    /// This very record was seen before (a redelivery after an abort or a crash).
    SameRecord,
    /// Another record carried this event id first.
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct DedupeLedger {
    session: Arc<Session>,
    select: PreparedStatement,
    insert: PreparedStatement,
}

impl DedupeLedger {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("dedupe");
        let select = session
            .prepare(format!(
                "SELECT source FROM {table} WHERE tenant = ? AND event_id = ?"
            ))
            .await?;
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} (tenant, event_id, first_seen, source) VALUES (?, ?, ?, ?)"
            ))
            .await?;
        Ok(Self {
            session,
            select,
            insert,
        })
    }

    /// Records `event_id` as seen in record `source` (e.g. `requested/3/1207`) unless it was
    /// seen before, and says which case this is.
    pub async fn check_and_record(
        &self,
        tenant: &str,
        event_id: &str,
        source: &str,
    ) -> Result<Seen, StoreError> {
        let existing = self
            .session
            .execute_unpaged(&self.select, (tenant, event_id))
            .await?
            .into_rows_result()?
            .maybe_first_row::<(Option<String>,)>()?;
        match existing {
            Some((Some(first),)) if first == source => Ok(Seen::SameRecord),
            Some(_) => Ok(Seen::Duplicate),
            None => {
                self.session
                    .execute_unpaged(&self.insert, (tenant, event_id, chrono::Utc::now(), source))
                    .await?;
                Ok(Seen::First)
            }
        }
    }
}
