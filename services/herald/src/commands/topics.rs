//! `herald topics apply`.

use anyhow::Context;
use std::process::ExitCode;

use herald_kafka::{TopicPlan, apply_plan};
use herald_runtime::HeraldConfig;

use crate::cli::TopicsApplyArgs;
use crate::exit;

pub(crate) async fn apply(
    config: &HeraldConfig,
    args: &TopicsApplyArgs,
) -> anyhow::Result<ExitCode> {
    let plan = match &args.file {
        Some(path) => TopicPlan::load(path),
        None => TopicPlan::declared(),
    };
    let plan = match plan {
        Ok(plan) => plan.with_prefix(&config.kafka.topic_prefix),
        Err(e) => {
            eprintln!("herald: {e}");
            return Ok(exit::config());
        }
    };
    let plan = match args.replication_factor {
        Some(rf) => plan.with_replication_factor(rf),
        None => plan,
    };
    let plan = match args.partitions {
        Some(partitions) => plan.with_partitions(partitions),
        None => plan,
    };
    let report = apply_plan(&config.kafka.client_config(), &plan, args.dry_run)
        .await
        .with_context(|| format!("applying topics at {}", config.kafka.bootstrap_servers))?;
    let verb = if args.dry_run { "would " } else { "" };
    for action in &report.actions {
        println!("{verb}{action}");
    }
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    if report.is_noop() {
        println!(
            "{} topics already match the declaration; nothing to do",
            plan.topics.len()
        );
    } else if args.dry_run {
        println!("dry run: {} changes not applied", report.actions.len());
    } else {
        println!("applied {} changes", report.actions.len());
    }
    Ok(exit::SUCCESS)
}
