//! The delivery workers' send ledger (guarantee 3): one row per dispatch id, claimed with a
//! lightweight transaction before the provider call and marked sent after it.
//!
//! - A dispatch already marked sent is not sent again; the worker re-emits its `sent` status
//!   from what the ledger recorded ([`Claim::AlreadySent`]).
//! - A claim holds for a lease. A claim older than the lease belonged to a worker presumed dead
//!   and is taken over; a younger one means another worker is sending right now
//!   ([`Claim::Busy`]).
//! - A call that did not send (transient or permanent failure) releases its claim, so that the
//!   retry tier's attempt can claim again.
//!
//! The only duplicate window is a crash (or a lost ledger write) between the provider's
//! acceptance and [`SendLedger::mark_sent`]: the claim then ages past its lease and the next
//! worker sends again.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{StoreConfig, StoreError};

const CLAIMED: &str = "claimed";
const SENT: &str = "sent";

/// What claiming a dispatch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the dispatch and may call the provider. `taken_over` says a stale
    /// claim of another (presumed dead) worker was replaced.
    Held { holder: Holder, taken_over: bool },
    /// The dispatch was sent already; do not send it again.
    AlreadySent(SentRecord),
    /// Another worker holds a live claim (it is sending now), until `until`.
    Busy { until: DateTime<Utc> },
}

/// A held claim: what [`SendLedger::mark_sent`] and [`SendLedger::release`] need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub dispatch_id: String,
    marker: String,
}

/// What the ledger recorded about a sent dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRecord {
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub attempt: i32,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct SendLedger {
    session: Arc<Session>,
    owner: String,
    claim_new: PreparedStatement,
    take_over: PreparedStatement,
    mark_sent: PreparedStatement,
    release: PreparedStatement,
}

/// Claim markers issued by this process, so that two claims of one owner never look alike.
static CLAIMS: AtomicU64 = AtomicU64::new(0);

impl SendLedger {
    /// `owner` names this worker in claims (for operators reading the table).
    pub async fn prepare(
        session: Arc<Session>,
        config: &StoreConfig,
        owner: impl Into<String>,
    ) -> Result<Self, StoreError> {
        let table = config.table("send_ledger");
        let claim_new = session
            .prepare(format!(
                "INSERT INTO {table} (dispatch_id, state, claimed_by, claimed_at, attempt) \
                 VALUES (?, '{CLAIMED}', ?, ?, ?) IF NOT EXISTS"
            ))
            .await?;
        let take_over = session
            .prepare(format!(
                "UPDATE {table} SET claimed_by = ?, claimed_at = ?, attempt = ? \
                 WHERE dispatch_id = ? IF state = '{CLAIMED}' AND claimed_by = ?"
            ))
            .await?;
        let mark_sent = session
            .prepare(format!(
                "UPDATE {table} SET state = '{SENT}', provider = ?, provider_message_id = ?, \
                 sent_at = ?, attempt = ? WHERE dispatch_id = ? IF claimed_by = ?"
            ))
            .await?;
        let release = session
            .prepare(format!(
                "DELETE FROM {table} WHERE dispatch_id = ? IF claimed_by = ?"
            ))
            .await?;
        Ok(Self {
            session,
            owner: owner.into(),
            claim_new,
            take_over,
            mark_sent,
            release,
        })
    }

    fn marker(&self, now: DateTime<Utc>) -> String {
        let n = CLAIMS.fetch_add(1, Ordering::Relaxed);
        format!("{}@{}#{n}", self.owner, now.timestamp_millis())
    }

    /// Claims `dispatch_id` for attempt `attempt`, taking over a claim older than `lease`.
    pub async fn claim(
        &self,
        dispatch_id: &str,
        attempt: i32,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let marker = self.marker(now);
        let answer = self
            .session
            .execute_unpaged(&self.claim_new, (dispatch_id, &marker, now, attempt))
            .await?;
        let (applied, row) = lwt_answer(answer)?;
        let holder = Holder {
            dispatch_id: dispatch_id.to_owned(),
            marker,
        };
        if applied {
            return Ok(Claim::Held {
                holder,
                taken_over: false,
            });
        }
        let text = |name: &str| match row.get(name) {
            Some(CqlValue::Text(s) | CqlValue::Ascii(s)) => Some(s.clone()),
            _ => None,
        };
        let time = |name: &str| match row.get(name) {
            Some(CqlValue::Timestamp(t)) => DateTime::from_timestamp_millis(t.0),
            _ => None,
        };
        if text("state").as_deref() == Some(SENT) {
            return Ok(Claim::AlreadySent(SentRecord {
                provider: text("provider"),
                provider_message_id: text("provider_message_id"),
                attempt: match row.get("attempt") {
                    Some(CqlValue::Int(a)) => *a,
                    _ => 0,
                },
                sent_at: time("sent_at"),
            }));
        }
        let lease = chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
        // A claim without a time is nobody's live claim.
        let claimed_at = time("claimed_at").unwrap_or(DateTime::<Utc>::MIN_UTC);
        if now - claimed_at <= lease {
            return Ok(Claim::Busy {
                until: claimed_at + lease,
            });
        }
        let held = text("claimed_by");
        let answer = self
            .session
            .execute_unpaged(
                &self.take_over,
                (&holder.marker, now, attempt, dispatch_id, held),
            )
            .await?;
        let (applied, _) = lwt_answer(answer)?;
        Ok(if applied {
            Claim::Held {
                holder,
                taken_over: true,
            }
        } else {
            // Someone else took it over (or it was sent) just now.
            Claim::Busy { until: now + lease }
        })
    }

    /// Records that the held dispatch was sent. False if the claim was lost meanwhile (it
    /// aged past its lease and another worker took it over).
    pub async fn mark_sent(
        &self,
        holder: &Holder,
        provider: &str,
        provider_message_id: &str,
        attempt: i32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let answer = self
            .session
            .execute_unpaged(
                &self.mark_sent,
                (
                    provider,
                    provider_message_id,
                    now,
                    attempt,
                    &holder.dispatch_id,
                    &holder.marker,
                ),
            )
            .await?;
        Ok(lwt_answer(answer)?.0)
    }

    /// Gives the claim up after a call that did not send, so that a later attempt can claim.
    pub async fn release(&self, holder: &Holder) -> Result<bool, StoreError> {
        let answer = self
            .session
            .execute_unpaged(&self.release, (&holder.dispatch_id, &holder.marker))
            .await?;
        Ok(lwt_answer(answer)?.0)
    }
}

/// A lightweight transaction's `[applied]` and, when it was not applied, the row's current
/// columns by name.
fn lwt_answer(
    answer: scylla::response::query_result::QueryResult,
) -> Result<(bool, HashMap<String, CqlValue>), StoreError> {
    let rows = answer.into_rows_result()?;
    let names: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let row = rows.first_row::<Row>()?;
    let mut columns = HashMap::new();
    for (name, value) in names.into_iter().zip(row.columns) {
        if let Some(value) = value {
            columns.insert(name, value);
        }
    }
    let applied = matches!(columns.get("[applied]"), Some(CqlValue::Boolean(true)));
    Ok((applied, columns))
}
