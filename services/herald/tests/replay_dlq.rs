//! `herald dlq` against a running router: events dead-lettered for a template that does not
//! exist are listed, shown, and routed once the template is seeded and the DLQ redriven; events
//! that keep failing come back with a growing redrive count and stop at --max-redrives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_contracts::headers;
use herald_router::RouterConfig;
use herald_test_support::{HeraldEnv, invoice_requests};
use tokio_util::sync::CancellationToken;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(120);
const FIXED: usize = 20;
const STUCK: usize = 5;
const MAX_REDRIVES: &str = "2";

/// Invoice requests `<prefix>-<i>` rendered with `template`.
fn requests(prefix: &str, count: usize, template: &str) -> String {
    invoice_requests(prefix, 0..count, 4).replace(
        "\"template\":{\"id\":\"invoice_ready\"}",
        &format!("\"template\":{{\"id\":\"{template}\"}}"),
    )
}

/// (event id, status) → count.
fn statuses_by_event(records: &[serde_json::Value]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        let v = &r["value"];
        *counts
            .entry((
                v["event_id"].as_str().unwrap().to_owned(),
                v["status"].as_str().unwrap().to_owned(),
            ))
            .or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_routes_what_was_fixed_and_stops_what_keeps_failing() {
    let env = HeraldEnv::new(HERALD, "replay_dlq");
    env.prepare(true);
    env.seed_demo();
    let topics = env.topics();
    let (dlq, status) = (topics.dlq(), topics.status());
    let lines = format!(
        "{}\n{}",
        requests("fix", FIXED, "fixme"),
        requests("stuck", STUCK, "never")
    );
    assert!(lines.contains("\"fixme\"") && lines.contains("\"never\""));
    env.run(&["produce"], Some(&lines)).assert_code(0);

    let shutdown = CancellationToken::new();
    // Templates are cached; a short TTL lets the router see the one seeded below.
    let config = RouterConfig {
        cache_ttl: Duration::from_secs(1),
        ..RouterConfig::default()
    };
    let router = tokio::spawn(herald_router::run(env.common(), config, shutdown.clone()));
    env.tail_until(&dlq, FIXED + STUCK, WAIT);

    // list: one group, with an example whose position `show` opens.
    let groups = env.run(&["dlq", "list", "--json"], None).json();
    assert_eq!(groups.as_array().unwrap().len(), 1, "{groups}");
    let group = &groups[0];
    assert_eq!(group["stage"], "render");
    assert_eq!(group["class"], "unknown_template");
    assert_eq!(group["original_topic"], topics.requested());
    assert_eq!(group["count"], FIXED + STUCK);
    let position = group["example"]["position"].as_str().unwrap();
    let shown = env.run(&["dlq", "show", position], None).json();
    assert_eq!(shown["headers"][headers::ERROR_CLASS], "unknown_template");
    assert!(shown["value"]["event_id"].as_str().is_some(), "{shown}");
    let filtered = env
        .run(&["dlq", "list", "--json", "--class", "other"], None)
        .json();
    assert_eq!(filtered, serde_json::json!([]));
    env.run(&["dlq", "show", "9:0"], None).assert_code(2);

    // The fix: the missing template is seeded; a redrive routes those events.
    let seed = serde_json::json!({"templates": [{
        "tenant": "acme", "template_id": "fixme", "version": 1, "channel": "email",
        "locale": "default", "subject": "Fixed {{invoice.number}}", "text": "Fixed"}]});
    let seed = env.write("fix.json", &seed.to_string());
    env.run(&["seed", seed.to_str().unwrap()], None)
        .assert_code(0);
    let dry = env
        .run(
            &[
                "dlq",
                "redrive",
                "--dry-run",
                "--json",
                "--max-redrives",
                MAX_REDRIVES,
            ],
            None,
        )
        .json();
    assert_eq!(dry["written"], FIXED + STUCK, "{dry}");
    assert_eq!(
        env.read_all(&dlq).len(),
        FIXED + STUCK,
        "a dry run redrives nothing"
    );

    let mut dlq_expected = FIXED + STUCK;
    for round in 1..=4 {
        let report = env
            .run(
                &[
                    "dlq",
                    "redrive",
                    "--json",
                    "--max-redrives",
                    MAX_REDRIVES,
                    "--id",
                    &format!("round{round}"),
                ],
                None,
            )
            .json();
        // The stuck events fail again, and come back once per redrive up to the maximum.
        if round <= 2 {
            dlq_expected += STUCK;
        }
        let dlq_records = env.tail_until(&dlq, dlq_expected, WAIT);
        let left = &report["left"];
        match round {
            1 => assert!(left.as_object().unwrap().is_empty(), "{report}"),
            2 => assert_eq!(left["redriven_before"], STUCK, "{report}"),
            _ => {
                assert_eq!(left["redriven_before"], 2 * STUCK, "{report}");
                assert_eq!(left["max_redrives"], STUCK, "{report}");
            }
        }
        let counts: Vec<u64> = dlq_records
            .iter()
            .filter_map(|r| r["headers"][headers::REDRIVE_COUNT].as_str())
            .map(|c| c.parse().unwrap())
            .collect();
        assert!(counts.iter().all(|c| *c <= 2), "{counts:?}");
    }
    // A fixed event: dead-lettered, routed by the first redrive, and a duplicate in each
    // later one (it did not come back, so later redrives send it again and the dedupe ledger
    // stops it). A stuck event: dead-lettered first, then once per redrive up to the maximum.
    let expected_statuses = FIXED * 5 + STUCK * 3;
    let statuses = env.tail_until(&status, expected_statuses, WAIT);
    let by_event = statuses_by_event(&statuses);
    for i in 0..FIXED {
        let id = format!("fix-{i}");
        assert_eq!(
            by_event.get(&(id.clone(), "routed".into())),
            Some(&1),
            "{id}"
        );
        assert_eq!(
            by_event.get(&(id.clone(), "suppressed".into())),
            Some(&3),
            "{id}"
        );
    }
    for i in 0..STUCK {
        let id = format!("stuck-{i}");
        assert_eq!(
            by_event.get(&(id.clone(), "dead_lettered".into())),
            Some(&3),
            "{id}"
        );
    }
    assert_eq!(env.read_all(&dlq).len(), dlq_expected);

    shutdown.cancel();
    router.await.unwrap().unwrap();
}
