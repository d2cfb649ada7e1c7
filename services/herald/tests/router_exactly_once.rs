//! Guarantee 2 under crashes: the router is killed with SIGKILL at random points while it works
//! and restarted; every event still ends with exactly one routed status and one dispatch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use herald_contracts::{Channel, Lane};
use herald_test_support::{HeraldEnv, invoice_requests};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const EVENTS: usize = 10_000;
const USERS: usize = 500;
const KILLS: usize = 3;

/// A pause between 0.5 and 2.5 s that differs from run to run (no rand dependency needed).
fn random_pause(round: usize) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis(500 + (nanos / 1000 + round as u64 * 7919) % 2000)
}

fn count_by(records: &[serde_json::Value], field: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        *counts
            .entry(r["value"][field].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

#[test]
fn killing_the_router_mid_stream_loses_and_duplicates_nothing() {
    let env = HeraldEnv::new(HERALD, "eos");
    env.prepare(true);
    env.seed_demo();

    let input = env.write("events.jsonl", &invoice_requests("eos", 0..EVENTS, USERS));
    env.run(&["produce", input.to_str().unwrap()], None)
        .assert_code(0);

    let router_env = [("HERALD_ROUTER__INSTANCE_ID", "eos-1")];
    let mut router = env.spawn("router", &["router"], &router_env);
    for round in 0..KILLS {
        std::thread::sleep(random_pause(round));
        router.kill9();
        router = env.spawn("router", &["router"], &router_env);
    }

    let topics = env.topics();
    let statuses = env.tail_until(&topics.status(), EVENTS, Duration::from_secs(300));
    let dispatches = env.tail_until(
        &topics.dispatch(Channel::Email, Lane::Bulk),
        EVENTS,
        Duration::from_secs(60),
    );
    assert_eq!(
        router.terminate(Duration::from_secs(30)),
        Some(0),
        "router log:\n{}",
        router.log_text()
    );

    assert_eq!(statuses.len(), EVENTS, "no duplicate statuses");
    let per_event = count_by(&statuses, "event_id");
    assert_eq!(per_event.len(), EVENTS, "every event has a status");
    assert!(per_event.values().all(|n| *n == 1));
    assert!(statuses.iter().all(|s| s["value"]["status"] == "routed"));

    assert_eq!(dispatches.len(), EVENTS, "no duplicate dispatches");
    let per_dispatch = count_by(&dispatches, "dispatch_id");
    assert_eq!(per_dispatch.len(), EVENTS);
}
