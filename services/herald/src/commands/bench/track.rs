//! `herald bench track`: produces status records, then measures (1) the baseline, a plain
//! consume loop committing each batch, and (2) `herald track` (decode, write the timeline and
//! once per notification the user index, commit) reading the same records, and prints
//! records/s, the ratio, CPU per status of the tracker, the CQL server and Kafka, and the CQL
//! rows and requests per status.

use anyhow::Context;
use chrono::{Duration as TimeDelta, Utc};
use rdkafka::producer::FutureProducer;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::config_file::HeraldConfig;
use herald_contracts::metric_names::{TRACK_CQL_REQUESTS, TRACK_CQL_ROWS, TRACK_STATUSES_WRITTEN};
use herald_contracts::{Channel, Codec, Status, StatusEvent, provider};

use super::child::{
    config_path, counter, cpu_micros, fetch_metrics, free_port, herald, peak_rss, run_env,
    stack_server_pid,
};
use super::flood::{Flood, IN_FLIGHT};
use super::{baseline, lag};
use crate::cli::BenchTrackArgs;
use crate::exit;

const USERS: usize = 10_000;
/// The statuses of one notification: routed, sent, delivered (one email dispatch).
const STATUSES_PER_EVENT: usize = 3;

pub(super) async fn run(config: &HeraldConfig, args: &BenchTrackArgs) -> anyhow::Result<ExitCode> {
    let (run_id, config) = super::isolated(config)?;
    let topics = config.kafka.topics();
    let events = args.statuses.div_ceil(STATUSES_PER_EVENT);
    let statuses = events * STATUSES_PER_EVENT;
    println!(
        "bench {run_id}: {statuses} statuses ({events} notifications x routed, sent, delivered), {} partitions",
        args.partitions
    );

    let plan = super::declared_topics(&config, args.partitions, args.replication_factor)?;
    herald_kafka::apply_plan(&config.kafka.client_config(), &plan, false).await?;
    let session = Arc::new(herald_store::connect(&config.store).await?);
    herald_store::migrate(&session, &config.store).await?;
    drop(session);

    let started = Instant::now();
    let codec = Codec::new(&config.registry, topics.clone())?;
    produce(&config, &codec, events).await?;
    println!(
        "produced {statuses} statuses in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Baseline: a plain consume loop, in this process.
    let group = format!("{run_id}-plain");
    let stop = CancellationToken::new();
    let consumer = {
        let (kafka, group, topic, stop) = (
            config.kafka.clone(),
            group.clone(),
            topics.status(),
            stop.clone(),
        );
        tokio::spawn(async move { baseline::consume(&kafka, &group, &topic, stop).await })
    };
    let baseline_time = lag::wait_until_caught_up(
        &config.kafka,
        &group,
        &topics.status(),
        args.partitions,
        || {},
    )
    .await?;
    stop.cancel();
    consumer.await??;
    let baseline_rate = statuses as f64 / baseline_time.as_secs_f64();

    // The tracker, as its own process so its CPU, memory and metrics are its own.
    let admin_port = free_port()?;
    let mut env = run_env(&config);
    env.extend([("HERALD_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"))]);
    let servers = [stack_server_pid("cassandra"), stack_server_pid("kafka")];
    let servers_before = servers.map(|pid| pid.and_then(cpu_micros));
    let mut command = herald(&config_path(), &env);
    command.arg("track").stdout(Stdio::null());
    let mut child = command.spawn().context("starting herald track")?;
    let pid = child.id().context("herald track exited at once")?;
    let mut peak_rss_kib = 0;
    let tracker_group = config.kafka.group(herald_track::GROUP);
    let tracker_time = lag::wait_until_caught_up(
        &config.kafka,
        &tracker_group,
        &topics.status(),
        args.partitions,
        || peak_rss_kib = peak_rss_kib.max(peak_rss(pid).unwrap_or(0)),
    )
    .await?;
    let tracker_cpu = cpu_micros(pid);
    let servers_after = servers.map(|pid| pid.and_then(cpu_micros));
    peak_rss_kib = peak_rss_kib.max(peak_rss(pid).unwrap_or(0));
    let metrics = fetch_metrics(admin_port).await;
    let tracker_counter = |name: &str| metrics.as_ref().map_or(0.0, |m| counter(m, name));
    let written = tracker_counter(TRACK_STATUSES_WRITTEN);
    let (rows, requests) = (
        tracker_counter(TRACK_CQL_ROWS),
        tracker_counter(TRACK_CQL_REQUESTS),
    );
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let tracker_rate = statuses as f64 / tracker_time.as_secs_f64();

    println!();
    println!(
        "baseline (plain consume loop, commit per batch): {:>9.0} statuses/s  ({:.1}s, includes the group join)",
        baseline_rate,
        baseline_time.as_secs_f64()
    );
    println!(
        "herald track (decode, write timeline + user index, commit): {:>9.0} statuses/s  ({:.1}s, includes start-up; {written:.0} written)",
        tracker_rate,
        tracker_time.as_secs_f64()
    );
    println!(
        "track / baseline: {:.1}%",
        100.0 * tracker_rate / baseline_rate
    );
    let per_status = |cpu: Option<u64>| {
        cpu.map_or("n/a".to_owned(), |us| {
            format!("{:.1} µs", us as f64 / statuses as f64)
        })
    };
    let spent = |i: usize| servers_after[i]?.checked_sub(servers_before[i]?);
    println!(
        "CPU per status during the tracker's phase: tracker {} (start-up included), CQL server {}, Kafka {}",
        per_status(tracker_cpu),
        per_status(spent(0)),
        per_status(spent(1)),
    );
    println!(
        "CQL per status: {:.2} rows (a timeline row each, an index row per notification), {:.3} requests (unlogged batches)",
        rows / statuses as f64,
        requests / statuses as f64,
    );
    println!("tracker peak RSS: {:.1} MiB", peak_rss_kib as f64 / 1024.0);
    Ok(exit::SUCCESS)
}

/// `events` notifications' statuses to `notifications.status`, keyed `tenant:user_id` as the
/// pipeline keys them, each notification's three in order.
async fn produce(config: &HeraldConfig, codec: &Codec, events: usize) -> anyhow::Result<()> {
    let producer: FutureProducer = config.kafka.producer_config().create()?;
    let topic = config.kafka.topics().status();
    let start = Utc::now();
    let mut flood = Flood::new(&producer, &topic, IN_FLIGHT);
    for i in 0..events {
        let event_id = format!("bench-{i}");
        let routed_at = start + TimeDelta::milliseconds(i as i64);
        let base = StatusEvent {
            event_id: event_id.clone(),
            dispatch_id: Some(format!("{event_id}:email")),
            tenant: "acme".to_owned(),
            user_id: format!("u{}", i % USERS),
            channel: Some(Channel::Email),
            status: Status::Routed,
            reason: None,
            provider: None,
            provider_message_id: None,
            attempt: 0,
            at: routed_at,
            // As the pipeline's statuses carry them (the index row is keyed by created_at).
            category: Some("bench.receipt".to_owned()),
            created_at: Some(routed_at - TimeDelta::milliseconds(5)),
            ..Default::default()
        };
        let sent = StatusEvent {
            status: Status::Sent,
            provider: Some(provider::SMTP.to_owned()),
            provider_message_id: Some(format!("<{event_id}@bench>")),
            at: routed_at + TimeDelta::milliseconds(40),
            ..base.clone()
        };
        let delivered = StatusEvent {
            status: Status::Delivered,
            at: routed_at + TimeDelta::seconds(2),
            ..sent.clone()
        };
        for status in [base, sent, delivered] {
            let payload = codec.encode_status(&status).await?;
            flood.send(status.key(), payload).await?;
        }
    }
    flood.finish().await
}
