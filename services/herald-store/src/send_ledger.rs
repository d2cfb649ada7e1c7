//! The delivery workers' send ledger (guarantee 3): what was sent, keyed by dispatch id, and
//! who may be sending what right now.
//!
//! - **Claims** are taken per batch, before any provider call: for each topic partition in the
//!   batch, one `send_claims` row says that every offset up to `claimed_through` may have been
//!   sent, by which worker and when ([`SendLedger::claim_batch`]).
//! - **Marks** are per dispatch, after the provider accepted it: the `send_ledger` row of the
//!   dispatch id says it was sent, by which provider and with what id
//!   ([`SendLedger::mark_sent`]). A dispatch already marked is never sent again, wherever it
//!   shows up (a redelivery, a duplicate record); its `sent` status is re-emitted from the mark
//!   ([`Claim::AlreadySent`]).
//! - A record at or below another worker's claim and not marked belongs to an owner that has
//!   lost its partition: Kafka gives a partition to one consumer of the group at a time, and
//!   a worker lets a partition go only between batches, so that owner died or was fenced
//!   mid-batch. Its claim is taken over at once ([`Claim::Held`] with `taken_over`), not after
//!   a lease: whatever it was doing is over, or it is a zombie whose transaction cannot commit.
//! - **Calls** can be recorded per dispatch just before the provider is called
//!   ([`SendLedger::mark_calling`]), for channels where a duplicate reaches a person: a
//!   dispatch that another worker was calling and that has no mark is *ambiguous*
//!   ([`Claim::Ambiguous`]): it may or may not have been sent, and the worker's policy decides
//!   (send again, or report it). Without a call record, an unmarked dispatch under a lost
//!   claim was perhaps being sent, and is sent again.
//!
//! Why claims are per partition, not per dispatch: Kafka already keeps two workers off one
//! record at one time (a partition has one owner, and a worker only lets a partition go
//! between batches); the claim only has to tell the next owner which records the previous one
//! may have been sending. One row per partition per batch says that as well as a row per
//! dispatch, and costs a database write per batch instead of one per dispatch. Reads of the
//! marks of concurrent sends are answered by one `IN` request, and marks go out as unlogged
//! batches.
//!
//! The only duplicate window is a crash (or a lost ledger write) between the provider's
//! acceptance and the mark: the next owner then sends again, unless calls are recorded, in
//! which case it reports the dispatch as ambiguous instead.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::batcher::Batcher;
use crate::unlogged;
use crate::{StoreConfig, StoreError};

const CLAIMED: &str = "claimed";
const CALLING: &str = "calling";
const SENT: &str = "sent";

/// What the ledger says about sending one dispatch of a claimed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller may call the provider. `taken_over` says the record was under a stale claim
    /// of another (presumed dead) worker, which may have sent it.
    Held { holder: Holder, taken_over: bool },
    /// The dispatch was sent already; do not send it again.
    AlreadySent(SentRecord),
    /// Another worker's live per-dispatch claim (as workers before `send_claims` wrote them)
    /// covers the record (it may be sending it now), until `until`.
    Busy { until: DateTime<Utc> },
    /// Another worker began calling the provider for this dispatch and recorded no result:
    /// it may or may not have been sent. `holder` sends it anyway if the policy says so.
    Ambiguous { holder: Holder },
}

/// A held dispatch: what [`SendLedger::mark_sent`] needs.
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

/// Where a record was consumed from.
#[derive(Debug, Clone, Copy)]
pub struct RecordAt<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// A partition claim as found before this batch claimed it.
#[derive(Debug, Clone)]
struct PartitionClaim {
    through: i64,
    claimed_by: String,
}

/// The claims a batch found when it claimed its partitions: which of its records another
/// worker may have been sending.
#[derive(Debug, Clone, Default)]
pub struct BatchClaim {
    found: HashMap<(String, i32), PartitionClaim>,
}

/// The ledger row of one dispatch, as read.
#[derive(Debug, Clone)]
struct LedgerRow {
    state: Option<String>,
    claimed_by: Option<String>,
    claimed_at: Option<DateTime<Utc>>,
    sent: SentRecord,
}

/// (provider, provider message id, sent at, attempt, marker, dispatch id).
type MarkWrite = (String, String, DateTime<Utc>, i32, String, String);
/// (marker, called at, dispatch id).
type CallWrite = (String, DateTime<Utc>, String);

/// Rows read, or written, by one request to the database.
const MAX_KEYS: usize = 64;
/// Loads under way at once per kind (each a serial task fed by its share of the keys).
const CONCURRENT_LOADS: usize = 4;

#[derive(Debug, Clone)]
pub struct SendLedger {
    session: Arc<Session>,
    /// This process's name in claims and marks; unique per process, so that a restarted
    /// worker does not take its previous life's claims for its own.
    marker: String,
    rows: Batcher<String, Option<LedgerRow>>,
    marks: Batcher<MarkWrite, ()>,
    calls: Batcher<CallWrite, ()>,
    read_claims: PreparedStatement,
    write_claim: PreparedStatement,
}

impl SendLedger {
    /// `owner` names this worker in claims (for operators reading the tables).
    pub async fn prepare(
        session: Arc<Session>,
        config: &StoreConfig,
        owner: impl Into<String>,
    ) -> Result<Self, StoreError> {
        let ledger = config.table("send_ledger");
        let claims = config.table("send_claims");
        let select = session
            .prepare(format!(
                "SELECT dispatch_id, state, claimed_by, claimed_at, provider, \
                 provider_message_id, sent_at, attempt FROM {ledger} WHERE dispatch_id IN ?"
            ))
            .await?;
        let mark = session
            .prepare(format!(
                "UPDATE {ledger} SET state = '{SENT}', provider = ?, provider_message_id = ?, \
                 sent_at = ?, attempt = ?, claimed_by = ? WHERE dispatch_id = ?"
            ))
            .await?;
        let call = session
            .prepare(format!(
                "UPDATE {ledger} SET state = '{CALLING}', claimed_by = ?, claimed_at = ? \
                 WHERE dispatch_id = ?"
            ))
            .await?;
        let read_claims = session
            .prepare(format!(
                "SELECT kafka_partition, claimed_through, claimed_by FROM {claims} \
                 WHERE topic = ? AND kafka_partition IN ?"
            ))
            .await?;
        let write_claim = session
            .prepare(format!(
                "INSERT INTO {claims} (topic, kafka_partition, claimed_through, claimed_by, \
                 claimed_at) VALUES (?, ?, ?, ?, ?)"
            ))
            .await?;
        let rows = {
            let session = session.clone();
            Batcher::spawn(MAX_KEYS, CONCURRENT_LOADS, move |ids: Vec<String>| {
                let (session, select) = (session.clone(), select.clone());
                async move { read_rows(&session, &select, ids).await }
            })
        };
        let marks = {
            let session = session.clone();
            Batcher::spawn(MAX_KEYS, CONCURRENT_LOADS, move |rows: Vec<MarkWrite>| {
                let (session, mark) = (session.clone(), mark.clone());
                async move {
                    unlogged::write_all(&session, &mark, &rows).await?;
                    Ok(vec![(); rows.len()])
                }
            })
        };
        let calls = {
            let session = session.clone();
            Batcher::spawn(MAX_KEYS, CONCURRENT_LOADS, move |rows: Vec<CallWrite>| {
                let (session, call) = (session.clone(), call.clone());
                async move {
                    unlogged::write_all(&session, &call, &rows).await?;
                    Ok(vec![(); rows.len()])
                }
            })
        };
        Ok(Self {
            session,
            marker: format!(
                "{}@{}#{:08x}",
                owner.into(),
                Utc::now().timestamp_millis(),
                fastrand::u32(..)
            ),
            rows,
            marks,
            calls,
            read_claims,
            write_claim,
        })
    }

    /// Claims every offset up to `last` of each (topic, partition, last) before any record of
    /// the batch is sent, and returns what the partitions' claims were before.
    pub async fn claim_batch(
        &self,
        partitions: &[(String, i32, i64)],
        now: DateTime<Utc>,
    ) -> Result<BatchClaim, StoreError> {
        let mut by_topic: HashMap<&str, Vec<i32>> = HashMap::new();
        for (topic, partition, _) in partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let mut found = HashMap::new();
        for (topic, numbers) in by_topic {
            let answer = self
                .session
                .execute_unpaged(&self.read_claims, (topic, &numbers))
                .await?
                .into_rows_result()?;
            for row in answer.rows::<(i32, Option<i64>, Option<String>)>()? {
                let (partition, through, claimed_by) = row?;
                found.insert(
                    (topic.to_owned(), partition),
                    PartitionClaim {
                        through: through.unwrap_or(-1),
                        claimed_by: claimed_by.unwrap_or_default(),
                    },
                );
            }
        }
        let writes: Vec<(&str, i32, i64, &str, DateTime<Utc>)> = partitions
            .iter()
            .map(|(topic, partition, last)| {
                // Never lower the mark: records above this batch may have been sent by the
                // previous owner, and a lower mark would make them look untouched.
                let before = found
                    .get(&(topic.clone(), *partition))
                    .map_or(-1, |c| c.through);
                (
                    topic.as_str(),
                    *partition,
                    before.max(*last),
                    self.marker.as_str(),
                    now,
                )
            })
            .collect();
        unlogged::write_all(&self.session, &self.write_claim, &writes).await?;
        Ok(BatchClaim { found })
    }

    /// Whether the dispatch `dispatch_id`, consumed `at`, may be sent now by the batch that
    /// `batch` claimed.
    pub async fn claim(
        &self,
        batch: &BatchClaim,
        at: RecordAt<'_>,
        dispatch_id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let lease = chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
        let holder = Holder {
            dispatch_id: dispatch_id.to_owned(),
            marker: self.marker.clone(),
        };
        let row = self.rows.get(dispatch_id.to_owned()).await?;
        if let Some(row) = &row {
            match row.state.as_deref() {
                Some(SENT) => return Ok(Claim::AlreadySent(row.sent.clone())),
                // A per-dispatch claim, as workers before `send_claims` wrote them.
                Some(CLAIMED) => {
                    if let Some(claimed_at) = row.claimed_at
                        && now - claimed_at <= lease
                    {
                        return Ok(Claim::Busy {
                            until: claimed_at + lease,
                        });
                    }
                }
                // This process's own call ended with a result it acted on (a failure: a
                // success is marked); another's may have sent it.
                Some(CALLING) if row.claimed_by.as_deref() != Some(self.marker.as_str()) => {
                    return Ok(Claim::Ambiguous { holder });
                }
                _ => {}
            }
        }
        let taken_over = batch
            .found
            .get(&(at.topic.to_owned(), at.partition))
            .is_some_and(|c| at.offset <= c.through && c.claimed_by != self.marker);
        Ok(Claim::Held { holder, taken_over })
    }

    /// Records that the held dispatch's provider call begins: if this worker dies before the
    /// result is marked, the next owner knows the dispatch may have been sent.
    pub async fn mark_calling(
        &self,
        holder: &Holder,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.calls
            .get((holder.marker.clone(), now, holder.dispatch_id.clone()))
            .await
    }

    /// Records that the held dispatch was sent.
    pub async fn mark_sent(
        &self,
        holder: &Holder,
        provider: &str,
        provider_message_id: &str,
        attempt: i32,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.marks
            .get((
                provider.to_owned(),
                provider_message_id.to_owned(),
                now,
                attempt,
                holder.marker.clone(),
                holder.dispatch_id.clone(),
            ))
            .await
    }
}

/// The row of each id (in order; ids may repeat), `None` where there is none.
async fn read_rows(
    session: &Session,
    select: &PreparedStatement,
    ids: Vec<String>,
) -> Result<Vec<Option<LedgerRow>>, StoreError> {
    type Columns = (
        String,
        Option<String>,
        Option<String>,
        Option<DateTime<Utc>>,
        Option<String>,
        Option<String>,
        Option<DateTime<Utc>>,
        Option<i32>,
    );
    let answer = session
        .execute_unpaged(select, (&ids,))
        .await?
        .into_rows_result()?;
    let mut found = HashMap::new();
    for row in answer.rows::<Columns>()? {
        let (id, state, claimed_by, claimed_at, provider, provider_message_id, sent_at, attempt) =
            row?;
        found.insert(
            id,
            LedgerRow {
                state,
                claimed_by,
                claimed_at,
                sent: SentRecord {
                    provider,
                    provider_message_id,
                    attempt: attempt.unwrap_or(0),
                    sent_at,
                },
            },
        );
    }
    Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
}
