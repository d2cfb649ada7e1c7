//! `herald dlq list|show|redrive`: the command-line edge of `herald_replay::dlq`; a redrive is
//! a replay of the DLQ (recover mode, each record back to its original topic, with a redrive
//! count), run by the same code as `herald replay`.

use std::process::ExitCode;

use crate::config_file::HeraldConfig;
use herald_contracts::Codec;
use herald_contracts::time::from_millis;
use herald_replay::plan::{self, Spec};
use herald_replay::range::resolve_typed;
use herald_replay::{Filter, Mode, Plan, ReplayError, dlq};

use crate::cli::{DlqCommand, DlqListArgs, DlqRedriveArgs, DlqSelection, DlqShowArgs};
use crate::exit;

pub(crate) async fn run(config: &HeraldConfig, command: &DlqCommand) -> anyhow::Result<ExitCode> {
    let result = match command {
        DlqCommand::List(args) => list(config, args).await,
        DlqCommand::Show(args) => show(config, args).await,
        DlqCommand::Redrive(args) => redrive(config, args).await,
    };
    match result {
        Err(Stop::Usage(message)) => {
            eprintln!("herald: {message}");
            Ok(exit::config())
        }
        Err(Stop::Failed(e)) => Err(e),
        Ok(code) => Ok(code),
    }
}

/// A usage error (exit 2, nothing done) or any other failure.
enum Stop {
    Usage(String),
    Failed(anyhow::Error),
}

impl From<ReplayError> for Stop {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Usage(message) => Stop::Usage(message),
            e => Stop::Failed(e.into()),
        }
    }
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(e)
    }
}

fn filter_of(selection: &DlqSelection) -> Filter {
    Filter {
        tenants: selection.tenants.iter().cloned().collect(),
        stages: selection.stages.iter().cloned().collect(),
        classes: selection.classes.iter().cloned().collect(),
        ..Filter::default()
    }
}

async fn list(config: &HeraldConfig, args: &DlqListArgs) -> Result<ExitCode, Stop> {
    let selection = &args.selection;
    let dlq = config.kafka.topics().dlq();
    let range = resolve_typed(
        &config.kafka,
        &dlq,
        &selection.from,
        selection.to.as_deref(),
        chrono::Utc::now(),
    )?;
    let codec = Codec::new(&config.registry, config.kafka.topics()).map_err(anyhow::Error::from)?;
    let groups = dlq::list(&config.kafka, &codec, &range, &filter_of(selection)).await?;
    if selection.json {
        println!(
            "{}",
            serde_json::to_string(&groups).map_err(anyhow::Error::from)?
        );
        return Ok(exit::SUCCESS);
    }
    let time = |millis: Option<i64>| {
        millis
            .and_then(from_millis)
            .map_or("-".to_owned(), |t| t.to_rfc3339())
    };
    println!(
        "{} records in {} groups",
        groups.iter().map(|g| g.count).sum::<u64>(),
        groups.len()
    );
    for group in &groups {
        println!(
            "{:>7}  stage={} class={} from={}  first={} last={}\n         e.g. {}",
            group.count,
            group.stage,
            group.class,
            group.original_topic,
            time(group.first),
            time(group.last),
            group.example
        );
    }
    Ok(exit::SUCCESS)
}

async fn show(config: &HeraldConfig, args: &DlqShowArgs) -> Result<ExitCode, Stop> {
    let malformed = || {
        Stop::Usage(format!(
            "`{}` is not a position: expected PARTITION:OFFSET, e.g. 2:1041",
            args.position
        ))
    };
    let (partition, offset) = args.position.split_once(':').ok_or_else(malformed)?;
    let partition: i32 = partition.trim().parse().map_err(|_| malformed())?;
    let offset: i64 = offset.trim().parse().map_err(|_| malformed())?;
    let message = dlq::show(&config.kafka, partition, offset).await?;
    let codec = Codec::new(&config.registry, config.kafka.topics()).map_err(anyhow::Error::from)?;
    let rendered = super::tail::render(&codec, &message).await;
    println!(
        "{}",
        serde_json::to_string_pretty(&rendered).map_err(anyhow::Error::from)?
    );
    Ok(exit::SUCCESS)
}

async fn redrive(config: &HeraldConfig, args: &DlqRedriveArgs) -> Result<ExitCode, Stop> {
    let selection = &args.selection;
    let spec = Spec {
        id: args.id.clone(),
        topic: config.kafka.topics().dlq(),
        from: selection.from.clone(),
        to: selection.to.clone(),
        mode: Mode::Recover,
        into: None,
        filter: filter_of(selection),
        max_redrives: Some(args.max_redrives),
    };
    let plan = Plan::make(&config.kafka, spec, chrono::Utc::now())?;
    if !args.dry_run {
        if plan::load(&config.kafka, &plan.id).await?.is_some() {
            return Err(Stop::Usage(format!(
                "replay {} exists already: continue it with `herald replay --resume {}`",
                plan.id, plan.id
            )));
        }
        plan::save(&config.kafka, &plan).await?;
    }
    Ok(super::replay::execute(config, &plan, args.dry_run, args.rate, selection.json).await?)
}
