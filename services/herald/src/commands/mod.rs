//! One module per subcommand.

mod apikey;
mod bench;
mod config;
mod db;
mod dlq;
mod produce;
mod replay;
mod schemas;
mod seed;
mod tail;
mod topics;

use std::process::ExitCode;

use crate::config_file::HeraldConfig;

use crate::cli::{ApikeyCommand, Command, ConfigCommand, DbCommand, SchemasCommand, TopicsCommand};

pub(crate) async fn run(command: Command, config: HeraldConfig) -> anyhow::Result<ExitCode> {
    match command {
        Command::Topics(TopicsCommand::Apply(args)) => topics::apply(&config, &args).await,
        Command::Schemas(SchemasCommand::Register(args)) => schemas::register(&config, &args).await,
        Command::Db(DbCommand::Migrate) => db::migrate(&config).await,
        Command::Produce(args) => produce::run(&config, &args).await,
        Command::Tail(args) => tail::run(&config, &args).await,
        Command::Seed(args) => seed::run(&config, &args).await,
        Command::Replay(args) => replay::run(&config, &args).await,
        Command::Dlq(command) => dlq::run(&config, &command).await,
        Command::Bench(bench_command) => bench::run(&config, &bench_command).await,
        Command::Config(ConfigCommand::Check(args)) => Ok(config::check(&config, &args).await),
        Command::Apikey(ApikeyCommand::Create(args)) => apikey::create(&config, &args).await,
        Command::Apikey(ApikeyCommand::List(args)) => apikey::list(&config, &args).await,
        Command::Apikey(ApikeyCommand::Revoke(args)) => apikey::revoke(&config, &args).await,
        Command::Api => {
            herald_api::run(
                config.common(),
                config.api,
                config.router,
                config.unsubscribe,
                config.tracking,
                herald_runtime::shutdown::on_signal(),
            )
            .await?;
            Ok(crate::exit::SUCCESS)
        }
        Command::Track => {
            herald_track::run(config.common(), herald_runtime::shutdown::on_signal()).await?;
            Ok(crate::exit::SUCCESS)
        }
        Command::Router => {
            let shutdown = herald_runtime::shutdown::on_signal();
            herald_router::run(config.common(), config.router, shutdown).await?;
            Ok(crate::exit::SUCCESS)
        }
        Command::Deliver(args) => {
            let shutdown = herald_runtime::shutdown::on_signal();
            let worker = herald_deliver::worker::run(
                config.common(),
                config.deliver,
                config.unsubscribe,
                config.tracking,
                args.channel,
                shutdown,
            );
            match worker.await {
                Ok(()) => Ok(crate::exit::SUCCESS),
                // A provider configuration mistake, named by its key.
                Err(e @ herald_deliver::worker::WorkerError::Provider(_)) => {
                    eprintln!("herald: {e}");
                    Ok(crate::exit::config())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}
