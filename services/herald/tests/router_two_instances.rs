//! Two routers in one consumer group share the partitions; stopping one hands its partitions
//! to the other with no loss and no duplicate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use herald_contracts::metric_names::CONSUMER_ASSIGNED_PARTITIONS;
use herald_test_support::{HeraldEnv, RoleProcess, TEST_PARTITIONS, invoice_requests, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// Partitions each router says it owns, once they add up to the topic's and `ok` holds.
fn wait_for_assignment(routers: &[&RoleProcess], what: &str, ok: impl Fn(&[f64]) -> bool) {
    wait_for(what, Duration::from_secs(120), || {
        let owned: Option<Vec<f64>> = routers
            .iter()
            .map(|r| r.metric(CONSUMER_ASSIGNED_PARTITIONS))
            .collect();
        let owned = owned?;
        (owned.iter().sum::<f64>() == f64::from(TEST_PARTITIONS) && ok(&owned)).then_some(())
    });
}

#[test]
fn two_routers_share_partitions_and_hand_them_over_on_stop() {
    let env = HeraldEnv::new(HERALD, "pair");
    env.prepare(true);
    env.seed_demo();
    let topics = env.topics();

    let mut first = env.spawn(
        "first",
        &["router"],
        &[("HERALD_ROUTER__INSTANCE_ID", "first")],
    );
    let mut second = env.spawn(
        "second",
        &["router"],
        &[("HERALD_ROUTER__INSTANCE_ID", "second")],
    );
    // Both take part: the group has settled with partitions on each before anything is sent.
    wait_for_assignment(
        &[&first, &second],
        "both routers to own partitions",
        |owned| owned.iter().all(|n| *n >= 1.0),
    );
    env.run(&["produce"], Some(&invoice_requests("pair", 0..3000, 300)))
        .assert_code(0);
    env.tail_until(&topics.status(), 3000, Duration::from_secs(120));

    assert_eq!(
        first.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        first.log_text()
    );
    // The first one's partitions moved to the second.
    wait_for_assignment(
        &[&second],
        "the second router to own every partition",
        |_| true,
    );
    env.run(
        &["produce"],
        Some(&invoice_requests("pair", 3000..5000, 300)),
    )
    .assert_code(0);
    env.tail_until(&topics.status(), 5000, Duration::from_secs(120));
    assert_eq!(
        second.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        second.log_text()
    );

    // Both stopped: an exact read.
    let statuses = env.read_all(&topics.status());
    let ids: HashSet<&str> = statuses
        .iter()
        .map(|s| s["value"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 5000, "no duplicates");
    assert_eq!(ids.len(), 5000, "no loss");
}
