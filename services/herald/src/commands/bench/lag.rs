//! How far a consumer group is behind a topic: the bench's notion of "done".

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

use herald_kafka::KafkaConfig;

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long lag reads may keep failing before the bench gives up: right after a broker start
/// the group coordinator answers "not coordinator" or "loading" for a while.
const FAILING_FOR_AT_MOST: Duration = Duration::from_secs(60);

/// Records of `topic` not yet committed by `group`.
pub(super) fn lag(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = kafka.consumer_config(group).create()?;
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions {
        tpl.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .context("reading committed offsets")?;
    let mut behind = 0;
    for partition in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
        let done = match committed
            .find_partition(topic, partition)
            .map(|p| p.offset())
        {
            Some(Offset::Offset(offset)) => offset,
            _ => 0,
        };
        behind += (high - done).max(0);
    }
    Ok(behind)
}

/// Polls until `group` has committed everything in `topic`; the time it took.
pub(super) async fn wait_until_caught_up(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
    partitions: i32,
    mut on_poll: impl FnMut(),
) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    let mut failing_since = None;
    loop {
        let (kafka, group, topic) = (kafka.clone(), group.to_owned(), topic.to_owned());
        let read =
            tokio::task::spawn_blocking(move || lag(&kafka, &group, &topic, partitions)).await?;
        on_poll();
        let behind = match read {
            Ok(behind) => {
                failing_since = None;
                behind
            }
            Err(error) => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > FAILING_FOR_AT_MOST {
                    return Err(error);
                }
                eprintln!("bench: {error:#}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if behind == 0 {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
