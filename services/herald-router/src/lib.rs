//! `herald router`: consumes `notifications.requested`, deduplicates, expires, enriches with the
//! recipient's profile and preferences, decides channels, renders templates and emits one
//! dispatch per channel plus status records, all in one Kafka transaction per batch.

pub mod config;
pub mod decide;
pub mod quiet_hours;
pub mod render;
pub mod route;
pub mod scheduler;
pub mod sms;
pub mod step;
pub mod substitution;

use rdkafka::consumer::{Consumer, StreamConsumer};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use herald_contracts::Codec;
use herald_contracts::registry::RegistryAdmin;
use herald_kafka::engine::{self, TakeAll};
use herald_kafka::transaction::TransactionalId;
use herald_kafka::{HeraldContext, MetadataProbe};
use herald_runtime::CommonConfig;
use herald_runtime::admin::{self, Readiness};
use herald_runtime::health;
use herald_store::dedupe::DedupeLedger;
use herald_store::directory::Directory;
use herald_store::frequency_cap::FrequencyCap;
use herald_store::schedule::Schedule;
use herald_store::suppressions::Suppressions;

pub use config::RouterConfig;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("database: {0}")]
    Store(#[from] herald_store::StoreError),
    #[error("codec: {0}")]
    Codec(#[from] herald_contracts::CodecError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("scheduler: {0}")]
    Scheduler(#[from] scheduler::SchedulerError),
    #[error("admin server on {addr}: {source}")]
    Admin {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Metrics(String),
    #[error("shutdown took longer than router.shutdown_grace ({0:?})")]
    GraceExceeded(std::time::Duration),
}

/// Runs the router until `shutdown` is cancelled, then finishes the open batch and leaves the
/// consumer group within `router.shutdown_grace`.
pub async fn run(
    common: CommonConfig,
    config: RouterConfig,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    let metrics = admin::metrics_handle("router").map_err(RouterError::Metrics)?;
    let readiness = Readiness::default();
    let listener = tokio::net::TcpListener::bind(common.admin.listen)
        .await
        .map_err(|source| RouterError::Admin {
            addr: common.admin.listen,
            source,
        })?;
    let admin_addr = listener.local_addr().map_err(|source| RouterError::Admin {
        addr: common.admin.listen,
        source,
    })?;
    tracing::info!(%admin_addr, "admin server listening");
    let admin_task = tokio::spawn(admin::serve(
        listener,
        readiness.clone(),
        metrics,
        shutdown.clone(),
    ));

    let topics = common.kafka.topics();
    let session = Arc::new(herald_store::connect_keyspace(&common.store).await?);
    let directory = Directory::prepare(session.clone(), &common.store).await?;
    let dedupe = DedupeLedger::prepare(session.clone(), &common.store).await?;
    let frequency_cap = FrequencyCap::prepare(session.clone(), &common.store).await?;
    let suppressions = Suppressions::prepare(session.clone(), &common.store).await?;
    let schedule = Schedule::prepare(session.clone(), &common.store)
        .await?
        .with_shards(config.schedule_shards)?;
    // Before anything is deferred: the sweep starts from the cursor.
    schedule.init_cursor(chrono::Utc::now()).await?;
    let codec = Codec::new(&common.registry, topics.clone())?;
    let router = Arc::new(route::Router::new(
        codec,
        directory,
        dedupe,
        frequency_cap,
        schedule.clone(),
        suppressions,
        &config,
    ));

    let group = common.kafka.group(&config.group_id);
    let transactional_id = config.transactional_id(&group);
    let scheduler = scheduler::Scheduler::new(
        schedule,
        common.kafka.producer_config(),
        topics.requested(),
        transactional_id.clone(),
        config.scheduler_interval,
        config.schedule_claim_lease,
    )?;
    let scheduler_task = tokio::spawn(scheduler.run(shutdown.clone()));
    let mut consumer_config = common.kafka.consumer_config(&group);
    if config.instance_id.is_some() {
        // Static membership: a restarted instance takes its partitions back at once instead
        // of waiting out the session timeout of its dead predecessor.
        consumer_config.set("group.instance.id", &transactional_id);
    }
    // One context for every consumer this role makes: readiness reads its group state.
    let context = HeraldContext::default();
    let requested = topics.requested();
    let make_consumer = {
        let context = context.clone();
        move || -> Result<StreamConsumer<HeraldContext>, rdkafka::error::KafkaError> {
            let consumer: StreamConsumer<HeraldContext> =
                consumer_config.create_with_context(context.clone())?;
            consumer.subscribe(&[&requested])?;
            Ok(consumer)
        }
    };
    let dependencies = vec![
        health::kafka(MetadataProbe::new(&common.kafka, topics.requested())?),
        health::consumer_group(context, health::GROUP_GRACE),
        health::database(session.clone()),
        health::registry(
            RegistryAdmin::new(common.registry.clone())
                .map_err(herald_contracts::CodecError::from)?,
        ),
    ];
    let health_task = tokio::spawn(health::watch(
        dependencies,
        readiness.clone(),
        shutdown.clone(),
    ));

    let grace = config.shutdown_grace;
    let processing = engine::run_on_kafka(
        &common.kafka,
        &make_consumer,
        TransactionalId {
            id: transactional_id,
            timeout: config.transaction_timeout,
        },
        &*router,
        TakeAll,
        config.engine(),
        &shutdown,
    );
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        result = processing => result.map_err(RouterError::from),
        () = deadline => Err(RouterError::GraceExceeded(grace)),
    };
    shutdown.cancel();
    if let Err(e) = health_task.await {
        tracing::warn!(error = %e, "readiness checks failed");
    }
    readiness.set(false);
    if let Err(e) = scheduler_task.await {
        tracing::warn!(error = %e, "scheduler task failed");
    }
    if let Ok(Err(e)) = admin_task.await {
        tracing::warn!(error = %e, "admin server stopped with an error");
    }
    result
}
