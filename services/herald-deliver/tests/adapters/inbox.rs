//! The in-app inbox in the local stack's CQL database.

use chrono::{DateTime, Utc};
use std::time::Duration;

use herald_contracts::Channel;
use herald_deliver::{InboxProvider, Outcome, Provider};
use herald_test_support::dispatch::sample_dispatch;

use crate::common::migrated_keyspace;

type Row = (
    DateTime<Utc>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<DateTime<Utc>>,
);

const RETENTION: Duration = Duration::from_secs(7 * 86_400);

#[tokio::test]
async fn one_row_per_dispatch_even_when_it_is_delivered_again() {
    let (session, store) = migrated_keyspace("deliver_inbox").await;
    let provider = InboxProvider::prepare(session.clone(), &store, RETENTION)
        .await
        .unwrap();
    let mut dispatch = sample_dispatch(Channel::Inapp, "u-1");
    dispatch.content.json = Some(r#"{"action_url": "https://app.example/i/7"}"#.into());
    let select = format!(
        "SELECT created_at, dispatch_id, event_id, category, title, body, data_json, writetime(title), read_at \
         FROM {} WHERE tenant = ? AND user_id = ?",
        store.table("inbox")
    );
    let rows = || async {
        session
            .query_unpaged(select.as_str(), ("acme", "u-1"))
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .rows::<Row>()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };

    let report = provider.send(&dispatch).await;
    assert_eq!(
        report.outcome,
        Outcome::Sent {
            provider_message_id: dispatch.dispatch_id.clone(),
            delivered: true
        }
    );
    let first = rows().await;
    assert_eq!(first.len(), 1);
    let (created_at, dispatch_id, event_id, category, title, body, data, written, read_at) =
        first[0].clone();
    assert_eq!(created_at, dispatch.created_at);
    assert_eq!(dispatch_id, dispatch.dispatch_id);
    assert_eq!(event_id.as_deref(), Some(dispatch.event_id.as_str()));
    assert_eq!(category.as_deref(), Some("billing.invoice_ready"));
    assert_eq!(title, dispatch.content.subject);
    assert_eq!(body, dispatch.content.text);
    assert_eq!(data, dispatch.content.json);
    assert_eq!(written, Some(dispatch.created_at.timestamp_micros()));
    assert_eq!(read_at, None);
    // Retention is a TTL counted from the creation; priority and the action URL are kept.
    let (priority, action_url, ttl): (Option<String>, Option<String>, Option<i32>) = session
        .query_unpaged(
            format!(
                "SELECT priority, action_url, TTL(event_id) FROM {} WHERE tenant = ? AND user_id = ?",
                store.table("inbox")
            ),
            ("acme", "u-1"),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row()
        .unwrap();
    assert_eq!(priority.as_deref(), Some("high"));
    assert_eq!(action_url.as_deref(), Some("https://app.example/i/7"));
    let age = (Utc::now() - dispatch.created_at).num_seconds();
    let ttl = i64::from(ttl.unwrap());
    let retention = RETENTION.as_secs() as i64;
    assert!(
        ttl <= retention - age + 1 && ttl >= retention - age - 30,
        "ttl {ttl}"
    );

    // a redelivery (later attempt, routed again) lands on the same, identical row
    dispatch.attempt = 2;
    dispatch.routed_at = Utc::now();
    assert!(provider.send(&dispatch).await.outcome.is_sent());
    assert_eq!(rows().await, first);

    // the user read it; a redelivery does not make it unread
    let read = Utc::now();
    session
        .query_unpaged(
            format!(
                "UPDATE {} SET read_at = ? WHERE tenant = ? AND user_id = ? AND created_at = ? AND dispatch_id = ?",
                store.table("inbox")
            ),
            (read, "acme", "u-1", dispatch.created_at, &dispatch.dispatch_id),
        )
        .await
        .unwrap();
    assert!(provider.send(&dispatch).await.outcome.is_sent());
    let after = rows().await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].8.map(|t| t.timestamp_millis()),
        Some(read.timestamp_millis())
    );

    // another dispatch of the same user is another row
    let other = sample_dispatch(Channel::Inapp, "u-1");
    assert!(provider.send(&other).await.outcome.is_sent());
    assert_eq!(rows().await.len(), 2);
}

#[tokio::test]
async fn a_dispatch_with_nothing_to_show_is_permanent() {
    let (session, store) = migrated_keyspace("deliver_inbox_empty").await;
    let provider = InboxProvider::prepare(session, &store, RETENTION)
        .await
        .unwrap();
    let mut dispatch = sample_dispatch(Channel::Inapp, "u-1");
    dispatch.content.subject = None;
    dispatch.content.text = None;
    assert!(matches!(
        provider.send(&dispatch).await.outcome,
        Outcome::Permanent { .. }
    ));
}

#[tokio::test]
async fn a_notification_older_than_the_retention_is_not_written() {
    let (session, store) = migrated_keyspace("deliver_inbox_old").await;
    let provider = InboxProvider::prepare(session.clone(), &store, Duration::from_secs(3600))
        .await
        .unwrap();
    let mut dispatch = sample_dispatch(Channel::Inapp, "u-1");
    dispatch.created_at = Utc::now() - chrono::Duration::hours(2);
    let outcome = provider.send(&dispatch).await.outcome;
    assert!(matches!(outcome, Outcome::Permanent { .. }), "{outcome:?}");
    let rows = session
        .query_unpaged(
            format!(
                "SELECT dispatch_id FROM {} WHERE tenant = ? AND user_id = ?",
                store.table("inbox")
            ),
            ("acme", "u-1"),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows_num();
    assert_eq!(rows, 0);
}
