//! `herald db migrate`.

use anyhow::Context;
use std::process::ExitCode;

use crate::config_file::HeraldConfig;

use crate::exit;

pub(crate) async fn migrate(config: &HeraldConfig) -> anyhow::Result<ExitCode> {
    let session = herald_store::connect(&config.store).await?;
    let report = herald_store::migrate(&session, &config.store)
        .await
        .with_context(|| format!("migrating keyspace {}", config.store.keyspace))?;
    for (version, name) in &report.applied {
        println!("applied migration {version} ({name})");
    }
    if report.applied.is_empty() {
        println!(
            "keyspace {} is up to date ({} migrations applied earlier)",
            report.keyspace,
            report.already_applied.len()
        );
    }
    Ok(exit::SUCCESS)
}
