//! Adding push tokens (`herald api`) and removing those a provider said are gone for good
//! (`UNREGISTERED`, `BadDeviceToken`), so that the router stops addressing them.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;

use crate::{StoreConfig, StoreError};

#[derive(Debug, Clone)]
pub struct PushTokens {
    session: Arc<Session>,
    add: PreparedStatement,
    remove: PreparedStatement,
}

impl PushTokens {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let remove = session
            .prepare(format!(
                "UPDATE {} SET push_tokens = push_tokens - ? WHERE tenant = ? AND user_id = ?",
                config.table("users")
            ))
            .await?;
        let add = session
            .prepare(format!(
                "UPDATE {} SET push_tokens = push_tokens + ? WHERE tenant = ? AND user_id = ?",
                config.table("users")
            ))
            .await?;
        Ok(Self {
            session,
            add,
            remove,
        })
    }

    /// Adds `token` to the user's `push_tokens` (the `herald api` route); adding it twice
    /// changes nothing.
    pub async fn add(&self, tenant: &str, user_id: &str, token: &str) -> Result<(), StoreError> {
        let set = std::collections::HashSet::from([token]);
        self.session
            .execute_unpaged(&self.add, (set, tenant, user_id))
            .await?;
        Ok(())
    }

    /// Removes `tokens` from the user's `push_tokens`. Removing a token that is not there
    /// changes nothing, so a redelivered dispatch may call this again.
    pub async fn remove(
        &self,
        tenant: &str,
        user_id: &str,
        tokens: &[String],
    ) -> Result<(), StoreError> {
        if tokens.is_empty() {
            return Ok(());
        }
        let set: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
        self.session
            .execute_unpaged(&self.remove, (set, tenant, user_id))
            .await?;
        Ok(())
    }
}
