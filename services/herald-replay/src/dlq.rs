//! Reading the DLQ: its records grouped by stage, error class and original topic (`herald dlq
//! list`), one record by position (`herald dlq show`), and which records a redrive already
//! sent back (so that `herald dlq redrive` sends each record once and a record that keeps
//! failing stops at `--max-redrives`).

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_contracts::{Codec, headers};
use herald_kafka::{HeraldContext, KafkaConfig};

use crate::ReplayError;
use crate::copy::collect;
use crate::filter::{Facts, Filter, split_key};
use crate::range::{Bound, Resolved, committed_reader, partitions_of, resolve};

const BATCH: usize = 2000;
const SHOW_TIMEOUT: Duration = Duration::from_secs(30);

/// A consumer that reads without a group of its own to commit to.
fn reader(kafka: &KafkaConfig) -> Result<StreamConsumer<HeraldContext>, ReplayError> {
    Ok(kafka
        .consumer_config(&kafka.group(&format!(
            "herald-dlq-reader-{}",
            uuid::Uuid::new_v4().simple()
        )))
        .set("enable.partition.eof", "true")
        .create_with_context(HeraldContext::default())?)
}

/// Calls `visit` with every committed record of `topic` in `range`, in batches.
pub async fn scan(
    kafka: &KafkaConfig,
    topic: &str,
    range: &Resolved,
    mut visit: impl FnMut(&OwnedMessage),
) -> Result<(), ReplayError> {
    let consumer = reader(kafka)?;
    let mut open = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in range.partitions.iter().filter(|p| p.start < p.end) {
        open.insert(p.partition, p.end);
        assignment.add_partition_offset(topic, p.partition, Offset::Offset(p.start))?;
    }
    consumer.assign(&assignment)?;
    let never = CancellationToken::new();
    while !open.is_empty() {
        let (batch, finished) = collect(&consumer, &open, BATCH, &never).await?;
        for message in &batch {
            visit(message);
        }
        for partition in finished {
            open.remove(&partition);
        }
    }
    Ok(())
}

/// The whole DLQ as it is now.
fn everything(kafka: &KafkaConfig) -> Result<Resolved, ReplayError> {
    resolve(
        &committed_reader(kafka)?,
        &kafka.topics().dlq(),
        &Bound::Earliest,
        None,
    )
}

/// The positions (partition, offset) of DLQ records that a redrive sent back and that came
/// back: a newer DLQ record names them as its replay source.
pub async fn redriven(kafka: &KafkaConfig) -> Result<HashSet<(i32, i64)>, ReplayError> {
    let dlq = kafka.topics().dlq();
    let mut found = HashSet::new();
    scan(kafka, &dlq, &everything(kafka)?, |message| {
        let header = |name: &str| last_header(message, name);
        if header(headers::REDRIVE_COUNT).is_none()
            || header(headers::REPLAY_SOURCE_TOPIC).as_deref() != Some(dlq.as_str())
        {
            return;
        }
        let partition = header(headers::REPLAY_SOURCE_PARTITION).and_then(|p| p.parse().ok());
        let offset = header(headers::REPLAY_SOURCE_OFFSET).and_then(|o| o.parse().ok());
        if let (Some(partition), Some(offset)) = (partition, offset) {
            found.insert((partition, offset));
        }
    })
    .await?;
    Ok(found)
}

fn last_header(message: &OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// DLQ records of one stage, error class and original topic.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub stage: String,
    pub class: String,
    pub original_topic: String,
    pub count: u64,
    /// Record timestamps, epoch milliseconds.
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// The first record of the group: where it is, its key, error message and redrive count.
    pub example: serde_json::Value,
}

/// The DLQ records in `range` that pass `filter`, grouped; the largest groups first.
pub async fn list(
    kafka: &KafkaConfig,
    codec: &Codec,
    range: &Resolved,
    filter: &Filter,
) -> Result<Vec<Group>, ReplayError> {
    let mut records = Vec::new();
    scan(kafka, &kafka.topics().dlq(), range, |message| {
        if range.admits(message.timestamp().to_millis()) {
            records.push(message.clone());
        }
    })
    .await?;
    let mut groups: BTreeMap<(String, String, String), Group> = BTreeMap::new();
    for message in &records {
        let header = |name: &str| last_header(message, name).unwrap_or_default();
        let body = match (filter.needs_body(), message.payload()) {
            (true, Some(bytes)) => codec.decode(bytes).await.ok(),
            _ => None,
        };
        let (tenant, user) = split_key(message.key());
        let (stage, class) = (header(headers::ERROR_STAGE), header(headers::ERROR_CLASS));
        let facts = Facts {
            tenant,
            user,
            stage: Some(&stage),
            class: Some(&class),
            body: body.as_ref(),
        };
        if !filter.matches(&facts) {
            continue;
        }
        let original_topic = header(headers::ORIGINAL_TOPIC);
        let at = message.timestamp().to_millis();
        let group = groups
            .entry((stage.clone(), class.clone(), original_topic.clone()))
            .or_insert_with(|| Group {
                stage: stage.clone(),
                class: class.clone(),
                original_topic,
                count: 0,
                first: at,
                last: at,
                example: serde_json::json!({
                    "position": format!("{}:{}", message.partition(), message.offset()),
                    "key": message.key().map(String::from_utf8_lossy),
                    "message": header(headers::ERROR_MESSAGE),
                    "redrives": last_header(message, headers::REDRIVE_COUNT),
                }),
            });
        group.count += 1;
        group.first = group.first.min(at).or(at);
        group.last = group.last.max(at);
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    Ok(groups)
}

/// The DLQ record at `partition:offset`, or a usage error when there is none.
pub async fn show(
    kafka: &KafkaConfig,
    partition: i32,
    offset: i64,
) -> Result<OwnedMessage, ReplayError> {
    let dlq = kafka.topics().dlq();
    let consumer = reader(kafka)?;
    if !partitions_of(&consumer, &dlq)?.contains(&partition) {
        return Err(ReplayError::Usage(format!(
            "{dlq} has no partition {partition}"
        )));
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&dlq, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let missing = || ReplayError::Usage(format!("{dlq} has no record at {partition}:{offset}"));
    let deadline = tokio::time::Instant::now() + SHOW_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .map_err(|_| missing())?;
        match next {
            Ok(message) if message.offset() == offset => return Ok(message.detach()),
            // The offset was a transaction marker or an aborted record.
            Ok(_) | Err(rdkafka::error::KafkaError::PartitionEOF(_)) => return Err(missing()),
            Err(e) if herald_kafka::transaction::recovers_by_itself(&e) => {
                tokio::time::sleep(herald_kafka::transaction::CONSUMER_ERROR_PAUSE).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
