//! `herald track`: consumes `notifications.status` (read_committed) and writes each status
//! record into the notification's timeline and, once per notification, the user's index
//! (herald-store `timeline`). Offsets are committed only after a batch's rows are written, and
//! every row is keyed by the record (its source, or the notification for the index), so a batch
//! read again after a crash rewrites the same rows: at-least-once reading, effectively-once
//! rows. See [`batch`].
//! From the same records it counts statuses per tenant, category, channel and status, and the
//! end-to-end latency per channel, for the delivery dashboard ([`delivery_metrics`]).

mod batch;
mod delivery_metrics;

use rdkafka::consumer::{Consumer, StreamConsumer};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use herald_contracts::Codec;
use herald_kafka::{HeraldContext, MetadataProbe};
use herald_runtime::CommonConfig;
use herald_runtime::admin::{self, AdminStartError};
use herald_runtime::health;
use herald_store::timeline::TimelineWriter;

/// The consumer group every tracker instance shares (`kafka.topic_prefix` is prepended).
pub const GROUP: &str = "herald-track";
/// Status records written per batch at most.
pub const MAX_BATCH: usize = 500;
/// How long a batch waits for more records after its first.
pub const LINGER: Duration = Duration::from_millis(50);
/// How long the tracker may take to finish its open batch after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("database: {0}")]
    Store(#[from] herald_store::StoreError),
    #[error("codec: {0}")]
    Codec(#[from] herald_contracts::CodecError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Admin(#[from] AdminStartError),
    #[error("shutdown took longer than {0:?}")]
    GraceExceeded(Duration),
    #[error("writing the timeline: {0}")]
    WriteTask(#[from] tokio::task::JoinError),
}

/// Runs the tracker until `shutdown` is cancelled, then writes and commits the open batch.
pub async fn run(common: CommonConfig, shutdown: CancellationToken) -> Result<(), TrackError> {
    let admin = admin::start("track", common.admin.listen, shutdown.clone()).await?;
    tracing::info!(admin_addr = %admin.addr, "admin server listening");

    let topics = common.kafka.topics();
    let group = common.kafka.group(GROUP);
    let session = Arc::new(herald_store::connect_keyspace(&common.store).await?);
    let writer = Arc::new(TimelineWriter::prepare(session.clone(), &common.store).await?);
    let codec = Codec::new(&common.registry, topics.clone())?;

    let consumer_config = common.kafka.consumer_config(&group);
    let context = HeraldContext::default();
    let status_topic = topics.status();
    let make_consumer = {
        let context = context.clone();
        let topic = status_topic.clone();
        move || -> Result<StreamConsumer<HeraldContext>, rdkafka::error::KafkaError> {
            let consumer: StreamConsumer<HeraldContext> =
                consumer_config.create_with_context(context.clone())?;
            consumer.subscribe(&[&topic])?;
            Ok(consumer)
        }
    };
    let consumer = make_consumer()?;
    let dependencies = vec![
        health::kafka(MetadataProbe::new(&common.kafka, status_topic)?),
        health::consumer_group(context, health::GROUP_GRACE),
        health::database(session),
    ];
    let health_task = tokio::spawn(health::watch(
        dependencies,
        admin.readiness.clone(),
        shutdown.clone(),
    ));

    let tracker = batch::Tracker {
        codec,
        writer,
        consumer,
        make_consumer: &make_consumer,
        rebuild_after: common.kafka.consumer_rebuild_after,
        delivery: delivery_metrics::DeliveryMetrics::new(delivery_metrics::MAX_TENANT_CATEGORIES),
    };
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        result = tracker.run(shutdown.clone()) => result,
        () = deadline => Err(TrackError::GraceExceeded(SHUTDOWN_GRACE)),
    };
    shutdown.cancel();
    admin.stop(health_task).await;
    result
}
