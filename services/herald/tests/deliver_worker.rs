//! The webhook delivery worker against real Kafka and CQL, with a recording stand-in as the
//! webhook receiver: delivery with exactly one `sent` per dispatch, a retry through the tiers,
//! a permanent failure to the DLQ, a redelivered dispatch that is not sent twice, garbage bytes
//! to the DLQ, dispatches past their deadline, and a SIGKILL mid-stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_contracts::{Channel, Codec, Dispatch, Lane, NotificationRequest, headers};
use herald_test_support::deliver::{
    self, DELIVER_DEFAULTS, produce_dispatch, spawn_webhook_worker, statuses_of, webhook_dispatch,
};
use herald_test_support::kafka::{produce_raw, produce_raw_many};
use herald_test_support::standin::{Recorded, Reply, StandIn};
use herald_test_support::{HeraldEnv, RoleProcess, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const TIMEOUT: Duration = Duration::from_secs(120);

/// A webhook receiver: `/ok/..` answers 200, `/bad/..` 400, `/later/..` 429 with an hour's
/// `Retry-After`, `/flaky<n>/..` 500 for the first n calls per dispatch and 200 after. Counts
/// calls per dispatch (`webhook-id`).
async fn receiver() -> (StandIn, Arc<Mutex<HashMap<String, usize>>>) {
    let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counted = calls.clone();
    let standin = StandIn::start(move |request: &Recorded| {
        let id = request.header("webhook-id").unwrap_or_default().to_owned();
        let n = {
            let mut calls = counted.lock().unwrap();
            let n = calls.entry(id).or_insert(0);
            *n += 1;
            *n
        };
        let segment = request.path.split('/').nth(1).unwrap_or_default();
        if segment == "bad" {
            Reply::status(400).body("no such hook")
        } else if segment == "later" {
            Reply::status(429).header("retry-after", "3600")
        } else if let Some(failures) = segment.strip_prefix("flaky") {
            let failures: usize = failures.parse().unwrap();
            if n <= failures {
                Reply::status(500)
            } else {
                Reply::status(200)
            }
        } else {
            Reply::status(200)
        }
    })
    .await;
    (standin, calls)
}

fn webhook_env(name: &str) -> HeraldEnv {
    deliver::webhook_env(HERALD, name, DELIVER_DEFAULTS)
}

fn spawn_worker(env: &HeraldEnv) -> RoleProcess {
    spawn_webhook_worker(env, &[])
}

fn dispatch_to(standin: &StandIn, path: &str, user: &str) -> Dispatch {
    webhook_dispatch(&standin.url(), path, user)
}

async fn produce(env: &HeraldEnv, codec: &Codec, lane: Lane, dispatch: &Dispatch) {
    produce_dispatch(env, codec, lane, dispatch).await;
}

/// Gives `dispatch` the fallback chain email, then `then`, with the router's request for email
/// (as the router attaches it), and returns that request.
async fn fall_back_to_email(
    codec: &Codec,
    dispatch: &mut Dispatch,
    then: Channel,
) -> NotificationRequest {
    dispatch.fallback = vec![Channel::Email, then];
    let request = NotificationRequest::from_json(
        &serde_json::json!({
            "event_id": format!("{}:fallback:email", dispatch.event_id),
            "tenant": dispatch.tenant,
            "category": dispatch.category,
            "template": {"id": "t"},
            "recipient": {"user_id": dispatch.user_id},
            "channels": ["email"],
        })
        .to_string(),
    )
    .unwrap();
    dispatch.fallback_request = Some(codec.encode_request(&request).await.unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_worker_sends_retries_dead_letters_and_never_sends_twice() {
    let env = tokio::task::block_in_place(|| webhook_env("deliver"));
    let (standin, calls) = receiver().await;
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    let topics = env.topics();

    // (a) five dispatches, two recipients, one on the priority lane
    let ok: Vec<Dispatch> = (0..5)
        .map(|i| dispatch_to(&standin, "ok", &format!("u{}", i % 2)))
        .collect();
    for (i, dispatch) in ok.iter().enumerate() {
        let lane = if i == 0 { Lane::Priority } else { Lane::Bulk };
        produce(&env, &codec, lane, dispatch).await;
    }
    // (b) 500 twice, then 200: two retry tiers
    let flaky = dispatch_to(&standin, "flaky2", "u2");
    produce(&env, &codec, Lane::Bulk, &flaky).await;
    // (c) 400: dead-lettered at once
    // with a fallback chain: the router's request for email goes back to the router
    let mut bad = dispatch_to(&standin, "bad", "u3");
    let fallback = fall_back_to_email(&codec, &mut bad, Channel::Sms).await;
    produce(&env, &codec, Lane::Bulk, &bad).await;
    // (f) past its deadline already: not sent
    let mut stale = dispatch_to(&standin, "ok", "u5");
    stale.deadline = Some(chrono::Utc::now() - chrono::TimeDelta::minutes(1));
    produce(&env, &codec, Lane::Bulk, &stale).await;
    // (g) told to come back in an hour, with ten minutes left: failed once, then expired
    let mut late = dispatch_to(&standin, "later", "u6");
    late.deadline = Some(chrono::Utc::now() + chrono::TimeDelta::minutes(10));
    produce(&env, &codec, Lane::Bulk, &late).await;
    // (e) garbage bytes on the dispatch topic
    produce_raw(
        &env.kafka_config(),
        &topics.dispatch(Channel::Webhook, Lane::Bulk),
        b"acme:u4",
        b"not avro at all",
        &[],
    );

    let started = std::time::Instant::now();
    let mut worker = tokio::task::block_in_place(|| spawn_worker(&env));
    // 5 sent + flaky (failed, failed, sent) + bad (dead_lettered) + stale (suppressed) + late
    // (failed, suppressed)
    let statuses = tokio::task::block_in_place(|| {
        env.tail_until(&topics.status(), 5 + 3 + 1 + 1 + 2, TIMEOUT)
    });
    eprintln!("statuses after {:?}", started.elapsed());

    for dispatch in &ok {
        assert_eq!(
            statuses_of(&statuses, &dispatch.dispatch_id),
            [("sent".to_owned(), 0)],
            "{}",
            dispatch.dispatch_id
        );
        let sent = statuses
            .iter()
            .find(|r| r["value"]["dispatch_id"] == dispatch.dispatch_id.as_str())
            .unwrap();
        assert_eq!(sent["value"]["provider"], "webhook");
        assert_eq!(
            sent["value"]["provider_message_id"],
            dispatch.dispatch_id.as_str()
        );
    }
    assert_eq!(
        statuses_of(&statuses, &flaky.dispatch_id),
        [
            ("failed".to_owned(), 0),
            ("failed".to_owned(), 1),
            ("sent".to_owned(), 2)
        ]
    );
    let dead = statuses_of(&statuses, &bad.dispatch_id);
    assert_eq!(dead, [("dead_lettered".to_owned(), 0)]);
    // (f) and (g): suppressed as expired; neither went to a retry tier nor the DLQ
    assert_eq!(
        statuses_of(&statuses, &stale.dispatch_id),
        [("suppressed".to_owned(), 0)]
    );
    assert_eq!(
        statuses_of(&statuses, &late.dispatch_id),
        [("failed".to_owned(), 0), ("suppressed".to_owned(), 0)]
    );
    for dispatch in [&stale, &late] {
        let suppressed = statuses
            .iter()
            .find(|r| {
                r["value"]["dispatch_id"] == dispatch.dispatch_id.as_str()
                    && r["value"]["status"] == "suppressed"
            })
            .unwrap();
        assert_eq!(suppressed["value"]["reason"], "expired");
        assert!(suppressed["value"]["provider"].is_null(), "{suppressed}");
    }

    // the flaky dispatch went through tiers 1 and 2 with attempt and due-time headers
    let tier1 = tokio::task::block_in_place(|| {
        env.tail_until(&topics.retry(Channel::Webhook, 1), 1, TIMEOUT)
    });
    assert_eq!(tier1.len(), 1);
    assert_eq!(tier1[0]["value"]["dispatch_id"], flaky.dispatch_id.as_str());
    // The header numbers attempts from 1; the dispatch counts the attempts before, from 0.
    assert_eq!(tier1[0]["headers"][headers::ATTEMPT], "2");
    assert_eq!(tier1[0]["value"]["attempt"], 1);
    assert!(tier1[0]["headers"][headers::DUE_AT].as_str().is_some());
    let tier2 = tokio::task::block_in_place(|| {
        env.tail_until(&topics.retry(Channel::Webhook, 2), 1, TIMEOUT)
    });
    assert_eq!(tier2[0]["headers"][headers::ATTEMPT], "3");
    assert_eq!(tier2[0]["value"]["attempt"], 2);

    // (c) the fallback request, once, carrying the rest of the chain
    let requested = tokio::task::block_in_place(|| env.tail_until(&topics.requested(), 1, TIMEOUT));
    assert_eq!(requested.len(), 1, "{requested:#?}");
    assert_eq!(
        requested[0]["value"]["event_id"],
        fallback.event_id.as_str()
    );
    assert_eq!(requested[0]["key"], bad.key().as_str());
    assert_eq!(requested[0]["headers"][headers::FALLBACK_CHAIN], "sms");

    // (c) and (e): the DLQ holds the 400 and the garbage, with error headers
    let dlq = tokio::task::block_in_place(|| env.tail_until(&topics.dlq(), 2, TIMEOUT));
    assert_eq!(dlq.len(), 2, "{dlq:#?}");
    let dispatch_topic = topics.dispatch(Channel::Webhook, Lane::Bulk);
    let rejected = dlq
        .iter()
        .find(|r| r["value"]["dispatch_id"] == bad.dispatch_id.as_str())
        .expect("the 400 dispatch in the DLQ");
    let h = &rejected["headers"];
    assert_eq!(h[headers::ERROR_STAGE], "deliver");
    assert_eq!(h[headers::ERROR_CLASS], "permanent");
    assert!(
        h[headers::ERROR_MESSAGE].as_str().unwrap().contains("400"),
        "{h}"
    );
    assert_eq!(h[headers::ORIGINAL_TOPIC], dispatch_topic.as_str());
    assert!(h[headers::ORIGINAL_OFFSET].as_str().is_some());
    assert_eq!(h[headers::ATTEMPT], "1");
    let garbage = dlq
        .iter()
        .find(|r| r["key"] == "acme:u4")
        .expect("the garbage record in the DLQ");
    assert_eq!(garbage["headers"][headers::ERROR_CLASS], "framing");
    assert_eq!(garbage["headers"][headers::ERROR_STAGE], "deliver");

    // (d) the first dispatch produced again (a redelivery with the same dispatch id): not
    // sent again, its `sent` status re-emitted
    produce(&env, &codec, Lane::Bulk, &ok[1]).await;
    let statuses = tokio::task::block_in_place(|| {
        env.tail_until(&topics.status(), 5 + 3 + 1 + 1 + 2 + 1, TIMEOUT)
    });
    assert_eq!(
        statuses_of(&statuses, &ok[1].dispatch_id),
        [("sent".to_owned(), 0), ("sent".to_owned(), 0)]
    );
    let calls = calls.lock().unwrap().clone();
    for dispatch in &ok {
        assert_eq!(
            calls.get(&dispatch.dispatch_id),
            Some(&1),
            "{}",
            dispatch.dispatch_id
        );
    }
    assert_eq!(calls.get(&flaky.dispatch_id), Some(&3));
    assert_eq!(calls.get(&bad.dispatch_id), Some(&1));
    assert_eq!(calls.get(&stale.dispatch_id), None);
    assert_eq!(calls.get(&late.dispatch_id), Some(&1));

    // SIGTERM: exits 0 within the grace period
    let code = tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{}", worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_failing_at_every_tier_is_dead_lettered_and_falls_back() {
    let env = tokio::task::block_in_place(|| webhook_env("deliver_tiers"));
    let (standin, calls) = receiver().await;
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    let topics = env.topics();

    // 500 on every call; the chain goes on to email, then push
    let mut always = dispatch_to(&standin, "flaky1000", "u9");
    let fallback = fall_back_to_email(&codec, &mut always, Channel::Push).await;
    produce(&env, &codec, Lane::Bulk, &always).await;

    let mut worker = tokio::task::block_in_place(|| spawn_worker(&env));
    // failed at every attempt (the first, then one per tier), and after the last tier's
    // failure, dead-lettered
    let statuses = tokio::task::block_in_place(|| env.tail_until(&topics.status(), 5, TIMEOUT));
    assert_eq!(
        statuses_of(&statuses, &always.dispatch_id),
        [
            ("failed".to_owned(), 0),
            ("failed".to_owned(), 1),
            ("failed".to_owned(), 2),
            ("failed".to_owned(), 3),
            ("dead_lettered".to_owned(), 3),
        ]
    );
    for tier in 1..=3u8 {
        let records = tokio::task::block_in_place(|| {
            env.tail_until(&topics.retry(Channel::Webhook, tier), 1, TIMEOUT)
        });
        assert_eq!(records.len(), 1, "tier {tier}");
        assert_eq!(
            records[0]["headers"][headers::ATTEMPT],
            (u32::from(tier) + 1).to_string()
        );
    }
    let dlq = tokio::task::block_in_place(|| env.tail_until(&topics.dlq(), 1, TIMEOUT));
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["headers"][headers::ERROR_CLASS], "retries_exhausted");
    assert_eq!(dlq[0]["headers"][headers::ATTEMPT], "4");
    let requested = tokio::task::block_in_place(|| env.tail_until(&topics.requested(), 1, TIMEOUT));
    assert_eq!(requested.len(), 1);
    assert_eq!(
        requested[0]["value"]["event_id"],
        fallback.event_id.as_str()
    );
    assert_eq!(requested[0]["headers"][headers::FALLBACK_CHAIN], "push");
    assert_eq!(calls.lock().unwrap().get(&always.dispatch_id), Some(&4));
    assert_eq!(
        tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(30))),
        Some(0),
        "{}",
        worker.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_worker_mid_stream_ends_every_dispatch_once() {
    const DISPATCHES: usize = 2000;
    let env = tokio::task::block_in_place(|| webhook_env("deliver_kill"));
    let (standin, calls) = receiver().await;
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    let topics = env.topics();
    let mut ids = Vec::new();
    let mut records = Vec::new();
    // Every tenth one fails once, so kills also land around retry tiers.
    for i in 0..DISPATCHES {
        let path = if i % 10 == 0 { "flaky1" } else { "ok" };
        let dispatch = dispatch_to(&standin, path, &format!("u{}", i % 37));
        let bytes = codec.encode_dispatch(&dispatch).await.unwrap();
        records.push((dispatch.key().into_bytes(), bytes));
        ids.push(dispatch.dispatch_id);
    }
    tokio::task::block_in_place(|| {
        produce_raw_many(
            &env.kafka_config(),
            &topics.dispatch(Channel::Webhook, Lane::Bulk),
            &records,
        )
    });
    let mut worker = tokio::task::block_in_place(|| spawn_worker(&env));
    for _ in 0..3 {
        // Kill once some sends are done, and again while more are.
        let seen = calls.lock().unwrap().len();
        tokio::task::block_in_place(|| {
            wait_for("more sends", TIMEOUT, || {
                (calls.lock().unwrap().len() >= seen + DISPATCHES / 8).then_some(())
            })
        });
        tokio::task::block_in_place(|| {
            worker.kill9();
            worker = spawn_worker(&env);
        });
    }
    let terminal = |records: &[serde_json::Value]| {
        records
            .iter()
            .filter(|r| {
                matches!(
                    r["value"]["status"].as_str(),
                    Some("sent" | "dead_lettered")
                )
            })
            .filter_map(|r| r["value"]["dispatch_id"].as_str().map(str::to_owned))
            .collect::<std::collections::HashSet<_>>()
    };
    let statuses = tokio::task::block_in_place(|| {
        wait_for(
            "a terminal status for every dispatch",
            Duration::from_secs(180),
            || {
                let records = env.tail_until(&topics.status(), 1, TIMEOUT);
                (terminal(&records).len() == DISPATCHES).then_some(records)
            },
        )
    });
    let mut per_dispatch: HashMap<&str, usize> = HashMap::new();
    for record in &statuses {
        if record["value"]["status"] == "sent" || record["value"]["status"] == "dead_lettered" {
            *per_dispatch
                .entry(record["value"]["dispatch_id"].as_str().unwrap())
                .or_default() += 1;
        }
    }
    // Kafka-to-Kafka is exactly once: no dispatch has two terminal statuses.
    let doubled: Vec<_> = per_dispatch.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "{doubled:?}");
    // Provider side: each dispatch reached the receiver once (twice for the flaky ones,
    // whose first call fails); a crash between a send and its ledger mark is the only window
    // for more, so report those rather than fail on them.
    let calls = calls.lock().unwrap().clone();
    let mut duplicates = 0;
    for (i, id) in ids.iter().enumerate() {
        let expected = if i % 10 == 0 { 2 } else { 1 };
        let got = calls.get(id).copied().unwrap_or(0);
        assert!(got >= expected, "{id}: {got} calls");
        duplicates += got - expected;
    }
    eprintln!("provider-side duplicates after 3 kills: {duplicates} of {DISPATCHES}");
    assert!(
        duplicates <= 3 * 64,
        "more duplicates than sends in flight: {duplicates}"
    );
    let _ = tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(30)));
}
