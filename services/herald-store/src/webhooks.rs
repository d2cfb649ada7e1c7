//! A user's webhook endpoints, managed one at a time for `herald api`. The router reads the
//! enabled ones through [`crate::directory::Directory`]; delivery workers read their secrets.

use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;

use crate::{StoreConfig, StoreError};

/// One endpoint, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub struct Webhooks {
    session: Arc<Session>,
    insert: PreparedStatement,
    list: PreparedStatement,
    set_enabled: PreparedStatement,
    set_secret: PreparedStatement,
    delete: PreparedStatement,
}

impl Webhooks {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("webhook_endpoints");
        let prepare = |cql: String| {
            let session = session.clone();
            async move { session.prepare(cql).await }
        };
        Ok(Self {
            insert: prepare(format!(
                "INSERT INTO {table} (tenant, user_id, endpoint_id, url, secret, enabled) \
                 VALUES (?, ?, ?, ?, ?, true)"
            ))
            .await?,
            list: prepare(format!(
                "SELECT endpoint_id, url, enabled FROM {table} WHERE tenant = ? AND user_id = ?"
            ))
            .await?,
            set_enabled: prepare(format!(
                "UPDATE {table} SET enabled = ? WHERE tenant = ? AND user_id = ? AND endpoint_id = ?"
            ))
            .await?,
            set_secret: prepare(format!(
                "UPDATE {table} SET secret = ? WHERE tenant = ? AND user_id = ? AND endpoint_id = ?"
            ))
            .await?,
            delete: prepare(format!(
                "DELETE FROM {table} WHERE tenant = ? AND user_id = ? AND endpoint_id = ?"
            ))
            .await?,
            session,
        })
    }

    /// Creates (or replaces) an enabled endpoint with this secret.
    pub async fn create(
        &self,
        tenant: &str,
        user_id: &str,
        endpoint: &Endpoint,
        secret: &str,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.insert,
                (tenant, user_id, &endpoint.id, &endpoint.url, secret),
            )
            .await?;
        Ok(())
    }

    /// The user's endpoints, by id.
    pub async fn list(&self, tenant: &str, user_id: &str) -> Result<Vec<Endpoint>, StoreError> {
        let rows: Vec<(String, Option<String>, Option<bool>)> = self
            .session
            .execute_iter(self.list.clone(), (tenant, user_id))
            .await
            .map_err(|e| StoreError::Request(e.to_string()))?
            .rows_stream::<(String, Option<String>, Option<bool>)>()
            .map_err(|e| StoreError::Answer(e.to_string()))?
            .try_collect()
            .await
            .map_err(|e| StoreError::Request(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|(id, url, enabled)| Endpoint {
                id,
                url: url.unwrap_or_default(),
                enabled: enabled.unwrap_or(false),
            })
            .collect())
    }

    pub async fn set_enabled(
        &self,
        tenant: &str,
        user_id: &str,
        id: &str,
        enabled: bool,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.set_enabled, (enabled, tenant, user_id, id))
            .await?;
        Ok(())
    }

    pub async fn set_secret(
        &self,
        tenant: &str,
        user_id: &str,
        id: &str,
        secret: &str,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.set_secret, (secret, tenant, user_id, id))
            .await?;
        Ok(())
    }

    pub async fn delete(&self, tenant: &str, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.delete, (tenant, user_id, id))
            .await?;
        Ok(())
    }
}
