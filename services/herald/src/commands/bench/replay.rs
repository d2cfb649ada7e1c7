//! `herald bench replay`: produces requested events, then measures (1) the baseline copying
//! them transactionally and (2) `herald replay` (recover mode, no filter, its plan saved and its
//! progress committed per batch) copying the same records, and prints records/s and the ratio.

use rdkafka::producer::FutureProducer;
use std::process::ExitCode;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config_file::HeraldConfig;
use herald_contracts::{Codec, NotificationRequest};
use herald_kafka::{TopicSpec, apply_plan};
use herald_replay::plan::{self, Spec};
use herald_replay::progress::Progress;
use herald_replay::{Filter, Mode, Plan};

use super::flood::{Flood, IN_FLIGHT};
use super::{baseline, lag};
use crate::cli::BenchReplayArgs;
use crate::exit;

const USERS: usize = 10_000;

pub(super) async fn run(config: &HeraldConfig, args: &BenchReplayArgs) -> anyhow::Result<ExitCode> {
    let (run_id, config) = super::isolated(config)?;
    let topics = config.kafka.topics();
    let baseline_topic = format!("{run_id}.bench.baseline");
    let replay_topic = format!("{run_id}.bench.replay");
    println!(
        "bench {run_id}: {} records, {} partitions",
        args.records, args.partitions
    );

    let mut plan = super::declared_topics(&config, args.partitions, args.replication_factor)?;
    for name in [&baseline_topic, &replay_topic] {
        plan.topics.push(TopicSpec {
            name: name.clone(),
            partitions: args.partitions,
            replication_factor: args.replication_factor,
            configs: Default::default(),
        });
    }
    apply_plan(&config.kafka.client_config(), &plan, false).await?;

    let started = Instant::now();
    let codec = Codec::new(&config.registry, topics.clone())?;
    produce(&config, &codec, args.records).await?;
    println!(
        "produced {} records in {:.1}s",
        args.records,
        started.elapsed().as_secs_f64()
    );

    // Baseline: consume + transactionally re-produce the same bytes.
    let group = format!("{run_id}-baseline");
    let stop = CancellationToken::new();
    let copier = {
        let (kafka, group, from, to, stop) = (
            config.kafka.clone(),
            group.clone(),
            topics.requested(),
            baseline_topic.clone(),
            stop.clone(),
        );
        tokio::spawn(async move { baseline::copy(&kafka, &group, &from, &to, stop).await })
    };
    let baseline_time = lag::wait_until_caught_up(
        &config.kafka,
        &group,
        &topics.requested(),
        args.partitions,
        || {},
    )
    .await?;
    stop.cancel();
    copier.await??;
    let baseline_rate = args.records as f64 / baseline_time.as_secs_f64();

    // The replay, timed from its plan to its report.
    let started = Instant::now();
    let spec = Spec {
        id: Some(format!("bench-{}", &run_id[5..])),
        topic: topics.requested(),
        from: "earliest".into(),
        to: None,
        mode: Mode::Recover,
        into: Some(replay_topic),
        filter: Filter::default(),
        max_redrives: None,
    };
    let replay_plan = Plan::make(&config.kafka, spec, chrono::Utc::now())?;
    plan::save(&config.kafka, &replay_plan).await?;
    let report = herald_replay::copy(herald_replay::Copy {
        kafka: &config.kafka,
        codec: &codec,
        plan: &replay_plan,
        dry_run: false,
        rate: None,
        progress: Progress::Silent,
        shutdown: CancellationToken::new(),
    })
    .await?;
    let replay_time = started.elapsed();
    let replay_rate = report.written as f64 / replay_time.as_secs_f64();

    println!();
    println!(
        "baseline (consume + transactional re-produce): {:>9.0} records/s  ({:.1}s, includes the group join)",
        baseline_rate,
        baseline_time.as_secs_f64()
    );
    println!(
        "herald replay (plan, filter, headers, transactional copy): {:>9.0} records/s  ({:.1}s, {} copied)",
        replay_rate,
        replay_time.as_secs_f64(),
        report.written
    );
    println!(
        "replay / baseline: {:.1}%",
        100.0 * replay_rate / baseline_rate
    );
    Ok(exit::SUCCESS)
}

/// `records` requested events to `notifications.requested`: one encoded request, many keys.
async fn produce(config: &HeraldConfig, codec: &Codec, records: usize) -> anyhow::Result<()> {
    let request = NotificationRequest::from_json(
        &serde_json::json!({
            "event_id": "bench",
            "tenant": "acme",
            "category": "billing.invoice_ready",
            "template": {"id": "invoice_ready"},
            "recipient": {"user_id": "u0"},
            "channels": ["email"],
            "data": {"name": "Ada", "invoice": {"number": "INV-1", "amount": "42.00"}},
        })
        .to_string(),
    )?;
    let payload = codec.encode_request(&request).await?;
    let producer: FutureProducer = config.kafka.producer_config().create()?;
    let topic = config.kafka.topics().requested();
    let mut flood = Flood::new(&producer, &topic, IN_FLIGHT);
    for i in 0..records {
        flood
            .send(format!("acme:u{}", i % USERS), payload.clone())
            .await?;
    }
    flood.finish().await
}
