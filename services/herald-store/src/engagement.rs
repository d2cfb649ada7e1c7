//! The first open and the first click of each dispatch (table `engagement`), so that every
//! `herald api` replica together emits `opened` and `clicked` once per dispatch.
//!
//! A request that wants to emit a status first claims the dispatch's row with a lightweight
//! transaction ([`EngagementMarks::claim`]); only the request that holds the claim publishes,
//! then marks the row done ([`EngagementMarks::mark_done`]) or, when the publish failed,
//! deletes its claim ([`EngagementMarks::release`]) so that the next open or click tries
//! again. A claim that is neither done nor released (its replica died in between) is taken
//! over by the next request once it is older than `stale_after`, which the caller sets above
//! its publish timeout so a live claim is never taken.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use std::sync::Arc;
use std::time::Duration;

use crate::{StoreConfig, StoreError};

/// What [`EngagementMarks::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the claim and publishes. `taken_over`: a dead replica's stale claim
    /// was replaced (it may have published already).
    Held { token: String, taken_over: bool },
    /// The status was published already.
    Done,
    /// Another request holds a live claim and is publishing now.
    Busy,
}

/// One engagement row: a dispatch and what was done with it (`open`, `click`).
#[derive(Debug, Clone, Copy)]
pub struct Mark<'a> {
    pub tenant: &'a str,
    pub dispatch_id: &'a str,
    pub kind: &'a str,
}

#[derive(Debug, Clone)]
pub struct EngagementMarks {
    session: Arc<Session>,
    insert: PreparedStatement,
    take_over: PreparedStatement,
    done: PreparedStatement,
    release: PreparedStatement,
}

impl EngagementMarks {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("engagement");
        let key = "tenant = ? AND dispatch_id = ? AND kind = ?";
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} (tenant, dispatch_id, kind, claim, claimed_at, done) \
                 VALUES (?, ?, ?, ?, ?, false) IF NOT EXISTS USING TTL ?"
            ))
            .await?;
        let take_over = session
            .prepare(format!(
                "UPDATE {table} USING TTL ? SET claim = ?, claimed_at = ? WHERE {key} \
                 IF claim = ? AND done = false"
            ))
            .await?;
        let done = session
            .prepare(format!(
                "UPDATE {table} USING TTL ? SET done = true WHERE {key} IF claim = ?"
            ))
            .await?;
        let release = session
            .prepare(format!("DELETE FROM {table} WHERE {key} IF claim = ?"))
            .await?;
        Ok(Self {
            session,
            insert,
            take_over,
            done,
            release,
        })
    }

    /// Claims `mark` for this request; the row lives `ttl` (at least a second).
    pub async fn claim(
        &self,
        mark: Mark<'_>,
        now: DateTime<Utc>,
        ttl: Duration,
        stale_after: Duration,
    ) -> Result<Claim, StoreError> {
        let ttl = ttl_seconds(ttl);
        let token = claim_token();
        let result = self
            .session
            .execute_unpaged(
                &self.insert,
                (mark.tenant, mark.dispatch_id, mark.kind, &token, now, ttl),
            )
            .await?;
        let found = Answer::read(result)?;
        if found.applied {
            return Ok(Claim::Held {
                token,
                taken_over: false,
            });
        }
        if found.done {
            return Ok(Claim::Done);
        }
        let stale = found.claimed_at.is_none_or(|at| {
            now.signed_duration_since(at)
                .to_std()
                .is_ok_and(|age| age >= stale_after)
        });
        let Some(previous) = found.claim.filter(|_| stale) else {
            return Ok(Claim::Busy);
        };
        let result = self
            .session
            .execute_unpaged(
                &self.take_over,
                (
                    ttl,
                    &token,
                    now,
                    mark.tenant,
                    mark.dispatch_id,
                    mark.kind,
                    previous,
                ),
            )
            .await?;
        let found = Answer::read(result)?;
        Ok(if found.applied {
            Claim::Held {
                token,
                taken_over: true,
            }
        } else if found.done {
            Claim::Done
        } else {
            Claim::Busy
        })
    }

    /// Records that the status of the claim `token` was published.
    pub async fn mark_done(
        &self,
        mark: Mark<'_>,
        token: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.done,
                (
                    ttl_seconds(ttl),
                    mark.tenant,
                    mark.dispatch_id,
                    mark.kind,
                    token,
                ),
            )
            .await?;
        Ok(())
    }

    /// Gives up the claim `token` (its status was not published), so the next request
    /// claims the row at once.
    pub async fn release(&self, mark: Mark<'_>, token: &str) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.release,
                (mark.tenant, mark.dispatch_id, mark.kind, token),
            )
            .await?;
        Ok(())
    }
}

/// A TTL in seconds as CQL takes it: at least 1 (0 would mean none), at most the maximum
/// both ScyllaDB and Cassandra accept (20 years).
fn ttl_seconds(ttl: Duration) -> i32 {
    const MAX: u64 = 20 * 365 * 24 * 3600;
    i32::try_from(ttl.as_secs().clamp(1, MAX)).unwrap_or(i32::MAX)
}

fn claim_token() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// A lightweight transaction's answer: `[applied]` and, when it did not apply, the row as
/// it stands (read by column name: the servers do not agree on the order).
#[derive(Debug, Default)]
struct Answer {
    applied: bool,
    claim: Option<String>,
    claimed_at: Option<DateTime<Utc>>,
    done: bool,
}

impl Answer {
    fn read(result: scylla::response::query_result::QueryResult) -> Result<Self, StoreError> {
        let rows = result.into_rows_result()?;
        let names: Vec<String> = rows
            .column_specs()
            .iter()
            .map(|spec| spec.name().to_owned())
            .collect();
        let row = rows.first_row::<scylla::value::Row>()?;
        let mut answer = Answer::default();
        for (name, value) in names.iter().zip(row.columns) {
            match (name.as_str(), value) {
                ("[applied]", Some(CqlValue::Boolean(b))) => answer.applied = b,
                ("claim", Some(CqlValue::Text(t) | CqlValue::Ascii(t))) => answer.claim = Some(t),
                ("claimed_at", Some(CqlValue::Timestamp(t))) => {
                    answer.claimed_at = DateTime::from_timestamp_millis(t.0);
                }
                ("done", Some(CqlValue::Boolean(b))) => answer.done = b,
                _ => {}
            }
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_positive_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(2500)), 2);
        assert_eq!(
            ttl_seconds(Duration::from_secs(u64::MAX)),
            20 * 365 * 24 * 3600
        );
    }

    #[test]
    fn claim_tokens_differ() {
        assert_ne!(claim_token(), claim_token());
        assert_eq!(claim_token().len(), 32);
    }
}
