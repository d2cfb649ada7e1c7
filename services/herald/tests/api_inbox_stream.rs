//! The inbox's live streams on the real stack, across two `herald api` replicas with no load
//! balancer: two streams of ada (one on each replica) and one of bob; in-app notifications go
//! through the router and the worker; each new message and each mark reaches exactly its
//! user's streams, marks within 1 s; a stream that reconnects with `Last-Event-ID` (to the
//! other replica) gets exactly what it missed, then goes on live.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use std::time::{Duration, Instant};

use herald_runtime::metric_names::API_INBOX_STREAMS;
use herald_test_support::api::{ApiClient, ApiProcess};
use herald_test_support::inbox::{InboxEnv, news};
use herald_test_support::sse::{SseClient, SseEvent};
use herald_test_support::wait_for;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// Long enough for a notification to go through the router and the worker.
const PIPELINE: Duration = Duration::from_secs(30);
const LIVE: Duration = Duration::from_secs(1);

async fn open(api: &ApiProcess, token: &str, last: Option<&str>) -> SseClient {
    SseClient::connect(&api.url("/v1/inbox/stream"), token, last).await
}

/// Waits until `api` has `count` streams connected.
fn streams_on(api: &ApiProcess, count: usize) {
    wait_for(
        &format!("{count} inbox streams on {}", api.addr),
        Duration::from_secs(20),
        || (api.role.metric(API_INBOX_STREAMS) == Some(count as f64)).then_some(()),
    );
}

/// The next `count` events of `stream`, each within `within`.
async fn take(stream: &mut SseClient, count: usize, within: Duration) -> Vec<SseEvent> {
    let mut events = Vec::new();
    for _ in 0..count {
        let event = stream
            .next(within)
            .await
            .unwrap_or_else(|| panic!("only {events:?} within {within:?}"));
        events.push(event);
    }
    events
}

fn titles(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            assert_eq!(e.event, "message", "{e:?}");
            e.json()["title"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_exactly_their_users_streams_on_every_replica_and_resume() {
    let inbox = InboxEnv::start(HERALD, "api_inbox_stream");
    let (env, key) = (&inbox.env, &inbox.key);
    let one = env.spawn_api("api-1", &[]);
    let two = env.spawn_api("api-2", &[]);
    let client = ApiClient::new(&one);
    let ada = inbox.token(&client, "ada").await;
    let bob = inbox.token(&client, "bob").await;

    let mut ada_one = open(&one, &ada, None).await;
    let mut ada_two = open(&two, &ada, None).await;
    let mut bob_one = open(&one, &bob, None).await;
    streams_on(&one, 2);
    streams_on(&two, 1);

    // New messages: each of ada's streams gets ada's three, in order; bob's gets bob's one.
    for n in 1..=3 {
        assert_eq!(client.send(key, &news("ada", n)).await.status, 202);
    }
    assert_eq!(client.send(key, &news("bob", 1)).await.status, 202);
    let on_one = take(&mut ada_one, 3, PIPELINE).await;
    let on_two = take(&mut ada_two, 3, PIPELINE).await;
    assert_eq!(titles(&on_one), ["News 1", "News 2", "News 3"]);
    assert_eq!(titles(&on_two), titles(&on_one));
    // The same changes, under the same ids, on both replicas, at about the same time.
    for (a, b) in on_one.iter().zip(&on_two) {
        assert_eq!(a.id, b.id);
        let apart = a.received.max(b.received) - a.received.min(b.received);
        assert!(apart < LIVE, "{apart:?} between the replicas");
    }
    let bobs = take(&mut bob_one, 1, PIPELINE).await;
    assert_eq!(titles(&bobs), ["News 1"]);
    assert_eq!(bobs[0].json()["event_id"], "news-bob-1");

    // A mark made through one replica reaches ada's streams on both within a second.
    let message_id = on_one[1].json()["id"].as_str().unwrap().to_owned();
    let marked_at = Instant::now();
    let marked = client
        .call(
            Method::POST,
            "/v1/inbox/mark",
            &ada,
            Some(&serde_json::json!({"action": "read", "message_ids": [&message_id]})),
        )
        .await;
    assert_eq!(marked.status, 200, "{marked:?}");
    let mut reads = Vec::new();
    for stream in [&mut ada_one, &mut ada_two] {
        let read = take(stream, 1, LIVE).await.remove(0);
        assert_eq!(read.event, "read");
        assert_eq!(read.json()["id"], message_id.as_str());
        assert!(
            read.received - marked_at < LIVE,
            "{:?}",
            read.received - marked_at
        );
        reads.push(read);
    }
    assert_eq!(reads[0].id, reads[1].id);

    // ada's second stream drops; two messages arrive meanwhile; it reconnects to the other
    // replica with the last id it had and gets exactly those two.
    let last = reads[1].id.clone();
    drop(ada_two);
    streams_on(&two, 0);
    for n in 4..=5 {
        assert_eq!(client.send(key, &news("ada", n)).await.status, 202);
    }
    let missed_live = take(&mut ada_one, 2, PIPELINE).await;
    assert_eq!(titles(&missed_live), ["News 4", "News 5"]);
    let mut resumed = open(&one, &ada, last.as_deref()).await;
    let caught_up = take(&mut resumed, 2, LIVE).await;
    assert_eq!(titles(&caught_up), ["News 4", "News 5"]);
    let ids: Vec<_> = caught_up.iter().map(|e| e.id.clone()).collect();
    let live_ids: Vec<_> = missed_live.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, live_ids);
    // Then live, with nothing repeated: the next event is the next message.
    assert_eq!(client.send(key, &news("ada", 6)).await.status, 202);
    let next = take(&mut resumed, 1, PIPELINE).await;
    assert_eq!(titles(&next), ["News 6"]);

    // bob saw none of ada's changes: his next event is his own next message.
    assert_eq!(client.send(key, &news("bob", 2)).await.status, 202);
    let bobs_next = take(&mut bob_one, 1, PIPELINE).await;
    assert_eq!(titles(&bobs_next), ["News 2"]);

    // A position never given by this API asks the client to reload.
    let mut garbage = open(&two, &ada, Some("not-an-id")).await;
    assert_eq!(take(&mut garbage, 1, LIVE).await[0].event, "reset");
}
