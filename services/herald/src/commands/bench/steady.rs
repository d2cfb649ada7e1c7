//! A steady offered load rather than a backlog: requests produced at a fixed rate, each with its
//! `created_at` the moment it is produced, and the time until its dispatch is readable by a
//! `read_committed` consumer, i.e. committed by the router.

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::time::Duration;

use crate::config_file::HeraldConfig;
use herald_contracts::time::now_millis;
use herald_contracts::{Codec, Decoded, NotificationRequest};

use super::flood::Flood;
use super::{millis, percentile};

/// How long after the last request its dispatch may take before the bench gives up on it.
const DRAIN: Duration = Duration::from_secs(60);

/// Latency quantiles of one steady phase.
#[derive(Debug)]
pub(super) struct SteadyLatency {
    pub(super) offered: usize,
    pub(super) seen: usize,
    pub(super) p50: Option<Duration>,
    pub(super) p99: Option<Duration>,
}

impl std::fmt::Display for SteadyLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {}  p99 {}  ({} of {} dispatches seen)",
            millis(self.p50),
            millis(self.p99),
            self.seen,
            self.offered
        )
    }
}

/// Produces `rate` requests a second for `seconds` (request `i` made by `request(i)`, its
/// event id unique to this phase) and measures, for each, the time from its `created_at` to
/// its dispatch appearing, committed, on one of `dispatch_topics`.
pub(super) async fn measure(
    config: &HeraldConfig,
    codec: &Codec,
    rate: u32,
    seconds: u32,
    dispatch_topics: &[String],
    request: impl Fn(usize) -> anyhow::Result<NotificationRequest>,
) -> anyhow::Result<SteadyLatency> {
    let producer: FutureProducer = config.kafka.producer_config().create()?;
    let topic = config.kafka.topics().requested();
    // A new producer's first records wait for its metadata and idempotence id; one record
    // sent and acknowledged first keeps that wait out of the measured ones.
    let mut flood = Flood::new(&producer, &topic, 1);
    let warm_up = request(usize::MAX)?;
    flood
        .send(warm_up.key(), codec.encode_request(&warm_up).await?)
        .await?;
    flood.finish().await?;

    let consumer = at_the_end(config, dispatch_topics)?;
    let total = (rate * seconds) as usize;
    let mut expected = HashSet::with_capacity(total);
    let decoder = Codec::new(&config.registry, config.kafka.topics())?;
    let warm_up_id = warm_up.event_id.clone();
    let watch = tokio::spawn(async move { watch(consumer, decoder, total, &warm_up_id).await });

    let mut flood = Flood::new(&producer, &topic, rate.max(1) as usize);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        tick.tick().await;
        let mut request = request(i)?;
        request.created_at = Some(now_millis());
        expected.insert(request.event_id.clone());
        let payload = codec.encode_request(&request).await?;
        flood.send(request.key(), payload).await?;
    }
    flood.finish().await?;
    let seen = watch.await??;
    let latencies: Vec<Duration> = seen
        .into_iter()
        .filter(|(event_id, _)| expected.contains(event_id))
        .map(|(_, latency)| latency)
        .collect();
    Ok(SteadyLatency {
        offered: total,
        seen: latencies.len(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    })
}

/// A `read_committed` consumer of `topics` positioned at their current ends.
fn at_the_end(config: &HeraldConfig, topics: &[String]) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = config
        .kafka
        .consumer_config(&format!("bench-steady-{}", uuid::Uuid::new_v4()))
        // A fetch that finds nothing committed returns within 10 ms (500 by default), so the
        // measurement adds at most that to a dispatch's latency.
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .context("reading the dispatch topics' partitions")?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) =
                consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10))?;
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(high))?;
        }
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// Reads dispatches (but the warm-up's) until `total` were seen or none came for [`DRAIN`]:
/// each one's event id and the time from its `created_at` to now.
async fn watch(
    consumer: StreamConsumer,
    codec: Codec,
    total: usize,
    warm_up_id: &str,
) -> anyhow::Result<Vec<(String, Duration)>> {
    let mut seen = Vec::with_capacity(total);
    while seen.len() < total {
        let message = match tokio::time::timeout(DRAIN, consumer.recv()).await {
            Ok(message) => message?,
            Err(_) => break,
        };
        let arrived = now_millis();
        let Some(payload) = message.payload() else {
            continue;
        };
        if let Decoded::Dispatch(dispatch) = codec.decode(payload).await?
            && dispatch.event_id != warm_up_id
        {
            let latency = (arrived - dispatch.created_at).to_std().unwrap_or_default();
            seen.push((dispatch.event_id, latency));
        }
    }
    Ok(seen)
}
