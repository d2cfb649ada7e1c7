//! The send ledger against the real database: claim, mark sent, release, take over a stale
//! claim, and push-token removal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;

use herald_store::push_tokens::PushTokens;
use herald_store::send_ledger::{Claim, SendLedger};
use herald_test_support::HeraldEnv;

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn claims_marks_releases_and_takes_over_stale_claims() {
    // No herald binary is run by this test.
    let env = HeraldEnv::new("herald", "ledger");
    let config = env.store_config();
    let session = Arc::new(herald_store::connect(&config).await.unwrap());
    herald_store::migrate(&session, &config).await.unwrap();
    let a = SendLedger::prepare(session.clone(), &config, "worker-a")
        .await
        .unwrap();
    let b = SendLedger::prepare(session.clone(), &config, "worker-b")
        .await
        .unwrap();
    let now = Utc::now();

    // a claims; b finds it busy until the lease ends; a marks it sent; b is told it was sent.
    let Claim::Held { holder, taken_over } = a.claim("d1", 1, now, LEASE).await.unwrap() else {
        panic!("first claim")
    };
    assert!(!taken_over);
    match b.claim("d1", 1, now, LEASE).await.unwrap() {
        Claim::Busy { until } => assert!(until > now),
        other => panic!("{other:?}"),
    }
    assert!(
        a.mark_sent(&holder, "webhook", "pm-1", 1, now)
            .await
            .unwrap()
    );
    match b.claim("d1", 2, now, LEASE).await.unwrap() {
        Claim::AlreadySent(record) => {
            assert_eq!(record.provider.as_deref(), Some("webhook"));
            assert_eq!(record.provider_message_id.as_deref(), Some("pm-1"));
            assert_eq!(record.attempt, 1);
        }
        other => panic!("{other:?}"),
    }

    // a released claim can be claimed again at once.
    let Claim::Held { holder, .. } = a.claim("d2", 1, now, LEASE).await.unwrap() else {
        panic!("claim d2")
    };
    assert!(a.release(&holder).await.unwrap());
    assert!(matches!(
        b.claim("d2", 2, now, LEASE).await.unwrap(),
        Claim::Held {
            taken_over: false,
            ..
        }
    ));

    // a claim older than the lease is taken over; the old holder can no longer mark it.
    let long_ago = now - TimeDelta::seconds(60);
    let Claim::Held { holder: stale, .. } = a.claim("d3", 1, long_ago, LEASE).await.unwrap() else {
        panic!("claim d3")
    };
    let Claim::Held { holder, taken_over } = b.claim("d3", 1, now, LEASE).await.unwrap() else {
        panic!("take over d3")
    };
    assert!(taken_over);
    assert!(
        !a.mark_sent(&stale, "webhook", "late", 1, now)
            .await
            .unwrap()
    );
    assert!(
        b.mark_sent(&holder, "webhook", "pm-3", 1, now)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn stale_push_tokens_are_removed_from_the_user() {
    let env = HeraldEnv::new("herald", "tokens");
    let config = env.store_config();
    let session = Arc::new(herald_store::connect(&config).await.unwrap());
    herald_store::migrate(&session, &config).await.unwrap();
    let users = config.table("users");
    session
        .query_unpaged(
            format!(
                "INSERT INTO {users} (tenant, user_id, push_tokens) VALUES ('acme', 'u1', {{'fcm:a', 'fcm:b', 'apns:c'}})"
            ),
            (),
        )
        .await
        .unwrap();
    let tokens = PushTokens::prepare(session.clone(), &config).await.unwrap();
    tokens
        .remove("acme", "u1", &["fcm:a".into(), "apns:c".into()])
        .await
        .unwrap();
    let (left,): (Option<Vec<String>>,) = session
        .query_unpaged(
            format!("SELECT push_tokens FROM {users} WHERE tenant = 'acme' AND user_id = 'u1'"),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .first_row()
        .unwrap();
    assert_eq!(left, Some(vec!["fcm:b".to_owned()]));
}
