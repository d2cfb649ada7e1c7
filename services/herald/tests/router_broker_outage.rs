//! The broker stops answering for 15 s while the router works (its transaction cannot commit,
//! its fetches and produces time out). When it comes back, the router carries on by itself:
//! every event is routed exactly once, nothing is dead-lettered; an operator's
//! `herald tail --follow` of the statuses carries on too. Its own test binary: it freezes the
//! shared broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use herald_test_support::kafka::wait_for_leaders;
use herald_test_support::{HeraldEnv, invoice_requests, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const EVENTS: usize = 2_000;

#[test]
fn a_broker_outage_pauses_routing_without_loss_or_duplicates() {
    let env = HeraldEnv::new(HERALD, "brokerdown");
    env.prepare(true);
    env.seed_demo();
    let topics = env.topics();

    let follower = env.spawn("tail", &["tail", "--follow", &topics.status()], &[]);
    let mut router = env.spawn(
        "router",
        &["router"],
        &[("HERALD_ROUTER__INSTANCE_ID", "brokerdown-1")],
    );
    env.run(
        &["produce"],
        Some(&invoice_requests("brokerdown", 0..EVENTS / 2, 100)),
    )
    .assert_code(0);
    env.tail_until(&topics.status(), 1, Duration::from_secs(60));
    // The broker stops answering while the router is still busy with these.
    env.run(
        &["produce"],
        Some(&invoice_requests(
            "brokerdown",
            EVENTS / 2..EVENTS * 3 / 4,
            100,
        )),
    )
    .assert_code(0);
    {
        let _frozen = env.stack.freeze_broker();
        std::thread::sleep(Duration::from_secs(15));
    }
    // More events once the broker is back. (A broker frozen past its controller's session
    // timeout is fenced and unfenced first, and a producer started meanwhile can be left
    // without a leader, librdkafka#5430; the local stack's session timeout is longer than this
    // freeze, so this waits only for the broker to answer again.)
    wait_for_leaders(
        &env.kafka_config(),
        &topics.requested(),
        Duration::from_secs(5),
        Duration::from_secs(120),
    );
    env.run(
        &["produce"],
        Some(&invoice_requests("brokerdown", EVENTS * 3 / 4..EVENTS, 100)),
    )
    .assert_code(0);

    env.tail_until(&topics.status(), EVENTS, Duration::from_secs(180));
    let log = router.log_text();
    assert_eq!(router.terminate(Duration::from_secs(30)), Some(0), "{log}");
    // The router has stopped: a late duplicate would be in this exact read.
    let statuses = env.read_all(&topics.status());

    let ids: HashSet<&str> = statuses
        .iter()
        .map(|s| s["value"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), EVENTS, "no loss");
    assert_eq!(statuses.len(), EVENTS, "no duplicates");
    assert!(statuses.iter().all(|s| s["value"]["status"] == "routed"));
    // The follower saw each of them once (its stdout and its log share a file).
    let followed = wait_for(
        "tail --follow to show every status",
        Duration::from_secs(60),
        || {
            let text = follower.log_text();
            let followed: Vec<String> = text
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter_map(|r| r["value"]["event_id"].as_str().map(str::to_owned))
                .collect();
            (followed.len() >= EVENTS).then_some(followed)
        },
    );
    assert_eq!(followed.len(), EVENTS, "tail --follow: no duplicates");
    assert_eq!(
        followed.iter().collect::<HashSet<_>>().len(),
        EVENTS,
        "tail --follow: every status"
    );
    let dlq = env.run(&["tail", &topics.dlq()], None);
    dlq.assert_code(0);
    assert_eq!(dlq.stdout.trim(), "", "nothing dead-lettered");
}
