//! A worker killed (SIGKILL) while a slow provider is answering, again and again: the next
//! worker takes the dead one's claims over at once (not after `ledger_lease`, set to an hour
//! here), and what happens to a dispatch the dead worker may have sent follows the channel's
//! policy: `resend` sends it again (a provider-side duplicate, counted), `report` ends it
//! `unknown(ambiguous_send)` and never calls the provider twice for one dispatch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_contracts::{Codec, Lane};
use herald_test_support::deliver::{
    produce_dispatches, spawn_webhook_worker, webhook_dispatch, webhook_env,
};
use herald_test_support::standin::{Recorded, Reply, StandIn};
use herald_test_support::wait_for;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const DISPATCHES: usize = 600;
const KILLS: usize = 5;
const IN_FLIGHT: usize = 40;

/// What one run ended with.
struct Run {
    /// Provider calls beyond one per dispatch.
    duplicates: usize,
    /// Dispatches that ended `unknown(ambiguous_send)`.
    unknown: usize,
}

async fn kill_repeatedly(name: &str, policy: &str) -> Run {
    let deliver = format!(
        "retry_delays = [\"1s\"]\nledger_lease = \"1h\"\nmax_in_flight = {IN_FLIGHT}\n\
         ambiguous_send = \"{policy}\"\ninstance_id = \"w1\"\n"
    );
    let env = tokio::task::block_in_place(|| webhook_env(HERALD, name, &deliver));
    // A slow provider: every call is received at once and answered 300 ms later, so a kill
    // lands while calls are in flight.
    let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counted = calls.clone();
    let standin = StandIn::start(move |request: &Recorded| {
        let id = request.header("webhook-id").unwrap_or_default().to_owned();
        *counted.lock().unwrap().entry(id).or_default() += 1;
        Reply::status(200).after(Duration::from_millis(300))
    })
    .await;
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    let topics = env.topics();
    let dispatches: Vec<_> = (0..DISPATCHES)
        .map(|i| webhook_dispatch(&standin.url(), "hook", &format!("u{}", i % 97)))
        .collect();
    produce_dispatches(&env, &codec, Lane::Bulk, &dispatches).await;
    let ids: Vec<String> = dispatches.into_iter().map(|d| d.dispatch_id).collect();

    let mut worker = tokio::task::block_in_place(|| spawn_webhook_worker(&env, &[]));
    for _ in 0..KILLS {
        let seen: usize = calls.lock().unwrap().values().sum();
        tokio::task::block_in_place(|| {
            wait_for("more calls", Duration::from_secs(120), || {
                let now: usize = calls.lock().unwrap().values().sum();
                (now >= seen + DISPATCHES / (2 * KILLS)).then_some(())
            });
            worker.kill9();
            worker = spawn_webhook_worker(&env, &[]);
        });
    }
    let terminal = |records: &[serde_json::Value]| -> HashMap<String, Vec<String>> {
        let mut by_dispatch: HashMap<String, Vec<String>> = HashMap::new();
        for r in records {
            let status = r["value"]["status"].as_str().unwrap_or_default();
            if matches!(status, "sent" | "dead_lettered" | "unknown") {
                by_dispatch
                    .entry(r["value"]["dispatch_id"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(status.to_owned());
            }
        }
        by_dispatch
    };
    // With an hour's lease, this finishes only if dead workers' claims are taken over at once.
    tokio::task::block_in_place(|| {
        wait_for(
            "a terminal status for every dispatch",
            Duration::from_secs(180),
            || (terminal(&env.read_all(&topics.status())).len() == DISPATCHES).then_some(()),
        )
    });
    let code = tokio::task::block_in_place(|| worker.terminate(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{}", worker.log_text());

    // Every worker has stopped: exact reads.
    let statuses = env.read_all(&topics.status());
    let by_dispatch = terminal(&statuses);
    let mut unknown = 0;
    for id in &ids {
        let ends = &by_dispatch[id];
        assert_eq!(ends.len(), 1, "{id}: one terminal state, got {ends:?}");
        unknown += usize::from(ends[0] == "unknown");
    }
    let ambiguous = statuses
        .iter()
        .filter(|r| r["value"]["status"] == "unknown")
        .all(|r| r["value"]["reason"] == "ambiguous_send");
    assert!(ambiguous);
    let calls = calls.lock().unwrap().clone();
    let mut duplicates = 0;
    for id in &ids {
        let got = calls.get(id).copied().unwrap_or(0);
        let ended = &by_dispatch[id][0];
        if ended == "sent" {
            assert!(got >= 1, "{id}: sent without a call");
        }
        duplicates += got.saturating_sub(1);
    }
    eprintln!(
        "{policy}: {KILLS} kills of a worker with up to {IN_FLIGHT} calls in flight: \
         {duplicates} provider-side duplicates, {unknown} reported unknown, of {DISPATCHES}"
    );
    Run {
        duplicates,
        unknown,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_policy_sends_again_what_a_dead_worker_may_have_sent() {
    let run = kill_repeatedly("crash_resend", "resend").await;
    assert_eq!(run.unknown, 0, "resend never reports");
    assert!(
        run.duplicates <= KILLS * IN_FLIGHT,
        "more duplicates than calls in flight at the kills: {}",
        run.duplicates
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_policy_never_calls_the_provider_twice() {
    let run = kill_repeatedly("crash_report", "report").await;
    assert_eq!(run.duplicates, 0, "a duplicate reached the provider");
    assert!(
        run.unknown <= KILLS * IN_FLIGHT,
        "more reported than calls in flight at the kills: {}",
        run.unknown
    );
}
