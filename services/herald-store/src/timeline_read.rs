//! Reading what `herald track` wrote: one notification's timeline, and a user's notifications
//! newest first, a page at a time.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::sync::Arc;

use crate::{StoreConfig, StoreError};

/// One status of a notification, as the tracker wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    pub at: DateTime<Utc>,
    pub source: String,
    pub dispatch_id: Option<String>,
    pub channel: Option<String>,
    /// The status symbol (`ROUTED`, `SENT`, ...).
    pub status: String,
    pub reason: Option<String>,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub attempt: i32,
    pub links: HashMap<String, String>,
}

/// Where a page of a user's notifications ends: the last notification listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCursor {
    pub created_at: DateTime<Utc>,
    pub event_id: String,
}

/// One of a user's notifications and its newest status.
#[derive(Debug, Clone, PartialEq)]
pub struct UserNotification {
    pub event_id: String,
    pub created_at: DateTime<Utc>,
    pub category: Option<String>,
    /// The newest status's symbol and time (none when the timeline has no row yet).
    pub status: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

type TimelineCells = (
    DateTime<Utc>,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<HashMap<String, String>>,
);

#[derive(Debug, Clone)]
pub struct TimelineReader {
    session: Arc<Session>,
    timeline: PreparedStatement,
    newest: PreparedStatement,
    first_page: PreparedStatement,
    next_page: PreparedStatement,
}

impl TimelineReader {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("timeline");
        let timeline = session
            .prepare(format!(
                "SELECT at, source, dispatch_id, channel, status, reason, provider, \
                 provider_message_id, attempt, links FROM {table} WHERE tenant = ? AND event_id = ?"
            ))
            .await?;
        let newest = session
            .prepare(format!(
                "SELECT at, status FROM {table} WHERE tenant = ? AND event_id = ? \
                 ORDER BY at DESC LIMIT 1"
            ))
            .await?;
        let index = config.table("notifications_by_user");
        let first_page = session
            .prepare(format!(
                "SELECT created_at, event_id, category FROM {index} \
                 WHERE tenant = ? AND user_id = ? LIMIT ?"
            ))
            .await?;
        // Both clustering columns descend, so the rows after the cursor are the smaller tuples.
        let next_page = session
            .prepare(format!(
                "SELECT created_at, event_id, category FROM {index} \
                 WHERE tenant = ? AND user_id = ? AND (created_at, event_id) < (?, ?) LIMIT ?"
            ))
            .await?;
        Ok(Self {
            session,
            timeline,
            newest,
            first_page,
            next_page,
        })
    }

    /// Every status of `event_id`, oldest first (empty when the tenant has no such event).
    pub async fn timeline(
        &self,
        tenant: &str,
        event_id: &str,
    ) -> Result<Vec<TimelineRow>, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.timeline, (tenant, event_id))
            .await?;
        let rows = result.into_rows_result().map_err(answer)?;
        let mut out = Vec::new();
        for row in rows.rows::<TimelineCells>().map_err(answer)? {
            let (
                at,
                source,
                dispatch_id,
                channel,
                status,
                reason,
                provider,
                message,
                attempt,
                links,
            ) = row.map_err(answer)?;
            out.push(TimelineRow {
                at,
                source,
                dispatch_id,
                channel,
                status,
                reason,
                provider,
                provider_message_id: message,
                attempt: attempt.unwrap_or_default(),
                links: links.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// The newest status of `event_id`: its symbol and time.
    async fn newest(
        &self,
        tenant: &str,
        event_id: &str,
    ) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.newest, (tenant, event_id))
            .await?;
        let rows = result.into_rows_result().map_err(answer)?;
        rows.maybe_first_row::<(DateTime<Utc>, String)>()
            .map_err(answer)
    }

    /// Up to `limit` of the user's notifications after `cursor`, newest first (by the request's
    /// creation time; a derived event before its origin), each with its newest status. The
    /// order does not change as statuses arrive, so pages neither repeat nor skip one. The
    /// cursor of the next page, when there may be one.
    pub async fn user_notifications(
        &self,
        tenant: &str,
        user_id: &str,
        cursor: Option<UserCursor>,
        limit: usize,
    ) -> Result<(Vec<UserNotification>, Option<UserCursor>), StoreError> {
        let limit_cql = i32::try_from(limit).unwrap_or(i32::MAX);
        let result = match &cursor {
            None => {
                self.session
                    .execute_unpaged(&self.first_page, (tenant, user_id, limit_cql))
                    .await?
            }
            Some(c) => {
                self.session
                    .execute_unpaged(
                        &self.next_page,
                        (tenant, user_id, c.created_at, &c.event_id, limit_cql),
                    )
                    .await?
            }
        };
        let rows = result.into_rows_result().map_err(answer)?;
        let rows: Vec<(DateTime<Utc>, String, Option<String>)> = rows
            .rows()
            .map_err(answer)?
            .collect::<Result<_, _>>()
            .map_err(answer)?;
        let newest = futures::future::try_join_all(
            rows.iter()
                .map(|(_, event_id, _)| self.newest(tenant, event_id)),
        )
        .await?;
        // A full page may have more after it; a short one is the last.
        let next = match rows.last() {
            Some((created_at, event_id, _)) if rows.len() == limit => Some(UserCursor {
                created_at: *created_at,
                event_id: event_id.clone(),
            }),
            _ => None,
        };
        let page = rows
            .into_iter()
            .zip(newest)
            .map(|((created_at, event_id, category), newest)| {
                let (at, status) = newest.unzip();
                UserNotification {
                    event_id,
                    created_at,
                    category,
                    status,
                    at,
                }
            })
            .collect();
        Ok((page, next))
    }
}

fn answer(e: impl std::fmt::Display) -> StoreError {
    StoreError::Answer(e.to_string())
}
