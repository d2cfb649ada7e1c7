//! `herald schemas register`.

use anyhow::Context;
use std::process::ExitCode;

use crate::config_file::HeraldConfig;
use herald_contracts::registry::{Registration, RegistryAdmin, RegistryError};
use herald_contracts::schemas::SchemaKind;

use crate::cli::SchemasRegisterArgs;
use crate::exit;

pub(crate) async fn register(
    config: &HeraldConfig,
    args: &SchemasRegisterArgs,
) -> anyhow::Result<ExitCode> {
    let admin = RegistryAdmin::new(config.registry.clone())?;
    let topics = config.kafka.topics();
    let mut refused = 0;
    for kind in SchemaKind::ALL {
        let source = match &args.dir {
            Some(dir) => {
                let path = dir.join(kind.file_name());
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
            }
            None => kind.source().to_owned(),
        };
        // Catch a broken file here, with the parser's reason, before the registry sees it.
        if let Err(e) = apache_avro::Schema::parse_str(&source) {
            eprintln!("{}: not a valid Avro schema: {e}", kind.file_name());
            return Ok(exit::config());
        }
        let subject = kind.subject(&topics);
        let compatibility = kind.compatibility();
        // Set first: a subject registered by an older Herald (or auto-registered by a producer)
        // may still have a weaker level, and the schema below must be checked at this one.
        admin.set_compatibility(&subject, compatibility).await?;
        match admin.register(&subject, &source).await {
            Ok(Registration::Registered { id }) => {
                println!("{subject}: registered (id {id}, compatibility {compatibility})");
            }
            Ok(Registration::Unchanged { id, version }) => {
                println!(
                    "{subject}: unchanged (version {version}, id {id}, compatibility {compatibility})"
                );
            }
            Err(RegistryError::Refused { status, reason, .. }) => {
                eprintln!("{subject}: refused by the registry (HTTP {status}): {reason}");
                refused += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if refused > 0 {
        exit::FAILURE
    } else {
        exit::SUCCESS
    })
}
