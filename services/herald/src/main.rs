//! `herald`: one binary for every role and the operator's tools. `main` parses arguments, loads
//! configuration and hands over; the work lives in the commands and the role libraries.

mod cli;
mod commands;
mod config_file;
mod exit;

use clap::Parser;
use std::process::ExitCode;

use herald_runtime::telemetry::TelemetryConfig;

use crate::config_file::HeraldConfig;

// Counts allocations for the benches' allocations per event (see herald_runtime::allocations).
#[global_allocator]
static ALLOCATOR: herald_runtime::allocations::CountingAllocator =
    herald_runtime::allocations::COUNTING_ALLOCATOR;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let config = match HeraldConfig::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("herald: {e}");
            return exit::config();
        }
    };
    // Operator tools print their results on stdout; keep their logs to warnings unless asked.
    let telemetry = if cli.command.is_role() {
        config.telemetry.clone()
    } else {
        TelemetryConfig {
            log_level: "warn".into(),
            ..config.telemetry.clone()
        }
    };
    let _telemetry = match herald_runtime::telemetry::init(&telemetry, cli.command.name()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("herald: {e}");
            return exit::config();
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e:#}");
            exit::FAILURE
        }
    }
}
