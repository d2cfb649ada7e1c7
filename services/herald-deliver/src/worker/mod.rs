//! `herald deliver --channel <channel>`: consumes the channel's dispatch topics (bulk lane,
//! priority lane) and its retry tiers, read_committed; hands each dispatch to the channel's
//! provider once (the send ledger); reports `sent` / `delivered` / `failed` /
//! `dead_lettered` statuses; moves transient failures through the retry tiers and dead-letters
//! what cannot be delivered. See [`batch`] for the worker on the engine (its step and how it
//! collects a batch) and [`deliver`] for one record.

mod batch;
mod breaker;
mod clock;
mod deliver;
mod retry;
mod span;
mod token_bucket;

pub(crate) use batch::METRICS;

use rdkafka::consumer::{Consumer, StreamConsumer};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use herald_contracts::topics::RETRY_TIERS;
use herald_contracts::tracking::TrackingConfig;
use herald_contracts::unsubscribe::UnsubscribeConfig;
use herald_contracts::{Channel, Codec, Lane};
use herald_kafka::{HeraldContext, MetadataProbe};
use herald_runtime::CommonConfig;
use herald_runtime::admin::{self, Readiness};
use herald_runtime::health;
use herald_store::provider_messages::ProviderMessages;
use herald_store::push_tokens::PushTokens;
use herald_store::send_ledger::SendLedger;

use crate::config::{AmbiguousSend, DeliverConfig};
use crate::{BuildError, EmailLinks, StoreHandle, build_provider};
use batch::{Delivery, Lanes, Source, Topics};
use herald_kafka::engine;
use herald_kafka::transaction::TransactionalId;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database: {0}")]
    Store(#[from] herald_store::StoreError),
    #[error("codec: {0}")]
    Codec(#[from] herald_contracts::CodecError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("deliver.providers: {0}")]
    Provider(#[from] BuildError),
    #[error("admin server on {addr}: {source}")]
    Admin {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Metrics(String),
    #[error("shutdown took longer than deliver.shutdown_grace ({0:?})")]
    GraceExceeded(std::time::Duration),
}

/// Runs `channel`'s delivery worker until `shutdown` is cancelled, then finishes the open batch
/// (the sends in flight), commits it and leaves the group within `deliver.shutdown_grace`.
pub async fn run(
    common: CommonConfig,
    deliver: DeliverConfig,
    unsubscribe: UnsubscribeConfig,
    tracking: TrackingConfig,
    channel: Channel,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let metrics = admin::metrics_handle("deliver").map_err(WorkerError::Metrics)?;
    let readiness = Readiness::default();
    let listener = tokio::net::TcpListener::bind(common.admin.listen)
        .await
        .map_err(|source| WorkerError::Admin {
            addr: common.admin.listen,
            source,
        })?;
    let admin_addr = listener.local_addr().map_err(|source| WorkerError::Admin {
        addr: common.admin.listen,
        source,
    })?;
    tracing::info!(%admin_addr, %channel, "admin server listening");
    let admin_task = tokio::spawn(admin::serve(
        listener,
        readiness.clone(),
        metrics,
        shutdown.clone(),
    ));

    let topic_names = common.kafka.topics();
    let group = common.kafka.group(&deliver.group(channel));
    let transactional_id = deliver.transactional_id(&group);
    let session = Arc::new(herald_store::connect_keyspace(&common.store).await?);
    let (unsubscribe, tracking) = crate::signed_links(channel, &unsubscribe, &tracking)?;
    let provider = build_provider(
        channel,
        &deliver.providers,
        Some(StoreHandle {
            session: &session,
            config: &common.store,
        }),
        EmailLinks {
            unsubscribe: unsubscribe.as_ref(),
            tracking: tracking.as_ref(),
        },
    )
    .await?;
    let clock: Arc<dyn clock::Clock> = Arc::new(clock::SystemClock);
    let deliverer = Arc::new(deliver::Deliverer {
        channel,
        group: group.clone(),
        codec: Codec::new(&common.registry, topic_names.clone())?,
        topics: topic_names.clone(),
        breaker: breaker::Breaker::new(provider.name(), &deliver.breaker, clock.clone()),
        breaker_spread: deliver.breaker.open_for,
        max_deferral: deliver.breaker.max_deferral,
        ambiguous: deliver
            .ambiguous_send
            .unwrap_or_else(|| AmbiguousSend::default_for(channel)),
        unmarked: Default::default(),
        limiter: token_bucket::TokenBucket::new(provider.name(), &deliver.rate_limit, clock),
        provider,
        ledger: SendLedger::prepare(session.clone(), &common.store, transactional_id.clone())
            .await?,
        push_tokens: PushTokens::prepare(session.clone(), &common.store).await?,
        messages: ProviderMessages::prepare(session.clone(), &common.store).await?,
        message_ttl: deliver.provider_message_ttl,
        retry_delays: deliver.retry_delays.clone(),
        lease: deliver.ledger_lease,
    });

    let mut topics = HashMap::from([
        (topic_names.dispatch(channel, Lane::Bulk), Source::Bulk),
        (
            topic_names.dispatch(channel, Lane::Priority),
            Source::Priority,
        ),
    ]);
    // Tiers beyond the configured delays are never written, but are read in case an earlier
    // configuration wrote them.
    for tier in 1..=RETRY_TIERS {
        topics.insert(topic_names.retry(channel, tier), Source::Tier);
    }
    let mut consumer_config = common.kafka.consumer_config(&group);
    if deliver.instance_id.is_some() {
        // Static membership: a restarted instance takes its partitions back at once.
        consumer_config.set("group.instance.id", &transactional_id);
    }
    // One context for every consumer this role makes: readiness reads its group state.
    let context = HeraldContext::default();
    let names: Vec<String> = topics.keys().cloned().collect();
    let make_consumer = {
        let context = context.clone();
        move || -> Result<StreamConsumer<HeraldContext>, rdkafka::error::KafkaError> {
            let consumer: StreamConsumer<HeraldContext> =
                consumer_config.create_with_context(context.clone())?;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            consumer.subscribe(&names)?;
            Ok(consumer)
        }
    };
    let dependencies = vec![
        health::kafka(MetadataProbe::new(
            &common.kafka,
            topic_names.dispatch(channel, Lane::Bulk),
        )?),
        health::consumer_group(context, health::GROUP_GRACE),
        health::database(session.clone()),
    ];
    let health_task = tokio::spawn(health::watch(
        dependencies,
        readiness.clone(),
        shutdown.clone(),
    ));

    let lanes = Lanes::new(
        Topics(topics.clone()),
        deliverer.clone(),
        deliver.commit_interval,
        // Only asked for offsets, never polled: without statistics, which would queue up in it
        // (a report every few seconds) for as long as the worker runs.
        Arc::new(
            common
                .kafka
                .consumer_config(&group)
                .set("statistics.interval.ms", "0")
                .create()?,
        ),
    );
    let step = Delivery {
        deliverer,
        topics: Topics(topics),
    };
    let processing = engine::run_on_kafka(
        &common.kafka,
        &make_consumer,
        TransactionalId {
            id: transactional_id,
            timeout: deliver.transaction_timeout,
        },
        &step,
        lanes,
        deliver.engine(),
        &shutdown,
    );
    let grace = deliver.shutdown_grace;
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        result = processing => result.map_err(WorkerError::from),
        () = deadline => Err(WorkerError::GraceExceeded(grace)),
    };
    shutdown.cancel();
    if let Err(e) = health_task.await {
        tracing::warn!(error = %e, "readiness checks failed");
    }
    readiness.set(false);
    if let Ok(Err(e)) = admin_task.await {
        tracing::warn!(error = %e, "admin server stopped with an error");
    }
    result
}
