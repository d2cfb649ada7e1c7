//! Which dispatch a provider's message id belongs to, for providers whose status callbacks
//! name only their own id (Twilio's `MessageSid`): the delivery worker records it right after
//! the send-ledger mark, with a TTL, and `herald api` reads it when the callback comes.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;
use std::time::Duration;

use herald_contracts::Channel;

use crate::{StoreConfig, StoreError};

/// The longest TTL CQL accepts (20 years).
pub const MAX_TTL: Duration = Duration::from_secs(630_720_000);

/// The dispatch a provider message id was recorded for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub tenant: String,
    pub user_id: String,
    pub event_id: String,
    pub dispatch_id: String,
    pub channel: Option<Channel>,
    pub sent_at: DateTime<Utc>,
    /// The dispatch's category and its request's creation time, which the callback's status
    /// carries like every other status (none for a row written before they were recorded).
    pub category: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

type Row = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<DateTime<Utc>>,
);

#[derive(Debug, Clone)]
pub struct ProviderMessages {
    session: Arc<Session>,
    insert: PreparedStatement,
    select: PreparedStatement,
}

impl ProviderMessages {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("provider_messages");
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} (provider, provider_message_id, tenant, user_id, event_id, \
                 dispatch_id, channel, sent_at, category, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ))
            .await?;
        let select = session
            .prepare(format!(
                "SELECT tenant, user_id, event_id, dispatch_id, channel, sent_at, category, \
                 created_at FROM {table} WHERE provider = ? AND provider_message_id = ?"
            ))
            .await?;
        Ok(Self {
            session,
            insert,
            select,
        })
    }

    /// Records `message` under (`provider`, `id`) for `ttl` (at least a second, at most
    /// [`MAX_TTL`]); recording it again rewrites the same row.
    pub async fn record(
        &self,
        provider: &str,
        id: &str,
        message: &MessageRef,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let ttl =
            i32::try_from(ttl.clamp(Duration::from_secs(1), MAX_TTL).as_secs()).unwrap_or(i32::MAX);
        self.session
            .execute_unpaged(
                &self.insert,
                (
                    provider,
                    id,
                    &message.tenant,
                    &message.user_id,
                    &message.event_id,
                    &message.dispatch_id,
                    message.channel.map(Channel::as_str),
                    message.sent_at,
                    message.category.as_deref(),
                    message.created_at,
                    ttl,
                ),
            )
            .await?;
        Ok(())
    }

    /// The dispatch recorded for (`provider`, `id`), if any (and not expired).
    pub async fn find(&self, provider: &str, id: &str) -> Result<Option<MessageRef>, StoreError> {
        let row = self
            .session
            .execute_unpaged(&self.select, (provider, id))
            .await?
            .into_rows_result()?
            .maybe_first_row::<Row>()?;
        Ok(row.and_then(
            |(tenant, user_id, event_id, dispatch_id, channel, sent_at, category, created_at)| {
                Some(MessageRef {
                    tenant: tenant?,
                    user_id: user_id?,
                    event_id: event_id?,
                    dispatch_id: dispatch_id?,
                    channel: channel.and_then(|c| c.parse().ok()),
                    sent_at: sent_at.unwrap_or(DateTime::UNIX_EPOCH),
                    category,
                    created_at,
                })
            },
        ))
    }
}
