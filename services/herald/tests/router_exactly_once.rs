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
const DEFER_EVERY: usize = 10;
const DEFERRED: usize = EVENTS / DEFER_EVERY;

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

    // Every tenth event is deferred to a send-at spread over the seconds the kills happen in,
    // so the router also dies while deferring and while its scheduler releases.
    let start = chrono::Utc::now();
    let lines: Vec<String> = invoice_requests("eos", 0..EVENTS, USERS)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i % DEFER_EVERY != 0 {
                return line.to_owned();
            }
            let mut request: serde_json::Value = serde_json::from_str(line).unwrap();
            let delay = chrono::TimeDelta::milliseconds(3_000 + (i as i64 * 7) % 10_000);
            request["send_at"] = (start + delay).to_rfc3339().into();
            // Created before its send-at however long producing takes.
            request["created_at"] = start.to_rfc3339().into();
            request.to_string()
        })
        .collect();
    let input = env.write("events.jsonl", &lines.join("\n"));
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
    env.tail_until(
        &topics.status(),
        EVENTS + DEFERRED,
        Duration::from_secs(300),
    );
    env.tail_until(
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
    // The router has stopped: exact reads, with any late duplicate in them.
    let statuses = env.read_all(&topics.status());
    let dispatches = env.read_all(&topics.dispatch(Channel::Email, Lane::Bulk));

    assert_eq!(statuses.len(), EVENTS + DEFERRED, "no duplicate statuses");
    let of = |status: &str| -> Vec<serde_json::Value> {
        statuses
            .iter()
            .filter(|s| s["value"]["status"] == status)
            .cloned()
            .collect()
    };
    let routed = count_by(&of("routed"), "event_id");
    assert_eq!(routed.len(), EVENTS, "every event is routed");
    assert!(routed.values().all(|n| *n == 1), "each event routed once");
    let scheduled = count_by(&of("scheduled"), "event_id");
    assert_eq!(
        scheduled.len(),
        DEFERRED,
        "every deferred event is scheduled"
    );
    assert!(scheduled.values().all(|n| *n == 1), "each scheduled once");
    assert!(
        scheduled.keys().all(
            |id| id.strip_prefix("eos-").unwrap().parse::<usize>().unwrap() % DEFER_EVERY == 0
        )
    );

    assert_eq!(dispatches.len(), EVENTS, "no duplicate dispatches");
    let per_dispatch = count_by(&dispatches, "dispatch_id");
    assert_eq!(per_dispatch.len(), EVENTS);
}
