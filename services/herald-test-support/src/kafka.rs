//! Reading what landed in Kafka.

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use herald_kafka::KafkaConfig;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Partition count of every topic in the cluster whose name starts with `prefix`.
pub fn topics_with_prefix(kafka: &KafkaConfig, prefix: &str) -> HashMap<String, usize> {
    let consumer: BaseConsumer = kafka.client_config().create().unwrap();
    let metadata = consumer.fetch_metadata(None, TIMEOUT).unwrap();
    metadata
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(prefix))
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect()
}

/// Waits (up to `within`) until every partition of `topic` has had a leader for `settle`
/// without a break. After a broker restart or a freeze longer than its session timeout, the
/// broker first answers with the leaders it had, then its controller fences it (no leaders)
/// and unfences it again: a producer that starts inside that window can be left with a
/// partition it never delivers to (librdkafka#5430), so a leader seen once is not enough.
pub fn wait_for_leaders(kafka: &KafkaConfig, topic: &str, settle: Duration, within: Duration) {
    let consumer: BaseConsumer = kafka.client_config().create().unwrap();
    let deadline = std::time::Instant::now() + within;
    let mut led_since = None;
    loop {
        let led = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .is_ok_and(|metadata| {
                metadata.topics().iter().any(|t| {
                    t.name() == topic
                        && !t.partitions().is_empty()
                        && t.partitions()
                            .iter()
                            .all(|p| p.leader() >= 0 && p.error().is_none())
                })
            });
        let now = std::time::Instant::now();
        led_since = if led { led_since.or(Some(now)) } else { None };
        if led_since.is_some_and(|since| now.duration_since(since) >= settle) {
            return;
        }
        assert!(
            now < deadline,
            "{topic}: partitions without a steady leader after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The configs set on a topic itself (not inherited from the broker).
pub async fn topic_configs(kafka: &KafkaConfig, topic: &str) -> BTreeMap<String, String> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().unwrap();
    let results = admin
        .describe_configs(
            [ResourceSpecifier::Topic(topic)].iter(),
            &AdminOptions::new().request_timeout(Some(TIMEOUT)),
        )
        .await
        .unwrap();
    let resource = results.into_iter().next().unwrap().unwrap();
    resource
        .entries
        .into_iter()
        .filter(|e| !e.is_default)
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect()
}

/// Topic configs once `ready` holds for them: the broker applies an `AlterConfigs` through its
/// metadata log, so a describe right after the change may still show the old value.
pub async fn topic_configs_when(
    kafka: &KafkaConfig,
    topic: &str,
    what: &str,
    ready: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let configs = topic_configs(kafka, topic).await;
        if ready(&configs) {
            return configs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what} on {topic}; configs now: {configs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Produces one record as-is (any bytes) and waits for the broker to take it.
pub fn produce_raw(
    kafka: &KafkaConfig,
    topic: &str,
    key: &[u8],
    value: &[u8],
    headers: &[(&str, &str)],
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka.producer_config().create().unwrap();
    let headers = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(*v),
        })
    });
    producer
        .send(
            BaseRecord::to(topic)
                .key(key)
                .payload(value)
                .headers(headers),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(TIMEOUT).unwrap();
}

/// Produces many records (key, value) to one topic with one producer, and waits for the
/// broker to take them all.
pub fn produce_raw_many(kafka: &KafkaConfig, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka.producer_config().create().unwrap();
    for (key, value) in records {
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    producer.flush(TIMEOUT).unwrap();
}

/// Creates one topic (replication factor 1) for a test that needs no others.
pub async fn create_topic(kafka: &KafkaConfig, topic: &str, partitions: i32) {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().unwrap();
    let results = admin
        .create_topics(
            [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))].iter(),
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}
