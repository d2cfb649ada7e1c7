//! Transient faults (guarantee 1, issue item 12): the database stops answering for 20 s while
//! the router works. Nothing is dead-lettered, nothing is lost or duplicated, and processing
//! resumes by itself. Its own test binary: it freezes the shared database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use herald_contracts::metric_names::ROUTER_TRANSACTIONS;
use herald_test_support::{HeraldEnv, invoice_requests};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const EVENTS: usize = 2_000;

#[test]
fn a_database_outage_pauses_routing_without_dead_letters_or_loss() {
    let env = HeraldEnv::new(HERALD, "outage");
    env.prepare(true);
    env.seed_demo();
    let topics = env.topics();

    let mut router = env.spawn(
        "router",
        &["router"],
        &[("HERALD_STORE__REQUEST_TIMEOUT", "2s")],
    );
    env.run(
        &["produce"],
        Some(&invoice_requests("outage", 0..EVENTS / 2, 100)),
    )
    .assert_code(0);
    env.tail_until(&topics.status(), 1, Duration::from_secs(60));

    {
        let _frozen = env.stack.freeze_database();
        // Events keep arriving while the database is away.
        env.run(
            &["produce"],
            Some(&invoice_requests("outage", EVENTS / 2..EVENTS, 100)),
        )
        .assert_code(0);
        std::thread::sleep(Duration::from_secs(20));
    }

    env.tail_until(&topics.status(), EVENTS, Duration::from_secs(180));
    let log = router.log_text();
    let aborted = router.metric(&format!("{ROUTER_TRANSACTIONS}{{result=\"aborted\"}}"));
    assert!(
        aborted.is_some_and(|n| n >= 1.0),
        "the outage was noticed and retried (aborted transactions: {aborted:?}):\n{log}"
    );
    assert_eq!(router.terminate(Duration::from_secs(30)), Some(0), "{log}");
    // The router has stopped: an exact read.
    let statuses = env.read_all(&topics.status());

    let ids: HashSet<&str> = statuses
        .iter()
        .map(|s| s["value"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), EVENTS, "no duplicates");
    assert_eq!(ids.len(), EVENTS, "no loss");
    assert!(statuses.iter().all(|s| s["value"]["status"] == "routed"));
    let dlq = env.run(&["tail", &topics.dlq()], None);
    dlq.assert_code(0);
    assert_eq!(dlq.stdout.trim(), "", "nothing dead-lettered");
}
