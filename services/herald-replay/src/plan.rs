//! A replay's plan — id, mode, source, resolved range, filters — and where it is kept.
//!
//! The plan is written to `notifications.replays` (compacted, keyed by replay id) before the
//! first record is copied, with the range already resolved to offsets: `--resume <id>` then
//! needs nothing but the id, and continues the very same range (a relative `--from 2h` or a
//! default `--to` resolved again would have moved). A topic rather than the replay group's
//! offset metadata, because the metadata is limited to a few KiB (`offset.metadata.max.bytes`)
//! and an event-id filter read from a file is not; rather than the database, because a replay
//! needs nothing but Kafka and the registry.

use chrono::{DateTime, Utc};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

use herald_kafka::{HeraldContext, KafkaConfig};

use crate::ReplayError;
use crate::filter::Filter;
use crate::range::{Resolved, committed_reader, partitions_of, resolve_typed};
use crate::rewrite::Mode;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Longest replay id: it ends up in derived event ids, which are limited to 128 characters.
const MAX_ID_LEN: usize = 24;

/// Everything a replay does, fixed when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub mode: Mode,
    /// The topic copied from.
    pub source: String,
    /// Where copies go; when absent, back to the source topic, or for a DLQ record to the topic
    /// it was dead-lettered from (its `herald-original-topic` header).
    pub into: Option<String>,
    pub range: Resolved,
    pub filter: Filter,
    /// Set for `herald dlq redrive`: a record redriven this many times already stays in the
    /// DLQ and is reported.
    #[serde(default)]
    pub max_redrives: Option<u32>,
    pub created_at: DateTime<Utc>,
}

impl Plan {
    /// The consumer group (and transactional id) whose committed offsets are this replay's
    /// progress: `herald-replay-<id>`, with the topic prefix.
    pub fn group(&self, kafka: &KafkaConfig) -> String {
        group_of(kafka, &self.id)
    }
}

/// What the operator asked for, before it is checked and resolved into a [`Plan`].
#[derive(Debug, Clone)]
pub struct Spec {
    /// A new id when absent.
    pub id: Option<String>,
    /// As typed: a Herald topic's name gets the prefix.
    pub topic: String,
    pub from: String,
    pub to: Option<String>,
    pub mode: Mode,
    pub into: Option<String>,
    pub filter: Filter,
    pub max_redrives: Option<u32>,
}

impl Plan {
    /// Checks `spec` and resolves its range against the cluster; a [`ReplayError::Usage`] for
    /// anything the operator must fix. Writes nothing.
    pub fn make(kafka: &KafkaConfig, spec: Spec, now: DateTime<Utc>) -> Result<Plan, ReplayError> {
        let id = spec.id.unwrap_or_else(new_id);
        check_id(&id)?;
        let topics = kafka.topics();
        let source = topics.resolve(&spec.topic);
        if !(spec.filter.stages.is_empty() && spec.filter.classes.is_empty())
            && source != topics.dlq()
        {
            return Err(ReplayError::Usage(
                "--stage and --class select DLQ records (their error headers); the topic is not the DLQ"
                    .into(),
            ));
        }
        let into = match spec.into {
            Some(into) => {
                let into = topics.resolve(&into);
                partitions_of(&committed_reader(kafka)?, &into)?;
                Some(into)
            }
            None => None,
        };
        let range = resolve_typed(kafka, &source, &spec.from, spec.to.as_deref(), now)?;
        Ok(Plan {
            id,
            mode: spec.mode,
            source,
            into,
            range,
            filter: spec.filter,
            max_redrives: spec.max_redrives,
            created_at: now,
        })
    }
}

pub fn group_of(kafka: &KafkaConfig, id: &str) -> String {
    kafka.group(&format!("herald-replay-{id}"))
}

/// A new replay id: 8 hex digits.
pub fn new_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..8].to_owned()
}

/// Refuses an id that would not fit into derived event ids and group names.
pub fn check_id(id: &str) -> Result<(), ReplayError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ReplayError::Usage(format!(
            "replay id `{id}`: use 1 to {MAX_ID_LEN} lower-case letters, digits or `-`"
        )))
    }
}

/// Writes `plan` to the plans topic and waits for the broker to take it.
pub async fn save(kafka: &KafkaConfig, plan: &Plan) -> Result<(), ReplayError> {
    let topic = kafka.topics().replays();
    let producer: FutureProducer = kafka.producer_config().create()?;
    let value = serde_json::to_vec(plan).map_err(|e| ReplayError::Plan(e.to_string()))?;
    producer
        .send(
            FutureRecord::to(&topic).key(&plan.id).payload(&value),
            TIMEOUT,
        )
        .await
        .map_err(|(e, _)| ReplayError::Kafka(e))?;
    Ok(())
}

/// The newest plan saved under `id`, if any.
pub async fn load(kafka: &KafkaConfig, id: &str) -> Result<Option<Plan>, ReplayError> {
    let topic = kafka.topics().replays();
    let consumer: StreamConsumer<HeraldContext> = kafka
        .consumer_config(&kafka.group("herald-replay-plans"))
        .set("enable.partition.eof", "true")
        .create_with_context(HeraldContext::default())?;
    let partitions = partitions_of(&consumer, &topic).map_err(|_| {
        ReplayError::Usage(format!(
            "topic {topic} does not exist: run `herald topics apply`"
        ))
    })?;
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        assignment.add_partition_offset(&topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut at_end = HashSet::new();
    let mut found = None;
    while at_end.len() < partitions.len() {
        let next = tokio::time::timeout(TIMEOUT, consumer.recv())
            .await
            .map_err(|_| ReplayError::Plan(format!("reading {topic} timed out")))?;
        match next {
            Ok(message) => {
                at_end.remove(&message.partition());
                if message.key() == Some(id.as_bytes()) {
                    found = match message.payload() {
                        Some(bytes) => {
                            Some(serde_json::from_slice::<Plan>(bytes).map_err(|e| {
                                ReplayError::Plan(format!(
                                    "the plan of replay {id} is unreadable: {e}"
                                ))
                            })?)
                        }
                        None => None,
                    };
                }
            }
            Err(KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
            }
            Err(e) if herald_kafka::transaction::recovers_by_itself(&e) => {
                tokio::time::sleep(herald_kafka::transaction::CONSUMER_ERROR_PAUSE).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fit_derived_event_ids() {
        assert!(check_id(&new_id()).is_ok());
        assert!(check_id("incident-42").is_ok());
        for bad in ["", "Upper", "a:b", "x".repeat(25).as_str()] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
