//! Frequency caps against the real database: the same answers when a batch is re-processed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_store::frequency_cap::{Cap, FrequencyCap, Subject};
use herald_test_support::HeraldEnv;

#[tokio::test]
async fn a_cap_allows_the_first_events_and_answers_the_same_on_a_retry() {
    // No herald binary is run by this test.
    let env = HeraldEnv::new("herald", "ratelimit");
    let config = env.store_config();
    let session = env.migrated_session().await;
    let limiter = FrequencyCap::prepare(session, &config).await.unwrap();
    let subject = Subject {
        tenant: "acme",
        user_id: "ada",
        category: "social.mention",
        channel: "inapp",
    };
    let cap = Cap {
        count: 2,
        window_seconds: 3600,
    };
    let at = 1_800_000_000;
    let mut first = Vec::new();
    for offset in 10..13 {
        first.push(
            limiter
                .allow(subject, cap, at, offset, &format!("e{offset}"))
                .await
                .unwrap(),
        );
    }
    assert_eq!(first, vec![true, true, false]);
    // The batch is aborted and processed again: nothing changes.
    let mut again = Vec::new();
    for offset in 10..13 {
        again.push(
            limiter
                .allow(subject, cap, at, offset, &format!("e{offset}"))
                .await
                .unwrap(),
        );
    }
    assert_eq!(again, first);
    // The next window starts afresh; another channel has its own cap.
    assert!(
        limiter
            .allow(subject, cap, at + 3600, 13, "e13")
            .await
            .unwrap()
    );
    let push = Subject {
        channel: "push",
        ..subject
    };
    assert!(limiter.allow(push, cap, at, 12, "e12").await.unwrap());
}
