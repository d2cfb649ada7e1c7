//! The webhook delivery worker's protection of its provider and of its priority lane, against
//! real Kafka and CQL with a recording stand-in receiver: the circuit breaker opens on a
//! failing provider, stops calling it but for half-open probes, and closes when it recovers,
//! with the deferred dispatches sent and no attempt spent on a deferral; a 429's
//! `Retry-After` holds the retry back; a priority backlog is sent before a bulk backlog.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_contracts::{Channel, Codec, Dispatch, Lane, headers};
use herald_test_support::deliver::{
    DELIVER_DEFAULTS, produce_dispatches, spawn_webhook_worker, statuses_of, webhook_dispatch,
    webhook_env,
};
use herald_test_support::kafka::produce_raw_many;
use herald_test_support::standin::{Recorded, Reply, StandIn};
use herald_test_support::{HeraldEnv, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const TIMEOUT: Duration = Duration::from_secs(60);
const BREAKER_STATE: &str = r#"herald_deliver_breaker_state{provider="webhook"}"#;

/// One call the stand-in answered: when it arrived, for which dispatch (`webhook-id`), and
/// the status it got.
#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    dispatch_id: String,
    status: u16,
}

type Calls = Arc<Mutex<Vec<Call>>>;
/// A record to produce: key and value.
type Record = (Vec<u8>, Vec<u8>);

/// A receiver that answers `answer(call number for this dispatch, from 1)` and records calls.
async fn receiver(answer: impl Fn(usize) -> Reply + Send + Sync + 'static) -> (StandIn, Calls) {
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let standin = StandIn::start(move |request: &Recorded| {
        let dispatch_id = request.header("webhook-id").unwrap_or_default().to_owned();
        let mut calls = recorded.lock().unwrap();
        let n = 1 + calls
            .iter()
            .filter(|c| c.dispatch_id == dispatch_id)
            .count();
        let reply = answer(n);
        calls.push(Call {
            at: Instant::now(),
            dispatch_id,
            status: reply.status,
        });
        reply
    })
    .await;
    (standin, calls)
}

/// Produces `dispatches` to the bulk lane with one producer.
async fn produce_bulk(env: &HeraldEnv, codec: &Codec, dispatches: &[Dispatch]) {
    produce_dispatches(env, codec, Lane::Bulk, dispatches).await;
}

/// Waits until every dispatch has a `sent` status; returns every status record.
fn wait_until_sent(env: &HeraldEnv, ids: &[String]) -> Vec<serde_json::Value> {
    let topic = env.topics().status();
    wait_for("a sent status for every dispatch", TIMEOUT, || {
        let records = env.tail_until(&topic, 1, TIMEOUT);
        ids.iter()
            .all(|id| statuses_of(&records, id).iter().any(|(s, _)| s == "sent"))
            .then_some(records)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_stops_calling_a_failing_provider_then_probes_and_closes() {
    const OPEN_FOR: Duration = Duration::from_secs(3);
    let deliver = format!(
        "{DELIVER_DEFAULTS}\n[deliver.breaker]\nwindow = \"30s\"\nmin_calls = 10\n\
         failure_ratio = 0.5\nopen_for = \"3s\"\nhalf_open_probes = 2\n"
    );
    let env = tokio::task::block_in_place(|| webhook_env(HERALD, "deliver_breaker", &deliver));
    let up = Arc::new(AtomicBool::new(false));
    let provider_up = up.clone();
    let (standin, calls) = receiver(move |_| {
        if provider_up.load(Ordering::SeqCst) {
            Reply::status(200)
        } else {
            Reply::status(503)
        }
    })
    .await;
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    // Ten dispatches to a provider that answers 503, waiting when the worker starts: their
    // min_calls failures open the breaker.
    let first: Vec<Dispatch> = (0..10)
        .map(|i| webhook_dispatch(&standin.url(), "hook", &format!("a{i}")))
        .collect();
    produce_bulk(&env, &codec, &first).await;
    let mut worker = tokio::task::block_in_place(|| spawn_webhook_worker(&env, &[]));
    let started = Instant::now();
    tokio::task::block_in_place(|| {
        wait_for("the breaker to open", TIMEOUT, || {
            (worker.metric(BREAKER_STATE) == Some(2.0)).then_some(())
        })
    });
    let opened = Instant::now();
    // Ten more while it is open: deferred without a call.
    let second: Vec<Dispatch> = (0..10)
        .map(|i| webhook_dispatch(&standin.url(), "hook", &format!("b{i}")))
        .collect();
    produce_bulk(&env, &codec, &second).await;
    // Two half-open spells, each letting at most two probes through, which fail.
    let before = calls.lock().unwrap().len();
    assert!(before >= 10, "{before} calls before the breaker opened");
    tokio::task::block_in_place(|| {
        wait_for("two rounds of probes", TIMEOUT, || {
            let calls = calls.lock().unwrap();
            let probes = calls.iter().filter(|c| c.at > opened).count();
            let spells = calls.iter().filter(|c| c.at > opened + OPEN_FOR).count();
            (probes >= 3 && spells >= 1 && calls.len() > before).then_some(())
        })
    });
    let down: Vec<Call> = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.at > opened)
        .cloned()
        .collect();
    eprintln!(
        "breaker: {before} calls before it opened, {} after, in {:?}",
        down.len(),
        started.elapsed()
    );
    // While open, no call; after open_for at most two probes, then open again for open_for.
    for window in down.windows(3) {
        let gap = window[2].at - window[0].at;
        assert!(
            gap >= OPEN_FOR - Duration::from_millis(500),
            "three calls within {gap:?} while the provider was down"
        );
    }

    // The provider recovers: probes succeed, the breaker closes, everything is sent.
    up.store(true, Ordering::SeqCst);
    let ids: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|d| d.dispatch_id.clone())
        .collect();
    let statuses = tokio::task::block_in_place(|| wait_until_sent(&env, &ids));
    eprintln!("breaker: all sent after {:?}", started.elapsed());
    let calls = calls.lock().unwrap().clone();
    for id in &ids {
        let failed_calls = calls
            .iter()
            .filter(|c| &c.dispatch_id == id && c.status == 503)
            .count();
        let sent_calls = calls
            .iter()
            .filter(|c| &c.dispatch_id == id && c.status == 200)
            .count();
        assert_eq!(sent_calls, 1, "{id}");
        let mine = statuses_of(&statuses, id);
        let sent: Vec<i64> = mine
            .iter()
            .filter(|(s, _)| s == "sent")
            .map(|(_, a)| *a)
            .collect();
        // A deferral spends no attempt: only provider calls count (from 0).
        assert_eq!(sent, [failed_calls as i64], "{id}: {mine:?}");
        // A `failed` status is a real provider attempt; a deferral is only a metric.
        let failed = mine.iter().filter(|(s, _)| s == "failed").count();
        assert_eq!(failed, failed_calls, "{id}: {mine:?}");
    }
    assert_eq!(worker.metric(BREAKER_STATE), Some(0.0));
    let deferred = worker
        .metric(r#"herald_deliver_breaker_deferred_total{provider="webhook"}"#)
        .unwrap();
    assert!(deferred >= 20.0, "{deferred}");
    let code = tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{}", worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_that_stays_open_defers_a_dispatch_for_a_bounded_time_only() {
    // The provider never recovers; probes keep failing, so the breaker is open most of the
    // time. Each dispatch is deferred for at most 2 s at a time, then takes the path of a
    // failed attempt: its tiers, then the DLQ. Every dispatch ends dead-lettered, with a
    // `failed` status for each real provider call and none for a deferral.
    let deliver = "retry_delays = [\"1s\", \"1s\"]\nledger_lease = \"10s\"\ninstance_id = \"w1\"\n\
         [deliver.breaker]\nwindow = \"30s\"\nmin_calls = 4\nfailure_ratio = 0.5\n\
         open_for = \"1s\"\nhalf_open_probes = 1\nmax_deferral = \"2s\"\n";
    let env = tokio::task::block_in_place(|| webhook_env(HERALD, "deliver_max_deferral", deliver));
    let (standin, calls) = receiver(|_| Reply::status(503)).await;
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    let dispatches: Vec<Dispatch> = (0..8)
        .map(|i| webhook_dispatch(&standin.url(), "hook", &format!("d{i}")))
        .collect();
    produce_bulk(&env, &codec, &dispatches).await;
    let mut worker = tokio::task::block_in_place(|| spawn_webhook_worker(&env, &[]));
    let topics = env.topics();
    tokio::task::block_in_place(|| {
        wait_for(
            "every dispatch dead-lettered",
            Duration::from_secs(120),
            || {
                let records = env.read_all(&topics.status());
                dispatches
                    .iter()
                    .all(|d| {
                        statuses_of(&records, &d.dispatch_id)
                            .iter()
                            .any(|(s, _)| s == "dead_lettered")
                    })
                    .then_some(())
            },
        )
    });
    let code = tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{}", worker.log_text());

    // The worker has stopped: exact reads.
    let statuses = env.read_all(&topics.status());
    let calls = calls.lock().unwrap().clone();
    for dispatch in &dispatches {
        let id = &dispatch.dispatch_id;
        let mine = statuses_of(&statuses, id);
        let dead = mine.iter().filter(|(s, _)| s == "dead_lettered").count();
        assert_eq!(dead, 1, "{id}: {mine:?}");
        let failed = mine.iter().filter(|(s, _)| s == "failed").count();
        let called = calls.iter().filter(|c| &c.dispatch_id == id).count();
        assert_eq!(
            failed, called,
            "{id}: a failed status per provider call: {mine:?}"
        );
        assert_eq!(mine.len(), failed + 1, "{id}: nothing else: {mine:?}");
    }
    let dlq = env.read_all(&topics.dlq());
    assert_eq!(dlq.len(), dispatches.len());
    let classes: Vec<&str> = dlq
        .iter()
        .map(|r| r["headers"][headers::ERROR_CLASS].as_str().unwrap())
        .collect();
    assert!(
        classes
            .iter()
            .all(|c| *c == "circuit_open" || *c == "retries_exhausted"),
        "{classes:?}"
    );
    assert!(classes.contains(&"circuit_open"), "{classes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_retry_after_holds_the_retry_back() {
    let env = tokio::task::block_in_place(|| {
        webhook_env(HERALD, "deliver_retry_after", DELIVER_DEFAULTS)
    });
    let (standin, calls) = receiver(|n| {
        if n == 1 {
            Reply::status(429).header("retry-after", "2")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    let topics = env.topics();
    let dispatches: Vec<Dispatch> = (0..3)
        .map(|i| webhook_dispatch(&standin.url(), "hook", &format!("u{i}")))
        .collect();
    produce_bulk(&env, &codec, &dispatches).await;
    let started = Instant::now();
    let mut worker = tokio::task::block_in_place(|| spawn_webhook_worker(&env, &[]));
    let ids: Vec<String> = dispatches.iter().map(|d| d.dispatch_id.clone()).collect();
    let statuses = tokio::task::block_in_place(|| wait_until_sent(&env, &ids));
    eprintln!("retry-after: all sent after {:?}", started.elapsed());
    // The tier-1 (1 s) jitter would allow less; the provider asked for 2 s.
    let tier1 = tokio::task::block_in_place(|| {
        env.tail_until(&topics.retry(Channel::Webhook, 1), ids.len(), TIMEOUT)
    });
    let calls = calls.lock().unwrap().clone();
    for id in &ids {
        assert_eq!(
            statuses_of(&statuses, id),
            [("failed".to_owned(), 0), ("sent".to_owned(), 1)]
        );
        let failed_at = statuses
            .iter()
            .find(|r| r["value"]["dispatch_id"] == id.as_str() && r["value"]["status"] == "failed")
            .and_then(|r| r["value"]["at"].as_str())
            .map(|at| {
                chrono::DateTime::parse_from_rfc3339(at)
                    .unwrap()
                    .timestamp_millis()
            })
            .unwrap();
        let retry = tier1
            .iter()
            .find(|r| r["value"]["dispatch_id"] == id.as_str())
            .unwrap();
        let due: i64 = retry["headers"][headers::DUE_AT]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            due - failed_at >= 2000,
            "{id}: due {}ms after the 429",
            due - failed_at
        );
        let mine: Vec<&Call> = calls.iter().filter(|c| &c.dispatch_id == id).collect();
        assert_eq!(mine.len(), 2);
        assert!(
            mine[1].at - mine[0].at >= Duration::from_secs(2),
            "{id}: called again after {:?}",
            mine[1].at - mine[0].at
        );
    }
    let _ = tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(30)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_backlog_is_sent_before_a_bulk_backlog() {
    const BULK: usize = 300;
    const PRIORITY: usize = 20;
    // Batches smaller than the backlog, so draining it takes several.
    const MAX_BATCH: usize = 100;
    let deliver = format!("{DELIVER_DEFAULTS}max_batch = {MAX_BATCH}\n");
    let env = tokio::task::block_in_place(|| webhook_env(HERALD, "deliver_priority", &deliver));
    let (standin, calls) = receiver(|_| Reply::status(200)).await;
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    let topics = env.topics();
    let mut lanes: HashMap<Lane, Vec<Record>> = HashMap::new();
    let mut priority_ids = Vec::new();
    for i in 0..BULK + PRIORITY {
        let (lane, user) = if i < BULK {
            (Lane::Bulk, format!("u{}", i % 60))
        } else {
            (Lane::Priority, format!("p{i}"))
        };
        let dispatch = webhook_dispatch(&standin.url(), "hook", &user);
        if lane == Lane::Priority {
            priority_ids.push(dispatch.dispatch_id.clone());
        }
        let bytes = codec.encode_dispatch(&dispatch).await.unwrap();
        lanes
            .entry(lane)
            .or_default()
            .push((dispatch.key().into_bytes(), bytes));
    }
    // The bulk backlog first, then the priority one, both before the worker starts.
    tokio::task::block_in_place(|| {
        for lane in [Lane::Bulk, Lane::Priority] {
            produce_raw_many(
                &env.kafka_config(),
                &topics.dispatch(Channel::Webhook, lane),
                &lanes[&lane],
            );
        }
    });
    let started = Instant::now();
    let mut worker = tokio::task::block_in_place(|| spawn_webhook_worker(&env, &[]));
    let order = tokio::task::block_in_place(|| {
        wait_for("every dispatch at the receiver", TIMEOUT, || {
            let calls = calls.lock().unwrap();
            (calls.len() >= BULK + PRIORITY).then(|| {
                calls
                    .iter()
                    .map(|c| c.dispatch_id.clone())
                    .collect::<Vec<_>>()
            })
        })
    });
    eprintln!("priority: all received after {:?}", started.elapsed());
    let positions: Vec<usize> = priority_ids
        .iter()
        .map(|id| order.iter().position(|o| o == id).unwrap())
        .collect();
    eprintln!("priority dispatches arrived at positions {positions:?}");
    // Reading the lanes' partitions in turn would scatter the priority dispatches over the
    // whole backlog. The bulk lane stays paused until the priority lane has no lag, so every
    // priority dispatch is sent before any bulk one.
    assert!(
        positions.iter().all(|p| *p < PRIORITY),
        "priority dispatches at {positions:?}, not all before the first bulk one"
    );
    let _ = tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(30)));
}
