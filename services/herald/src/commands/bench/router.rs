//! `herald bench router`: seeds users, produces requested events across the partitions, then
//! measures (1) the baseline copying the same bytes transactionally and (2) the router, on the
//! same topics, and prints events/s, per-event latency quantiles, peak RSS and the ratio.

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::producer::FutureProducer;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::config_file::HeraldConfig;
use herald_contracts::{Channel, Codec, Lane, NotificationRequest};
use herald_kafka::{TopicSpec, apply_plan};
use herald_router::route::Stage;
use herald_runtime::metric_names::{ROUTER_EVENTS, ROUTER_TRANSACTIONS};
use herald_store::seed::{SeedFile, load};

use super::child::{
    Spent, config_path, counter, fetch_metrics, free_port, herald, peak_rss, run_env, wait_ready,
};
use super::flood::Flood;
use super::{baseline, lag, steady};
use crate::cli::BenchRouterArgs;
use crate::exit;

const DEMO_SEED: &str = include_str!("../../../../../dev/demo/seed.json");
const IN_FLIGHT: usize = 512;
const ROUTER_GROUP: &str = "bench-router";
const BASELINE_GROUP: &str = "bench-baseline";

pub(super) async fn run(config: &HeraldConfig, args: &BenchRouterArgs) -> anyhow::Result<ExitCode> {
    let (run_id, config) = super::isolated(config)?;
    let topics = config.kafka.topics();
    let baseline_topic = format!("{run_id}.bench.baseline");
    println!(
        "bench {run_id}: {} users, {} events, {} partitions",
        args.users, args.events, args.partitions
    );

    // Topics (the declared ones plus the baseline's output), keyspace, demo categories/templates.
    let mut plan = super::declared_topics(&config, args.partitions, args.replication_factor)?;
    plan.topics.push(TopicSpec {
        name: baseline_topic.clone(),
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        configs: Default::default(),
    });
    apply_plan(&config.kafka.client_config(), &plan, false).await?;
    let session = Arc::new(herald_store::connect(&config.store).await?);
    herald_store::migrate(&session, &config.store).await?;
    load(&session, &config.store, &SeedFile::parse(DEMO_SEED)?).await?;

    let started = Instant::now();
    seed_users(&session, &config, args.users).await?;
    println!(
        "seeded {} users in {:.1}s",
        args.users,
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let codec = Codec::new(&config.registry, topics.clone())?;
    produce_events(&config, &codec, args).await?;
    println!(
        "produced {} events in {:.1}s",
        args.events,
        started.elapsed().as_secs_f64()
    );

    // Baseline: consume + transactionally re-produce the same bytes.
    let stop = CancellationToken::new();
    let copier = {
        let (kafka, from, to, stop) = (
            config.kafka.clone(),
            topics.requested(),
            baseline_topic.clone(),
            stop.clone(),
        );
        tokio::spawn(async move { baseline::copy(&kafka, BASELINE_GROUP, &from, &to, stop).await })
    };
    let baseline_time = lag::wait_until_caught_up(
        &config.kafka,
        BASELINE_GROUP,
        &topics.requested(),
        args.partitions,
        || {},
    )
    .await?;
    stop.cancel();
    copier.await??;
    let baseline_rate = args.events as f64 / baseline_time.as_secs_f64();

    // The router, as its own process so its memory and metrics are its own.
    let admin_port = free_port()?;
    let mut env = run_env(&config);
    env.extend([
        ("HERALD_ROUTER__GROUP_ID", ROUTER_GROUP.to_owned()),
        ("HERALD_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}")),
    ]);
    let mut command = herald(&config_path(), &env);
    command.arg("router").stdout(Stdio::null());
    let mut child = command.spawn().context("starting the router")?;
    let pid = child.id().context("router exited at once")?;
    wait_ready(admin_port).await?;
    // Costs are counted from here: start-up is not an event's.
    let spent_at_start = Spent::read(pid, admin_port, ROUTER_EVENTS).await;
    let transactions_at_start = counter(
        &fetch_metrics(admin_port).await.unwrap_or_default(),
        ROUTER_TRANSACTIONS,
    );
    let mut peak_rss_kib = 0;
    let router_group = format!("{}{ROUTER_GROUP}", config.kafka.topic_prefix);
    let router_time = lag::wait_until_caught_up(
        &config.kafka,
        &router_group,
        &topics.requested(),
        args.partitions,
        || {
            peak_rss_kib = peak_rss_kib.max(peak_rss(pid).unwrap_or(0));
        },
    )
    .await?;
    peak_rss_kib = peak_rss_kib.max(peak_rss(pid).unwrap_or(0));
    let spent_at_end = Spent::read(pid, admin_port, ROUTER_EVENTS).await;
    let metrics = fetch_metrics(admin_port).await.unwrap_or_default();
    let steady = if args.steady_seconds > 0 {
        let dispatch_topics =
            [Lane::Bulk, Lane::Priority].map(|lane| topics.dispatch(Channel::Email, lane));
        Some(
            steady::measure(
                &config,
                &codec,
                args.steady_rate,
                args.steady_seconds,
                &dispatch_topics,
                |i| bench_request(&format!("steady-{i}"), i, args.users),
            )
            .await?,
        )
    } else {
        None
    };
    let after_steady = fetch_metrics(admin_port).await.unwrap_or_default();
    let steady_delta = |name: &str| counter(&after_steady, name) - counter(&metrics, name);
    let router_end_to_end = |q: &str| {
        quantile(
            &after_steady,
            herald_runtime::metric_names::ROUTER_END_TO_END_SECONDS,
            q,
        )
        .map_or("n/a".into(), |s| format!("{:.1} ms", s * 1000.0))
    };
    let (steady_events, steady_transactions) = (
        steady_delta(ROUTER_EVENTS),
        steady_delta(ROUTER_TRANSACTIONS),
    );
    peak_rss_kib = peak_rss_kib.max(peak_rss(pid).unwrap_or(0));
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let router_rate = args.events as f64 / router_time.as_secs_f64();

    println!();
    println!(
        "baseline (consume + transactional re-produce): {:>9.0} events/s  ({:.1}s)",
        baseline_rate,
        baseline_time.as_secs_f64()
    );
    println!(
        "router (decode, dedupe, enrich, decide, cap, render, emit): {:>9.0} events/s  ({:.1}s, includes start-up)",
        router_rate,
        router_time.as_secs_f64()
    );
    println!(
        "router / baseline: {:.1}%",
        100.0 * router_rate / baseline_rate
    );
    for (q, label) in [("0.5", "p50"), ("0.99", "p99"), ("0.999", "p99.9")] {
        let value = quantile(
            &metrics,
            herald_runtime::metric_names::ROUTER_EVENT_SECONDS,
            q,
        );
        println!(
            "per-event processing {label}: {}",
            value.map_or("n/a".into(), |s| format!("{:.2} ms", s * 1000.0))
        );
    }
    for line in spent_at_start.per_unit(&spent_at_end, "event", "events") {
        println!("{line}");
    }
    let transactions = counter(&metrics, ROUTER_TRANSACTIONS) - transactions_at_start;
    if transactions > 0.0 {
        println!(
            "{transactions:.0} transactions, {:.0} events each",
            args.events as f64 / transactions
        );
    }
    if let Some(steady) = &steady {
        println!(
            "steady {} events/s for {} s, created_at to dispatch committed: {steady}; {steady_events:.0} events in {steady_transactions:.0} transactions; the router's own created_at to routed (before the commit, its recent window): p50 {}  p99 {}",
            args.steady_rate,
            args.steady_seconds,
            router_end_to_end("0.5"),
            router_end_to_end("0.99"),
        );
    }
    if steady.is_some() {
        let commit = |q| {
            quantile(
                &after_steady,
                herald_runtime::metric_names::ROUTER_COMMIT_SECONDS,
                q,
            )
            .map_or("n/a".into(), |s| format!("{:.1}", s * 1000.0))
        };
        println!(
            "steady stage latency p50 / p99 (the router's recent window): {}; transaction commit {} / {}",
            stage_quantiles(&after_steady),
            commit("0.5"),
            commit("0.99"),
        );
    }
    println!("router peak RSS: {:.1} MiB", peak_rss_kib as f64 / 1024.0);
    Ok(exit::SUCCESS)
}

async fn seed_users(
    session: &scylla::client::session::Session,
    config: &HeraldConfig,
    users: usize,
) -> anyhow::Result<()> {
    let insert = session
        .prepare(format!(
            "INSERT INTO {} (tenant, user_id, email, locale, time_zone) VALUES ('acme', ?, ?, 'en-US', 'America/New_York')",
            config.store.table("users")
        ))
        .await?;
    let mut pending = FuturesUnordered::new();
    for i in 0..users {
        let insert = &insert;
        pending.push(async move {
            session
                .execute_unpaged(insert, (format!("u{i}"), format!("u{i}@example.com")))
                .await
        });
        if pending.len() >= IN_FLIGHT
            && let Some(result) = pending.next().await
        {
            result?;
        }
    }
    while let Some(result) = pending.next().await {
        result?;
    }
    Ok(())
}

async fn produce_events(
    config: &HeraldConfig,
    codec: &Codec,
    args: &BenchRouterArgs,
) -> anyhow::Result<()> {
    let producer: FutureProducer = config.kafka.producer_config().create()?;
    let topic = config.kafka.topics().requested();
    let mut flood = Flood::new(&producer, &topic, IN_FLIGHT * 8);
    for i in 0..args.events {
        let request = bench_request(&format!("bench-{i}"), i, args.users)?;
        let payload = codec.encode_request(&request).await?;
        flood.send(request.key(), payload).await?;
    }
    flood.finish().await
}

/// Event `i` of the bench: an invoice notice by email to one of `users` users.
fn bench_request(event_id: &str, i: usize, users: usize) -> anyhow::Result<NotificationRequest> {
    Ok(NotificationRequest::from_json(
        &serde_json::json!({
            "event_id": event_id,
            "tenant": "acme",
            "category": "billing.invoice_ready",
            "template": {"id": "invoice_ready"},
            "recipient": {"user_id": format!("u{}", i % users.max(1))},
            "channels": ["email"],
            "data": {"name": "Ada", "invoice": {"number": format!("INV-{i}"), "amount": "42.00"}},
        })
        .to_string(),
    )?)
}

/// A summary quantile from Prometheus text, e.g. `name{quantile="0.99"} 0.0021`.
fn quantile(metrics: &str, name: &str, q: &str) -> Option<f64> {
    labelled_quantile(metrics, name, "", q)
}

/// A summary quantile of one label set, e.g. `name{stage="render",quantile="0.99"} 0.0021`
/// for `labels` `stage="render",`.
fn labelled_quantile(metrics: &str, name: &str, labels: &str, q: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}quantile=\"{q}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Every routing stage's p50 / p99, in ms.
fn stage_quantiles(metrics: &str) -> String {
    Stage::ALL
        .iter()
        .map(|stage| {
            let stage = stage.label();
            let labels = format!("stage=\"{stage}\",");
            let ms = |q| {
                labelled_quantile(
                    metrics,
                    herald_runtime::metric_names::ROUTER_STAGE_SECONDS,
                    &labels,
                    q,
                )
                .map_or("n/a".into(), |s| format!("{:.1}", s * 1000.0))
            };
            format!("{stage} {} / {}", ms("0.5"), ms("0.99"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
