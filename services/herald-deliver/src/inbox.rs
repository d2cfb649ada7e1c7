//! The in-app channel: the notification becomes a row of the user's `inbox`.
//!
//! The row's key is (tenant, user, created_at, dispatch id) with `created_at` the event's
//! creation time, and the write carries `USING TIMESTAMP` of that same instant (or of the
//! routing time, if that is earlier): writing a
//! dispatch again (a redelivery) rewrites the same cells with the same values and the same
//! write time, so the row stays identical, and a row the user has since deleted stays deleted.
//! The states `herald api` sets (`seen_at`, `read_at`, `archived_at`) are not written here, so
//! a redelivery cannot reset them.
//!
//! Retention (`deliver.providers.inapp.retention`) is a CQL TTL of what remains of it since
//! the notification's creation, so a redelivery does not extend a message's life either.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;
use std::time::Duration;

use herald_contracts::{Dispatch, InboxEvent};
use herald_store::{StoreConfig, StoreError};

use crate::outcome::logged;
use crate::{Outcome, Provider, SendReport};

#[derive(Debug, Clone)]
pub struct InboxProvider {
    session: Arc<Session>,
    insert: PreparedStatement,
    retention: Duration,
}

impl InboxProvider {
    pub async fn prepare(
        session: Arc<Session>,
        config: &StoreConfig,
        retention: Duration,
    ) -> Result<Self, StoreError> {
        let insert = session
            .prepare(format!(
                "INSERT INTO {} (tenant, user_id, created_at, dispatch_id, event_id, category, \
                 priority, title, body, data_json, action_url) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?",
                config.table("inbox")
            ))
            .await?;
        Ok(Self {
            session,
            insert,
            retention,
        })
    }

    async fn deliver(&self, dispatch: &Dispatch) -> Outcome {
        if dispatch.content.subject.is_none() && dispatch.content.text.is_none() {
            return Outcome::permanent("the dispatch has neither a subject nor a text body");
        }
        // The router's clock bounds the upstream one: a producer's created_at in the future
        // would otherwise give cells a write time no later delete could shadow.
        let written_at = dispatch.created_at.min(dispatch.routed_at);
        let Some(ttl) = remaining_ttl(self.retention, written_at, Utc::now()) else {
            // Older than the retention already: the message would be gone before it is read.
            return Outcome::permanent(format!(
                "the notification is older than the inbox retention ({:?})",
                self.retention
            ));
        };
        // The row holds what the inbox event (which the worker emits once this succeeds) says.
        let message = InboxEvent::message(dispatch, Utc::now());
        let c = &message.content;
        let values = (
            &message.tenant,
            &message.user_id,
            message.created_at,
            &message.dispatch_id,
            &c.event_id,
            &c.category,
            &c.priority,
            &c.title,
            &c.body,
            &c.data_json,
            &c.action_url,
            written_at.timestamp_micros(),
            ttl,
        );
        match self.session.execute_unpaged(&self.insert, values).await {
            Ok(_) => Outcome::Sent {
                provider_message_id: dispatch.dispatch_id.clone(),
                delivered: true,
            },
            Err(e) => Outcome::transient(format!("writing the inbox row: {}", StoreError::from(e))),
        }
    }
}

/// The TTL, in seconds, that ends a row at `written_at + retention`; `None` when that is past.
fn remaining_ttl(
    retention: Duration,
    written_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<i32> {
    let age = now
        .signed_duration_since(written_at)
        .to_std()
        .unwrap_or_default();
    let left = retention.checked_sub(age)?.as_secs();
    (left > 0).then(|| i32::try_from(left).unwrap_or(i32::MAX))
}

impl Provider for InboxProvider {
    fn name(&self) -> &'static str {
        herald_contracts::provider::INBOX
    }

    fn send<'a>(&'a self, dispatch: &'a Dispatch) -> BoxFuture<'a, SendReport> {
        Box::pin(async move { logged(self.name(), dispatch, self.deliver(dispatch).await.into()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_is_what_remains_of_the_retention() {
        let day = Duration::from_secs(86_400);
        let now = Utc::now();
        let created = now - chrono::Duration::hours(12);
        assert_eq!(remaining_ttl(day, created, now), Some(43_200));
        assert_eq!(
            remaining_ttl(day, now - chrono::Duration::days(2), now),
            None
        );
        // A creation time in the future counts as now.
        assert_eq!(
            remaining_ttl(day, now + chrono::Duration::hours(1), now),
            Some(86_400)
        );
    }
}
