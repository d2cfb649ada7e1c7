//! The broker stops answering for longer than the consumers' group session (45 s) while a
//! router and two delivery workers (webhook, in-app) are busy. When it answers again, every
//! consumer finds its group again, by itself or by being rebuilt, and every dispatch ends
//! `sent` exactly once, with no process restarted; readiness is false while a role cannot make
//! progress. Its own test binary: it freezes the shared broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use herald_contracts::metric_names::DEPENDENCY_UP;
use herald_test_support::deliver::{DELIVER_DEFAULTS, WEBHOOK_SECRET, webhook_env};
use herald_test_support::kafka::wait_for_leaders;
use herald_test_support::standin::{Reply, StandIn};
use herald_test_support::{HeraldEnv, RoleProcess, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const ROUND: usize = 200;
/// Longer than librdkafka's default group session timeout (45 s).
const FREEZE: Duration = Duration::from_secs(50);

fn requests(range: std::ops::Range<usize>) -> String {
    range
        .map(|i| {
            serde_json::json!({
                "event_id": format!("freeze-{i}"),
                "tenant": "acme",
                "category": "orders.shipped",
                "template": {"id": "order_shipped"},
                "recipient": {"user_id": format!("w{}", i % 20)},
                "data": {"order": format!("O-{i}"), "carrier": "Post"},
            })
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn seed(env: &HeraldEnv, hooks: &str) {
    let users: Vec<serde_json::Value> = (0..20)
        .map(|u| {
            serde_json::json!({
                "tenant": "acme", "user_id": format!("w{u}"), "locale": "en", "time_zone": "UTC",
                "webhooks": [{"id": "main", "url": format!("{hooks}/w{u}"), "secret": WEBHOOK_SECRET}],
            })
        })
        .collect();
    let demo: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(herald_test_support::repo_root().join("dev/demo/seed.json"))
            .unwrap(),
    )
    .unwrap();
    let seed = serde_json::json!({
        "users": users,
        "categories": demo["categories"],
        "templates": demo["templates"],
    });
    let path = env.write("seed.json", &seed.to_string());
    env.run(&["seed", path.to_str().unwrap()], None)
        .assert_code(0);
}

fn all_ready(roles: &[&RoleProcess]) -> bool {
    roles.iter().all(|r| r.ready() == Some(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_find_their_group_again_after_a_long_broker_freeze() {
    let standin = StandIn::start(|_| Reply::status(200)).await;
    let env = tokio::task::block_in_place(|| {
        let env = webhook_env(HERALD, "freeze_group", DELIVER_DEFAULTS);
        seed(&env, &format!("{}/hooks", standin.url()));
        env
    });
    let topics = env.topics();
    let mut router = env.spawn(
        "router",
        &["router"],
        &[("HERALD_ROUTER__INSTANCE_ID", "r1")],
    );
    let mut webhook = env.spawn("webhook", &["deliver", "--channel", "webhook"], &[]);
    let mut inapp = env.spawn("inapp", &["deliver", "--channel", "inapp"], &[]);
    let roles = [&router, &webhook, &inapp];
    tokio::task::block_in_place(|| {
        wait_for("every role ready", Duration::from_secs(60), || {
            all_ready(&roles).then_some(())
        });
        env.run(&["produce"], Some(&requests(0..ROUND)))
            .assert_code(0);
        env.tail_until(&topics.status(), ROUND, Duration::from_secs(120));
        env.run(&["produce"], Some(&requests(ROUND..2 * ROUND)))
            .assert_code(0);
        {
            let _frozen = env.stack.freeze_broker();
            wait_for("every role unready", Duration::from_secs(15), || {
                roles.iter().all(|r| r.ready() == Some(false)).then_some(())
            });
            std::thread::sleep(FREEZE);
        }
        wait_for_leaders(
            &env.kafka_config(),
            &topics.requested(),
            Duration::from_secs(5),
            Duration::from_secs(120),
        );
        env.run(&["produce"], Some(&requests(2 * ROUND..3 * ROUND)))
            .assert_code(0);
    });

    // Two dispatches per event (webhook, in-app), each ending `sent`, without a restart.
    let events = 3 * ROUND;
    let sent = |records: &[serde_json::Value]| {
        records
            .iter()
            .filter(|r| r["value"]["status"] == "sent")
            .count()
    };
    tokio::task::block_in_place(|| {
        wait_for("every dispatch sent", Duration::from_secs(300), || {
            let records = env.read_all(&topics.status());
            (sent(&records) >= 2 * events).then_some(())
        });
        wait_for("every role ready again", Duration::from_secs(30), || {
            all_ready(&roles).then_some(())
        });
    });
    for role in &roles {
        assert_eq!(
            role.metric(&format!("{DEPENDENCY_UP}{{dependency=\"kafka\"}}")),
            Some(1.0)
        );
    }
    for role in [&mut router, &mut webhook, &mut inapp] {
        let code = tokio::task::block_in_place(|| role.terminate(Duration::from_secs(60)));
        assert_eq!(code, Some(0), "{}", role.log_text());
    }

    // Everything stopped: exact reads. One `sent` per dispatch.
    let statuses = tokio::task::block_in_place(|| env.read_all(&topics.status()));
    let mut per_dispatch: HashMap<String, usize> = HashMap::new();
    for r in statuses.iter().filter(|r| r["value"]["status"] == "sent") {
        *per_dispatch
            .entry(r["value"]["dispatch_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_dispatch.len(), 2 * events, "every dispatch sent");
    let doubled: Vec<_> = per_dispatch.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "sent twice: {doubled:?}");
}
