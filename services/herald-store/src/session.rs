//! Opening a driver session, and counting the statements every session of this process sent.

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::observability::metrics::Metrics;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{StoreConfig, StoreError};

/// Connects to the cluster without selecting a keyspace (migrations create it).
pub async fn connect(config: &StoreConfig) -> Result<Session, StoreError> {
    config.validate().map_err(StoreError::Config)?;
    let profile = ExecutionProfile::builder()
        .request_timeout(Some(config.request_timeout))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(config.connect_timeout)
        .default_execution_profile_handle(profile.into_handle());
    if let Some(user) = &config.username {
        let password = config
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        builder = builder.user(user, password);
    }
    let session = builder.build().await.map_err(|e| StoreError::Unreachable {
        nodes: config.nodes.join(","),
        message: e.to_string(),
    })?;
    SESSIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(session.get_metrics());
    Ok(session)
}

/// The driver's counters of every session this process opened (a process opens a handful).
static SESSIONS: Mutex<Vec<Arc<Metrics>>> = Mutex::new(Vec::new());

/// Statements this process sent to the database so far: every request the driver made, a
/// batch counting as one and a paged read once per page. Read at the store layer, so that a
/// bench can print statements per event.
pub fn statements_sent() -> u64 {
    SESSIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|metrics| {
            metrics.get_requests_unpaged_num()
                + metrics.get_requests_manually_paged_num()
                + metrics.get_requests_automatically_paged_num()
        })
        .sum()
}

/// Connects and checks that the configured keyspace exists (`herald db migrate` creates it).
/// Statements name their tables with the keyspace (see [`StoreConfig::table`]) rather than
/// relying on `USE`, which servers warn about with prepared statements.
pub async fn connect_keyspace(config: &StoreConfig) -> Result<Session, StoreError> {
    let session = connect(config).await?;
    let found = session
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (&config.keyspace,),
        )
        .await?
        .into_rows_result()?
        .maybe_first_row::<(String,)>()?;
    if found.is_none() {
        return Err(StoreError::Config(format!(
            "keyspace `{}` does not exist; run `herald db migrate` first",
            config.keyspace
        )));
    }
    Ok(session)
}

/// Asks the cluster something cheap, for readiness: fails while no node answers.
pub async fn ping(session: &Session) -> Result<(), StoreError> {
    session
        .query_unpaged("SELECT release_version FROM system.local", ())
        .await?;
    Ok(())
}
