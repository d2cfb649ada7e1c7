//! `herald tail`: any Herald topic as JSON lines, one record each, headers included, read
//! `read_committed` from the beginning to the end (or forever with --follow).

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use crate::config_file::HeraldConfig;
use herald_contracts::Codec;
use herald_contracts::codec::hex;
use herald_contracts::time::from_millis;
use herald_kafka::HeraldContext;
use herald_kafka::headers::to_pairs;
use herald_kafka::transaction::{CONSUMER_ERROR_PAUSE, recovers_by_itself};

use crate::cli::TailArgs;
use crate::exit;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run(config: &HeraldConfig, args: &TailArgs) -> anyhow::Result<ExitCode> {
    let topics = config.kafka.topics();
    let topic = topics.resolve(&args.topic);
    let codec = Codec::new(&config.registry, topics)?;
    // A throwaway group: tail assigns partitions itself and never commits.
    let group = format!("herald-tail-{}", uuid::Uuid::new_v4());
    let consumer: StreamConsumer<HeraldContext> = config
        .kafka
        .consumer_config(&group)
        .set("enable.partition.eof", "true")
        .create_with_context(HeraldContext::default())
        .context("creating the Kafka consumer")?;

    let partitions = partitions_of(&consumer, &topic)?;
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment.add_partition_offset(&topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;

    let mut at_end: HashSet<i32> = HashSet::new();
    let mut printed = 0u64;
    let deadline = tokio::time::Instant::now() + args.timeout;
    loop {
        if args.limit.is_some_and(|limit| printed >= limit) {
            break;
        }
        if !args.follow && at_end.len() == partitions.len() {
            break;
        }
        let next = if args.follow {
            consumer.recv().await
        } else {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    eprintln!(
                        "herald: gave up after {:?} before reaching the end of {topic}",
                        args.timeout
                    );
                    return Ok(exit::FAILURE);
                }
            }
        };
        match next {
            Ok(message) => {
                at_end.remove(&message.partition());
                println!("{}", render(&codec, &message).await);
                printed += 1;
            }
            Err(KafkaError::PartitionEOF(partition)) => {
                at_end.insert(partition);
            }
            // A broker outage is waited out (until the timeout, without --follow).
            Err(e) if recovers_by_itself(&e) => {
                tracing::warn!(error = %e, "waiting for the Kafka client to recover");
                tokio::time::sleep(CONSUMER_ERROR_PAUSE).await;
            }
            Err(e) => return Err(e).context(format!("reading {topic}")),
        }
    }
    Ok(exit::SUCCESS)
}

fn partitions_of(
    consumer: &StreamConsumer<HeraldContext>,
    topic: &str,
) -> anyhow::Result<Vec<i32>> {
    let partitions = herald_kafka::metadata::partitions_of(consumer, topic, METADATA_TIMEOUT)
        .with_context(|| format!("reading metadata of {topic}"))?;
    if partitions.is_empty() {
        anyhow::bail!("topic {topic} does not exist");
    }
    Ok(partitions)
}

/// One record as a JSON line (also `herald dlq show`).
pub(crate) async fn render<M: Message>(codec: &Codec, message: &M) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = message
        .headers()
        .map(|h| {
            to_pairs(h)
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect()
        })
        .unwrap_or_default();
    let mut line = serde_json::json!({
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": message
            .timestamp()
            .to_millis()
            .and_then(from_millis)
            .map(|t| t.to_rfc3339()),
        "key": message.key().map(String::from_utf8_lossy),
        "headers": headers,
    });
    match message.payload() {
        None => line["value"] = serde_json::Value::Null,
        Some(bytes) => match codec.decode(bytes).await {
            Ok(decoded) => {
                line["schema"] = decoded.schema_name().into();
                line["value"] = decoded.to_json();
            }
            Err(e) => {
                line["value"] = serde_json::Value::Null;
                line["error"] = e.to_string().into();
                line["value_hex"] = hex(bytes).into();
            }
        },
    }
    line
}
