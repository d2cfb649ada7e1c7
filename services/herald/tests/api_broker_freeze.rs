//! A 202 is never lost: clients keep posting to `herald api` while the broker is frozen
//! (SIGSTOP) and thawed. Every request answered 202 is on notifications.requested, every other
//! one got 503 with `Retry-After`, and none waited past the request timeout. Its own test
//! binary: it freezes the shared broker (run it under `flock -x /tmp/herald-stack.lock`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_test_support::{HeraldEnv, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const CLIENTS: usize = 8;
/// `api.request_timeout` in this test; no answer may take longer (plus connection slack).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);

#[derive(Debug, Default)]
struct Tally {
    accepted: Mutex<Vec<String>>,
    unavailable: AtomicUsize,
    other: Mutex<Vec<String>>,
    slowest: Mutex<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_202_is_on_the_topic_through_a_broker_freeze() {
    let env = HeraldEnv::new(HERALD, "api_freeze");
    env.prepare(true);
    let key = env.create_api_key("acme", "send");
    let api = env.spawn_api(
        "api",
        &[
            ("HERALD_API__PRODUCE_TIMEOUT", "3s"),
            ("HERALD_API__REQUEST_TIMEOUT", "6s"),
        ],
    );
    let url = api.url("/v1/notifications");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, url, key, tally, stop, sent) = (
            http.clone(),
            url.clone(),
            key.clone(),
            tally.clone(),
            stop.clone(),
            sent.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let n = sent.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::json!({
                    "event_id": format!("freeze-{client}-{n}"),
                    "category": "billing.invoice_ready",
                    "template": {"id": "invoice_ready"},
                    "recipient": {"user_id": format!("u{n}"), "email": "u@example.com"},
                    "data": {"n": n},
                });
                let started = Instant::now();
                let response = http.post(&url).bearer_auth(&key).json(&body).send().await;
                let took = started.elapsed();
                {
                    let mut slowest = tally.slowest.lock().unwrap();
                    *slowest = (*slowest).max(took);
                }
                match response {
                    Ok(r) if r.status() == 202 => {
                        let answer: serde_json::Value = r.json().await.unwrap();
                        let id = answer["event_id"].as_str().unwrap().to_owned();
                        tally.accepted.lock().unwrap().push(id);
                    }
                    Ok(r) if r.status() == 503 => {
                        assert!(r.headers().contains_key("retry-after"));
                        assert_eq!(r.headers()["content-type"], "application/problem+json");
                        tally.unavailable.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => {
                        let answer = format!("{}: {}", r.status(), r.text().await.unwrap());
                        tally.other.lock().unwrap().push(answer);
                    }
                    Err(e) => tally.other.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    let accepted = |tally: &Tally| tally.accepted.lock().unwrap().len();
    let long = Duration::from_secs(60);
    wait_for("some requests accepted", long, || {
        (accepted(&tally) >= 50).then_some(())
    });
    {
        let _frozen = env.stack.freeze_broker();
        let before = accepted(&tally);
        wait_for("requests refused while the broker is frozen", long, || {
            (tally.unavailable.load(Ordering::SeqCst) >= CLIENTS).then_some(())
        });
        eprintln!(
            "frozen: {} accepted while frozen (in flight before it), {} refused",
            accepted(&tally) - before,
            tally.unavailable.load(Ordering::SeqCst)
        );
    }
    let after_thaw = accepted(&tally);
    wait_for("requests accepted again after the thaw", long, || {
        (accepted(&tally) >= after_thaw + 50).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    let other = tally.other.lock().unwrap().clone();
    assert!(
        other.is_empty(),
        "answers other than 202 and 503: {other:?}"
    );
    let slowest = *tally.slowest.lock().unwrap();
    assert!(
        slowest <= REQUEST_TIMEOUT + Duration::from_secs(1),
        "a request took {slowest:?}"
    );
    let accepted: BTreeSet<String> = tally.accepted.lock().unwrap().iter().cloned().collect();
    let on_topic: BTreeSet<String> = env
        .read_all(&env.topics().requested())
        .iter()
        .map(|r| r["value"]["event_id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = accepted.difference(&on_topic).collect();
    assert!(
        lost.is_empty(),
        "answered 202 but not on the topic: {lost:?}"
    );
    eprintln!(
        "{} accepted, {} refused with 503, slowest answer {slowest:?}",
        accepted.len(),
        tally.unavailable.load(Ordering::SeqCst)
    );
}
