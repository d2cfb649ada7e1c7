//! The scheduler: every router instance sweeps the schedule for deferred notifications that are
//! due and publishes each back to `notifications.requested`, marked with the time it was due.
//! The router then routes it like any event, except that it deduplicates it under
//! (event id, due time) and evaluates policy at the due time.
//!
//! Exactly once, with several instances and crashes: an item is claimed (lightweight
//! transaction) before it is published and deleted after; a crash between the two leaves a
//! claim that another instance takes over once its lease runs out, and the second publication
//! is dropped by the router's deduplication.

use chrono::{DateTime, Utc};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_contracts::headers;
use herald_kafka::RenewingProducer;
use herald_runtime::metric_names::{
    SCHEDULER_RELEASE_DELAY_SECONDS, SCHEDULER_RELEASED, SCHEDULER_SWEEP_ERRORS,
};
use herald_store::StoreError;
use herald_store::schedule::{SHARDS, Schedule, ScheduledItem, minute_of};

/// The most minute buckets one sweep reads; a scheduler catching up after downtime advances
/// this far per tick, so a tick stays short and shutdown stays prompt.
const MAX_BUCKETS_PER_SWEEP: i64 = 120;

/// How long publishing one release may take, queued and in flight; a release that takes longer
/// is retried on the next tick (and replaces the producer client, see `RenewingProducer`).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

pub struct Scheduler {
    schedule: Schedule,
    producer: RenewingProducer,
    requested_topic: String,
    owner: String,
    interval: Duration,
    lease: Duration,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("owner", &self.owner)
            .field("requested_topic", &self.requested_topic)
            .finish_non_exhaustive()
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    pub released: usize,
    /// Due items another scheduler holds.
    pub held_elsewhere: usize,
}

impl Scheduler {
    /// `producer` is the configuration of the producer it publishes with.
    pub fn new(
        schedule: Schedule,
        mut producer: ClientConfig,
        requested_topic: String,
        owner: String,
        interval: Duration,
        lease: Duration,
    ) -> Result<Self, SchedulerError> {
        producer.set(
            "message.timeout.ms",
            PUBLISH_TIMEOUT.as_millis().to_string(),
        );
        Ok(Self {
            schedule,
            producer: RenewingProducer::new(producer)?,
            requested_topic,
            owner,
            interval,
            lease,
        })
    }

    /// Sweeps every `interval` until `shutdown`. Errors are logged and the sweep is tried
    /// again on the next tick: nothing is released twice or lost by a failed sweep.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
            if let Err(e) = self.sweep(Utc::now()).await {
                metrics::counter!(SCHEDULER_SWEEP_ERRORS).increment(1);
                tracing::warn!(error = %e, "schedule sweep failed; retrying on the next tick");
            }
        }
    }

    /// Releases every item due at `now`, from the cursor's bucket to `now`'s, and moves the
    /// cursor past the buckets it emptied.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<Sweep, SchedulerError> {
        let Some(cursor) = self.schedule.cursor().await? else {
            self.schedule.init_cursor(now).await?;
            return Ok(Sweep::default());
        };
        let current = minute_of(now);
        let last = current.min(cursor.saturating_add(MAX_BUCKETS_PER_SWEEP));
        let mut done = Sweep::default();
        // The cursor may pass a bucket once it is empty and closed: a router can still write
        // to the bucket of the minute just ended (its clock, or a slow write), so only buckets
        // older than that count as closed.
        let mut empty_until = cursor;
        let mut contiguous = true;
        for bucket in cursor..=last {
            let mut left = 0;
            for shard in 0..SHARDS {
                for item in self.schedule.due(bucket, shard, now).await? {
                    if self.release(&item, now).await? {
                        done.released += 1;
                    } else {
                        left += 1;
                    }
                }
            }
            done.held_elsewhere += left;
            contiguous &= left == 0 && bucket < current - 1;
            if contiguous {
                empty_until = bucket + 1;
            }
        }
        if empty_until > cursor {
            self.schedule.set_cursor(empty_until).await?;
        }
        Ok(done)
    }

    /// Claims, publishes and deletes one item. False when another scheduler holds it.
    async fn release(
        &self,
        item: &ScheduledItem,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        // Our own earlier claim (a publish that failed on a previous tick) is ours to retry.
        let lease = if item
            .claimed_by
            .as_deref()
            .is_some_and(|held| held.rsplit_once('@').is_some_and(|(o, _)| o == self.owner))
        {
            Duration::ZERO
        } else {
            self.lease
        };
        let Some(marker) = self.schedule.claim(item, &self.owner, now, lease).await? else {
            return Ok(false);
        };
        let due = &item.item;
        let due_millis = due.due_at.timestamp_millis().to_string();
        let record_headers = due
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([(headers::SCHEDULED_FOR, due_millis.as_str())])
            .fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(value),
                })
            });
        // The requested topic's key, so the release lands on the partition of the user's
        // other events.
        let key = format!("{}:{}", due.tenant, due.user_id);
        let record = FutureRecord::to(&self.requested_topic)
            .key(&key)
            .payload(&due.payload)
            .headers(record_headers);
        let client = self.producer.lease();
        if let Err((e, _)) = client.producer.send(record, PUBLISH_TIMEOUT).await {
            self.producer.failed(&client, &e)?;
            return Err(e.into());
        }
        if !self.schedule.remove(item, &marker).await? {
            // Taken over meanwhile: the other scheduler publishes it again, and the router
            // drops that second copy.
            tracing::warn!(event_id = %due.event_id, "schedule claim was taken over during release");
        }
        metrics::counter!(SCHEDULER_RELEASED).increment(1);
        metrics::histogram!(SCHEDULER_RELEASE_DELAY_SECONDS)
            .record((now - due.due_at).as_seconds_f64().max(0.0));
        tracing::debug!(event_id = %due.event_id, due_at = %due.due_at, "released a deferred notification");
        Ok(true)
    }
}
