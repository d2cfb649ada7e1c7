//! Opening a driver session.

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::{StoreConfig, StoreError};

/// Connects to the cluster without selecting a keyspace (migrations create it).
pub async fn connect(config: &StoreConfig) -> Result<Session, StoreError> {
    config.validate().map_err(StoreError::Config)?;
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(config.connect_timeout);
    if let Some(user) = &config.username {
        let password = config
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        builder = builder.user(user, password);
    }
    builder
        .build()
        .await
        .map_err(|e| StoreError::Unreachable {
            nodes: config.nodes.join(","),
            message: e.to_string(),
        })
}

/// Connects and selects the configured keyspace, which must exist (`herald db migrate`).
pub async fn connect_keyspace(config: &StoreConfig) -> Result<Session, StoreError> {
    let session = connect(config).await?;
    session
        .use_keyspace(&config.keyspace, true)
        .await
        .map_err(|e| StoreError::Request(format!(
            "keyspace `{}` is not usable ({e}); run `herald db migrate` first",
            config.keyspace
        )))?;
    Ok(session)
}
