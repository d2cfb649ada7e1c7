//! Writing category defaults one at a time, for `herald api` (the seed loader writes them in
//! bulk; the router reads them through [`crate::directory::Directory`]).

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;

use crate::directory::CategoryDefaults;
use crate::{StoreConfig, StoreError};

#[derive(Debug, Clone)]
pub struct Categories {
    session: Arc<Session>,
    insert: PreparedStatement,
    delete: PreparedStatement,
}

impl Categories {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("category_defaults");
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} (tenant, category, channels, fallback, mandatory, \
                 rate_limit_count, rate_limit_window_seconds, track_engagement) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?;
        let delete = session
            .prepare(format!(
                "DELETE FROM {table} WHERE tenant = ? AND category = ?"
            ))
            .await?;
        Ok(Self {
            session,
            insert,
            delete,
        })
    }

    /// Creates or replaces a category's defaults.
    pub async fn put(
        &self,
        tenant: &str,
        category: &str,
        defaults: &CategoryDefaults,
    ) -> Result<(), StoreError> {
        let names = |channels: &[herald_contracts::Channel]| -> Vec<&'static str> {
            channels.iter().map(|c| c.as_str()).collect()
        };
        let (count, window) = defaults.rate_limit.unzip();
        self.session
            .execute_unpaged(
                &self.insert,
                (
                    tenant,
                    category,
                    names(&defaults.channels),
                    names(&defaults.fallback),
                    defaults.mandatory,
                    count,
                    window,
                    defaults.track_engagement,
                ),
            )
            .await?;
        Ok(())
    }

    pub async fn delete(&self, tenant: &str, category: &str) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.delete, (tenant, category))
            .await?;
        Ok(())
    }
}
