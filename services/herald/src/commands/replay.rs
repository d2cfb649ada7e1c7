//! `herald replay`: the command-line edge of `herald-replay` — arguments into a plan, the
//! resend confirmation, the plan saved before anything is copied, the report printed.

use anyhow::Context;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::config_file::HeraldConfig;
use herald_contracts::Codec;
use herald_replay::plan::{self, Spec};
use herald_replay::progress::Progress;
use herald_replay::{Filter, Mode, Plan, ReplayError, Report};

use crate::cli::{ReplayArgs, ReplayMode};
use crate::exit;

pub(crate) async fn run(config: &HeraldConfig, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let plan = match plan_of(config, args).await {
        Ok(plan) => plan,
        Err(ReplayError::Usage(message)) => {
            eprintln!("herald: {message}");
            return Ok(exit::config());
        }
        Err(e) => return Err(e.into()),
    };
    if args.resume.is_none() && !args.dry_run {
        if plan.mode == Mode::Resend && !args.yes && !confirmed(&plan)? {
            eprintln!("herald: resend not confirmed; nothing was written");
            return Ok(exit::config());
        }
        // Kept before the first copy, so that --resume finds it whenever the run stops.
        plan::save(&config.kafka, &plan).await?;
    }
    execute(config, &plan, args.dry_run, args.rate, args.json).await
}

/// Runs a plan and prints its report; exit code 1 when interrupted.
pub(crate) async fn execute(
    config: &HeraldConfig,
    plan: &Plan,
    dry_run: bool,
    rate: Option<std::num::NonZeroU32>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let codec = Codec::new(&config.registry, config.kafka.topics())?;
    eprintln!(
        "replay {}: {} of {} ({} records in range){}",
        plan.id,
        plan.mode.as_str(),
        plan.source,
        plan.range.len(),
        if dry_run { ", dry run" } else { "" }
    );
    let terminal = std::io::stderr().is_terminal() && !json;
    let report = herald_replay::copy(herald_replay::Copy {
        kafka: &config.kafka,
        codec: &codec,
        plan,
        dry_run,
        rate,
        progress: Progress::new(plan.range.len(), terminal),
        shutdown: herald_runtime::shutdown::on_signal(),
    })
    .await
    .with_context(|| {
        format!(
            "replay {} stopped; continue it with `herald replay --resume {}`",
            plan.id, plan.id
        )
    })?;
    print(&report, json)?;
    Ok(if report.interrupted {
        exit::FAILURE
    } else {
        exit::SUCCESS
    })
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

async fn plan_of(config: &HeraldConfig, args: &ReplayArgs) -> Result<Plan, ReplayError> {
    if let Some(id) = &args.resume {
        return plan::load(&config.kafka, id)
            .await?
            .ok_or_else(|| ReplayError::Usage(format!("there is no replay {id} to resume")));
    }
    let missing = |what: &str| ReplayError::Usage(format!("{what} is required"));
    let mut filter = Filter {
        tenants: args.tenants.iter().cloned().collect(),
        users: args.users.iter().cloned().collect(),
        categories: args.categories.iter().cloned().collect(),
        channels: args.channels.iter().copied().collect(),
        event_ids: args.event_ids.iter().cloned().collect(),
        stages: args.stages.iter().cloned().collect(),
        classes: args.classes.iter().cloned().collect(),
    };
    if let Some(path) = &args.event_ids_file {
        let file = std::fs::File::open(path).map_err(|e| {
            ReplayError::Usage(format!(
                "cannot read --event-ids-file {}: {e}",
                path.display()
            ))
        })?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| ReplayError::Usage(format!("{}: {e}", path.display())))?;
            let id = line.trim();
            if !id.is_empty() {
                filter.event_ids.insert(id.to_owned());
            }
        }
        if filter.event_ids.is_empty() {
            return Err(ReplayError::Usage(format!(
                "--event-ids-file {} lists no event id",
                path.display()
            )));
        }
    }
    let spec = Spec {
        id: args.id.clone(),
        topic: args.topic.clone().ok_or_else(|| missing("--topic"))?,
        from: args.from.clone().ok_or_else(|| missing("--from"))?,
        to: args.to.clone(),
        mode: match args.mode.ok_or_else(|| missing("--mode"))? {
            ReplayMode::Recover => Mode::Recover,
            ReplayMode::Resend => Mode::Resend,
        },
        into: args.into.clone(),
        filter,
        max_redrives: None,
    };
    let plan = Plan::make(&config.kafka, spec, chrono::Utc::now())?;
    if !args.dry_run && plan::load(&config.kafka, &plan.id).await?.is_some() {
        return Err(ReplayError::Usage(format!(
            "replay {} exists already: continue it with --resume {}, or choose another --id",
            plan.id, plan.id
        )));
    }
    Ok(plan)
}

/// Asks on the terminal before a resend; without one, --yes is required.
fn confirmed(plan: &Plan) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!("herald: a resend sends notifications again; confirm it with --yes");
        return Ok(false);
    }
    eprint!(
        "replay {} will RESEND up to {} records of {} under new ids: recipients get them again. \
         Type `yes` to go on: ",
        plan.id,
        plan.range.len(),
        plan.source
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}
