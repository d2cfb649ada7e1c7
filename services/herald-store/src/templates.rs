//! Template versions for `herald api`: creating the next version (a number claimed with a
//! lightweight transaction, so two concurrent creates never share one, and never a number a
//! stored version has), publishing one, and reading them back. The router reads templates
//! through [`crate::directory::Directory`], which skips draft rows.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;

use herald_contracts::Channel;

use crate::schedule::applied;
use crate::{StoreConfig, StoreError};

/// Claims tried past the newest stored version before giving up: each lost claim means
/// another create took that number at the same moment.
const MAX_CLAIMS: i32 = 32;

/// One channel and locale of a version to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPart {
    pub channel: Channel,
    pub locale: String,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub json: Option<String>,
}

/// One stored row: a version's parts for one channel and locale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub version: i32,
    /// As stored; a channel this Herald does not know is kept as text.
    pub channel: String,
    pub locale: String,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub json: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// False only for a version created through `herald api` and not yet published.
    pub published: bool,
    pub published_at: Option<DateTime<Utc>>,
}

type StoredRow = (
    i32,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<bool>,
    Option<DateTime<Utc>>,
);

/// Why a version could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{MAX_CLAIMS} version numbers in a row were taken by concurrent creates; try again")]
    Contended,
}

#[derive(Debug, Clone)]
pub struct Templates {
    session: Arc<Session>,
    newest_stored: PreparedStatement,
    newest_claimed: PreparedStatement,
    claim: PreparedStatement,
    insert: PreparedStatement,
    publish: PreparedStatement,
    all: PreparedStatement,
    one: PreparedStatement,
}

const COLUMNS: &str = "version, channel, locale, subject, text_body, html_body, json_body, \
                       created_at, draft, published_at";

impl Templates {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let templates = config.table("templates");
        let versions = config.table("template_versions");
        let newest_stored = session
            .prepare(format!(
                "SELECT version FROM {templates} WHERE tenant = ? AND template_id = ? LIMIT 1"
            ))
            .await?;
        let newest_claimed = session
            .prepare(format!(
                "SELECT version FROM {versions} WHERE tenant = ? AND template_id = ? LIMIT 1"
            ))
            .await?;
        let claim = session
            .prepare(format!(
                "INSERT INTO {versions} (tenant, template_id, version, created_at) \
                 VALUES (?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?;
        let insert = session
            .prepare(format!(
                "INSERT INTO {templates} (tenant, template_id, version, channel, locale, subject, \
                 text_body, html_body, json_body, created_at, draft) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, true)"
            ))
            .await?;
        let publish = session
            .prepare(format!(
                "UPDATE {templates} SET draft = false, published_at = ? WHERE tenant = ? \
                 AND template_id = ? AND version = ? AND channel = ? AND locale = ?"
            ))
            .await?;
        let all = session
            .prepare(format!(
                "SELECT {COLUMNS} FROM {templates} WHERE tenant = ? AND template_id = ?"
            ))
            .await?;
        let one = session
            .prepare(format!(
                "SELECT {COLUMNS} FROM {templates} WHERE tenant = ? AND template_id = ? \
                 AND version = ?"
            ))
            .await?;
        Ok(Self {
            session,
            newest_stored,
            newest_claimed,
            claim,
            insert,
            publish,
            all,
            one,
        })
    }

    /// Stores `parts` as a new draft version numbered after every version stored or claimed,
    /// and returns its number. Rows are only ever inserted under a number this call claimed,
    /// so no existing version is overwritten.
    pub async fn create(
        &self,
        tenant: &str,
        template_id: &str,
        parts: &[NewPart],
    ) -> Result<i32, CreateError> {
        let now = Utc::now();
        let mut version = self.newest(tenant, template_id).await? + 1;
        let mut claims = 0;
        loop {
            let result = self
                .session
                .execute_unpaged(&self.claim, (tenant, template_id, version, now))
                .await
                .map_err(StoreError::from)?;
            if applied(result)? {
                break;
            }
            claims += 1;
            if claims >= MAX_CLAIMS {
                return Err(CreateError::Contended);
            }
            version += 1;
        }
        // One row at a time, not one batch: bodies can pass the server's batch size limit,
        // and the rows are drafts the router ignores until the version is published.
        let writes = parts.iter().map(|p| {
            self.session.execute_unpaged(
                &self.insert,
                (
                    tenant,
                    template_id,
                    version,
                    p.channel.as_str(),
                    &p.locale,
                    &p.subject,
                    &p.text,
                    &p.html,
                    &p.json,
                    now,
                ),
            )
        });
        futures::future::try_join_all(writes)
            .await
            .map_err(StoreError::from)?;
        Ok(version)
    }

    /// The newest version number stored (also by `herald seed`) or claimed; 0 if none.
    async fn newest(&self, tenant: &str, template_id: &str) -> Result<i32, StoreError> {
        let mut newest = 0;
        for statement in [&self.newest_stored, &self.newest_claimed] {
            let row = self
                .session
                .execute_unpaged(statement, (tenant, template_id))
                .await?
                .into_rows_result()?
                .maybe_first_row::<(i32,)>()?;
            if let Some((version,)) = row {
                newest = newest.max(version);
            }
        }
        Ok(newest)
    }

    /// Publishes every row of `version` at once (one batch within the template's partition,
    /// so the router sees all of it or none); an already published row keeps its time.
    /// Returns the version's rows as they now are, empty when there is no such version.
    pub async fn publish(
        &self,
        tenant: &str,
        template_id: &str,
        version: i32,
    ) -> Result<Vec<StoredPart>, StoreError> {
        let mut rows = self.version(tenant, template_id, version).await?;
        let drafts: Vec<&mut StoredPart> = rows.iter_mut().filter(|r| !r.published).collect();
        if drafts.is_empty() {
            return Ok(rows);
        }
        let now = Utc::now();
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values = Vec::with_capacity(drafts.len());
        for row in drafts {
            batch.append_statement(self.publish.clone());
            values.push((
                now,
                tenant,
                template_id,
                version,
                row.channel.clone(),
                row.locale.clone(),
            ));
            row.published = true;
            row.published_at = Some(now);
        }
        self.session.batch(&batch, values).await?;
        Ok(rows)
    }

    /// Every row of every version, newest version first.
    pub async fn all(
        &self,
        tenant: &str,
        template_id: &str,
    ) -> Result<Vec<StoredPart>, StoreError> {
        self.read(&self.all, (tenant, template_id, None)).await
    }

    /// The rows of one version.
    pub async fn version(
        &self,
        tenant: &str,
        template_id: &str,
        version: i32,
    ) -> Result<Vec<StoredPart>, StoreError> {
        self.read(&self.one, (tenant, template_id, Some(version)))
            .await
    }

    async fn read(
        &self,
        statement: &PreparedStatement,
        (tenant, template_id, version): (&str, &str, Option<i32>),
    ) -> Result<Vec<StoredPart>, StoreError> {
        let result = match version {
            Some(v) => {
                self.session
                    .execute_unpaged(statement, (tenant, template_id, v))
                    .await?
            }
            None => {
                self.session
                    .execute_unpaged(statement, (tenant, template_id))
                    .await?
            }
        };
        let mut parts = Vec::new();
        for row in result.into_rows_result()?.rows::<StoredRow>()? {
            let (version, channel, locale, subject, text, html, json, created_at, draft, at) = row?;
            parts.push(StoredPart {
                version,
                channel,
                locale,
                subject,
                text,
                html,
                json,
                created_at,
                published: draft != Some(true),
                published_at: at,
            });
        }
        Ok(parts)
    }
}
