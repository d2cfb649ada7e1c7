//! `herald bench`: throughput and latency of a role against a baseline measured in the same run
//! on the same machine. Prints numbers; asserts nothing.

mod api;
mod baseline;
mod child;
mod deliver;
mod flood;
mod inbox;
mod lag;
mod replay;
mod router;
mod steady;
mod track;

use std::process::ExitCode;

use crate::config_file::HeraldConfig;
use herald_kafka::TopicPlan;

use crate::cli::BenchCommand;

pub(crate) async fn run(config: &HeraldConfig, command: &BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Router(args) => router::run(config, args).await,
        BenchCommand::Deliver(args) => deliver::run(config, args).await,
        BenchCommand::Replay(args) => replay::run(config, args).await,
        BenchCommand::Api(args) => api::run(config, args).await,
        BenchCommand::Track(args) => track::run(config, args).await,
        BenchCommand::Inbox(args) => inbox::run(config, args).await,
    }
}

/// The run's id (`bench<unix ms>`) and its own copy of `config`: topics under `<id>.` and
/// keyspace `<id>`, so that runs never share state.
fn isolated(config: &HeraldConfig) -> anyhow::Result<(String, HeraldConfig)> {
    let run_id = format!(
        "bench{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let mut config = config.clone();
    config.kafka.topic_prefix = format!("{run_id}.");
    config.store.keyspace = run_id.clone();
    Ok((run_id, config))
}

/// The run's topics (`partitions` each) and its migrated keyspace.
async fn prepare_run(
    config: &HeraldConfig,
    partitions: i32,
    replication_factor: i32,
) -> anyhow::Result<()> {
    let plan = declared_topics(config, partitions, replication_factor)?;
    herald_kafka::apply_plan(&config.kafka.client_config(), &plan, false).await?;
    let session = herald_store::connect(&config.store).await?;
    herald_store::migrate(&session, &config.store).await?;
    Ok(())
}

/// Herald's declared topics under the run's prefix, `partitions` each.
fn declared_topics(
    config: &HeraldConfig,
    partitions: i32,
    replication_factor: i32,
) -> anyhow::Result<TopicPlan> {
    let mut plan = TopicPlan::declared()?
        .with_prefix(&config.kafka.topic_prefix)
        .with_replication_factor(replication_factor);
    for topic in &mut plan.topics {
        topic.partitions = partitions;
    }
    Ok(plan)
}

/// The `q` quantile (nearest rank) of `latencies`.
fn percentile(latencies: &[std::time::Duration], q: f64) -> Option<std::time::Duration> {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

/// A latency in milliseconds, or "n/a".
fn millis(value: Option<std::time::Duration>) -> String {
    value.map_or("n/a".into(), |d| {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    })
}
