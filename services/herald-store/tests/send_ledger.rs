//! The send ledger against the real database: batch claims, marks, taking over a stale claim,
//! and push-token removal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;

use herald_store::StoreConfig;
use herald_store::push_tokens::PushTokens;
use herald_store::send_ledger::{BatchClaim, Claim, RecordAt, SendLedger};
use herald_test_support::HeraldEnv;
use scylla::client::session::Session;

const LEASE: Duration = Duration::from_secs(30);

async fn ledger(session: &Arc<Session>, config: &StoreConfig, owner: &str) -> SendLedger {
    SendLedger::prepare(session.clone(), config, owner)
        .await
        .unwrap()
}

/// `ledger` claims offsets up to `last` of partition `partition` of topic `dispatch`.
async fn claim(ledger: &SendLedger, partition: i32, last: i64, now: DateTime<Utc>) -> BatchClaim {
    ledger
        .claim_batch(&[("dispatch".into(), partition, last)], now)
        .await
        .unwrap()
}

fn at(partition: i32, offset: i64) -> RecordAt<'static> {
    RecordAt {
        topic: "dispatch",
        partition,
        offset,
    }
}

#[tokio::test]
async fn batch_claims_marks_and_takes_over_stale_claims() {
    // No herald binary is run by this test.
    let env = HeraldEnv::new("herald", "ledger");
    let config = env.store_config();
    let session = env.migrated_session().await;
    let a = ledger(&session, &config, "worker-a").await;
    let b = ledger(&session, &config, "worker-b").await;
    let now = Utc::now();

    // a claims offsets ..=10 of partition 0 and sends offset 5.
    let a_batch = claim(&a, 0, 10, now).await;
    let Claim::Held { holder, taken_over } =
        a.claim(&a_batch, at(0, 5), "d5", now, LEASE).await.unwrap()
    else {
        panic!("a holds d5")
    };
    assert!(!taken_over);

    // b gets the partition (so a lost it: it died or was fenced) and re-reads from offset 5:
    // a's claim is taken over at once, not after a lease.
    let b_batch = claim(&b, 0, 8, now).await;
    match b.claim(&b_batch, at(0, 6), "d6", now, LEASE).await.unwrap() {
        Claim::Held { taken_over, .. } => assert!(taken_over),
        other => panic!("{other:?}"),
    }
    // A dispatch a had begun calling the provider for, with no result marked, is ambiguous
    // to b; to a itself it is not (a acted on its own call's result).
    let Claim::Held { holder: h7, .. } =
        a.claim(&a_batch, at(0, 7), "d7", now, LEASE).await.unwrap()
    else {
        panic!("a holds d7")
    };
    a.mark_calling(&h7, now).await.unwrap();
    assert!(matches!(
        b.claim(&b_batch, at(0, 7), "d7", now, LEASE).await.unwrap(),
        Claim::Ambiguous { .. }
    ));
    assert!(matches!(
        a.claim(&a_batch, at(0, 7), "d7", now, LEASE).await.unwrap(),
        Claim::Held { .. }
    ));
    // what a marked sent is never sent again, by anyone, wherever it shows up
    a.mark_sent(&holder, "webhook", "pm-5", 1, now)
        .await
        .unwrap();
    for ledger in [&a, &b] {
        match ledger
            .claim(&b_batch, at(0, 5), "d5", now, LEASE)
            .await
            .unwrap()
        {
            Claim::AlreadySent(record) => {
                assert_eq!(record.provider.as_deref(), Some("webhook"));
                assert_eq!(record.provider_message_id.as_deref(), Some("pm-5"));
                assert_eq!(record.attempt, 1);
            }
            other => panic!("{other:?}"),
        }
    }
    match b
        .claim(&b_batch, at(3, 900), "d5", now, LEASE)
        .await
        .unwrap()
    {
        Claim::AlreadySent(_) => {}
        other => panic!("a duplicate record elsewhere: {other:?}"),
    }

    // a per-dispatch claim as older workers wrote them is still waited out for the lease
    session
        .query_unpaged(
            format!(
                "INSERT INTO {} (dispatch_id, state, claimed_by, claimed_at) \
                 VALUES ('d9', 'claimed', 'old-worker', ?)",
                config.table("send_ledger")
            ),
            (now,),
        )
        .await
        .unwrap();
    assert!(matches!(
        b.claim(&b_batch, at(0, 9), "d9", now, LEASE).await.unwrap(),
        Claim::Busy { .. }
    ));
    let later = now + TimeDelta::seconds(31);
    assert!(matches!(
        b.claim(&b_batch, at(0, 9), "d9", later, LEASE)
            .await
            .unwrap(),
        Claim::Held { .. }
    ));
    // records above a's claim were never touched: b sends them at once
    let c_batch = claim(&b, 0, 20, now).await;
    match b
        .claim(&c_batch, at(0, 11), "d11", now, LEASE)
        .await
        .unwrap()
    {
        Claim::Held { taken_over, .. } => assert!(!taken_over),
        other => panic!("{other:?}"),
    }
    // and b's own claims never make b wait (a batch retried after an abort)
    let again = claim(&b, 0, 20, now).await;
    match b.claim(&again, at(0, 15), "d15", now, LEASE).await.unwrap() {
        Claim::Held { taken_over, .. } => assert!(!taken_over),
        other => panic!("{other:?}"),
    }

    // a claim never moves back: b re-claiming offsets ..=8 leaves 20 claimed, so a new owner
    // still knows offset 19 may have been sent
    claim(&b, 0, 8, now).await;
    let c = ledger(&session, &config, "worker-c").await;
    let c_batch = claim(&c, 0, 19, now).await;
    assert!(matches!(
        c.claim(&c_batch, at(0, 19), "d19", now, LEASE)
            .await
            .unwrap(),
        Claim::Held {
            taken_over: true,
            ..
        }
    ));
    // other partitions are claimed on their own
    assert!(matches!(
        c.claim(&c_batch, at(1, 0), "p1", now, LEASE).await.unwrap(),
        Claim::Held {
            taken_over: false,
            ..
        }
    ));
}

/// A worker restarted under the same name is a new owner: it takes its previous life's
/// claims over at once (that life is over), knowing it may have sent what they cover.
#[tokio::test]
async fn a_restarted_worker_takes_its_previous_claims_over() {
    let env = HeraldEnv::new("herald", "ledger_restart");
    let config = env.store_config();
    let session = env.migrated_session().await;
    let now = Utc::now();
    let first = ledger(&session, &config, "w1").await;
    claim(&first, 2, 50, now).await;
    let second = ledger(&session, &config, "w1").await;
    let batch = claim(&second, 2, 50, now).await;
    assert!(matches!(
        second
            .claim(&batch, at(2, 40), "d40", now, LEASE)
            .await
            .unwrap(),
        Claim::Held {
            taken_over: true,
            ..
        }
    ));
}

/// Concurrent reads of the ledger are answered by shared requests; each still gets its own
/// answer.
#[tokio::test]
async fn concurrent_claims_each_get_their_own_answer() {
    let env = HeraldEnv::new("herald", "ledger_many");
    let config = env.store_config();
    let session = env.migrated_session().await;
    let a = ledger(&session, &config, "worker-a").await;
    let now = Utc::now();
    let ids: Vec<String> = (0..500).map(|i| format!("m{i}")).collect();
    let batch = claim(&a, 0, 499, now).await;

    // Every even id is sent; then all 500 are looked up at once.
    futures::future::join_all(ids.iter().enumerate().step_by(2).map(|(i, id)| {
        let (a, batch) = (&a, &batch);
        async move {
            let Claim::Held { holder, .. } = a
                .claim(batch, at(0, i as i64), id, now, LEASE)
                .await
                .unwrap()
            else {
                panic!("claim {id}")
            };
            a.mark_sent(&holder, "webhook", &format!("pm-{id}"), 1, now)
                .await
                .unwrap();
        }
    }))
    .await;
    let claims = futures::future::join_all(
        ids.iter()
            .enumerate()
            .map(|(i, id)| a.claim(&batch, at(0, i as i64), id, now, LEASE)),
    )
    .await;
    for (i, (id, claim)) in ids.iter().zip(claims).enumerate() {
        match claim.unwrap() {
            Claim::AlreadySent(record) if i % 2 == 0 => {
                assert_eq!(record.provider_message_id, Some(format!("pm-{id}")));
            }
            Claim::Held {
                holder,
                taken_over: false,
            } if i % 2 == 1 => {
                assert_eq!(&holder.dispatch_id, id);
            }
            other => panic!("{id}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn stale_push_tokens_are_removed_from_the_user() {
    let env = HeraldEnv::new("herald", "tokens");
    let config = env.store_config();
    let session = env.migrated_session().await;
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
