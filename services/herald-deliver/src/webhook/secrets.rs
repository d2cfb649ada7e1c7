//! Where a webhook's signing secret comes from: the endpoint's row in `webhook_endpoints`
//! (remembered for `endpoint_cache_ttl`), else the configured default (for a direct URL in the
//! request).

use futures::future::BoxFuture;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::{Arc, Mutex};

use herald_contracts::metric_names::DELIVER_CACHE_LOOKUPS;
use herald_contracts::secret::Secret;
use herald_runtime::cache::TtlCache;
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

/// Remembers another lookup's answers (including "not registered") for a while: a worker
/// sends to the same endpoints over and over, and one read per send would cost the database
/// more than the send itself. Errors are not remembered.
#[derive(Debug)]
pub struct CachedSecrets<L> {
    inner: L,
    cache: Mutex<TtlCache<(String, String, String), Option<Secret>>>,
}

impl<L: SecretLookup> CachedSecrets<L> {
    pub fn new(inner: L, capacity: usize, ttl: std::time::Duration) -> Self {
        Self {
            inner,
            cache: Mutex::new(TtlCache::new(
                DELIVER_CACHE_LOOKUPS,
                "webhook_endpoint",
                capacity,
                ttl,
            )),
        }
    }

    /// A poisoned lock only means another task panicked mid-insert; an entry is safe to read
    /// or overwrite regardless.
    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, TtlCache<(String, String, String), Option<Secret>>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<L: SecretLookup> SecretLookup for CachedSecrets<L> {
    fn secret<'a>(
        &'a self,
        tenant: &'a str,
        user_id: &'a str,
        url: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, StoreError>> {
        Box::pin(async move {
            let key = (tenant.to_owned(), user_id.to_owned(), url.to_owned());
            if let Some(known) = self.cache().get(&key) {
                return Ok(known);
            }
            let found = self.inner.secret(tenant, user_id, url).await?;
            self.cache().insert(key, found.clone());
            Ok(found)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Answers a secret for URLs ending in `/known`, counting its reads; fails for `/down`.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl SecretLookup for Counting {
        fn secret<'a>(
            &'a self,
            _tenant: &'a str,
            _user_id: &'a str,
            url: &'a str,
        ) -> BoxFuture<'a, Result<Option<Secret>, StoreError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match url {
                    u if u.ends_with("/down") => Err(StoreError::Request("down".into())),
                    u if u.ends_with("/known") => Ok(Some(Secret::new("whsec_a"))),
                    _ => Ok(None),
                }
            })
        }
    }

    #[tokio::test]
    async fn answers_and_absences_are_remembered_errors_are_not() {
        let cached = CachedSecrets::new(Counting::default(), 100, Duration::from_secs(60));
        for _ in 0..3 {
            let secret = cached.secret("t", "u", "https://h/known").await.unwrap();
            assert_eq!(
                secret.map(|s| s.expose().to_owned()).as_deref(),
                Some("whsec_a")
            );
            assert_eq!(
                cached.secret("t", "u", "https://h/other").await.unwrap(),
                None
            );
            assert!(cached.secret("t", "u", "https://h/down").await.is_err());
        }
        // one read each for the two answers, and every time for the failing one
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 2 + 3);
        // another user's endpoint with the same URL is its own entry
        cached.secret("t", "v", "https://h/known").await.unwrap();
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn an_entry_is_read_again_after_the_ttl() {
        let cached = CachedSecrets::new(Counting::default(), 100, Duration::ZERO);
        cached.secret("t", "u", "https://h/known").await.unwrap();
        cached.secret("t", "u", "https://h/known").await.unwrap();
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 2);
    }
}
