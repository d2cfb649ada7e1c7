//! Delivering one consumed record: decode → claim in the send ledger → call the provider →
//! the records to produce (statuses, a retry-tier record, a DLQ record). Kafka transactions
//! are the batch loop's business; this module only says what to write, or that a transient
//! fault (database, registry) means the batch must be retried.

use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_contracts::metric_names::{
    DELIVER_AMBIGUOUS, DELIVER_BREAKER_DEFERRED, DELIVER_DEAD_LETTERED, DELIVER_EXPIRED,
    DELIVER_FALLBACKS, DELIVER_IN_FLIGHT, DELIVER_LEDGER_HITS, DELIVER_MESSAGE_INDEX_FAILURES,
    DELIVER_OUTCOMES, DELIVER_PROVIDER_SECONDS, DELIVER_RETRIES,
};
use herald_contracts::status::reason;
use herald_contracts::topics::RETRY_TIERS;
use herald_contracts::{
    Channel, Codec, CodecError, Decoded, Dispatch, InboxEvent, Status, StatusEvent, TopicNames,
    headers,
};
use herald_kafka::transaction::OffsetRanges;
use herald_store::StoreError;
use herald_store::provider_messages::{MessageRef, ProviderMessages};
use herald_store::push_tokens::PushTokens;
use herald_store::send_ledger::{BatchClaim, Claim, Holder, RecordAt, SendLedger, SentRecord};

use super::breaker::Breaker;
use super::retry::{Next, deferral, next_step};
use super::span::{self, Ending};
use super::token_bucket::TokenBucket;
use crate::config::AmbiguousSend;
use crate::{Outcome, Provider};
use tracing::Instrument as _;

/// The stage name on DLQ records this worker writes.
const STAGE: &str = "deliver";
/// The DLQ class of a dispatch the breaker deferred for longer than `max_deferral` after its
/// last retry tier.
pub(crate) const CIRCUIT_OPEN: &str = "circuit_open";
/// Tries of the ledger mark after a send: a lost mark is the one duplicate window, so it is
/// worth a few short retries before the batch is given up.
const MARK_TRIES: u32 = 3;

pub(crate) use herald_kafka::engine::Input;

/// What the worker reads from a consumed dispatch beyond its bytes.
pub(crate) trait DispatchRecord {
    /// The attempt this record is (1 for a dispatch straight from the router).
    fn attempt(&self) -> i32;
    /// When a retry-tier record is due, if it says.
    fn due_at(&self) -> Option<DateTime<Utc>>;
    /// When an open breaker first deferred this dispatch, if one did since its last attempt.
    fn deferred_since(&self) -> Option<DateTime<Utc>>;
    /// The record's headers without the ones this worker sets anew.
    fn carried_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// The headers of a status or fallback request derived from this record: trace context
    /// (the attempt's span, when spans are exported) and, for a replayed dispatch, its replay
    /// headers (its status trail says it was replayed).
    fn derived_headers(&self) -> Vec<(String, Vec<u8>)>;
}

impl DispatchRecord for Input {
    fn attempt(&self) -> i32 {
        self.header_number(headers::ATTEMPT)
            .and_then(|a| i32::try_from(a).ok())
            .unwrap_or(1)
            .max(1)
    }

    fn due_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.header_number(headers::DUE_AT)?)
    }

    fn deferred_since(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.header_number(headers::DEFERRED_SINCE)?)
    }

    fn carried_headers(&self) -> Vec<(String, Vec<u8>)> {
        const REPLACED: [&str; 9] = [
            headers::ATTEMPT,
            headers::DUE_AT,
            headers::DEFERRED_SINCE,
            headers::ERROR_STAGE,
            headers::ERROR_CLASS,
            headers::ERROR_MESSAGE,
            headers::ORIGINAL_TOPIC,
            headers::ORIGINAL_PARTITION,
            headers::ORIGINAL_OFFSET,
        ];
        self.headers
            .iter()
            .filter(|(k, _)| !REPLACED.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    fn derived_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut derived = self
            .headers
            .iter()
            .filter(|(k, _)| {
                k == headers::TRACEPARENT
                    || k == headers::TRACESTATE
                    || headers::REPLAY_HEADERS.contains(&k.as_str())
            })
            .cloned()
            .collect();
        span::continue_trace(&mut derived);
        derived
    }
}

pub(crate) use herald_kafka::transaction::OutRecord;

/// A fault that waiting can cure: the batch is aborted and retried, nothing is dead-lettered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Transient {
    #[error("database: {0}")]
    Store(StoreError),
    #[error("schema registry: {0}")]
    Registry(CodecError),
}

impl Transient {
    /// `database` or `schema_registry`: the `error.type` of an attempt it aborted.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Transient::Store(_) => "database",
            Transient::Registry(_) => "schema_registry",
        }
    }
}

/// Why a record goes to the DLQ.
struct Poison {
    class: &'static str,
    message: String,
}

/// What the ledger lets this worker do with one dispatch.
enum Leave {
    /// Call the provider.
    Send(Holder),
    /// It was sent before: re-emit that.
    Sent(SentRecord),
    /// Another worker may have sent it; the policy said not to send it again.
    Ambiguous,
}

/// A send this process made whose ledger mark failed (the batch was then aborted): known here,
/// so that the batch's retry marks it instead of calling the provider again.
#[derive(Debug, Clone)]
pub(crate) struct Unmarked {
    holder: Holder,
    provider_message_id: String,
    delivered: bool,
    attempt: i32,
}

/// Everything one worker needs to deliver a record.
#[derive(Debug)]
pub(crate) struct Deliverer {
    pub(crate) channel: Channel,
    /// The consumer group, for the attempts' spans.
    pub(crate) group: String,
    pub(crate) codec: Codec,
    pub(crate) topics: TopicNames,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) ledger: SendLedger,
    pub(crate) push_tokens: PushTokens,
    /// Provider message ids and their dispatches, for status callbacks that name only the id.
    pub(crate) messages: ProviderMessages,
    /// How long such a record is kept (`deliver.provider_message_ttl`).
    pub(crate) message_ttl: Duration,
    pub(crate) retry_delays: Vec<Duration>,
    pub(crate) lease: Duration,
    pub(crate) breaker: Breaker,
    /// The breaker's open time: how far deferred dispatches are spread out.
    pub(crate) breaker_spread: Duration,
    /// How long one dispatch may be deferred by the breaker before it counts as a failure.
    pub(crate) max_deferral: Duration,
    /// What to do with a dispatch another worker may have sent (`deliver.ambiguous_send`).
    pub(crate) ambiguous: AmbiguousSend,
    /// Sends made whose marks failed, by dispatch id (see [`Unmarked`]).
    pub(crate) unmarked: std::sync::Mutex<std::collections::HashMap<String, Unmarked>>,
    pub(crate) limiter: TokenBucket,
}

impl Deliverer {
    /// The records that delivering `input` produces, as one attempt's span (see [`span`]).
    pub(crate) async fn deliver(
        &self,
        input: &Input,
        batch: &BatchClaim,
    ) -> Result<Vec<OutRecord>, Transient> {
        let attempt_span = span::attempt(input, self.channel, self.provider.name(), &self.group);
        let result = self
            .attempt(input, batch)
            .instrument(attempt_span.clone())
            .await;
        if let Err(transient) = &result {
            span::end_span(&attempt_span, Ending::Aborted, Some(transient.class()));
        }
        result
    }

    async fn attempt(
        &self,
        input: &Input,
        batch: &BatchClaim,
    ) -> Result<Vec<OutRecord>, Transient> {
        let dispatch = match self.decode(input).await? {
            Ok(dispatch) => dispatch,
            Err(poison) => {
                metrics::counter!(DELIVER_DEAD_LETTERED, "class" => poison.class).increment(1);
                span::end(Ending::DeadLettered, Some(poison.class));
                return Ok(vec![self.dead_letter(input, &poison, input.attempt())]);
            }
        };
        span::dispatch(&dispatch);
        let attempt = input.attempt();
        if let Some(unmarked) = self.take_unmarked(&dispatch.dispatch_id) {
            return self.sent_unmarked(input, &dispatch, unmarked).await;
        }
        if dispatch.expires_by(Utc::now()) {
            return self.expire_unsent(input, batch, &dispatch, attempt).await;
        }
        // The breaker before the ledger: a refused dispatch costs no read. (A redelivered
        // dispatch that was in fact sent is deferred too, and its `sent` status re-emitted
        // once the breaker lets it through.)
        let permit = match self.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(rejected) => return self.defer(input, &dispatch, attempt, rejected.wait).await,
        };
        // The token before the ledger read, so that what the read says is still true when
        // the call is made.
        self.limiter.acquire().await;
        let holder = match self.claim(input, batch, &dispatch).await? {
            Leave::Send(holder) => holder,
            Leave::Sent(sent) => return self.sent_before(input, &dispatch, &sent).await,
            Leave::Ambiguous => return self.ambiguous(input, &dispatch, attempt).await,
        };
        if self.ambiguous == AmbiguousSend::Report {
            // Before the call: a successor that finds this and no mark knows the dispatch may
            // have been sent. A failed write means no call, and the batch is retried.
            self.ledger
                .mark_calling(&holder, Utc::now())
                .await
                .map_err(Transient::Store)?;
        }
        let report = self.call(&dispatch).await;
        permit.record(&report.outcome);
        if !report.stale_addresses.is_empty()
            && let Err(e) = self
                .push_tokens
                .remove(&dispatch.tenant, &dispatch.user_id, &report.stale_addresses)
                .await
        {
            // The next send to a stale token fails permanently and reports it again.
            tracing::warn!(dispatch_id = %dispatch.dispatch_id, error = %e, "stale push tokens not removed");
        }
        match report.outcome {
            Outcome::Sent {
                provider_message_id,
                delivered,
            } => {
                if let Err(e) = self.mark_sent(&holder, &provider_message_id, attempt).await {
                    // Sent, but not recorded: remembered here so the retried batch marks it
                    // rather than calling the provider again.
                    self.remember_unmarked(Unmarked {
                        holder,
                        provider_message_id,
                        delivered,
                        attempt,
                    });
                    return Err(e);
                }
                self.index_message(&dispatch, &provider_message_id).await;
                self.sent_records(input, &dispatch, &provider_message_id, delivered, attempt)
                    .await
            }
            Outcome::Transient {
                reason,
                retry_after,
            } => {
                let mut out = vec![
                    self.status_record(
                        input,
                        &self.failure_status(&dispatch, Status::Failed, &reason, attempt),
                    )
                    .await?,
                ];
                let poison = Poison {
                    class: "retries_exhausted",
                    message: reason,
                };
                out.extend(
                    self.after_failure(input, &dispatch, attempt, retry_after, poison)
                        .await?,
                );
                Ok(out)
            }
            Outcome::Permanent { reason } => {
                let poison = Poison {
                    class: "permanent",
                    message: reason,
                };
                self.dead_end(input, &dispatch, poison, attempt).await
            }
        }
    }

    /// What follows a failed attempt (or a deferral past its bound): the next retry tier, a
    /// `suppressed(expired)` when that would fall past the deadline, or after the last tier
    /// the dead end (`poison`) and the fallback.
    async fn after_failure(
        &self,
        input: &Input,
        dispatch: &Dispatch,
        attempt: i32,
        retry_after: Option<Duration>,
        poison: Poison,
    ) -> Result<Vec<OutRecord>, Transient> {
        let next = next_step(
            &self.retry_delays,
            attempt,
            retry_after,
            Utc::now(),
            fastrand::f64(),
        );
        Ok(match next {
            Next::Tier { due, .. } if dispatch.expires_by(due) => {
                vec![
                    self.expired(input, dispatch, attempt, "before_retry")
                        .await?,
                ]
            }
            Next::Tier { tier, attempt, due } => {
                metrics::counter!(DELIVER_RETRIES, "tier" => tier.to_string()).increment(1);
                vec![
                    self.retry_record(input, dispatch, tier, attempt, due, None)
                        .await?,
                ]
            }
            Next::Exhausted => self.dead_end(input, dispatch, poison, attempt).await?,
        })
    }

    /// The record back to its retry tier, not spending an attempt: the provider was not
    /// called, so there is no status either (a deferral is a metric). Deferrals are bounded:
    /// once a dispatch has been deferred for `max_deferral`, it takes the path of a failed
    /// attempt, so an open breaker cannot hold it forever.
    async fn defer(
        &self,
        input: &Input,
        dispatch: &Dispatch,
        attempt: i32,
        wait: Duration,
    ) -> Result<Vec<OutRecord>, Transient> {
        let now = Utc::now();
        let since = input.deferred_since().unwrap_or(now);
        if (now - since).to_std().unwrap_or_default() >= self.max_deferral {
            tracing::info!(dispatch_id = %dispatch.dispatch_id, "deferred by the breaker for too long; counted as a failed attempt");
            let poison = Poison {
                class: CIRCUIT_OPEN,
                message: format!(
                    "the {} circuit breaker stayed open for {:?} (deliver.breaker.max_deferral)",
                    self.provider.name(),
                    self.max_deferral
                ),
            };
            return self
                .after_failure(input, dispatch, attempt, None, poison)
                .await;
        }
        metrics::counter!(DELIVER_BREAKER_DEFERRED, "provider" => self.provider.name())
            .increment(1);
        let from = (1..=RETRY_TIERS).find(|t| self.topics.retry(self.channel, *t) == input.topic);
        let (tier, due) = deferral(
            &self.retry_delays,
            from,
            wait,
            self.breaker_spread,
            now,
            fastrand::f64(),
        );
        tracing::debug!(dispatch_id = %dispatch.dispatch_id, tier, "circuit open; dispatch deferred");
        if dispatch.expires_by(due) {
            return Ok(vec![
                self.expired(input, dispatch, attempt, "before_retry")
                    .await?,
            ]);
        }
        Ok(vec![
            self.retry_record(input, dispatch, tier, attempt, due, Some(since))
                .await?,
        ])
    }

    /// A dispatch whose deadline has passed: not sent, `suppressed(expired)`. Unless the
    /// ledger says an earlier life of this record did send it; then that `sent` stands.
    async fn expire_unsent(
        &self,
        input: &Input,
        batch: &BatchClaim,
        dispatch: &Dispatch,
        attempt: i32,
    ) -> Result<Vec<OutRecord>, Transient> {
        match self.claim(input, batch, dispatch).await? {
            Leave::Send(_) => Ok(vec![
                self.expired(input, dispatch, attempt, "before_send")
                    .await?,
            ]),
            Leave::Sent(sent) => self.sent_before(input, dispatch, &sent).await,
            Leave::Ambiguous => self.ambiguous(input, dispatch, attempt).await,
        }
    }

    /// The `suppressed(expired)` status record; `when` labels the metric.
    async fn expired(
        &self,
        input: &Input,
        dispatch: &Dispatch,
        attempt: i32,
        when: &'static str,
    ) -> Result<OutRecord, Transient> {
        metrics::counter!(DELIVER_EXPIRED, "when" => when).increment(1);
        span::end(Ending::Expired, None);
        tracing::info!(dispatch_id = %dispatch.dispatch_id, when, "deadline passed; not sent");
        // No provider: it was not called for this outcome (any failed call has its own status).
        let mut status = self.status_event(dispatch, Status::Suppressed, attempt);
        status.reason = Some(reason::EXPIRED.to_owned());
        self.status_record(input, &status).await
    }

    /// The `sent` status of a dispatch the ledger says was sent before, emitted again.
    async fn sent_before(
        &self,
        input: &Input,
        dispatch: &Dispatch,
        sent: &SentRecord,
    ) -> Result<Vec<OutRecord>, Transient> {
        tracing::info!(dispatch_id = %dispatch.dispatch_id, "already sent; status re-emitted");
        span::end(Ending::AlreadySent, None);
        let status = self.sent_status(
            dispatch,
            Status::Sent,
            sent.provider.as_deref(),
            sent.provider_message_id.as_deref(),
            sent.attempt,
        );
        let mut out = vec![self.status_record(input, &status).await?];
        // The transaction that carried its inbox event did not commit (or the ledger would
        // not have been read): the live streams learn of the message now.
        out.extend(self.inbox_record(input, dispatch).await?);
        Ok(out)
    }

    /// The dispatch in `input`, a reason to dead-letter it, or a transient registry fault.
    async fn decode(&self, input: &Input) -> Result<Result<Dispatch, Poison>, Transient> {
        let Some(payload) = input.payload.as_deref() else {
            return Ok(Err(Poison {
                class: "empty",
                message: "the record has no value".into(),
            }));
        };
        match self.codec.decode(payload).await {
            Ok(Decoded::Dispatch(dispatch)) if dispatch.channel == self.channel => Ok(Ok(dispatch)),
            Ok(Decoded::Dispatch(dispatch)) => Ok(Err(Poison {
                class: "wrong_channel",
                message: format!(
                    "a {} dispatch on a {} topic",
                    dispatch.channel, self.channel
                ),
            })),
            Ok(other) => Ok(Err(Poison {
                class: "incompatible_schema",
                message: format!(
                    "expected a dispatch, got {}",
                    other.schema_name().unwrap_or("an unnamed schema")
                ),
            })),
            Err(e) if e.is_transient() => Err(Transient::Registry(e)),
            Err(e) => Ok(Err(Poison {
                class: e.class(),
                message: e.to_string(),
            })),
        }
    }

    /// Claims the batch's offsets in the send ledger before any of them is sent.
    pub(crate) async fn claim_batch(
        &self,
        ranges: &OffsetRanges,
    ) -> Result<BatchClaim, StoreError> {
        let partitions: Vec<(String, i32, i64)> = ranges
            .ends()
            .map(|(topic, partition, last)| (topic.to_owned(), partition, last))
            .collect();
        self.ledger.claim_batch(&partitions, Utc::now()).await
    }

    /// Leave to send, what the ledger says was sent, or that the dispatch is ambiguous and the
    /// policy is not to send it again. A live per-dispatch claim of an older worker is waited
    /// out: within the lease it is marked sent or it goes stale.
    async fn claim(
        &self,
        input: &Input,
        batch: &BatchClaim,
        dispatch: &Dispatch,
    ) -> Result<Leave, Transient> {
        let at = RecordAt {
            topic: &input.topic,
            partition: input.partition,
            offset: input.offset,
        };
        loop {
            let claim = self
                .ledger
                .claim(batch, at, &dispatch.dispatch_id, Utc::now(), self.lease)
                .await
                .map_err(Transient::Store)?;
            match claim {
                Claim::Held { holder, taken_over } => {
                    if taken_over {
                        metrics::counter!(DELIVER_LEDGER_HITS, "result" => "taken_over")
                            .increment(1);
                        tracing::info!(dispatch_id = %dispatch.dispatch_id, "took over the claim of the partition's previous owner");
                    }
                    return Ok(Leave::Send(holder));
                }
                Claim::AlreadySent(sent) => {
                    metrics::counter!(DELIVER_LEDGER_HITS, "result" => "already_sent").increment(1);
                    return Ok(Leave::Sent(sent));
                }
                Claim::Ambiguous { holder } => {
                    return Ok(match self.ambiguous {
                        AmbiguousSend::Resend => {
                            metrics::counter!(DELIVER_AMBIGUOUS, "action" => "resent").increment(1);
                            tracing::warn!(dispatch_id = %dispatch.dispatch_id, "another worker may have sent this dispatch; sending it again (deliver.ambiguous_send = resend)");
                            Leave::Send(holder)
                        }
                        AmbiguousSend::Report => Leave::Ambiguous,
                    });
                }
                Claim::Busy { until } => {
                    metrics::counter!(DELIVER_LEDGER_HITS, "result" => "busy").increment(1);
                    let wait = (until - Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .clamp(Duration::from_millis(100), Duration::from_secs(1));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// `unknown` (reason `ambiguous_send`), terminal: another worker began sending this
    /// dispatch and recorded no result, and the policy is not to risk a second copy.
    async fn ambiguous(
        &self,
        input: &Input,
        dispatch: &Dispatch,
        attempt: i32,
    ) -> Result<Vec<OutRecord>, Transient> {
        metrics::counter!(DELIVER_AMBIGUOUS, "action" => "reported").increment(1);
        span::end(Ending::Ambiguous, None);
        tracing::warn!(dispatch_id = %dispatch.dispatch_id, "another worker may have sent this dispatch; reported as unknown, not sent again (deliver.ambiguous_send = report)");
        let mut status = self.status_event(dispatch, Status::Unknown, attempt);
        status.provider = Some(self.provider.name().to_owned());
        status.reason = Some(reason::AMBIGUOUS_SEND.to_owned());
        Ok(vec![self.status_record(input, &status).await?])
    }

    fn remember_unmarked(&self, unmarked: Unmarked) {
        self.unmarked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(unmarked.holder.dispatch_id.clone(), unmarked);
    }

    fn take_unmarked(&self, dispatch_id: &str) -> Option<Unmarked> {
        self.unmarked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(dispatch_id)
    }

    /// A send of this process whose mark failed: marked now, and its statuses emitted,
    /// without calling the provider again.
    async fn sent_unmarked(
        &self,
        input: &Input,
        dispatch: &Dispatch,
        unmarked: Unmarked,
    ) -> Result<Vec<OutRecord>, Transient> {
        let Unmarked {
            holder,
            provider_message_id,
            delivered,
            attempt,
        } = unmarked.clone();
        if let Err(e) = self.mark_sent(&holder, &provider_message_id, attempt).await {
            self.remember_unmarked(unmarked);
            return Err(e);
        }
        self.index_message(dispatch, &provider_message_id).await;
        self.sent_records(input, dispatch, &provider_message_id, delivered, attempt)
            .await
    }

    /// The `sent` status of a provider call (and `delivered`, when the provider says so).
    async fn sent_records(
        &self,
        input: &Input,
        dispatch: &Dispatch,
        provider_message_id: &str,
        delivered: bool,
        attempt: i32,
    ) -> Result<Vec<OutRecord>, Transient> {
        span::end(Ending::Sent, None);
        let name = Some(self.provider.name());
        let id = Some(provider_message_id);
        let mut out = vec![
            self.status_record(
                input,
                &self.sent_status(dispatch, Status::Sent, name, id, attempt),
            )
            .await?,
        ];
        if delivered {
            let status = self.sent_status(dispatch, Status::Delivered, name, id, attempt);
            out.push(self.status_record(input, &status).await?);
        }
        out.extend(self.inbox_record(input, dispatch).await?);
        Ok(out)
    }

    /// For an in-app dispatch stored in the inbox: the inbox event that tells every `herald
    /// api` replica's live streams of the new message, in the same transaction as its status.
    async fn inbox_record(
        &self,
        input: &Input,
        dispatch: &Dispatch,
    ) -> Result<Option<OutRecord>, Transient> {
        if dispatch.channel != Channel::Inapp {
            return Ok(None);
        }
        let event = InboxEvent::message(dispatch, herald_contracts::time::now_millis());
        let payload = self
            .codec
            .encode_inbox(&event)
            .await
            .map_err(Transient::Registry)?;
        Ok(Some(OutRecord {
            topic: self.topics.inbox(),
            key: Some(event.key().into_bytes()),
            payload,
            headers: input.derived_headers(),
        }))
    }

    /// Records which dispatch the provider's message id belongs to, right after the ledger
    /// mark, for a provider whose status callbacks name only that id. A failure is counted and
    /// logged, not retried: the message was sent and marked; only its callbacks go unmatched.
    async fn index_message(&self, dispatch: &Dispatch, provider_message_id: &str) {
        if !self.provider.callbacks_by_message_id() || provider_message_id.is_empty() {
            return;
        }
        let message = MessageRef {
            tenant: dispatch.tenant.clone(),
            user_id: dispatch.user_id.clone(),
            event_id: dispatch.event_id.clone(),
            dispatch_id: dispatch.dispatch_id.clone(),
            channel: Some(dispatch.channel),
            sent_at: Utc::now(),
            category: Some(dispatch.category.clone()),
            created_at: Some(dispatch.created_at),
        };
        let provider = self.provider.name();
        if let Err(e) = self
            .messages
            .record(provider, provider_message_id, &message, self.message_ttl)
            .await
        {
            metrics::counter!(DELIVER_MESSAGE_INDEX_FAILURES, "provider" => provider).increment(1);
            tracing::warn!(dispatch_id = %dispatch.dispatch_id, error = %e, "provider message id not recorded; its status callbacks will be unmatched");
        }
    }

    async fn call(&self, dispatch: &Dispatch) -> crate::SendReport {
        let provider = self.provider.name();
        metrics::gauge!(DELIVER_IN_FLIGHT).increment(1.0);
        let started = Instant::now();
        let report = self.provider.send(dispatch).await;
        metrics::histogram!(DELIVER_PROVIDER_SECONDS, "provider" => provider)
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!(DELIVER_IN_FLIGHT).decrement(1.0);
        metrics::counter!(DELIVER_OUTCOMES, "provider" => provider, "class" => report.outcome.class())
            .increment(1);
        report
    }

    async fn mark_sent(
        &self,
        holder: &Holder,
        provider_message_id: &str,
        attempt: i32,
    ) -> Result<(), Transient> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .ledger
                .mark_sent(
                    holder,
                    self.provider.name(),
                    provider_message_id,
                    attempt,
                    Utc::now(),
                )
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if tries < MARK_TRIES => {
                    tracing::warn!(dispatch_id = %holder.dispatch_id, error = %e, "send-ledger mark failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
                }
                Err(e) => return Err(Transient::Store(e)),
            }
        }
    }

    /// `dead_lettered` status and the DLQ record.
    async fn dead_end(
        &self,
        input: &Input,
        dispatch: &Dispatch,
        poison: Poison,
        attempt: i32,
    ) -> Result<Vec<OutRecord>, Transient> {
        metrics::counter!(DELIVER_DEAD_LETTERED, "class" => poison.class).increment(1);
        span::end(Ending::DeadLettered, Some(poison.class));
        let status = self.failure_status(dispatch, Status::DeadLettered, &poison.message, attempt);
        let mut out = vec![
            self.status_record(input, &status).await?,
            self.dead_letter(input, &poison, attempt),
        ];
        out.extend(self.fallback(input, dispatch));
        Ok(out)
    }

    /// The request for the next fallback channel, back through the router (which rendered it
    /// when it routed this dispatch), in the same transaction as the dead letter. Its event id
    /// is derived, so a second copy of it is deduplicated like any event.
    fn fallback(&self, input: &Input, dispatch: &Dispatch) -> Option<OutRecord> {
        let request = dispatch.fallback_request.clone()?;
        let rest: Vec<&str> = dispatch
            .fallback
            .iter()
            .skip(1)
            .map(|c| c.as_str())
            .collect();
        let mut record_headers = input.derived_headers();
        record_headers.push((
            headers::FALLBACK_CHAIN.to_owned(),
            rest.join(",").into_bytes(),
        ));
        metrics::counter!(DELIVER_FALLBACKS, "channel" => self.channel.as_str()).increment(1);
        Some(OutRecord {
            topic: self.topics.requested(),
            key: Some(dispatch.key().into_bytes()),
            payload: request,
            headers: record_headers,
        })
    }

    fn sent_status(
        &self,
        dispatch: &Dispatch,
        status: Status,
        provider: Option<&str>,
        provider_message_id: Option<&str>,
        attempt: i32,
    ) -> StatusEvent {
        let mut event = self.status_event(dispatch, status, attempt);
        event.provider = provider.map(str::to_owned);
        event.provider_message_id = provider_message_id.map(str::to_owned);
        event
    }

    fn failure_status(
        &self,
        dispatch: &Dispatch,
        status: Status,
        reason: &str,
        attempt: i32,
    ) -> StatusEvent {
        let mut event = self.status_event(dispatch, status, attempt);
        event.provider = Some(self.provider.name().to_owned());
        event.reason = Some(reason.to_owned());
        event
    }

    fn status_event(&self, dispatch: &Dispatch, status: Status, attempt: i32) -> StatusEvent {
        StatusEvent {
            event_id: dispatch.event_id.clone(),
            dispatch_id: Some(dispatch.dispatch_id.clone()),
            tenant: dispatch.tenant.clone(),
            user_id: dispatch.user_id.clone(),
            channel: Some(dispatch.channel),
            status,
            reason: None,
            provider: None,
            provider_message_id: None,
            // Statuses count attempts from 0 (status.avsc); the worker counts them from 1.
            attempt: (attempt - 1).max(0),
            at: herald_contracts::time::now_millis(),
            scheduled_for: None,
            category: Some(dispatch.category.clone()),
            created_at: Some(dispatch.created_at),
        }
    }

    async fn status_record(
        &self,
        input: &Input,
        event: &StatusEvent,
    ) -> Result<OutRecord, Transient> {
        let payload = self
            .codec
            .encode_status(event)
            .await
            .map_err(Transient::Registry)?;
        Ok(OutRecord {
            topic: self.topics.status(),
            key: Some(event.key().into_bytes()),
            payload,
            headers: input.derived_headers(),
        })
    }

    /// The dispatch to retry tier `tier` as attempt `attempt` (its `attempt` field counting
    /// the attempts before, from 0), due at `due`; `deferred_since` when an open breaker put it
    /// there.
    async fn retry_record(
        &self,
        input: &Input,
        dispatch: &Dispatch,
        tier: u8,
        attempt: i32,
        due: DateTime<Utc>,
        deferred_since: Option<DateTime<Utc>>,
    ) -> Result<OutRecord, Transient> {
        match deferred_since {
            Some(_) => span::end(Ending::Deferred, None),
            None => span::end(Ending::Retry, Some("transient")),
        }
        // The next attempt is this one's child.
        let mut record_headers = input.carried_headers();
        span::continue_trace(&mut record_headers);
        record_headers.push((
            headers::ATTEMPT.to_owned(),
            attempt.to_string().into_bytes(),
        ));
        record_headers.push((
            headers::DUE_AT.to_owned(),
            due.timestamp_millis().to_string().into_bytes(),
        ));
        if let Some(since) = deferred_since {
            record_headers.push((
                headers::DEFERRED_SINCE.to_owned(),
                since.timestamp_millis().to_string().into_bytes(),
            ));
        }
        let payload = if dispatch.attempt == attempt - 1 {
            input.payload.clone().unwrap_or_default()
        } else {
            let retried = Dispatch {
                attempt: attempt - 1,
                ..dispatch.clone()
            };
            self.codec
                .encode_dispatch(&retried)
                .await
                .map_err(Transient::Registry)?
        };
        Ok(OutRecord {
            topic: self.topics.retry(self.channel, tier),
            key: input.key.clone(),
            payload,
            headers: record_headers,
        })
    }

    /// The original record, unchanged, with error headers added (guarantee 5). Its trace
    /// context is the one it came with, so a redrive continues the trace where it was.
    fn dead_letter(&self, input: &Input, poison: &Poison, attempt: i32) -> OutRecord {
        let mut record_headers = input.carried_headers();
        for (name, value) in [
            (headers::ERROR_STAGE, STAGE.to_owned()),
            (headers::ERROR_CLASS, poison.class.to_owned()),
            (headers::ERROR_MESSAGE, poison.message.clone()),
            (headers::ORIGINAL_TOPIC, input.topic.clone()),
            (headers::ORIGINAL_PARTITION, input.partition.to_string()),
            (headers::ORIGINAL_OFFSET, input.offset.to_string()),
            (headers::ATTEMPT, attempt.to_string()),
        ] {
            record_headers.push((name.to_owned(), value.into_bytes()));
        }
        OutRecord {
            topic: self.topics.dlq(),
            key: input.key.clone(),
            payload: input.payload.clone().unwrap_or_default(),
            headers: record_headers,
        }
    }
}
