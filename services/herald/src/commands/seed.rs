//! `herald seed`.

use anyhow::Context;
use std::process::ExitCode;

use crate::config_file::HeraldConfig;
use herald_store::seed::{SeedFile, load};

use crate::cli::SeedArgs;
use crate::exit;

pub(crate) async fn run(config: &HeraldConfig, args: &SeedArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let seed = match SeedFile::parse(&text) {
        Ok(seed) => seed,
        Err(e) => {
            eprintln!("{}: {e}", args.file.display());
            return Ok(exit::rejected());
        }
    };
    let session = herald_store::connect_keyspace(&config.store).await?;
    let report = load(&session, &config.store, &seed).await?;
    println!(
        "seeded {} users, {} preferences, {} webhook endpoints, {} categories, {} templates",
        report.users, report.preferences, report.webhooks, report.categories, report.templates
    );
    Ok(exit::SUCCESS)
}
