//! The deduplication ledger: which event ids were already routed, and from which record.
//!
//! One recipient's events share a key and so a partition, and one router processes a partition
//! at a time, so a read-then-write needs no lightweight transaction. The `source` column makes
//! the ledger safe under Kafka transactions: a batch that is aborted and re-read finds its own
//! rows and goes on, while a second record carrying the same event id is a duplicate.
//!
//! Concurrent checks are answered together: one `IN` read per tenant and one unlogged batch of
//! inserts for every check waiting, in the order they arrived, so two checks of the same id in
//! one group still see each other.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::sync::Arc;

use crate::batcher::Batcher;
use crate::unlogged;
use crate::{StoreConfig, StoreError};

/// Checks answered by one load: bounds the `IN` list and the insert batch.
const MAX_CHECKS: usize = 64;
/// Groups checked at once, each for its own share of event ids: one id is never in two
/// concurrent groups, so two records carrying it cannot both be taken for the first.
const CONCURRENT_LOADS: usize = 4;

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

/// (tenant, event id, source record).
type Check = (String, String, String);

#[derive(Debug, Clone)]
pub struct DedupeLedger {
    checks: Batcher<Check, Seen>,
    session: Arc<Session>,
    forget: PreparedStatement,
}

#[derive(Debug)]
struct Statements {
    session: Arc<Session>,
    select: PreparedStatement,
    insert: PreparedStatement,
}

impl DedupeLedger {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("dedupe");
        let select = session
            .prepare(format!(
                "SELECT event_id, source FROM {table} WHERE tenant = ? AND event_id IN ?"
            ))
            .await?;
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} (tenant, event_id, first_seen, source) VALUES (?, ?, ?, ?)"
            ))
            .await?;
        let forget = session
            .prepare(format!(
                "DELETE FROM {table} WHERE tenant = ? AND event_id = ?"
            ))
            .await?;
        let statements = Arc::new(Statements {
            session: session.clone(),
            select,
            insert,
        });
        let checks = Batcher::spawn(MAX_CHECKS, CONCURRENT_LOADS, move |checks| {
            let statements = statements.clone();
            async move { statements.check_all(checks).await }
        });
        Ok(Self {
            checks,
            session,
            forget,
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
        self.checks
            .get((tenant.to_owned(), event_id.to_owned(), source.to_owned()))
            .await
    }

    /// Forgets `event_id`: for an event that was dead-lettered after it was recorded, which
    /// never finished, so that a redrive of it from the DLQ is routed rather than taken for a
    /// duplicate (while a second redrive, once the first got through, still is one).
    pub async fn forget(&self, tenant: &str, event_id: &str) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.forget, (tenant, event_id))
            .await?;
        Ok(())
    }
}

impl Statements {
    async fn check_all(&self, checks: Vec<Check>) -> Result<Vec<Seen>, StoreError> {
        let mut ids_by_tenant: HashMap<&str, Vec<&str>> = HashMap::new();
        for (tenant, event_id, _) in &checks {
            ids_by_tenant.entry(tenant).or_default().push(event_id);
        }
        let mut first_source: HashMap<(String, String), String> = HashMap::new();
        for (tenant, ids) in ids_by_tenant {
            let rows = self
                .session
                .execute_unpaged(&self.select, (tenant, &ids))
                .await?
                .into_rows_result()?;
            for row in rows.rows::<(String, Option<String>)>()? {
                let (event_id, source) = row?;
                first_source.insert((tenant.to_owned(), event_id), source.unwrap_or_default());
            }
        }

        let now = chrono::Utc::now();
        let mut seen = Vec::with_capacity(checks.len());
        let mut inserts = Vec::new();
        for (tenant, event_id, source) in checks {
            let key = (tenant, event_id);
            seen.push(match first_source.get(&key) {
                Some(first) if *first == source => Seen::SameRecord,
                Some(_) => Seen::Duplicate,
                None => {
                    inserts.push((key.0.clone(), key.1.clone(), now, source.clone()));
                    first_source.insert(key, source);
                    Seen::First
                }
            });
        }
        unlogged::write_all(&self.session, &self.insert, &inserts).await?;
        Ok(seen)
    }
}
