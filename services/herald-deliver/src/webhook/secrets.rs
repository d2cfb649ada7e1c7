//! Where a webhook's signing secret comes from: the endpoint's row in `webhook_endpoints`,
//! else the configured default (for a direct URL in the request).

use futures::future::BoxFuture;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;

use herald_contracts::secret::Secret;
use herald_store::{StoreConfig, StoreError};

/// Finds the signing secret of one of a user's endpoints, by URL.
pub trait SecretLookup: Send + Sync + std::fmt::Debug {
    /// `Ok(None)`: the URL is not a registered endpoint of this user.
    fn secret<'a>(
        &'a self,
        tenant: &'a str,
        user_id: &'a str,
        url: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, StoreError>>;
}

/// No registered endpoints: every URL uses the default secret.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEndpointSecrets;

impl SecretLookup for NoEndpointSecrets {
    fn secret<'a>(
        &'a self,
        _tenant: &'a str,
        _user_id: &'a str,
        _url: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Reads `webhook_endpoints` (one partition per user).
#[derive(Debug, Clone)]
pub struct EndpointSecrets {
    session: Arc<Session>,
    select: PreparedStatement,
}

impl EndpointSecrets {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let select = session
            .prepare(format!(
                "SELECT url, secret FROM {} WHERE tenant = ? AND user_id = ?",
                config.table("webhook_endpoints")
            ))
            .await?;
        Ok(Self { session, select })
    }
}

impl SecretLookup for EndpointSecrets {
    fn secret<'a>(
        &'a self,
        tenant: &'a str,
        user_id: &'a str,
        url: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, StoreError>> {
        Box::pin(async move {
            let rows = self
                .session
                .execute_unpaged(&self.select, (tenant, user_id))
                .await?
                .into_rows_result()?;
            for row in rows.rows::<(Option<String>, Option<String>)>()? {
                if let (Some(endpoint), Some(secret)) = row?
                    && endpoint == url
                {
                    return Ok(Some(Secret::new(secret)));
                }
            }
            Ok(None)
        })
    }
}
