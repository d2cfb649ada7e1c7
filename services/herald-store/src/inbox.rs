//! A user's in-app inbox as `herald api` reads and changes it (the in-app worker writes the
//! rows): pages newest first, the unread and unseen counts, and the seen, read and archived
//! marks.
//!
//! Each mark is a time set once, by a lightweight transaction conditioned on it being unset,
//! so that of two requests marking one message (two tabs, two replicas) exactly one learns it
//! changed the message and emits the status. A mark carries the row's remaining TTL, so it
//! expires with the message instead of keeping a row of its own alive. Filtering (unread,
//! archived) happens here, over pages of the partition: CQL cannot select on a null column, and
//! a user's inbox is bounded by its retention.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use std::sync::Arc;

use crate::{StoreConfig, StoreError};

/// Where a message sits in its user's partition: its clustering key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageKey {
    pub created_at: DateTime<Utc>,
    pub dispatch_id: String,
}

/// One message of an inbox, with its marks.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxMessage {
    pub key: MessageKey,
    pub event_id: Option<String>,
    pub category: Option<String>,
    pub priority: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    /// The rendered json part, when the template has one.
    pub data_json: Option<String>,
    pub action_url: Option<String>,
    pub seen_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    /// Seconds the row has left (None: written without a TTL, before retention existed).
    pub ttl: Option<i32>,
}

impl InboxMessage {
    /// A read message counts as seen: reading one shows it.
    pub fn is_seen(&self) -> bool {
        self.seen_at.is_some() || self.read_at.is_some()
    }

    pub fn is_read(&self) -> bool {
        self.read_at.is_some()
    }

    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }
}

/// Which messages a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Every message not archived (the inbox as a user sees it).
    #[default]
    Inbox,
    /// Not archived and not read.
    Unread,
    /// Archived only.
    Archived,
    /// Everything, archived or not.
    All,
}

impl Filter {
    pub fn admits(self, message: &InboxMessage) -> bool {
        match self {
            Filter::Inbox => !message.is_archived(),
            Filter::Unread => !message.is_archived() && !message.is_read(),
            Filter::Archived => message.is_archived(),
            Filter::All => true,
        }
    }
}

/// A change a user makes to a message. Each is made once: marking a message already marked
/// (or, for `Seen`, already read) changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    Seen,
    Read,
    Archived,
}

impl Mark {
    fn column(self) -> &'static str {
        match self {
            Mark::Seen => "seen_at",
            Mark::Read => "read_at",
            Mark::Archived => "archived_at",
        }
    }

    /// Whether `message` already has this mark.
    pub fn is_on(self, message: &InboxMessage) -> bool {
        match self {
            Mark::Seen => message.is_seen(),
            Mark::Read => message.is_read(),
            Mark::Archived => message.is_archived(),
        }
    }

    /// The messages marking all would change: the inbox's (not archived) that lack the mark.
    fn wanted_by_all(self, message: &InboxMessage) -> bool {
        !message.is_archived() && !self.is_on(message)
    }
}

/// The badge numbers of an inbox (archived messages are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub unread: u64,
    pub unseen: u64,
}

impl Counts {
    fn add(mut self, message: &InboxMessage) -> Self {
        if !message.is_archived() {
            self.total += 1;
            self.unread += u64::from(!message.is_read());
            self.unseen += u64::from(!message.is_seen());
        }
        self
    }
}

/// A page of a listing, and where the next one starts when there may be one.
#[derive(Debug, Clone, Default)]
pub struct InboxPage {
    pub messages: Vec<InboxMessage>,
    pub next: Option<MessageKey>,
}

/// How many rows one listing request reads at most while filtering: a page of unread messages
/// in an inbox of read ones ends early, with a cursor to go on from.
pub const SCAN_LIMIT: usize = 1_000;

const COLUMNS: &str = "created_at, dispatch_id, event_id, category, priority, title, body, \
                       data_json, action_url, seen_at, read_at, archived_at, TTL(event_id)";

type Row = (
    DateTime<Utc>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<i32>,
);

fn message(
    (
        created_at,
        dispatch_id,
        event_id,
        category,
        priority,
        title,
        body,
        data_json,
        action_url,
        seen_at,
        read_at,
        archived_at,
        ttl,
    ): Row,
) -> InboxMessage {
    InboxMessage {
        key: MessageKey {
            created_at,
            dispatch_id,
        },
        event_id,
        category,
        priority,
        title,
        body,
        data_json,
        action_url,
        seen_at,
        read_at,
        archived_at,
        ttl,
    }
}

/// The statements of one mark: set it once, and take it back (when its status could not be
/// published).
#[derive(Debug, Clone)]
struct MarkStatements {
    set: PreparedStatement,
    unset: PreparedStatement,
}

#[derive(Debug, Clone)]
pub struct Inbox {
    session: Arc<Session>,
    newest: PreparedStatement,
    same_instant: PreparedStatement,
    older: PreparedStatement,
    one: PreparedStatement,
    every: PreparedStatement,
    seen: MarkStatements,
    read: MarkStatements,
    archived: MarkStatements,
}

impl Inbox {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("inbox");
        let select = format!("SELECT {COLUMNS} FROM {table} WHERE tenant = ? AND user_id = ?");
        let key = "tenant = ? AND user_id = ? AND created_at = ? AND dispatch_id = ?";
        let newest = session.prepare(format!("{select} LIMIT ?")).await?;
        // The clustering order is (created_at DESC, dispatch_id ASC): the rows after a
        // position are those of its instant with a greater dispatch id, then the older ones.
        let same_instant = session
            .prepare(format!(
                "{select} AND created_at = ? AND dispatch_id > ? LIMIT ?"
            ))
            .await?;
        let older = session
            .prepare(format!("{select} AND created_at < ? LIMIT ?"))
            .await?;
        let one = session
            .prepare(format!("{select} AND created_at = ? AND dispatch_id = ?"))
            .await?;
        let mut every = session.prepare(select).await?;
        every.set_page_size(1_000);
        let mark = |mark: Mark| {
            let column = mark.column();
            // Seen is implied by read: a read message is not marked seen after it.
            let unset_first = match mark {
                Mark::Seen => "seen_at = null AND read_at = null".to_owned(),
                _ => format!("{column} = null"),
            };
            let set =
                format!("UPDATE {table} USING TTL ? SET {column} = ? WHERE {key} IF {unset_first}");
            let unset = format!("UPDATE {table} SET {column} = null WHERE {key} IF {column} = ?");
            let session = session.clone();
            async move {
                Ok::<_, StoreError>(MarkStatements {
                    set: session.prepare(set).await?,
                    unset: session.prepare(unset).await?,
                })
            }
        };
        Ok(Self {
            seen: mark(Mark::Seen).await?,
            read: mark(Mark::Read).await?,
            archived: mark(Mark::Archived).await?,
            session,
            newest,
            same_instant,
            older,
            one,
            every,
        })
    }

    fn statements(&self, mark: Mark) -> &MarkStatements {
        match mark {
            Mark::Seen => &self.seen,
            Mark::Read => &self.read,
            Mark::Archived => &self.archived,
        }
    }

    /// Up to `limit` messages after `after` that `filter` admits, newest first, reading at most
    /// [`SCAN_LIMIT`] rows. Messages that arrive meanwhile are newer than any position, so the
    /// pages after the first neither repeat nor skip one.
    pub async fn list(
        &self,
        tenant: &str,
        user_id: &str,
        filter: Filter,
        after: Option<MessageKey>,
        limit: usize,
    ) -> Result<InboxPage, StoreError> {
        let mut page = InboxPage::default();
        let mut position = after;
        let mut scanned = 0;
        // Unfiltered, a page reads one row more than it shows, to know whether more follow.
        let chunk = if filter == Filter::All {
            limit + 1
        } else {
            limit.max(50) + 1
        };
        loop {
            let rows = self
                .rows_after(tenant, user_id, position.as_ref(), chunk)
                .await?;
            let exhausted = rows.len() < chunk;
            for message in rows {
                scanned += 1;
                position = Some(message.key.clone());
                if page.messages.len() == limit {
                    // A match or not, something follows the page's last message.
                    page.next = page.messages.last().map(|m| m.key.clone());
                    return Ok(page);
                }
                if filter.admits(&message) {
                    page.messages.push(message);
                }
            }
            if exhausted {
                return Ok(page);
            }
            if scanned >= SCAN_LIMIT {
                page.next = position;
                return Ok(page);
            }
        }
    }

    /// Up to `limit` rows after `after`, in clustering order.
    async fn rows_after(
        &self,
        tenant: &str,
        user_id: &str,
        after: Option<&MessageKey>,
        limit: usize,
    ) -> Result<Vec<InboxMessage>, StoreError> {
        let cql_limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let Some(after) = after else {
            let result = self
                .session
                .execute_unpaged(&self.newest, (tenant, user_id, cql_limit))
                .await?;
            return rows(result);
        };
        let result = self
            .session
            .execute_unpaged(
                &self.same_instant,
                (
                    tenant,
                    user_id,
                    after.created_at,
                    &after.dispatch_id,
                    cql_limit,
                ),
            )
            .await?;
        let mut messages = rows(result)?;
        if messages.len() < limit {
            let rest = i32::try_from(limit - messages.len()).unwrap_or(i32::MAX);
            let result = self
                .session
                .execute_unpaged(&self.older, (tenant, user_id, after.created_at, rest))
                .await?;
            messages.extend(rows(result)?);
        }
        Ok(messages)
    }

    /// One message, when it exists.
    pub async fn get(
        &self,
        tenant: &str,
        user_id: &str,
        key: &MessageKey,
    ) -> Result<Option<InboxMessage>, StoreError> {
        let result = self
            .session
            .execute_unpaged(
                &self.one,
                (tenant, user_id, key.created_at, &key.dispatch_id),
            )
            .await?;
        Ok(rows(result)?.into_iter().next())
    }

    /// Every message of the inbox, a page of the partition at a time.
    async fn every(&self, tenant: &str, user_id: &str) -> Result<Vec<InboxMessage>, StoreError> {
        let rows: Vec<Row> = self
            .session
            .execute_iter(self.every.clone(), (tenant, user_id))
            .await
            .map_err(|e| StoreError::Request(e.to_string()))?
            .rows_stream::<Row>()
            .map_err(|e| StoreError::Answer(e.to_string()))?
            .try_collect()
            .await
            .map_err(|e| StoreError::Request(e.to_string()))?;
        Ok(rows.into_iter().map(message).collect())
    }

    /// The unread and unseen counts, over every message not archived.
    pub async fn counts(&self, tenant: &str, user_id: &str) -> Result<Counts, StoreError> {
        Ok(self
            .every(tenant, user_id)
            .await?
            .iter()
            .fold(Counts::default(), Counts::add))
    }

    /// The messages that marking all of the inbox with `mark` would change.
    pub async fn unmarked(
        &self,
        tenant: &str,
        user_id: &str,
        mark: Mark,
    ) -> Result<Vec<InboxMessage>, StoreError> {
        let mut messages = self.every(tenant, user_id).await?;
        messages.retain(|m| mark.wanted_by_all(m));
        Ok(messages)
    }

    /// Sets `mark` on `message` at `at`, unless it is on already: true when this call set it
    /// (and so its caller emits the status).
    pub async fn set(
        &self,
        tenant: &str,
        user_id: &str,
        message: &InboxMessage,
        mark: Mark,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // Never 0 (no TTL) for a row that has one: the mark would outlive the message.
        let ttl = message.ttl.map_or(0, |left| left.max(1));
        let key = &message.key;
        let result = self
            .session
            .execute_unpaged(
                &self.statements(mark).set,
                (ttl, at, tenant, user_id, key.created_at, &key.dispatch_id),
            )
            .await?;
        applied(result)
    }

    /// Takes back a mark this process set at `at` (its status could not be published), so the
    /// next request sets it again and emits the status then.
    pub async fn unset(
        &self,
        tenant: &str,
        user_id: &str,
        key: &MessageKey,
        mark: Mark,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.statements(mark).unset,
                (tenant, user_id, key.created_at, &key.dispatch_id, at),
            )
            .await?;
        Ok(())
    }
}

fn rows(result: QueryResult) -> Result<Vec<InboxMessage>, StoreError> {
    let rows = result.into_rows_result()?;
    let mut messages = Vec::with_capacity(rows.rows_num());
    for row in rows.rows::<Row>()? {
        messages.push(message(row?));
    }
    Ok(messages)
}

/// Whether a lightweight transaction applied (its `[applied]` column).
fn applied(result: QueryResult) -> Result<bool, StoreError> {
    let rows = result.into_rows_result()?;
    let index = rows
        .column_specs()
        .iter()
        .position(|spec| spec.name() == "[applied]")
        .ok_or_else(|| StoreError::Answer("a conditional update without [applied]".into()))?;
    let row = rows.first_row::<scylla::value::Row>()?;
    Ok(matches!(
        row.columns.get(index),
        Some(Some(CqlValue::Boolean(true)))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_with(seen: bool, read: bool, archived: bool) -> InboxMessage {
        let at = |on: bool| on.then(Utc::now);
        InboxMessage {
            key: MessageKey {
                created_at: Utc::now(),
                dispatch_id: "d".into(),
            },
            event_id: None,
            category: None,
            priority: None,
            title: None,
            body: None,
            data_json: None,
            action_url: None,
            seen_at: at(seen),
            read_at: at(read),
            archived_at: at(archived),
            ttl: None,
        }
    }

    #[test]
    fn counts_leave_out_archived_messages_and_read_ones_are_seen() {
        let messages = [
            message_with(false, false, false),
            message_with(true, false, false),
            message_with(false, true, false),
            message_with(false, false, true),
        ];
        let counts = messages.iter().fold(Counts::default(), Counts::add);
        assert_eq!(
            counts,
            Counts {
                total: 3,
                unread: 2,
                unseen: 1
            }
        );
    }

    #[test]
    fn filters_and_marks() {
        let fresh = message_with(false, false, false);
        let read = message_with(false, true, false);
        let archived = message_with(false, false, true);
        assert!(Filter::Unread.admits(&fresh) && !Filter::Unread.admits(&read));
        assert!(!Filter::Inbox.admits(&archived) && Filter::Archived.admits(&archived));
        assert!(Filter::All.admits(&archived) && !Filter::Archived.admits(&fresh));
        assert!(Mark::Seen.is_on(&read), "a read message is seen");
        assert!(Mark::Read.wanted_by_all(&fresh) && !Mark::Read.wanted_by_all(&archived));
        assert!(!Mark::Archived.wanted_by_all(&archived));
    }
}
