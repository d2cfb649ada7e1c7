//! Recover and resend through a running router (guarantee 7). 2,000 events were meant for the
//! router; it saw 1,500 of them, the other 500 only reached a side topic (a simulated loss).
//! A `recover` replay of the side topic routes exactly the 500 it never saw and none of the
//! 1,500 again; a `resend` replay routes all 2,000 again under derived ids, once: resuming it,
//! or replaying its copies, routes nothing more.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_contracts::headers;
use herald_router::RouterConfig;
use herald_test_support::kafka::create_topic;
use herald_test_support::{HeraldEnv, TEST_PARTITIONS, invoice_requests};
use tokio_util::sync::CancellationToken;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(180);
const EVENTS: usize = 2_000;
const SEEN: usize = 1_500;

/// (event id, status, reason) → how many statuses say so.
fn tally(statuses: &[serde_json::Value]) -> BTreeMap<(String, String, String), usize> {
    let mut counts = BTreeMap::new();
    for s in statuses {
        let v = &s["value"];
        let text = |f: &str| v[f].as_str().unwrap_or("").to_owned();
        *counts
            .entry((text("event_id"), text("status"), text("reason")))
            .or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_routes_only_the_lost_and_resend_routes_everything_once() {
    let env = HeraldEnv::new(HERALD, "replay_modes");
    env.prepare(true);
    env.seed_demo();
    let kafka = env.kafka_config();
    let topics = env.topics();
    let side = format!("{}.side", env.name);
    create_topic(&kafka, &side, TEST_PARTITIONS).await;
    env.run(&["produce"], Some(&invoice_requests("ev", 0..SEEN, 100)))
        .assert_code(0);
    env.run(
        &["produce", "--topic", &side],
        Some(&invoice_requests("ev", 0..EVENTS, 100)),
    )
    .assert_code(0);

    let shutdown = CancellationToken::new();
    let router = tokio::spawn(herald_router::run(
        env.common(),
        RouterConfig::default(),
        shutdown.clone(),
    ));
    let status = topics.status();
    env.tail_until(&status, SEEN, WAIT);

    // Recover: the 500 the router never saw are routed; the 1,500 are duplicates.
    let recover = env
        .run(
            &[
                "replay",
                "--topic",
                &side,
                "--into",
                "notifications.requested",
                "--from",
                "earliest",
                "--mode",
                "recover",
                "--id",
                "rec",
                "--json",
            ],
            None,
        )
        .json();
    assert_eq!(recover["written"], EVENTS);
    let statuses = env.tail_until(&status, SEEN + EVENTS, WAIT);
    let counts = tally(&statuses);
    for i in 0..EVENTS {
        let id = format!("ev-{i}");
        let routed = counts
            .get(&(id.clone(), "routed".into(), String::new()))
            .copied();
        assert_eq!(routed, Some(1), "{id} routed once");
        let duplicate = counts
            .get(&(id.clone(), "suppressed".into(), "duplicate".into()))
            .copied();
        assert_eq!(duplicate, (i < SEEN).then_some(1), "{id}");
    }
    // The statuses of replayed events name the replay.
    let from_replay = statuses
        .iter()
        .filter(|s| s["headers"][headers::REPLAY_ID] == "rec")
        .count();
    assert_eq!(from_replay, EVENTS);

    // Resend: everything again, under derived ids.
    let resend = env
        .run(
            &[
                "replay",
                "--topic",
                &side,
                "--into",
                "notifications.requested",
                "--from",
                "earliest",
                "--mode",
                "resend",
                "--yes",
                "--id",
                "res",
                "--json",
            ],
            None,
        )
        .json();
    assert_eq!(resend["written"], EVENTS);
    let statuses = env.tail_until(&status, SEEN + 2 * EVENTS, WAIT);
    let counts = tally(&statuses);
    for i in 0..EVENTS {
        let id = format!("ev-{i}:replay:res");
        assert_eq!(
            counts.get(&(id.clone(), "routed".into(), String::new())),
            Some(&1),
            "{id}"
        );
    }

    // The same resend again: resuming it copies nothing, and replaying its copies (the ids
    // already derived) only finds duplicates.
    let again = env
        .run(&["replay", "--resume", "res", "--json"], None)
        .json();
    assert_eq!(again["written"], 0, "{again}");
    let copies = env
        .run(
            &[
                "replay",
                "--topic",
                "notifications.requested",
                "--from",
                "earliest",
                "--mode",
                "recover",
                "--json",
                "--id",
                "copies",
                "--tenant",
                "acme",
                "--event-ids-file",
                env.write(
                    "resent.txt",
                    &(0..EVENTS)
                        .map(|i| format!("ev-{i}:replay:res\n"))
                        .collect::<String>(),
                )
                .to_str()
                .unwrap(),
            ],
            None,
        )
        .json();
    assert_eq!(copies["written"], EVENTS);
    let statuses = env.tail_until(&status, SEEN + 3 * EVENTS, WAIT);
    let counts = tally(&statuses);
    let routed: usize = counts
        .iter()
        .filter(|((_, status, _), _)| status == "routed")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(routed, 2 * EVENTS, "nothing routed twice");
    let dispatches = env.read_all(&topics.dispatch(
        herald_contracts::Channel::Email,
        herald_contracts::Lane::Bulk,
    ));
    assert_eq!(dispatches.len(), 2 * EVENTS);
    assert_eq!(statuses.len(), SEEN + 3 * EVENTS, "no status beyond these");

    shutdown.cancel();
    router.await.unwrap().unwrap();
}
