//! Two routers in one consumer group share the partitions; stopping one hands its partitions
//! to the other with no loss and no duplicate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use herald_test_support::{HeraldEnv, invoice_requests};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

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
    env.run(&["produce"], Some(&invoice_requests("pair", 0..3000, 300)))
        .assert_code(0);
    env.tail_until(&topics.status(), 3000, Duration::from_secs(120));

    // Both took part: the first to join gave partitions up when the second arrived.
    let both_assigned = [&first, &second]
        .iter()
        .all(|r| r.log_text().contains("partitions assigned"));
    assert!(
        both_assigned,
        "first:\n{}\nsecond:\n{}",
        first.log_text(),
        second.log_text()
    );

    assert_eq!(
        first.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        first.log_text()
    );
    env.run(
        &["produce"],
        Some(&invoice_requests("pair", 3000..5000, 300)),
    )
    .assert_code(0);
    let statuses = env.tail_until(&topics.status(), 5000, Duration::from_secs(120));
    assert_eq!(
        second.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        second.log_text()
    );

    let ids: HashSet<&str> = statuses
        .iter()
        .map(|s| s["value"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 5000, "no duplicates");
    assert_eq!(ids.len(), 5000, "no loss");
    let revoked = first.log_text().contains("partitions revoked")
        || second.log_text().contains("partitions revoked");
    assert!(revoked, "partitions moved between the two");
}
