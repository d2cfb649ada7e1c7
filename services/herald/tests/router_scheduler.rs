//! The scheduler against the real stack: several schedulers sweeping one schedule publish each
//! due item exactly once, take over the claims of a dead scheduler, catch up on buckets missed
//! while no scheduler ran, and leave the schedule empty.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use herald_contracts::headers;
use herald_router::scheduler::Scheduler;
use herald_store::schedule::{Deferred, SHARDS, Schedule, minute_of};
use herald_test_support::{HeraldEnv, unhex};
use tokio_util::sync::CancellationToken;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

fn item(i: usize, due_at: chrono::DateTime<Utc>) -> Deferred {
    Deferred {
        due_at,
        event_id: format!("deferred-{i}"),
        tenant: "acme".into(),
        user_id: format!("user-{}", i % 7),
        payload: format!("payload-{i}").into_bytes(),
        headers: HashMap::from([("traceparent".to_owned(), format!("00-{i:032x}-{i:016x}-01"))]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_schedulers_release_each_due_item_exactly_once() {
    let env = HeraldEnv::new(HERALD, "scheduler");
    env.prepare(true);
    let store = env.store_config();
    let session = Arc::new(herald_store::connect_keyspace(&store).await.unwrap());
    let schedule = Schedule::prepare(session, &store).await.unwrap();
    let now = Utc::now();

    // The routers started ten minutes ago; no scheduler has run since.
    schedule
        .init_cursor(now - TimeDelta::minutes(10))
        .await
        .unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..120 {
        // Deferred five minutes ago, due then: a bucket the sweep must catch up on.
        let (deferred_at, due) = match i % 3 {
            0 => (now - TimeDelta::minutes(5), now - TimeDelta::minutes(5)),
            // Deferred now, due within seconds.
            1 => (
                now,
                now + TimeDelta::milliseconds(i64::try_from(i).unwrap() * 20),
            ),
            // Deferred long ago for an instant already past when it was deferred.
            _ => (now - TimeDelta::minutes(3), now - TimeDelta::hours(2)),
        };
        let deferred = item(i, due);
        schedule.defer(&deferred, deferred_at).await.unwrap();
        expected.insert(deferred.event_id.clone(), deferred);
    }
    // A scheduler claimed one item and died before publishing it: its claim is taken over
    // once the lease runs out.
    let victim = &expected["deferred-0"];
    let bucket = minute_of(now - TimeDelta::minutes(5));
    let rows = schedule
        .due(
            bucket,
            herald_store::schedule::shard_of(&victim.event_id),
            now,
        )
        .await
        .unwrap();
    let row = rows
        .iter()
        .find(|r| r.item.event_id == victim.event_id)
        .unwrap();
    let lease = Duration::from_secs(3);
    assert!(
        schedule
            .claim(row, "dead-scheduler", now, lease)
            .await
            .unwrap()
            .is_some()
    );

    let topic = env.topics().requested();
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for owner in ["scheduler-a", "scheduler-b", "scheduler-c"] {
        let scheduler = Scheduler::new(
            schedule.clone(),
            env.kafka_config().producer_config(),
            topic.clone(),
            owner.into(),
            Duration::from_millis(200),
            lease,
        )
        .unwrap();
        tasks.push(tokio::spawn(scheduler.run(shutdown.clone())));
    }

    env.tail_until(&topic, expected.len(), Duration::from_secs(90));
    shutdown.cancel();
    for task in tasks {
        task.await.unwrap();
    }
    // Every scheduler has stopped: a late double release would be in this exact read.
    let released = env.read_all(&topic);

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for record in &released {
        // These payloads are not Avro: `tail` shows them in hex.
        let payload = String::from_utf8(unhex(record["value_hex"].as_str().unwrap())).unwrap();
        let i: usize = payload.strip_prefix("payload-").unwrap().parse().unwrap();
        let deferred = &expected[&format!("deferred-{i}")];
        *seen.entry(deferred.event_id.clone()).or_default() += 1;
        assert_eq!(
            record["key"],
            format!("{}:{}", deferred.tenant, deferred.user_id)
        );
        assert_eq!(
            record["headers"][headers::SCHEDULED_FOR],
            deferred.due_at.timestamp_millis().to_string()
        );
        assert_eq!(
            record["headers"]["traceparent"],
            deferred.headers["traceparent"]
        );
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        duplicates.is_empty(),
        "released more than once: {duplicates:?}"
    );
    assert_eq!(seen.len(), expected.len());

    // Nothing is left behind, and the cursor moved up to the minute before last.
    let later = Utc::now() + TimeDelta::minutes(1);
    for minute in minute_of(now - TimeDelta::minutes(10))..=minute_of(later) {
        for shard in 0..SHARDS {
            let left = schedule.due(minute, shard, later).await.unwrap();
            assert!(left.is_empty(), "left in bucket {minute}/{shard}: {left:?}");
        }
    }
    let cursor = schedule.cursor().await.unwrap().unwrap();
    assert!(
        cursor >= minute_of(now) - 1,
        "cursor {cursor}, now {}",
        minute_of(now)
    );
}
