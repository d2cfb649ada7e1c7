//! Reading what `herald track` wrote: one notification's timeline, and a user's notifications
//! newest first, a page at a time.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::{HashMap, HashSet};
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

/// Where a page of a user's notifications ends: the last index row read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCursor {
    pub at: DateTime<Utc>,
    pub event_id: String,
    pub source: String,
}

/// One of a user's notifications: its id and its newest status.
#[derive(Debug, Clone, PartialEq)]
pub struct UserNotification {
    pub event_id: String,
    pub at: DateTime<Utc>,
    pub status: String,
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
    user_page: PreparedStatement,
}

/// Index rows read per query while filling a page.
const SCAN: i32 = 200;

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
                "SELECT at FROM {table} WHERE tenant = ? AND event_id = ? ORDER BY at DESC LIMIT 1"
            ))
            .await?;
        let user_page = session
            .prepare(format!(
                "SELECT at, event_id, source, status FROM {} WHERE tenant = ? AND user_id = ? \
                 AND at <= ? LIMIT ?",
                config.table("user_notifications")
            ))
            .await?;
        Ok(Self {
            session,
            timeline,
            newest,
            user_page,
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

    async fn newest(
        &self,
        tenant: &str,
        event_id: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.newest, (tenant, event_id))
            .await?;
        let rows = result.into_rows_result().map_err(answer)?;
        Ok(rows
            .maybe_first_row::<(DateTime<Utc>,)>()
            .map_err(answer)?
            .map(|(at,)| at))
    }

    /// Up to `limit` of the user's notifications after `cursor`, newest status first, each
    /// listed once: at the index row of its newest status (so pages do not repeat an event
    /// while no new status arrives). The cursor of the next page, when there may be one.
    pub async fn user_notifications(
        &self,
        tenant: &str,
        user_id: &str,
        cursor: Option<UserCursor>,
        limit: usize,
    ) -> Result<(Vec<UserNotification>, Option<UserCursor>), StoreError> {
        let mut out = Vec::new();
        let mut listed = HashSet::new();
        let mut newest: HashMap<String, Option<DateTime<Utc>>> = HashMap::new();
        let mut position = cursor;
        loop {
            let upto = position.as_ref().map_or_else(far_future, |c| c.at);
            let result = self
                .session
                .execute_unpaged(&self.user_page, (tenant, user_id, upto, SCAN))
                .await?;
            let rows = result.into_rows_result().map_err(answer)?;
            let rows: Vec<(DateTime<Utc>, String, String, Option<String>)> = rows
                .rows()
                .map_err(answer)?
                .collect::<Result<_, _>>()
                .map_err(answer)?;
            let exhausted = rows.len() < SCAN as usize;
            let mut advanced = false;
            for (at, event_id, source, status) in rows {
                // Rows at the cursor's time up to the cursor itself were read before.
                if let Some(c) = &position
                    && at == c.at
                    && (event_id.as_str(), source.as_str())
                        <= (c.event_id.as_str(), c.source.as_str())
                {
                    continue;
                }
                advanced = true;
                let here = UserCursor {
                    at,
                    event_id: event_id.clone(),
                    source,
                };
                let latest = match newest.get(&event_id) {
                    Some(latest) => *latest,
                    None => {
                        let latest = self.newest(tenant, &event_id).await?;
                        newest.insert(event_id.clone(), latest);
                        latest
                    }
                };
                if !listed.contains(&event_id) && latest == Some(at) {
                    listed.insert(event_id.clone());
                    out.push(UserNotification {
                        event_id,
                        at,
                        status: status.unwrap_or_default(),
                    });
                }
                position = Some(here);
                if out.len() == limit {
                    return Ok((out, position));
                }
            }
            if exhausted || !advanced {
                return Ok((out, None));
            }
        }
    }
}

fn answer(e: impl std::fmt::Display) -> StoreError {
    StoreError::Answer(e.to_string())
}

/// The first page starts at the end of year 9999 (a bound every CQL timestamp can hold).
fn far_future() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
