//! The two sides of Kafka the engine works against, as traits: the input log it consumes
//! (pausing, rewinding and replacing its consumer) and the transactions that commit a batch's
//! output with its input offsets. Kafka implements both here; the engine's tests implement
//! them in memory.

use futures::FutureExt as _;
use rdkafka::consumer::{Consumer as _, ConsumerGroupMetadata, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

use super::input::Input;
use crate::group::{self, MakeConsumer};
use crate::transaction::{
    self, CLIENT_TIMEOUT, OffsetRanges, OutRecord, TransactionalId, TxProducer,
    init_producer_patiently, produce_and_commit_as,
};
use crate::{HeraldContext, KafkaConfig};

/// The consumer side.
pub trait InputLog: Send + Sync {
    /// The group's metadata, which a transaction commits the input offsets as.
    type Group: Send + 'static;

    /// The next record. Errors the client recovers from by itself are waited out.
    fn next(&self) -> impl Future<Output = Result<Input, KafkaError>> + Send;
    /// A record already fetched, if one is at hand, without waiting.
    fn ready(&self) -> Option<Result<Input, KafkaError>>;
    /// Changes whenever partitions are revoked: a batch collected across a change may hold
    /// records of partitions that belong to another consumer now.
    fn revocations(&self) -> u64;
    /// Whether the consumer has been without partitions and coordinator for too long.
    fn stuck(&self) -> bool;
    fn group(&self) -> Option<Self::Group>;
    /// Stops fetching from the partitions of `ranges`.
    fn pause(&self, ranges: &OffsetRanges) -> Result<(), KafkaError>;
    fn resume(&self, ranges: &OffsetRanges) -> Result<(), KafkaError>;
    /// Fetches `partition` from `offset` on.
    fn seek(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError>;
    /// Rewinds the partitions of `ranges` this consumer still owns to their first records;
    /// the others belong to another consumer now, which reads them from the committed offsets.
    fn rewind_owned(&self, ranges: &OffsetRanges) -> Result<(), KafkaError>;
    /// Replaces the consumer, which has lost its group for good; the new one reads from the
    /// committed offsets.
    fn rebuild(&mut self) -> Result<(), KafkaError>;
    /// Stops consuming and leaves the group.
    fn leave(&self);
}

/// The producer side.
pub trait Transactions: Sized + Send {
    type Group: Send + 'static;

    /// Produces `records` and commits the offsets after `ranges` as `group`, in one
    /// transaction. The future owns what it needs: it runs on a task of its own while the
    /// next batch is collected.
    fn commit(
        &self,
        group: Self::Group,
        records: Vec<OutRecord>,
        ranges: &OffsetRanges,
    ) -> impl Future<Output = Result<(), KafkaError>> + Send + 'static;

    /// After a failed transaction: aborts it, or replaces the producer when it cannot go on
    /// (fenced, fatally failed, records timed out).
    fn recover(self, error: &KafkaError) -> impl Future<Output = Result<Self, KafkaError>> + Send;
}

type Consumer = StreamConsumer<HeraldContext>;

/// A role's consumer, and how to make it again.
pub struct KafkaInput<'a> {
    consumer: Consumer,
    make: &'a MakeConsumer,
    /// How long the consumer may be without partitions and coordinator before it is replaced.
    rebuild_after: Duration,
}

impl std::fmt::Debug for KafkaInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaInput")
            .field("rebuild_after", &self.rebuild_after)
            .finish_non_exhaustive()
    }
}

impl<'a> KafkaInput<'a> {
    pub fn new(make: &'a MakeConsumer, rebuild_after: Duration) -> Result<Self, KafkaError> {
        Ok(Self {
            consumer: make()?,
            make,
            rebuild_after,
        })
    }

    /// The consumer as it is now (it changes on a rebuild).
    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }
}

impl InputLog for KafkaInput<'_> {
    type Group = ConsumerGroupMetadata;

    async fn next(&self) -> Result<Input, KafkaError> {
        transaction::recv(&self.consumer)
            .await
            .map(|message| Input::from_message(&message))
    }

    fn ready(&self) -> Option<Result<Input, KafkaError>> {
        transaction::recv(&self.consumer)
            .now_or_never()
            .map(|message| message.map(|message| Input::from_message(&message)))
    }

    fn revocations(&self) -> u64 {
        self.consumer.context().revocations()
    }

    fn stuck(&self) -> bool {
        group::is_stuck(&self.consumer, self.rebuild_after)
    }

    fn group(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    fn pause(&self, ranges: &OffsetRanges) -> Result<(), KafkaError> {
        self.consumer.pause(&ranges.start_offsets()?)
    }

    fn resume(&self, ranges: &OffsetRanges) -> Result<(), KafkaError> {
        self.consumer.resume(&ranges.start_offsets()?)
    }

    fn seek(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        self.consumer.seek_partitions(tpl, CLIENT_TIMEOUT)?;
        Ok(())
    }

    fn rewind_owned(&self, ranges: &OffsetRanges) -> Result<(), KafkaError> {
        transaction::rewind_owned(&self.consumer, ranges)
    }

    fn rebuild(&mut self) -> Result<(), KafkaError> {
        group::rebuild(&mut self.consumer, self.make)
    }

    fn leave(&self) {
        self.consumer.unsubscribe();
    }
}

/// A role's transactional producer, and what it takes to make it again.
pub struct KafkaTransactions {
    producer: TxProducer,
    kafka: KafkaConfig,
    id: TransactionalId,
}

impl std::fmt::Debug for KafkaTransactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransactions")
            .field("id", &self.id.id)
            .finish_non_exhaustive()
    }
}

impl KafkaTransactions {
    /// Starts the producer (fencing any predecessor with the same id), waiting out a cluster
    /// that cannot answer yet.
    pub async fn start(kafka: &KafkaConfig, id: TransactionalId) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: init_producer_patiently(kafka, &id).await?,
            kafka: kafka.clone(),
            id,
        })
    }
}

impl Transactions for KafkaTransactions {
    type Group = ConsumerGroupMetadata;

    fn commit(
        &self,
        group: ConsumerGroupMetadata,
        records: Vec<OutRecord>,
        ranges: &OffsetRanges,
    ) -> impl Future<Output = Result<(), KafkaError>> + Send + 'static {
        let producer = self.producer.clone();
        let offsets = ranges.next_offsets();
        async move { produce_and_commit_as(&producer, group, &records, offsets?).await }
    }

    async fn recover(self, error: &KafkaError) -> Result<Self, KafkaError> {
        let producer =
            transaction::recover(&self.kafka, &self.id, self.producer, Some(error)).await?;
        Ok(Self {
            producer,
            kafka: self.kafka,
            id: self.id,
        })
    }
}
