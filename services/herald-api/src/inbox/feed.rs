//! The live side of the inbox. Every `herald api` replica reads all of `notifications.inbox`
//! (assigned, not in a consumer group: each replica needs every change) and hands each change to
//! the streams of its user connected to this replica. A change's SSE id is its position,
//! `<partition>-<offset>`, the same on every replica: one user's changes share a partition (the
//! key is `tenant:user_id`), so a client that reconnects anywhere with `Last-Event-ID` gets
//! exactly the changes after it, from the recent changes each replica keeps
//! (`api.inbox.resume_window`, in at most `api.inbox.resume_buffer_bytes`). A client whose
//! position has left that buffer gets a `reset` event instead: reload the list and the counts.
//!
//! Backpressure: each stream has a bounded queue; a stream that does not keep up is closed
//! (its browser reconnects with `Last-Event-ID` and resumes), so a slow client never holds
//! memory or slows the others.

use chrono::{DateTime, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use herald_contracts::metric_names::{API_INBOX_CHANGES, API_INBOX_STREAMS};
use herald_contracts::{Codec, Decoded, InboxChange, InboxEvent};
use herald_kafka::metadata::partitions_of;
use herald_kafka::{HeraldContext, KafkaConfig};

use crate::ApiError;
use crate::inbox::messages::{message_id, view};

/// Changes queued for one stream before it counts as too slow and is closed.
const STREAM_QUEUE: usize = 256;
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a change sits in `notifications.inbox`: its SSE event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    /// `<partition>-<offset>`, as a client sends it back in `Last-Event-ID`.
    pub fn parse(text: &str) -> Option<Self> {
        let (partition, offset) = text.trim().split_once('-')?;
        Some(Self {
            partition: partition.parse().ok()?,
            offset: offset.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.partition, self.offset)
    }
}

/// One change, ready to send: its SSE event type and JSON data.
#[derive(Debug)]
pub struct Change {
    pub position: Position,
    tenant: String,
    user_id: String,
    pub change: InboxChange,
    pub data: String,
    received: DateTime<Utc>,
}

impl Change {
    /// The change as a stream shows it: a new message in full, a mark as the message's id and
    /// when it was made.
    fn of(position: Position, event: InboxEvent) -> Self {
        let data = match event.change {
            InboxChange::Message => {
                serde_json::to_string(&view(&event.user_id, message_of(&event)))
            }
            _ => serde_json::to_string(&serde_json::json!({
                "id": message_id(&event.user_id, &key_of(&event)),
                "at": event.at,
            })),
        }
        .unwrap_or_default();
        Self {
            position,
            tenant: event.tenant,
            user_id: event.user_id,
            change: event.change,
            data,
            received: Utc::now(),
        }
    }
}

fn key_of(event: &InboxEvent) -> herald_store::inbox::MessageKey {
    herald_store::inbox::MessageKey {
        created_at: event.created_at,
        dispatch_id: event.dispatch_id.clone(),
    }
}

/// A new message's event as the inbox row the worker stored.
fn message_of(event: &InboxEvent) -> herald_store::inbox::InboxMessage {
    let c = event.content.clone();
    herald_store::inbox::InboxMessage {
        key: key_of(event),
        event_id: c.event_id,
        category: c.category,
        priority: c.priority,
        title: c.title,
        body: c.body,
        data_json: c.data_json,
        action_url: c.action_url,
        seen_at: None,
        read_at: None,
        archived_at: None,
        ttl: None,
    }
}

struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Arc<Change>>,
    /// Changes up to here were already sent (a resumed stream on a replica that is behind).
    after: Option<Position>,
}

/// A partition's recent changes, oldest first, and the offsets they cover.
#[derive(Default)]
struct Recent {
    changes: VecDeque<Arc<Change>>,
    /// The first offset kept: a position before it cannot be resumed.
    from: i64,
    /// The next offset this replica will read.
    next: i64,
}

#[derive(Default)]
struct State {
    recent: HashMap<i32, Recent>,
    /// The bytes the kept changes hold, about.
    kept: usize,
    streams: HashMap<(String, String), Vec<Subscriber>>,
}

/// How far back changes are kept for resuming.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub window: Duration,
    /// The most bytes the kept changes may hold.
    pub max_bytes: usize,
}

/// What one kept change costs beyond its data: the change, its strings, the queue's slot.
const CHANGE_OVERHEAD: usize = 160;

impl Change {
    fn size(&self) -> usize {
        CHANGE_OVERHEAD + self.data.len() + self.tenant.len() + self.user_id.len()
    }
}

/// Every change this replica read, and the streams connected to it.
pub struct Feed {
    state: Mutex<State>,
    retention: Retention,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// A stream's subscription: what it missed, then its queue of live changes. Dropping it
/// disconnects it from the feed.
#[derive(Debug)]
pub struct Subscription {
    /// The client's position is no longer kept: it must reload instead.
    pub reset: bool,
    pub missed: Vec<Arc<Change>>,
    pub live: mpsc::Receiver<Arc<Change>>,
    guard: Unsubscribe,
}

impl Subscription {
    /// What it missed, then its live changes; it stays connected while the stream lives.
    pub fn into_stream(self) -> impl futures::Stream<Item = Arc<Change>> + Send {
        let Subscription {
            missed,
            live,
            guard,
            ..
        } = self;
        let live = futures::stream::unfold((live, guard), |(mut live, guard)| async move {
            let change = live.recv().await?;
            Some((change, (live, guard)))
        });
        futures::StreamExt::chain(futures::stream::iter(missed), live)
    }
}

#[derive(Debug)]
struct Unsubscribe {
    feed: Arc<Feed>,
    user: (String, String),
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let mut state = self.feed.lock();
        if let Some(subscribers) = state.streams.get_mut(&self.user) {
            let before = subscribers.len();
            subscribers.retain(|s| s.id != self.id);
            if subscribers.len() < before {
                metrics::gauge!(API_INBOX_STREAMS).decrement(1.0);
            }
            if subscribers.is_empty() {
                state.streams.remove(&self.user);
            }
        }
    }
}

impl Feed {
    pub fn new(retention: Retention) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            retention,
            next_id: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connects a stream of `user_id` of `tenant`, resuming after `last` when given.
    pub fn subscribe(
        self: &Arc<Self>,
        tenant: &str,
        user_id: &str,
        last: Option<Position>,
    ) -> Subscription {
        let (queue, live) = mpsc::channel(STREAM_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let user = (tenant.to_owned(), user_id.to_owned());
        let mut state = self.lock();
        let mut reset = false;
        let mut missed = Vec::new();
        let mut after = None;
        if let Some(last) = last {
            match state.recent.get(&last.partition) {
                // Nothing after it was read here yet: skip what this replica reads up to it.
                Some(recent) if last.offset + 1 >= recent.next => after = Some(last),
                Some(recent) if last.offset + 1 >= recent.from => {
                    missed = recent
                        .changes
                        .iter()
                        .filter(|c| {
                            c.position.offset > last.offset
                                && c.tenant == user.0
                                && c.user_id == user.1
                        })
                        .cloned()
                        .collect();
                }
                // Too old, or a partition this replica does not read: start over.
                _ => reset = true,
            }
        }
        state
            .streams
            .entry(user.clone())
            .or_default()
            .push(Subscriber { id, queue, after });
        metrics::gauge!(API_INBOX_STREAMS).increment(1.0);
        drop(state);
        Subscription {
            reset,
            missed,
            live,
            guard: Unsubscribe {
                feed: self.clone(),
                user,
                id,
            },
        }
    }

    /// Sets where each partition is read from (before the first change).
    fn start(&self, starts: &[(i32, i64)]) {
        let mut state = self.lock();
        for &(partition, offset) in starts {
            state.recent.insert(
                partition,
                Recent {
                    changes: VecDeque::new(),
                    from: offset,
                    next: offset,
                },
            );
        }
    }

    /// Keeps `change` for resuming and hands it to its user's streams here. A stream whose
    /// queue is full is closed; its client resumes from the kept changes.
    fn publish(&self, change: Change) {
        let change = Arc::new(change);
        metrics::counter!(API_INBOX_CHANGES, "change" => change.change.as_str()).increment(1);
        let mut state = self.lock();
        let position = change.position;
        let recent = state.recent.entry(position.partition).or_default();
        recent.changes.push_back(change.clone());
        recent.next = position.offset + 1;
        state.kept += change.size();
        self.evict(&mut state);
        let user = (change.tenant.clone(), change.user_id.clone());
        let Some(subscribers) = state.streams.get_mut(&user) else {
            return;
        };
        let before = subscribers.len();
        subscribers.retain(|s| {
            if s.after.is_some_and(|after| {
                after.partition == position.partition && position.offset <= after.offset
            }) {
                return true;
            }
            s.queue.try_send(change.clone()).is_ok()
        });
        let closed = before - subscribers.len();
        if closed > 0 {
            metrics::gauge!(API_INBOX_STREAMS).decrement(closed as f64);
        }
        if subscribers.is_empty() {
            state.streams.remove(&user);
        }
    }

    /// Drops the oldest changes past the window or the capacity.
    fn evict(&self, state: &mut State) {
        let now = Utc::now();
        let window = chrono::Duration::from_std(self.retention.window).unwrap_or_default();
        for recent in state.recent.values_mut() {
            while let Some(oldest) = recent.changes.front() {
                let expired = now.signed_duration_since(oldest.received) > window;
                if !expired && state.kept <= self.retention.max_bytes {
                    break;
                }
                recent.from = oldest.position.offset + 1;
                state.kept = state.kept.saturating_sub(oldest.size());
                recent.changes.pop_front();
            }
        }
    }
}

/// Reads `notifications.inbox` into `feed` until `shutdown`, starting `feed.retention.window`
/// back so that a new replica can resume clients at once. Returns once the start positions
/// are set; the reading goes on in the background.
pub async fn start(
    feed: Arc<Feed>,
    kafka: &KafkaConfig,
    codec: Arc<Codec>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    let topic = kafka.topics().inbox();
    // A group of its own that never joins or commits: the replica assigns every partition.
    let group = format!("herald-api-inbox-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer<HeraldContext> = kafka
        .consumer_config(&group)
        .set("fetch.wait.max.ms", "50")
        .create_with_context(HeraldContext::default())?;
    let consumer = Arc::new(consumer);
    let since = (Utc::now()
        - chrono::Duration::from_std(feed.retention.window).unwrap_or_default())
    .timestamp_millis();
    let starts = {
        let consumer = consumer.clone();
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || start_offsets(&consumer, &topic, since))
            .await
            .map_err(|_| rdkafka::error::KafkaError::Canceled)??
    };
    if starts.is_empty() {
        return Err(ApiError::Config(format!(
            "topic {topic} does not exist (the inbox's live streams read it): run herald topics \
             apply"
        )));
    }
    let mut assignment = TopicPartitionList::new();
    for &(partition, offset) in &starts {
        assignment.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
    }
    consumer.assign(&assignment)?;
    feed.start(&starts);
    Ok(tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return,
                message = herald_kafka::transaction::recv(&consumer) => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    tracing::error!(error = %e, "the inbox feed stopped reading notifications.inbox");
                    return;
                }
            };
            let position = Position {
                partition: message.partition(),
                offset: message.offset(),
            };
            let decoded = match message.payload() {
                Some(bytes) => codec.decode(bytes).await,
                None => continue,
            };
            match decoded {
                Ok(Decoded::Inbox(event)) => feed.publish(Change::of(position, event)),
                Ok(_) => {
                    tracing::warn!(%position, "a record that is not an inbox event in notifications.inbox")
                }
                Err(e) => {
                    tracing::warn!(%position, error = %e, "an undecodable record in notifications.inbox")
                }
            }
        }
    }))
}

/// Each partition's first offset at or after `since` (ms), or its end.
fn start_offsets(
    consumer: &StreamConsumer<HeraldContext>,
    topic: &str,
    since: i64,
) -> Result<Vec<(i32, i64)>, rdkafka::error::KafkaError> {
    let partitions = partitions_of(consumer, topic, METADATA_TIMEOUT)?;
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = TopicPartitionList::new();
    for &partition in &partitions {
        query.add_partition_offset(topic, partition, Offset::Offset(since))?;
    }
    let found = consumer.offsets_for_times(query, METADATA_TIMEOUT)?;
    let mut starts = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let offset = match found.find_partition(topic, partition).map(|p| p.offset()) {
            Some(Offset::Offset(offset)) => offset,
            // No change since then: start at the end.
            _ => {
                consumer
                    .fetch_watermarks(topic, partition, METADATA_TIMEOUT)?
                    .1
            }
        };
        starts.push((partition, offset));
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(partition: i32, offset: i64, user: &str) -> Change {
        Change {
            position: Position { partition, offset },
            tenant: "acme".into(),
            user_id: user.into(),
            change: InboxChange::Read,
            data: "{}".into(),
            received: Utc::now(),
        }
    }

    /// A feed that keeps `changes` of the tests' changes.
    fn feed(changes: usize) -> Arc<Feed> {
        let size = change(0, 0, "ada").size();
        let feed = Feed::new(Retention {
            window: Duration::from_secs(600),
            max_bytes: changes * size,
        });
        feed.start(&[(0, 10), (1, 0)]);
        feed
    }

    #[test]
    fn positions_read_back() {
        let position = Position {
            partition: 3,
            offset: 1234,
        };
        assert_eq!(Position::parse(&position.to_string()), Some(position));
        assert_eq!(Position::parse("x-1"), None);
        assert_eq!(Position::parse("7"), None);
    }

    #[test]
    fn a_change_reaches_only_its_users_streams() {
        let feed = feed(100);
        let mut ada = feed.subscribe("acme", "ada", None);
        let mut bob = feed.subscribe("acme", "bob", None);
        feed.publish(change(0, 10, "ada"));
        assert_eq!(
            ada.live.try_recv().map(|c| c.position.offset).ok(),
            Some(10)
        );
        assert!(bob.live.try_recv().is_err());
    }

    #[test]
    fn a_resumed_stream_gets_exactly_what_it_missed() {
        let feed = feed(100);
        for offset in 10..15 {
            feed.publish(change(0, offset, if offset == 12 { "bob" } else { "ada" }));
        }
        let resumed = feed.subscribe("acme", "ada", Some(Position::parse("0-11").unwrap()));
        assert!(!resumed.reset);
        let offsets: Vec<i64> = resumed.missed.iter().map(|c| c.position.offset).collect();
        assert_eq!(offsets, [13, 14]);
        // Ahead of this replica: what it reads up to there is skipped.
        let mut ahead = feed.subscribe("acme", "ada", Some(Position::parse("0-16").unwrap()));
        assert!(!ahead.reset && ahead.missed.is_empty());
        feed.publish(change(0, 15, "ada"));
        feed.publish(change(0, 16, "ada"));
        feed.publish(change(0, 17, "ada"));
        assert_eq!(
            ahead.live.try_recv().map(|c| c.position.offset).ok(),
            Some(17)
        );
        assert!(ahead.live.try_recv().is_err());
    }

    #[test]
    fn a_position_no_longer_kept_resets() {
        let feed = feed(3);
        for offset in 10..16 {
            feed.publish(change(0, offset, "ada"));
        }
        // Only 13..16 are kept.
        assert!(
            feed.subscribe("acme", "ada", Some(Position::parse("0-11").unwrap()))
                .reset
        );
        assert!(
            !feed
                .subscribe("acme", "ada", Some(Position::parse("0-12").unwrap()))
                .reset
        );
        assert!(
            feed.subscribe("acme", "ada", Some(Position::parse("9-1").unwrap()))
                .reset
        );
    }

    #[test]
    fn a_stream_that_does_not_keep_up_is_closed_and_a_dropped_one_forgotten() {
        let feed = feed(10_000);
        let mut slow = feed.subscribe("acme", "ada", None);
        for offset in 0..(STREAM_QUEUE as i64 + 1) {
            feed.publish(change(1, offset, "ada"));
        }
        let mut received = 0;
        while slow.live.try_recv().is_ok() {
            received += 1;
        }
        assert_eq!(received, STREAM_QUEUE);
        assert!(matches!(
            slow.live.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        let gone = feed.subscribe("acme", "bob", None);
        drop(gone);
        let bob = ("acme".to_owned(), "bob".to_owned());
        assert!(!feed.lock().streams.contains_key(&bob));
    }
}
