//! The baseline: consume the requested topic and re-produce the same bytes in Kafka
//! transactions (batch, send offsets, commit), with no work in between. What the router does
//! minus routing.

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_kafka::KafkaConfig;

const BATCH: usize = 1000;
const INTERVAL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs until `stop`; the caller watches the group's lag.
pub(super) async fn copy(
    kafka: &KafkaConfig,
    group: &str,
    from: &str,
    to: &str,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = kafka.consumer_config(group).create()?;
    consumer.subscribe(&[from])?;
    let producer: FutureProducer = kafka
        .producer_config()
        .set("transactional.id", format!("{group}-baseline"))
        .create()?;
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.init_transactions(TIMEOUT)).await??;

    while !stop.is_cancelled() {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            m = consumer.recv() => m?,
        };
        let mut batch = vec![first.detach()];
        let deadline = tokio::time::Instant::now() + INTERVAL;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(m) => batch.push(m?.detach()),
                Err(_) => break,
            }
        }
        let p = producer.clone();
        tokio::task::spawn_blocking(move || p.begin_transaction()).await??;
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut deliveries = Vec::with_capacity(batch.len());
        for message in &batch {
            let mut record = FutureRecord::to(to).payload(message.payload().unwrap_or_default());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            let headers = message.headers().cloned().unwrap_or_else(OwnedHeaders::new);
            record = record.headers(headers);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
            next.insert(message.partition(), message.offset() + 1);
        }
        for delivery in deliveries {
            delivery
                .await
                .context("delivery canceled")?
                .map_err(|(e, _)| e)?;
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in next {
            offsets.add_partition_offset(from, partition, Offset::Offset(offset))?;
        }
        let group_metadata = consumer.group_metadata().context("no group metadata")?;
        let p = producer.clone();
        tokio::task::spawn_blocking(move || {
            p.send_offsets_to_transaction(&offsets, &group_metadata, TIMEOUT)?;
            p.commit_transaction(TIMEOUT)
        })
        .await??;
    }
    Ok(())
}

/// The tracker's baseline: consume `topic` and commit the offsets of each batch, batched as the
/// tracker batches (up to its `MAX_BATCH` records, or what came within its `LINGER`), with no
/// work in between. What `herald track` does minus decoding and writing.
pub(super) async fn consume(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = kafka.consumer_config(group).create()?;
    consumer.subscribe(&[topic])?;
    while !stop.is_cancelled() {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            m = consumer.recv() => m?,
        };
        let mut next: BTreeMap<i32, i64> =
            BTreeMap::from([(first.partition(), first.offset() + 1)]);
        drop(first);
        let mut taken = 1;
        let deadline = tokio::time::Instant::now() + herald_track::LINGER;
        while taken < herald_track::MAX_BATCH {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(m) => {
                    let m = m?;
                    next.insert(m.partition(), m.offset() + 1);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in next {
            offsets.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        }
        consumer.commit(&offsets, rdkafka::consumer::CommitMode::Async)?;
    }
    Ok(())
}
