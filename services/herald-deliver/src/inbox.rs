//! The in-app channel: the notification becomes a row of the user's `inbox`.
//!
//! The row's key is (tenant, user, created_at, dispatch id) with `created_at` the event's
//! creation time, and the write carries `USING TIMESTAMP` of that same instant (or of the
//! routing time, if that is earlier): writing a
//! dispatch again (a redelivery) rewrites the same cells with the same values and the same
//! write time, so the row stays identical, and a row the user has since deleted stays deleted.
//! `read_at` and `archived` are not written here, so a redelivery cannot reset them.

use futures::future::BoxFuture;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;

use herald_contracts::Dispatch;
use herald_store::{StoreConfig, StoreError};

use crate::outcome::logged;
use crate::{Outcome, Provider, SendReport};

#[derive(Debug, Clone)]
pub struct InboxProvider {
    session: Arc<Session>,
    insert: PreparedStatement,
}

impl InboxProvider {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let insert = session
            .prepare(format!(
                "INSERT INTO {} (tenant, user_id, created_at, dispatch_id, event_id, category, \
                 title, body, data_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
                config.table("inbox")
            ))
            .await?;
        Ok(Self { session, insert })
    }

    async fn deliver(&self, dispatch: &Dispatch) -> Outcome {
        let c = &dispatch.content;
        if c.subject.is_none() && c.text.is_none() {
            return Outcome::permanent("the dispatch has neither a subject nor a text body");
        }
        // The router's clock bounds the upstream one: a producer's created_at in the future
        // would otherwise give cells a write time no later delete could shadow.
        let write_time = dispatch
            .created_at
            .min(dispatch.routed_at)
            .timestamp_micros();
        let values = (
            &dispatch.tenant,
            &dispatch.user_id,
            dispatch.created_at,
            &dispatch.dispatch_id,
            &dispatch.event_id,
            &dispatch.category,
            &c.subject,
            &c.text,
            &c.json,
            write_time,
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

impl Provider for InboxProvider {
    fn name(&self) -> &'static str {
        herald_contracts::provider::INBOX
    }

    fn send<'a>(&'a self, dispatch: &'a Dispatch) -> BoxFuture<'a, SendReport> {
        Box::pin(async move { logged(self.name(), dispatch, self.deliver(dispatch).await.into()) })
    }
}
