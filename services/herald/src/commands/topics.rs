//! `herald topics apply`.

use anyhow::Context;
use std::process::ExitCode;

use crate::config_file::HeraldConfig;
use herald_kafka::topic_apply::{ApplyError, REPARTITION_RISK};
use herald_kafka::{ApplyReport, TopicPlan, apply_plan};

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
    let plan = if args.allow_repartition {
        plan.with_repartition_allowed()
    } else {
        plan
    };
    let report = match apply_plan(&config.kafka.client_config(), &plan, args.dry_run).await {
        Ok(report) => report,
        Err(ApplyError::RepartitionRefused { refused, report }) => {
            print_report(&report, true);
            for grow in &refused {
                eprintln!("herald: refused: {grow}");
            }
            let others = match report.actions.len() {
                0 => String::new(),
                n => format!("; the {n} other changes listed were not made either"),
            };
            eprintln!(
                "herald: refusing to grow the partitions of notifications.requested and the \
                 dispatch lanes: {REPARTITION_RISK}.\n\
                 herald: nothing was changed{others}. Stop the producers, let the router and the \
                 workers drain these topics, then run again with --allow-repartition."
            );
            return Ok(exit::FAILURE);
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("applying topics at {}", config.kafka.bootstrap_servers));
        }
    };
    print_report(&report, args.dry_run);
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

/// The changes (with `would` when they are not made) and the warnings, on stdout.
fn print_report(report: &ApplyReport, not_made: bool) {
    let verb = if not_made { "would " } else { "" };
    for action in &report.actions {
        println!("{verb}{action}");
    }
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
}
