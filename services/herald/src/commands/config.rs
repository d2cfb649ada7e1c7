//! `herald config check`: the configuration a process would run with, validated without
//! connecting anywhere, so that a deployment's file and environment can be checked before a
//! role starts (and in CI, against the compose file and the Helm chart).

use std::process::ExitCode;

use herald_contracts::Channel;
use herald_runtime::HeraldConfig;

use crate::cli::ConfigCheckArgs;
use crate::exit;

/// `config` has been loaded and validated by `main` already (a mistake exits there, naming
/// the key); what is left is the channel's provider, and printing what was understood.
/// Loading checks every provider section's keys and values but not whether the settings a
/// provider cannot do without (its secrets among them) are given: only the provider's own
/// worker is given those, and only `--channel` builds the provider.
pub(crate) async fn check(config: &HeraldConfig, args: &ConfigCheckArgs) -> ExitCode {
    if let Some(channel) = args.channel {
        // The inbox needs nothing beyond the store, which loading has validated.
        if channel != Channel::Inapp
            && let Err(e) = herald_deliver::build_provider(
                channel,
                &config.deliver.providers,
                None,
                herald_deliver::EmailLinks {
                    unsubscribe: config.unsubscribe.links().as_ref(),
                    tracking: config.tracking.links().as_ref(),
                },
            )
            .await
        {
            eprintln!("herald: {e}");
            return exit::config();
        }
    }
    println!("configuration ok");
    println!(
        "kafka.bootstrap_servers = {}",
        config.kafka.bootstrap_servers
    );
    println!("kafka.topic_prefix = {:?}", config.kafka.topic_prefix);
    // Names only: the values can be credentials.
    let properties: Vec<&str> = config.kafka.properties.keys().map(String::as_str).collect();
    println!("kafka.properties = {properties:?}");
    println!("registry.url = {}", config.registry.url);
    println!("store.nodes = {:?}", config.store.nodes);
    println!("store.keyspace = {}", config.store.keyspace);
    println!("admin.listen = {}", config.admin.listen);
    println!("api.listen = {}", config.api.listen);
    println!(
        "telemetry.otlp_endpoint = {}",
        config
            .telemetry
            .otlp_endpoint
            .as_deref()
            .unwrap_or("(none)")
    );
    match args.channel {
        Some(channel) => println!("deliver channel {channel}: provider configured"),
        None => println!(
            "deliver.providers: checked in full only with --channel <the worker's channel>"
        ),
    }
    exit::SUCCESS
}
