//! `herald config check`: the configuration a process would run with, validated without
//! connecting anywhere, so that a deployment's file and environment can be checked before a
//! role starts (and in CI, against the compose file and the Helm chart).

use std::process::ExitCode;

use crate::config_file::HeraldConfig;
use herald_contracts::Channel;

use crate::cli::ConfigCheckArgs;
use crate::exit;

/// `config` has been loaded and validated by `main` already (a mistake exits there, naming
/// the key); what is left is the channel's provider (`--channel`), the links `herald api`
/// verifies (`--api`), and printing what was understood. Loading checks every provider
/// section's keys and values, and the unsubscribe and tracking sections' values, but not
/// whether the settings they cannot do without (their secrets among them) are given: only the
/// roles that use them are given those.
pub(crate) async fn check(config: &HeraldConfig, args: &ConfigCheckArgs) -> ExitCode {
    if let Some(channel) = args.channel {
        let built =
            match herald_deliver::signed_links(channel, &config.unsubscribe, &config.tracking) {
                // The inbox needs nothing beyond the store, which loading has validated.
                Ok(_) if channel == Channel::Inapp => Ok(()),
                Ok((unsubscribe, tracking)) => herald_deliver::build_provider(
                    channel,
                    &config.deliver.providers,
                    None,
                    herald_deliver::EmailLinks {
                        unsubscribe: unsubscribe.as_ref(),
                        tracking: tracking.as_ref(),
                    },
                )
                .await
                .map(drop),
                Err(e) => Err(e),
            };
        if let Err(e) = built {
            eprintln!("herald: {e}");
            return exit::config();
        }
    }
    if args.api {
        // What herald api checks at start beyond loading: the links it verifies.
        for halves in [
            config.unsubscribe.links().map(drop),
            config.tracking.links().map(drop),
        ] {
            if let Err(e) = halves {
                eprintln!("herald: {e}");
                return exit::config();
            }
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
