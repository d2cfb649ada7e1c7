//! `herald bench`: throughput and latency of a role against a baseline measured in the same run
//! on the same machine. Prints numbers; asserts nothing.

mod baseline;
mod deliver;
mod lag;
mod replay;
mod router;

use std::process::ExitCode;

use herald_runtime::HeraldConfig;

use crate::cli::BenchCommand;

pub(crate) async fn run(config: &HeraldConfig, command: &BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Router(args) => router::run(config, args).await,
        BenchCommand::Deliver(args) => deliver::run(config, args).await,
        BenchCommand::Replay(args) => replay::run(config, args).await,
    }
}
