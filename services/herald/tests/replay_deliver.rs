//! A DLQ redrive through a delivery worker: webhook dispatches the receiver refused (a
//! permanent failure) are dead-lettered by the worker; once the receiver is fixed, a redrive
//! sends each once, with statuses that name the redrive; a second redrive sends nothing (the
//! send ledger has them as sent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald_contracts::metric_names::DELIVER_LEDGER_HITS;
use herald_contracts::{Codec, Lane, headers};
use herald_test_support::deliver::{
    DELIVER_DEFAULTS, produce_dispatches, spawn_webhook_worker, webhook_dispatch, webhook_env,
};
use herald_test_support::standin::{Reply, StandIn};
use herald_test_support::wait_for;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(120);
const DISPATCHES: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redriven_dispatches_are_sent_once() {
    let env = webhook_env(HERALD, "replay_deliver", DELIVER_DEFAULTS);
    let fixed = Arc::new(AtomicBool::new(false));
    let receiver = {
        let fixed = fixed.clone();
        StandIn::start(move |_| {
            if fixed.load(Ordering::SeqCst) {
                Reply::status(200)
            } else {
                Reply::status(400)
            }
        })
        .await
    };
    let dispatches: Vec<_> = (0..DISPATCHES)
        .map(|i| webhook_dispatch(&receiver.url(), "hook", &format!("u{i}")))
        .collect();
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    produce_dispatches(&env, &codec, Lane::Priority, &dispatches).await;
    let worker = spawn_webhook_worker(&env, &[]);
    let topics = env.topics();
    env.tail_until(&topics.dlq(), DISPATCHES, WAIT);

    fixed.store(true, Ordering::SeqCst);
    let report = env
        .run(
            &[
                "dlq", "redrive", "--stage", "deliver", "--json", "--id", "fix",
            ],
            None,
        )
        .json();
    assert_eq!(report["written"], DISPATCHES, "{report}");
    assert_eq!(
        report["by_destination"]
            [topics.dispatch(herald_contracts::Channel::Webhook, Lane::Priority)],
        DISPATCHES
    );
    wait_for("the redriven dispatches delivered", WAIT, || {
        let delivered = receiver.requests().len() - DISPATCHES;
        (delivered >= DISPATCHES).then_some(())
    });
    let statuses = env.tail_until(&topics.status(), 2 * DISPATCHES, WAIT);
    for dispatch in &dispatches {
        let sent: Vec<&serde_json::Value> = statuses
            .iter()
            .filter(|s| {
                s["value"]["dispatch_id"] == dispatch.dispatch_id.as_str()
                    && s["value"]["status"] == "sent"
            })
            .collect();
        assert_eq!(sent.len(), 1, "{}", dispatch.dispatch_id);
        assert_eq!(sent[0]["headers"][headers::REPLAY_ID], "fix");
        assert_eq!(sent[0]["headers"][headers::REDRIVE_COUNT], "1");
    }

    // The same DLQ records again: the send ledger has them as sent.
    let again = env
        .run(
            &[
                "dlq", "redrive", "--stage", "deliver", "--json", "--id", "again",
            ],
            None,
        )
        .json();
    assert_eq!(again["written"], DISPATCHES, "{again}");
    let series = format!("{DELIVER_LEDGER_HITS}{{result=\"already_sent\"}}");
    wait_for("the second redrive found sent", WAIT, || {
        (worker.metric(&series)? >= DISPATCHES as f64).then_some(())
    });
    assert_eq!(
        receiver.requests().len(),
        2 * DISPATCHES,
        "nothing sent twice"
    );
}
