//! The scheduler against the real stack: several schedulers sweeping one schedule publish each
//! due item exactly once, take over the claims of a dead scheduler, catch up on buckets missed
//! while no scheduler ran, and leave the schedule empty.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use herald_contracts::headers;
use herald_router::scheduler::Scheduler;
use herald_store::schedule::{Deferred, Schedule, ShardBucket, minute_of, shard_of};
use herald_test_support::proxy::{TcpProxy, cql_session_via};
use herald_test_support::{HeraldEnv, Stack, unhex};
use scylla::client::session::Session;
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
        .due(bucket, shard_of(&victim.event_id, schedule.shards()), now)
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
    let tasks = start_schedulers(&env, &schedule, lease, &shutdown);

    env.tail_until(&topic, expected.len(), Duration::from_secs(90));
    // The cursor moves past a minute only after its last item is released (the taken-over
    // claim held it back for a lease): wait for it before stopping the schedulers.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let cursor = schedule.cursor().await.unwrap().unwrap_or(i64::MIN);
        if cursor >= minute_of(now) - 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cursor {cursor}, now {}",
            minute_of(now)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let shards = schedule.shards_to_sweep().await.unwrap();
    for minute in minute_of(now - TimeDelta::minutes(10))..=minute_of(later) {
        for shard in 0..shards {
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

/// How many rows the schedule in `keyspace` still holds in `bucket`, over `shards` shards
/// (read directly: some of them may be rows the scheduler cannot read).
/// Three schedulers sweeping every 200 ms, with claim lease `lease`, until `shutdown`.
fn start_schedulers(
    env: &HeraldEnv,
    schedule: &Schedule,
    lease: Duration,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    ["scheduler-a", "scheduler-b", "scheduler-c"]
        .into_iter()
        .map(|owner| {
            let scheduler = Scheduler::new(
                schedule.clone(),
                env.kafka_config().producer_config(),
                env.topics().requested(),
                owner.into(),
                Duration::from_millis(200),
                lease,
            )
            .unwrap();
            tokio::spawn(scheduler.run(shutdown.clone()))
        })
        .collect()
}

async fn scheduled_in(session: &Session, keyspace: &str, bucket: i64, shards: i32) -> i64 {
    let count = format!("SELECT COUNT(*) FROM {keyspace}.schedule WHERE bucket = ? AND shard = ?");
    let mut left = 0;
    for shard in 0..shards {
        let (n,): (i64,) = session
            .query_unpaged(count.as_str(), (bucket, shard))
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .single_row()
            .unwrap();
        left += n;
    }
    left
}

/// Which `deferred-<i>` each released record is, with how often it was released.
fn released_counts(released: &[serde_json::Value]) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for record in released {
        let payload = String::from_utf8(unhex(record["value_hex"].as_str().unwrap())).unwrap();
        let i: usize = payload.strip_prefix("payload-").unwrap().parse().unwrap();
        *seen.entry(i).or_default() += 1;
    }
    seen
}

/// A campaign: 50,000 items due in the same minute. Three schedulers release each exactly once
/// and empty the schedule within a deadline a CI run can afford.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_items_due_in_one_minute_are_each_released_exactly_once() {
    const ITEMS: usize = 50_000;
    // The schedulers run in this process: their warnings (a publish that timed out, a claim
    // taken over) explain a failure here.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,herald_router=info")
        .try_init();
    let env = HeraldEnv::new(HERALD, "scheduler_scale");
    env.prepare(true);
    let store = env.store_config();
    let session = Arc::new(herald_store::connect_keyspace(&store).await.unwrap());
    let schedule = Schedule::prepare(session.clone(), &store).await.unwrap();

    // Every item is due within the minute before last, deferred before it began.
    let minute = minute_of(Utc::now()) - 2;
    let minute_start = chrono::DateTime::from_timestamp(minute * 60, 0).unwrap();
    let deferred_at = minute_start - TimeDelta::minutes(1);
    schedule.init_cursor(deferred_at).await.unwrap();
    let started = std::time::Instant::now();
    futures::stream::iter(0..ITEMS)
        .map(|i| {
            let schedule = &schedule;
            let due = minute_start + TimeDelta::milliseconds(i64::try_from(i % 60_000).unwrap());
            async move { schedule.defer(&item(i, due), deferred_at).await }
        })
        .buffer_unordered(256)
        .try_collect::<()>()
        .await
        .unwrap();
    eprintln!("{ITEMS} items deferred in {:?}", started.elapsed());
    let shards = schedule.shards_to_sweep().await.unwrap();

    let topic = env.topics().requested();
    let shutdown = CancellationToken::new();
    let tasks = start_schedulers(&env, &schedule, Duration::from_secs(30), &shutdown);
    // An item leaves the schedule only once its release is acknowledged.
    let releasing = std::time::Instant::now();
    let deadline = releasing + Duration::from_secs(300);
    loop {
        let left = scheduled_in(&session, &store.keyspace, minute, shards).await;
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} of {ITEMS} items still scheduled after {:?}",
            releasing.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("{ITEMS} items released in {:?}", releasing.elapsed());
    shutdown.cancel();
    for task in tasks {
        task.await.unwrap();
    }
    // Every scheduler has stopped: a late double release would be in this exact read.
    let counting = std::time::Instant::now();
    let released = env.read_all(&topic);
    eprintln!(
        "{} releases read back in {:?}",
        released.len(),
        counting.elapsed()
    );
    let seen = released_counts(&released);
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        duplicates.is_empty(),
        "released more than once: {} items, e.g. {:?}",
        duplicates.len(),
        &duplicates[..duplicates.len().min(10)]
    );
    assert_eq!(seen.len(), ITEMS, "every item released");
    assert_eq!(released.len(), ITEMS);
    assert!(schedule.failed_buckets().await.unwrap().is_empty());
}

/// Ids `deferred-<i>` for `i` from `from` whose shard among `shards` is `shard`.
fn ids_in_shard(shard: i32, shards: u16, from: usize, count: usize) -> Vec<usize> {
    (from..)
        .filter(|i| shard_of(&format!("deferred-{i}"), shards) == shard)
        .take(count)
        .collect()
}

/// A row that cannot be read and an item Kafka refuses do not hold back the items due after
/// them, in their own shard or in later buckets: one sweep releases all of those, records the
/// two shards that failed, and moves the cursor past them. Once the faults are gone, another
/// scheduler (a new instance, as after a restart) finds the failed shards and releases them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_bucket_does_not_hold_back_later_ones_and_is_retried() {
    let env = HeraldEnv::new(HERALD, "scheduler_failing");
    env.prepare(true);
    let store = env.store_config();
    let session = Arc::new(herald_store::connect_keyspace(&store).await.unwrap());
    let schedule = Schedule::prepare(session.clone(), &store).await.unwrap();
    let shards = schedule.shards();
    let now = Utc::now();
    let started = now - TimeDelta::minutes(10);
    schedule.init_cursor(started).await.unwrap();

    // A row the scheduler cannot read (no tenant: written by hand, as a bug or an operator
    // might), due 6 minutes ago.
    let unreadable = item(100, now - TimeDelta::minutes(6));
    let unreadable_at = ShardBucket {
        bucket: minute_of(unreadable.due_at),
        shard: shard_of(&unreadable.event_id, shards),
    };
    session
        .query_unpaged(
            format!(
                "INSERT INTO {}.schedule (bucket, shard, due_at, event_id, payload) \
                 VALUES (?, ?, ?, ?, ?)",
                store.keyspace
            ),
            (
                unreadable_at.bucket,
                unreadable_at.shard,
                unreadable.due_at,
                &unreadable.event_id,
                &unreadable.payload,
            ),
        )
        .await
        .unwrap();
    // An item Kafka refuses (larger than the producer's message.max.bytes), due 5 minutes ago.
    let refused = item(101, now - TimeDelta::minutes(5));
    let refused_at = ShardBucket {
        bucket: minute_of(refused.due_at),
        shard: shard_of(&refused.event_id, shards),
    };
    let mut oversized = refused.clone();
    oversized.payload = [refused.payload.as_slice(), &[b'#'; 2_000_000]].concat();
    schedule.defer(&oversized, started).await.unwrap();

    // Good items due 6, 5, 4 and 3 minutes ago, spread over the shards, and two due just after
    // each bad one in its own shard.
    let mut good: Vec<usize> = (0..80).collect();
    let neighbours = ids_in_shard(unreadable_at.shard, shards, 1000, 2)
        .into_iter()
        .map(|i| (i, unreadable.due_at))
        .chain(
            ids_in_shard(refused_at.shard, shards, 2000, 2)
                .into_iter()
                .map(|i| (i, refused.due_at)),
        );
    let mut due_times: Vec<_> = (0..80)
        .map(|i: i64| now - TimeDelta::minutes(6 - i % 4))
        .collect();
    for (i, after) in neighbours {
        good.push(i);
        due_times.push(after + TimeDelta::milliseconds(1));
    }
    for (i, due) in good.iter().zip(&due_times) {
        schedule.defer(&item(*i, *due), started).await.unwrap();
    }
    let buckets = [3, 4, 5, 6].map(|m| minute_of(now - TimeDelta::minutes(m)));
    let mut scheduled = 0;
    for bucket in buckets {
        scheduled += scheduled_in(&session, &store.keyspace, bucket, i32::from(shards)).await;
    }
    assert_eq!(scheduled, 86);

    let topic = env.topics().requested();
    let lease = Duration::from_secs(1);
    let first = Scheduler::new(
        schedule.clone(),
        env.kafka_config().producer_config(),
        topic.clone(),
        "scheduler-a".into(),
        Duration::from_millis(200),
        lease,
    )
    .unwrap();
    let sweep = first.sweep(Utc::now()).await;
    // One sweep releases every good item, whatever the bad ones do.
    let mut held_back = 0;
    for bucket in buckets {
        held_back += scheduled_in(&session, &store.keyspace, bucket, i32::from(shards)).await;
    }
    // The two bad items are all that is left.
    assert_eq!(
        held_back, 2,
        "good items held back by a bad bucket ({sweep:?})"
    );
    let sweep = sweep.unwrap();
    assert_eq!((sweep.released, sweep.failed), (84, 2), "{sweep:?}");
    // The failed shards are recorded, and the cursor moved past them.
    let failed: BTreeSet<ShardBucket> = schedule
        .failed_buckets()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(failed, BTreeSet::from([unreadable_at, refused_at]));
    let cursor = schedule.cursor().await.unwrap().unwrap();
    assert!(
        cursor >= minute_of(now) - 2,
        "cursor {cursor}, now {}",
        minute_of(now)
    );
    // A sweep while they still fail keeps them recorded and the cursor where it is.
    let again = first.sweep(Utc::now()).await.unwrap();
    assert_eq!((again.released, again.failed), (0, 2), "{again:?}");
    assert_eq!(schedule.failed_buckets().await.unwrap().len(), 2);
    assert!(schedule.cursor().await.unwrap().unwrap() >= cursor);
    drop(first);

    // Repair both rows.
    session
        .query_unpaged(
            format!(
                "UPDATE {}.schedule SET tenant = ?, user_id = ? \
                 WHERE bucket = ? AND shard = ? AND due_at = ? AND event_id = ?",
                store.keyspace
            ),
            (
                &unreadable.tenant,
                &unreadable.user_id,
                unreadable_at.bucket,
                unreadable_at.shard,
                unreadable.due_at,
                &unreadable.event_id,
            ),
        )
        .await
        .unwrap();
    schedule.defer(&refused, started).await.unwrap();
    // Another instance, with its own connection, finds the failed shards; the refused item
    // stays claimed by the first scheduler until that claim's lease runs out.
    let restarted = Arc::new(herald_store::connect_keyspace(&store).await.unwrap());
    let schedule = Schedule::prepare(restarted, &store).await.unwrap();
    let second = Scheduler::new(
        schedule.clone(),
        env.kafka_config().producer_config(),
        topic.clone(),
        "scheduler-b".into(),
        Duration::from_millis(200),
        lease,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut recovered = 0;
    loop {
        let sweep = second.sweep(Utc::now()).await.unwrap();
        recovered += sweep.recovered;
        let failed = schedule.failed_buckets().await.unwrap();
        if failed.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "failed shards not retried: {failed:?} ({sweep:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(recovered, 2);
    for bucket in buckets {
        assert_eq!(
            scheduled_in(&session, &store.keyspace, bucket, i32::from(shards)).await,
            0
        );
    }

    let seen = released_counts(&env.read_all(&topic));
    let expected: BTreeSet<usize> = good.iter().copied().chain([100, 101]).collect();
    assert_eq!(seen.keys().copied().collect::<BTreeSet<_>>(), expected);
    assert!(
        seen.values().all(|n| *n == 1),
        "released more than once: {seen:?}"
    );
}

/// Items written under one shard count are all released by a scheduler configured with
/// another: lowering `router.schedule_shards` (or raising it) hides nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_shard_count_hides_no_item() {
    let env = HeraldEnv::new(HERALD, "scheduler_reshard");
    env.prepare(true);
    let store = env.store_config();
    let session = Arc::new(herald_store::connect_keyspace(&store).await.unwrap());
    let now = Utc::now();
    let started = now - TimeDelta::minutes(5);
    let bucket = minute_of(now) - 3;
    let minute_start = chrono::DateTime::from_timestamp(bucket * 60, 0).unwrap();
    // Routers ran with 256 shards, then with 4: the scheduler now runs with 4.
    let wide = Schedule::prepare(session.clone(), &store)
        .await
        .unwrap()
        .with_shards(256)
        .unwrap();
    wide.init_cursor(started).await.unwrap();
    let narrow = Schedule::prepare(session.clone(), &store)
        .await
        .unwrap()
        .with_shards(4)
        .unwrap();
    assert!(
        Schedule::prepare(session.clone(), &store)
            .await
            .unwrap()
            .with_shards(0)
            .is_err()
    );
    for i in 0..200 {
        let schedule = if i < 150 { &wide } else { &narrow };
        let due = minute_start + TimeDelta::seconds(i64::try_from(i % 60).unwrap());
        schedule.defer(&item(i, due), started).await.unwrap();
    }
    assert!(
        (0..150).any(|i| shard_of(&format!("deferred-{i}"), 256) >= 64),
        "some items sit beyond the default count"
    );
    assert_eq!(narrow.shards_to_sweep().await.unwrap(), 256);

    let topic = env.topics().requested();
    let scheduler = Scheduler::new(
        narrow.clone(),
        env.kafka_config().producer_config(),
        topic.clone(),
        "scheduler-a".into(),
        Duration::from_millis(200),
        Duration::from_secs(30),
    )
    .unwrap();
    let sweep = scheduler.sweep(Utc::now()).await.unwrap();
    assert_eq!(sweep.released, 200, "{sweep:?}");
    assert_eq!(
        scheduled_in(&session, &store.keyspace, bucket, 256).await,
        0
    );
    let seen = released_counts(&env.read_all(&topic));
    assert_eq!(seen.len(), 200);
    assert!(
        seen.values().all(|n| *n == 1),
        "released more than once: {seen:?}"
    );
}

/// How many rows of a bucket some scheduler has claimed.
async fn claimed_in(session: &Session, keyspace: &str, bucket: i64, shards: i32) -> usize {
    let select =
        format!("SELECT claimed_by FROM {keyspace}.schedule WHERE bucket = ? AND shard = ?");
    let mut claimed = 0;
    for shard in 0..shards {
        let rows = session
            .query_unpaged(select.as_str(), (bucket, shard))
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        claimed += rows
            .rows::<(Option<String>,)>()
            .unwrap()
            .filter(|row| row.as_ref().unwrap().0.is_some())
            .count();
    }
    claimed
}

/// A release whose delete is lost after its publish succeeded (the database never gets the
/// request, the driver times it out) is finished by the next sweep with the delete alone:
/// publishing it again would put a second copy on the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_whose_delete_was_lost_is_deleted_not_published_again() {
    const ITEMS: usize = 20;
    let env = HeraldEnv::new(HERALD, "scheduler_lost_delete");
    env.prepare(true);
    let store = env.store_config();
    let direct = herald_store::connect_keyspace(&store).await.unwrap();
    let stack = Stack::from_env();
    let node: std::net::SocketAddr = stack.cql.parse().unwrap();
    let proxy = TcpProxy::start(node).await;
    let via_proxy = cql_session_via(&proxy, node, Duration::from_secs(2)).await;
    let schedule = Schedule::prepare(Arc::new(via_proxy), &store)
        .await
        .unwrap();

    let minute = minute_of(Utc::now()) - 2;
    let minute_start = chrono::DateTime::from_timestamp(minute * 60, 0).unwrap();
    let deferred_at = minute_start - TimeDelta::minutes(1);
    schedule.init_cursor(deferred_at).await.unwrap();
    // All in one shard: a sweep releases the items of a shard at once (up to its limit), and
    // only a few shards at a time.
    let shards = i32::from(schedule.shards());
    for (n, i) in ids_in_shard(0, schedule.shards(), 0, ITEMS)
        .into_iter()
        .enumerate()
    {
        let due = minute_start + TimeDelta::seconds(i64::try_from(n).unwrap());
        schedule.defer(&item(i, due), deferred_at).await.unwrap();
    }

    let topic = env.topics().requested();
    let scheduler = Arc::new(
        Scheduler::new(
            schedule.clone(),
            env.kafka_config().producer_config(),
            topic.clone(),
            "scheduler-a".into(),
            Duration::from_millis(200),
            Duration::from_secs(30),
        )
        .unwrap(),
    );
    // With the broker frozen, the sweep claims every item and its publishes wait; once all are
    // claimed, the database stops getting requests and the broker runs again: the publishes
    // succeed and the deletes after them are lost.
    let frozen = stack.freeze_broker();
    let sweep = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.sweep(Utc::now()).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while claimed_in(&direct, &store.keyspace, minute, shards).await < ITEMS {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep did not claim every item"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.drop_requests(true);
    drop(frozen);
    // The sweep fails as a whole or records the shard as failed, depending on which of its
    // last writes (the cursor, the failed shard) it tries first; either way no release ended.
    let first = sweep.await.unwrap();
    assert!(
        first
            .as_ref()
            .map_or(true, |s| s.released == 0 && s.failed > 0),
        "{first:?}"
    );
    let published = env.read_all(&topic);
    assert_eq!(
        published.len(),
        ITEMS,
        "every item published by the first sweep"
    );
    assert_eq!(
        scheduled_in(&direct, &store.keyspace, minute, shards).await,
        i64::try_from(ITEMS).unwrap(),
        "the deletes were lost"
    );

    proxy.drop_requests(false);
    let second = scheduler.sweep(Utc::now()).await.unwrap();
    assert_eq!(second.released, ITEMS, "{second:?}");
    assert_eq!(
        scheduled_in(&direct, &store.keyspace, minute, shards).await,
        0
    );
    let released = env.read_all(&topic);
    let seen = released_counts(&released);
    assert_eq!(seen.len(), ITEMS);
    assert!(
        seen.values().all(|n| *n == 1),
        "released more than once: {seen:?}"
    );
}
