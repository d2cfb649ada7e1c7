//! Tenant API keys for `herald api`: one row per key, holding the SHA-256 of its secret (never
//! the key), its tenant and scopes, and when it was revoked. Generating, hashing and comparing
//! keys is `herald-api`'s business; this module only stores what it is given.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::{StoreConfig, StoreError};

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub tenant: String,
    /// SHA-256 of the key's secret part.
    pub secret_sha256: Vec<u8>,
    pub scopes: BTreeSet<String>,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

type Row = (
    String,
    Option<String>,
    Option<Vec<u8>>,
    Option<BTreeSet<String>>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

const COLUMNS: &str = "key_id, tenant, secret_sha256, scopes, label, created_at, revoked_at";

fn record((key_id, tenant, secret, scopes, label, created_at, revoked_at): Row) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id,
        tenant: tenant.unwrap_or_default(),
        secret_sha256: secret.unwrap_or_default(),
        scopes: scopes.unwrap_or_default(),
        label,
        created_at: created_at.unwrap_or(DateTime::UNIX_EPOCH),
        revoked_at,
    }
}

#[derive(Debug, Clone)]
pub struct ApiKeys {
    session: Arc<Session>,
    insert: PreparedStatement,
    select: PreparedStatement,
    select_all: PreparedStatement,
    revoke: PreparedStatement,
}

impl ApiKeys {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("api_keys");
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?;
        let select = session
            .prepare(format!("SELECT {COLUMNS} FROM {table} WHERE key_id = ?"))
            .await?;
        let mut select_all = session
            .prepare(format!("SELECT {COLUMNS} FROM {table}"))
            .await?;
        select_all.set_page_size(500);
        let revoke = session
            .prepare(format!(
                "UPDATE {table} SET revoked_at = ? WHERE key_id = ?"
            ))
            .await?;
        Ok(Self {
            session,
            insert,
            select,
            select_all,
            revoke,
        })
    }

    /// Stores a new key. Key ids are random (64 bits), so no check for an existing row.
    pub async fn create(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.insert,
                (
                    &key.key_id,
                    &key.tenant,
                    &key.secret_sha256,
                    &key.scopes,
                    &key.label,
                    key.created_at,
                    key.revoked_at,
                ),
            )
            .await?;
        Ok(())
    }

    /// The key with this id, revoked or not.
    pub async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = self
            .session
            .execute_unpaged(&self.select, (key_id,))
            .await?
            .into_rows_result()?
            .maybe_first_row::<Row>()?;
        Ok(row.map(record))
    }

    /// Every key, or only `tenant`'s, ordered by tenant and creation time.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows: Vec<Row> = self
            .session
            .execute_iter(self.select_all.clone(), ())
            .await
            .map_err(|e| StoreError::Request(e.to_string()))?
            .rows_stream::<Row>()
            .map_err(|e| StoreError::Answer(e.to_string()))?
            .try_collect()
            .await
            .map_err(|e| StoreError::Request(e.to_string()))?;
        let mut keys: Vec<ApiKeyRecord> = rows
            .into_iter()
            .map(record)
            .filter(|key| tenant.is_none_or(|t| key.tenant == t))
            .collect();
        keys.sort_by(|a, b| (&a.tenant, a.created_at).cmp(&(&b.tenant, b.created_at)));
        Ok(keys)
    }

    /// Marks the key revoked at `at`; false when there is no such key. Revoking a revoked key
    /// keeps the first revocation time.
    pub async fn revoke(&self, key_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(key) = self.get(key_id).await? else {
            return Ok(false);
        };
        if key.revoked_at.is_none() {
            self.session
                .execute_unpaged(&self.revoke, (at, key_id))
                .await?;
        }
        Ok(true)
    }
}
