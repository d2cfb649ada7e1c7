//! The dedupe ledger against the real database, including checks answered in one group.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_store::dedupe::{DedupeLedger, Seen};
use herald_test_support::HeraldEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_same_record_and_duplicate_even_within_one_group() {
    // No herald binary is run by this test.
    let env = HeraldEnv::new("herald", "dedupe");
    let config = env.store_config();
    let session = env.migrated_session().await;
    let ledger = DedupeLedger::prepare(session, &config).await.unwrap();

    assert_eq!(
        ledger
            .check_and_record("acme", "e-1", "t/0/1")
            .await
            .unwrap(),
        Seen::First
    );
    // The same record again (a batch re-read after an abort), then another record.
    assert_eq!(
        ledger
            .check_and_record("acme", "e-1", "t/0/1")
            .await
            .unwrap(),
        Seen::SameRecord
    );
    assert_eq!(
        ledger
            .check_and_record("acme", "e-1", "t/0/9")
            .await
            .unwrap(),
        Seen::Duplicate
    );
    // Event ids are per tenant.
    assert_eq!(
        ledger
            .check_and_record("other", "e-1", "t/0/2")
            .await
            .unwrap(),
        Seen::First
    );

    // Many checks at once, with one id carried by two records: its first record wins.
    let checks = (0..200).map(|i| {
        let ledger = ledger.clone();
        async move {
            let (id, source) = match i {
                150 => ("g-7".to_owned(), "t/1/150".to_owned()),
                i => (format!("g-{i}"), format!("t/1/{i}")),
            };
            (
                i,
                ledger.check_and_record("acme", &id, &source).await.unwrap(),
            )
        }
    });
    let answers = futures::future::join_all(checks).await;
    for (i, seen) in answers {
        let expected = if i == 150 {
            Seen::Duplicate
        } else {
            Seen::First
        };
        assert_eq!(seen, expected, "check {i}");
    }
    // Everything was recorded.
    for i in (0..200).filter(|i| *i != 150) {
        assert_eq!(
            ledger
                .check_and_record("acme", &format!("g-{i}"), &format!("t/1/{i}"))
                .await
                .unwrap(),
            Seen::SameRecord
        );
    }
}
