//! `Authorization: Bearer <key>` on every `/v1` route: the key's row is read (and remembered for
//! `api.key_cache_ttl`, which bounds how long a revoked key keeps working), its secret compared
//! in constant time, and the request then acts inside the key's tenant with the key's scopes.
//! The key itself is never logged; its id may be.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use herald_runtime::cache::TtlCache;
use herald_runtime::metric_names::API_KEY_CACHE_LOOKUPS;
use herald_store::api_keys::{ApiKeyRecord, ApiKeys};

use crate::AppState;
use crate::apikey::{Presented, Scope};
use crate::problem::Problem;

/// Keys remembered at once; each entry is small.
const CACHE_CAPACITY: usize = 10_000;

/// Reads keys through a short-lived cache.
#[derive(Debug, Clone)]
pub struct KeyStore {
    keys: ApiKeys,
    cache: Arc<Mutex<TtlCache<String, Option<Arc<ApiKeyRecord>>>>>,
}

impl KeyStore {
    pub fn new(keys: ApiKeys, ttl: Duration) -> Self {
        Self {
            keys,
            cache: Arc::new(Mutex::new(TtlCache::new(
                API_KEY_CACHE_LOOKUPS,
                "api_key",
                CACHE_CAPACITY,
                ttl,
            ))),
        }
    }

    async fn lookup(&self, key_id: &str) -> Result<Option<Arc<ApiKeyRecord>>, Problem> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key_id.to_owned());
        if let Some(record) = cached {
            return Ok(record);
        }
        let record = self.keys.get(key_id).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot read an API key");
            Problem::unavailable("the database did not answer; try again")
        })?;
        let record = record.map(Arc::new);
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key_id.to_owned(), record.clone());
        Ok(record)
    }

    /// The caller a bearer token stands for, or 401.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, Problem> {
        let presented = Presented::parse(token).ok_or_else(Problem::unauthorized)?;
        let record = self
            .lookup(presented.key_id)
            .await?
            .ok_or_else(Problem::unauthorized)?;
        if !presented.matches(&record.secret_sha256) || record.revoked_at.is_some() {
            return Err(Problem::unauthorized());
        }
        let scopes = record
            .scopes
            .iter()
            .filter_map(|name| Scope::ALL.into_iter().find(|s| s.as_str() == name))
            .collect();
        Ok(Caller {
            key_id: record.key_id.clone(),
            tenant: record.tenant.clone(),
            scopes,
        })
    }
}

/// Who is calling: a key's tenant and scopes.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub tenant: String,
    pub scopes: BTreeSet<Scope>,
}

impl Caller {
    /// 403 unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), Problem> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this API key does not have the `{scope}` scope"
            )))
        }
    }

    /// 403 unless `tenant` is the key's own.
    pub fn same_tenant(&self, tenant: &str) -> Result<(), Problem> {
        if tenant == self.tenant {
            Ok(())
        } else {
            Err(Problem::forbidden(
                "this API key acts only inside its own tenant",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(Problem::unauthorized)?;
        let caller = state.keys.authenticate(token).await?;
        tracing::Span::current().record("key_id", caller.key_id.as_str());
        Ok(caller)
    }
}
