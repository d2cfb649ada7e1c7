//! The schedule's page claims against the real database: a conditional batch claims or deletes
//! every row of a page or none, and a page never spans partitions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::time::Duration;

use herald_store::schedule::{Deferred, Schedule, ScheduledItem, minute_of};
use herald_test_support::HeraldEnv;

const LEASE: Duration = Duration::from_secs(30);

fn deferred(i: usize, due_at: DateTime<Utc>) -> Deferred {
    Deferred {
        due_at,
        event_id: format!("evt-{i}"),
        tenant: "acme".into(),
        user_id: format!("user-{i}"),
        payload: vec![1, 2, 3],
        headers: HashMap::new(),
    }
}

/// The rows of the one shard of `due`'s bucket, as a sweep reads them.
async fn rows(schedule: &Schedule, due: DateTime<Utc>) -> Vec<ScheduledItem> {
    schedule
        .due(minute_of(due), 0, due + TimeDelta::minutes(1))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_page_is_claimed_and_deleted_whole_or_not_at_all() {
    // No herald binary is run by this test.
    let env = HeraldEnv::new("herald", "schedule_page");
    let config = env.store_config();
    let session = env.migrated_session().await;
    // One shard: every item is a row of one partition.
    let schedule = Schedule::prepare(session, &config)
        .await
        .unwrap()
        .with_shards(1)
        .unwrap();
    let now = Utc::now();
    let due = now - TimeDelta::minutes(2);
    schedule.init_cursor(due).await.unwrap();
    for i in 0..5 {
        schedule.defer(&deferred(i, due), due).await.unwrap();
    }
    let page = rows(&schedule, due).await;
    assert_eq!(page.len(), 5);
    let all: Vec<&ScheduledItem> = page.iter().collect();

    // b takes one row after a read the page: a's claim of the page is not applied, and it
    // claims none of the others either.
    assert!(
        schedule
            .claim(&page[2], "b", now, LEASE)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        schedule.claim_all(&all, "a", now, LEASE).await.unwrap(),
        None
    );
    let after = rows(&schedule, due).await;
    let claimed: Vec<_> = after
        .iter()
        .filter_map(|r| r.claimed_by.as_deref())
        .collect();
    assert_eq!(claimed.len(), 1, "{after:?}");
    assert!(claimed[0].starts_with("b@"));

    // Read again, a skips the row b holds and claims the rest at once.
    let free: Vec<&ScheduledItem> = after.iter().filter(|r| r.claimed_by.is_none()).collect();
    assert_eq!(free.len(), 4);
    let marker = schedule
        .claim_all(&free, "a", now, LEASE)
        .await
        .unwrap()
        .expect("a claims the free rows");
    // A page with a row another holds under a live claim is not claimed.
    let held_page: Vec<&ScheduledItem> = after.iter().collect();
    assert_eq!(
        schedule
            .claim_all(&held_page, "c", now, LEASE)
            .await
            .unwrap(),
        None
    );

    // Deleting a page one row of which a does not hold deletes nothing.
    let claimed_rows = rows(&schedule, due).await;
    let everything: Vec<&ScheduledItem> = claimed_rows.iter().collect();
    assert!(!schedule.remove_all(&everything, &marker).await.unwrap());
    assert_eq!(rows(&schedule, due).await.len(), 5);
    // Its own rows are deleted together.
    let own: Vec<&ScheduledItem> = claimed_rows
        .iter()
        .filter(|r| r.claimed_by.as_deref() == Some(marker.as_str()))
        .collect();
    assert_eq!(own.len(), 4);
    assert!(schedule.remove_all(&own, &marker).await.unwrap());
    let left = rows(&schedule, due).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].item.event_id, page[2].item.event_id);

    // An empty page needs no request; a page over two partitions is refused.
    assert!(
        schedule
            .claim_all(&[], "a", now, LEASE)
            .await
            .unwrap()
            .is_some()
    );
    schedule
        .defer(&deferred(9, due + TimeDelta::minutes(1)), due)
        .await
        .unwrap();
    let next = rows(&schedule, due + TimeDelta::minutes(1)).await;
    let spanning = vec![&left[0], &next[0]];
    assert!(
        schedule
            .claim_all(&spanning, "a", now, LEASE)
            .await
            .is_err()
    );
    assert!(schedule.remove_all(&spanning, &marker).await.is_err());
}
