//! Transient faults (guarantee 1, issue item 12): the database stops answering for 20 s while
//! the router works. Nothing is dead-lettered, nothing is lost or duplicated, and processing
//! resumes by itself. Its own test binary: it freezes the shared database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use herald_test_support::{HeraldEnv, repo_root};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const EVENTS: usize = 2_000;

fn events(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("outage-{i}"),
                "tenant": "acme",
                "category": "billing.invoice_ready",
                "template": {"id": "invoice_ready"},
                "recipient": {"user_id": format!("u{}", i % 100), "email": "someone@example.com"},
                "channels": ["email"],
                "data": {"name": "U", "invoice": {"number": "INV", "amount": "1.00"}},
            })
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_database_outage_pauses_routing_without_dead_letters_or_loss() {
    let env = HeraldEnv::new(HERALD, "outage");
    env.prepare(true);
    let seed = repo_root().join("dev/demo/seed.json");
    env.run(&["seed", seed.to_str().unwrap()], None)
        .assert_code(0);
    let topics = env.topics();

    let mut router = env.spawn(
        "router",
        &["router"],
        &[("HERALD_STORE__REQUEST_TIMEOUT", "2s")],
    );
    env.run(&["produce"], Some(&events(0, EVENTS / 2)))
        .assert_code(0);
    env.tail_until(&topics.status(), 1, Duration::from_secs(60));

    {
        let _frozen = env.stack.freeze_database();
        // Events keep arriving while the database is away.
        env.run(&["produce"], Some(&events(EVENTS / 2, EVENTS)))
            .assert_code(0);
        std::thread::sleep(Duration::from_secs(20));
    }

    let statuses = env.tail_until(&topics.status(), EVENTS, Duration::from_secs(180));
    let log = router.log_text();
    assert!(
        log.contains("batch aborted; rewinding"),
        "the outage was noticed and retried:\n{log}"
    );
    assert_eq!(router.terminate(Duration::from_secs(30)), Some(0), "{log}");

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
