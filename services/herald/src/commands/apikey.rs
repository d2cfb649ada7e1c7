//! `herald apikey create|list|revoke`: tenant API keys for `herald api`.

use std::process::ExitCode;
use std::sync::Arc;

use crate::config_file::HeraldConfig;
use herald_api::apikey::{self, Scope};
use herald_store::api_keys::{ApiKeyRecord, ApiKeys};

use crate::cli::{ApikeyCreateArgs, ApikeyListArgs, ApikeyRevokeArgs};
use crate::exit;

async fn keys(config: &HeraldConfig) -> anyhow::Result<ApiKeys> {
    let session = Arc::new(herald_store::connect_keyspace(&config.store).await?);
    Ok(ApiKeys::prepare(session, &config.store).await?)
}

/// A tenant as requests name it (`herald_contracts::NotificationRequest`'s rule).
fn valid_tenant(tenant: &str) -> bool {
    (1..=64).contains(&tenant.len())
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

pub(crate) async fn create(
    config: &HeraldConfig,
    args: &ApikeyCreateArgs,
) -> anyhow::Result<ExitCode> {
    if !valid_tenant(&args.tenant) {
        eprintln!(
            "herald: --tenant `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
            args.tenant
        );
        return Ok(exit::config());
    }
    let scopes = match Scope::parse_list(&args.scopes) {
        Ok(scopes) => scopes,
        Err(e) => {
            eprintln!("herald: --scopes: {e}");
            return Ok(exit::config());
        }
    };
    let keys = keys(config).await?;
    let key = apikey::generate()?;
    keys.create(&ApiKeyRecord {
        key_id: key.key_id.clone(),
        tenant: args.tenant.clone(),
        secret_sha256: key.secret_sha256.clone(),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        label: args.label.clone(),
        created_at: chrono::Utc::now(),
        revoked_at: None,
    })
    .await?;
    println!("{}", key.token);
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    eprintln!(
        "created key {} for tenant {} with scopes {}; it is shown only now",
        key.key_id,
        args.tenant,
        scopes.join(",")
    );
    Ok(exit::SUCCESS)
}

pub(crate) async fn list(config: &HeraldConfig, args: &ApikeyListArgs) -> anyhow::Result<ExitCode> {
    let keys = keys(config).await?.list(args.tenant.as_deref()).await?;
    println!("key_id\ttenant\tscopes\tcreated_at\trevoked_at\tlabel");
    for key in keys {
        let scopes: Vec<&str> = key.scopes.iter().map(String::as_str).collect();
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            key.key_id,
            key.tenant,
            scopes.join(","),
            key.created_at.to_rfc3339(),
            key.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            key.label.unwrap_or_default()
        );
    }
    Ok(exit::SUCCESS)
}

pub(crate) async fn revoke(
    config: &HeraldConfig,
    args: &ApikeyRevokeArgs,
) -> anyhow::Result<ExitCode> {
    if keys(config)
        .await?
        .revoke(&args.key_id, chrono::Utc::now())
        .await?
    {
        eprintln!(
            "revoked key {}; `herald api` refuses it within api.key_cache_ttl ({:?})",
            args.key_id, config.api.key_cache_ttl
        );
        Ok(exit::SUCCESS)
    } else {
        eprintln!("herald: no API key with id {}", args.key_id);
        Ok(exit::FAILURE)
    }
}
