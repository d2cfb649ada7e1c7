//! What every consume-transform-produce loop shares (guarantee 2): a transactional producer
//! that can be rebuilt, the records a batch produces, the input offsets it covers, one call
//! that produces and commits them in a transaction, and consumer errors told apart into those
//! the client recovers from by itself and those it cannot.

use rdkafka::consumer::{Consumer, ConsumerContext, ConsumerGroupMetadata, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::renewal::needs_new_client;
use crate::{HeraldContext, KafkaConfig};

/// How long a blocking transactional call (init, commit, abort, send offsets) may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait after a consumer error the client recovers from by itself.
pub const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(200);

pub type TxProducer = FutureProducer<HeraldContext>;

/// Identifies the transactional producer to (re)build.
#[derive(Debug, Clone)]
pub struct TransactionalId {
    pub id: String,
    pub timeout: Duration,
}

/// A record to produce in a batch's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

fn transactional_producer(
    kafka: &KafkaConfig,
    txn: &TransactionalId,
) -> Result<TxProducer, KafkaError> {
    kafka
        .producer_config()
        .set("transactional.id", &txn.id)
        .set(
            "transaction.timeout.ms",
            txn.timeout.as_millis().to_string(),
        )
        // Below the transaction timeout, as librdkafka requires.
        .set(
            "message.timeout.ms",
            (txn.timeout.as_millis() / 2).to_string(),
        )
        .create_with_context(HeraldContext::default())
}

/// Runs a blocking transactional call off the async workers.
pub async fn blocking<T: Send + 'static>(
    producer: &TxProducer,
    call: impl FnOnce(&TxProducer) -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || call(&producer))
        .await
        // The blocking task only fails to join if the call panicked.
        .map_err(|_| KafkaError::Canceled)?
}

/// A new transactional producer, initialised (which fences any predecessor with the same id).
pub async fn init_producer(
    kafka: &KafkaConfig,
    txn: &TransactionalId,
) -> Result<TxProducer, KafkaError> {
    let producer = transactional_producer(kafka, txn)?;
    blocking(&producer, |p| p.init_transactions(CLIENT_TIMEOUT)).await?;
    Ok(producer)
}

/// Aborts the open transaction after a failed batch. A producer that cannot go on — fenced,
/// fatally failed, after an ambiguous timeout, or with records that timed out
/// ([`needs_new_client`]) — is replaced by a new one; `kafka_error` is None when the batch
/// failed for a reason outside Kafka.
pub async fn recover(
    kafka: &KafkaConfig,
    txn: &TransactionalId,
    producer: TxProducer,
    kafka_error: Option<&KafkaError>,
) -> Result<TxProducer, KafkaError> {
    if let Some(error) = kafka_error.filter(|e| needs_new_client(e)) {
        tracing::warn!(error = %error, "replacing the transactional producer");
    } else {
        match blocking(&producer, |p| p.abort_transaction(CLIENT_TIMEOUT)).await {
            Ok(()) => return Ok(producer),
            // Nothing was begun (the fault came before the first send).
            Err(KafkaError::Transaction(e)) if e.code() == RDKafkaErrorCode::State => {
                return Ok(producer);
            }
            Err(e) => tracing::warn!(error = %e, "abort failed; rebuilding the producer"),
        }
    }
    drop(producer);
    init_producer_patiently(kafka, txn).await
}

/// [`init_producer`], tried again while the cluster cannot answer (a broker outage outlasts
/// `init_transactions`' timeout): a role waits the outage out rather than exit. Gives up only
/// on what waiting cannot cure (authorisation, a bad configuration).
pub async fn init_producer_patiently(
    kafka: &KafkaConfig,
    txn: &TransactionalId,
) -> Result<TxProducer, KafkaError> {
    let mut pause = std::time::Duration::from_secs(1);
    loop {
        match init_producer(kafka, txn).await {
            Ok(producer) => return Ok(producer),
            Err(e) if waiting_cures(&e) => {
                tracing::warn!(error = %e, retry_in_s = pause.as_secs(), "the transactional producer cannot start yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether an error starting a transactional producer can go away by itself.
fn waiting_cures(error: &KafkaError) -> bool {
    match error {
        KafkaError::ClientCreation(_) => false,
        KafkaError::Transaction(e) => !matches!(
            e.code(),
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication
        ),
        _ => true,
    }
}

/// Produces `records` and commits them with the consumer's `offsets` in one transaction.
pub async fn produce_and_commit<C: ConsumerContext + 'static>(
    producer: &TxProducer,
    consumer: &StreamConsumer<C>,
    records: &[OutRecord],
    offsets: TopicPartitionList,
) -> Result<(), KafkaError> {
    let group = consumer.group_metadata().ok_or(KafkaError::Canceled)?;
    produce_and_commit_as(producer, group, records, offsets).await
}

/// [`produce_and_commit`] for a consumer whose group metadata was taken beforehand, so that
/// the transaction can run on a task of its own while the consumer reads on. Metadata of an
/// older generation is safe: the coordinator refuses its offsets and the transaction aborts.
pub async fn produce_and_commit_as(
    producer: &TxProducer,
    group: ConsumerGroupMetadata,
    records: &[OutRecord],
    offsets: TopicPartitionList,
) -> Result<(), KafkaError> {
    blocking(producer, |p| p.begin_transaction()).await?;
    let mut deliveries = Vec::with_capacity(records.len());
    for record in records {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v),
                })
            },
        );
        let mut future = FutureRecord::to(&record.topic)
            .payload(&record.payload)
            .headers(headers);
        if let Some(key) = &record.key {
            future = future.key(key);
        }
        deliveries.push(producer.send_result(future).map_err(|(e, _)| e)?);
    }
    if let Some(error) = first_failure(deliveries).await {
        return Err(error);
    }
    blocking(producer, move |p| {
        p.send_offsets_to_transaction(&offsets, &group, CLIENT_TIMEOUT)
    })
    .await?;
    blocking(producer, |p| p.commit_transaction(CLIENT_TIMEOUT)).await
}

/// Waits for every delivery and returns a failure, if any: the first one that calls for a new
/// client when there is one (a record that timed out, say, rather than the records purged
/// because of it), so that `recover` replaces the client.
async fn first_failure(deliveries: Vec<rdkafka::producer::DeliveryFuture>) -> Option<KafkaError> {
    let mut failure = None;
    for delivery in deliveries {
        let error = match delivery.await {
            Ok(Ok(_)) => continue,
            Ok(Err((e, _))) => e,
            Err(_canceled) => KafkaError::Canceled,
        };
        failure = Some(telling(failure, error));
    }
    failure
}

/// Of a failure kept so far and a new one, the one to report.
fn telling(kept: Option<KafkaError>, error: KafkaError) -> KafkaError {
    match kept {
        Some(kept) if needs_new_client(&kept) || !needs_new_client(&error) => kept,
        _ => error,
    }
}

/// Groups record indices by record key, each group in the order given: one key's records are
/// handled in order while different keys run concurrently (guarantee 4). A record without a
/// key is a group of its own.
pub fn group_by_key<'a>(
    records: impl IntoIterator<Item = (usize, Option<&'a [u8]>)>,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut slots: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for (i, key) in records {
        match key {
            Some(key) => {
                let slot = *slots.entry(key).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
                groups[slot].push(i);
            }
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// Per partition, the first and last offsets of the records a batch holds.
#[derive(Debug, Clone, Default)]
pub struct OffsetRanges(BTreeMap<(String, i32), (i64, i64)>);

impl OffsetRanges {
    pub fn push(&mut self, topic: &str, partition: i32, offset: i64) {
        let range = self
            .0
            .entry((topic.to_owned(), partition))
            .or_insert((offset, offset));
        range.1 = offset;
    }

    /// Adds `later`'s ranges, which come after these: a partition in both starts where this
    /// one starts and ends where `later` ends.
    pub fn extend(&mut self, later: &OffsetRanges) {
        for (tp, (first, last)) in &later.0 {
            let range = self.0.entry(tp.clone()).or_insert((*first, *last));
            range.0 = range.0.min(*first);
            range.1 = range.1.max(*last);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (topic, partition, first offset) of every partition.
    pub fn starts(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.0
            .iter()
            .map(|((topic, partition), (first, _))| (topic.as_str(), *partition, *first))
    }

    /// (topic, partition, last offset) of every partition.
    pub fn ends(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.0
            .iter()
            .map(|((topic, partition), (_, last))| (topic.as_str(), *partition, *last))
    }

    /// Offsets to commit: one past the last record of each partition.
    pub fn next_offsets(&self) -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), (_, last)) in &self.0 {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(last + 1))?;
        }
        Ok(tpl)
    }

    /// Where to rewind to: each partition's first record in the batch.
    pub fn start_offsets(&self) -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, first) in self.starts() {
            tpl.add_partition_offset(topic, partition, Offset::Offset(first))?;
        }
        Ok(tpl)
    }
}

/// Rewinds the partitions of `ranges` this consumer still owns to their first record; the
/// others now belong to another consumer, which reads them from the committed offsets.
pub fn rewind_owned<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    ranges: &OffsetRanges,
) -> Result<(), KafkaError> {
    let assignment = consumer.assignment()?;
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, first) in ranges.starts() {
        if assignment.find_partition(topic, partition).is_some() {
            tpl.add_partition_offset(topic, partition, Offset::Offset(first))?;
        }
    }
    if tpl.count() > 0 {
        consumer.seek_partitions(tpl, CLIENT_TIMEOUT)?;
    }
    Ok(())
}

/// The next record. Errors the client recovers from by itself — brokers down, transport
/// failures, a subscribed topic not yet in the metadata — are logged and waited out; only
/// errors no wait can cure (fatal, authorisation) are returned.
pub async fn recv<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
) -> Result<BorrowedMessage<'_>, KafkaError> {
    loop {
        match consumer.recv().await {
            Ok(message) => return Ok(message),
            Err(e) if recovers_by_itself(&e) => {
                tracing::warn!(error = %e, "consumer error; waiting for the client to recover");
                tokio::time::sleep(CONSUMER_ERROR_PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the consumer client gets past `error` by itself (see [`recv`]).
pub fn recovers_by_itself(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::PartitionEOF(_) => return true,
        KafkaError::MessageConsumption(code) | KafkaError::Global(code) => *code,
        _ => return false,
    };
    !matches!(
        code,
        RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_waited_out_and_authorisation_failures_are_not() {
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(
                recovers_by_itself(&KafkaError::MessageConsumption(code)),
                "{code:?}"
            );
        }
        for code in [
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ] {
            assert!(
                !recovers_by_itself(&KafkaError::MessageConsumption(code)),
                "{code:?}"
            );
        }
        assert!(!recovers_by_itself(&KafkaError::Canceled));
    }

    #[test]
    fn extending_ranges_keeps_the_earliest_start_and_latest_end_per_partition() {
        let mut earlier = OffsetRanges::default();
        earlier.push("t", 0, 10);
        earlier.push("t", 0, 12);
        earlier.push("t", 1, 5);
        let mut later = OffsetRanges::default();
        later.push("t", 0, 13);
        later.push("t", 0, 20);
        later.push("t", 2, 7);
        earlier.extend(&later);
        let ranges: Vec<_> = earlier
            .starts()
            .zip(earlier.ends())
            .map(|((topic, p, first), (_, _, last))| (topic.to_owned(), p, first, last))
            .collect();
        assert_eq!(
            ranges,
            vec![
                ("t".to_owned(), 0, 10, 20),
                ("t".to_owned(), 1, 5, 5),
                ("t".to_owned(), 2, 7, 7),
            ]
        );
    }

    #[test]
    fn a_timed_out_record_is_reported_over_the_records_purged_with_it() {
        let purged = || KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue);
        let timed_out = || KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        let reported = [purged(), timed_out(), purged()]
            .into_iter()
            .fold(None, |kept, e| Some(telling(kept, e)));
        assert_eq!(reported, Some(timed_out()));
        // Otherwise the first failure.
        let first = KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas);
        assert_eq!(telling(Some(first.clone()), purged()), first);
    }

    #[test]
    fn one_key_keeps_its_order_and_keyless_records_stand_alone() {
        let keys: [Option<&[u8]>; 5] = [Some(b"a"), Some(b"b"), None, Some(b"a"), None];
        let groups = group_by_key(keys.into_iter().enumerate());
        assert_eq!(groups, vec![vec![0, 3], vec![1], vec![2], vec![4]]);
    }

    #[test]
    fn ranges_commit_past_the_last_and_rewind_to_the_first() {
        let mut ranges = OffsetRanges::default();
        for offset in [5, 6, 9] {
            ranges.push("t", 0, offset);
        }
        ranges.push("t", 3, 40);
        let next = ranges.next_offsets().unwrap();
        assert_eq!(
            next.find_partition("t", 0).unwrap().offset(),
            Offset::Offset(10)
        );
        assert_eq!(
            next.find_partition("t", 3).unwrap().offset(),
            Offset::Offset(41)
        );
        let start = ranges.start_offsets().unwrap();
        assert_eq!(
            start.find_partition("t", 0).unwrap().offset(),
            Offset::Offset(5)
        );
    }
}
