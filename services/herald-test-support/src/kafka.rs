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
        send_patiently(&producer, BaseRecord::to(topic).key(key).payload(value));
    }
    producer.flush(TIMEOUT).unwrap();
}

/// Sends one record, waiting while the producer's queue is full.
fn send_patiently(
    producer: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    mut record: rdkafka::producer::BaseRecord<'_, Vec<u8>, Vec<u8>>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, record)) => panic!("producing to {}: {e}", record.topic),
        }
    }
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

/// A record to produce at a chosen partition and timestamp.
#[derive(Debug, Clone)]
pub struct TimedRecord {
    pub partition: i32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Epoch milliseconds.
    pub timestamp: i64,
}

/// Produces `records` as given (partition, timestamp) and waits for the broker to take them.
pub fn produce_timed(kafka: &KafkaConfig, topic: &str, records: &[TimedRecord]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka.producer_config().create().unwrap();
    for r in records {
        send_patiently(
            &producer,
            BaseRecord::to(topic)
                .partition(r.partition)
                .timestamp(r.timestamp)
                .key(&r.key)
                .payload(&r.value),
        );
    }
    producer.flush(TIMEOUT).unwrap();
}

/// The end (high watermark) of every partition of `topic`, by partition.
pub fn end_offsets(kafka: &KafkaConfig, topic: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = kafka.client_config().create().unwrap();
    // A topic just created can be missing from the metadata, or without a leader, for a
    // moment.
    crate::wait_for(&format!("the end offsets of {topic}"), TIMEOUT, || {
        let partitions = herald_kafka::metadata::partitions_of(&consumer, topic, TIMEOUT).ok()?;
        if partitions.is_empty() {
            return None;
        }
        partitions
            .into_iter()
            .map(|p| {
                let (_, high) = consumer.fetch_watermarks(topic, p, TIMEOUT).ok()?;
                Some((p, high))
            })
            .collect()
    })
}

/// The sum of `group`'s committed offsets on `topic` (0 where it has none).
pub fn committed_total(kafka: &KafkaConfig, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for partition in end_offsets(kafka, topic).keys() {
        tpl.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT).unwrap();
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some(o),
            _ => None,
        })
        .sum()
}

/// A record as read back, bytes and all.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl RawRecord {
    /// The last value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every committed record of `topic` now (`read_committed`, to the end of each partition).
pub fn read_raw(kafka: &KafkaConfig, topic: &str) -> Vec<RawRecord> {
    use rdkafka::message::Message;
    let ends = end_offsets(kafka, topic);
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", format!("read-raw-{}", uuid::Uuid::new_v4()))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for partition in ends.keys() {
        tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut at_end = std::collections::HashSet::new();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while at_end.len() < ends.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} timed out"
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                records.push(RawRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers: m
                        .headers()
                        .map(herald_kafka::headers::to_pairs)
                        .unwrap_or_default(),
                });
            }
        }
    }
    records
}
