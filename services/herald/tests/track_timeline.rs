//! `herald track` on the real stack: a notification routed to a webhook the receiver refuses
//! falls back to the in-app inbox, and the tracker writes every step into the timeline and one
//! row per notification into the user's index; a tracker killed with `kill -9` while
//! statuses flow and started again leaves exactly one timeline row per status record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use scylla::client::session::Session;
use std::collections::BTreeSet;
use std::time::Duration;

use herald_contracts::Codec;
use herald_contracts::metric_names::{
    TRACK_END_TO_END_SECONDS, TRACK_STATUSES, TRACK_STATUSES_WRITTEN, TRACK_UNDECODABLE,
};
use herald_store::timeline::state_rank;
use herald_test_support::api::ApiClient;
use herald_test_support::deliver::{WEBHOOK_SECRET, webhook_env};
use herald_test_support::kafka::produce_raw_many;
use herald_test_support::standin::{Reply, StandIn};
use herald_test_support::track::{
    spawn_track, status_records, status_sources_on_topic, timeline_sources, timeline_sources_once,
};
use herald_test_support::{HeraldEnv, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(60);

fn seed(hook_url: &str) -> String {
    serde_json::json!({
        "users": [{"tenant": "acme", "user_id": "lin", "time_zone": "UTC",
                   "webhooks": [{"id": "orders", "url": hook_url, "secret": WEBHOOK_SECRET}]}],
        "categories": [{"tenant": "acme", "category": "shop.hook", "channels": ["webhook"],
                        "fallback": ["inapp"]}],
        "templates": [
            {"tenant": "acme", "template_id": "receipt", "version": 1, "channel": "webhook",
             "locale": "default", "json": "{\"order\": \"{{order}}\"}"},
            {"tenant": "acme", "template_id": "receipt", "version": 1, "channel": "inapp",
             "locale": "default", "text": "order {{order}}"}
        ]
    })
    .to_string()
}

fn request(event_id: &str) -> String {
    serde_json::json!({
        "event_id": event_id, "tenant": "acme", "category": "shop.hook",
        "template": {"id": "receipt"}, "recipient": {"user_id": "lin"},
        "data": {"order": "A-1"},
    })
    .to_string()
}

/// A timeline row: (at in ms, source, dispatch id, channel, status, reason).
type Row = (i64, String, String, String, String, String);

/// The rows of `columns` of one of acme's events in `table`, as `R`.
async fn event_rows<R>(
    session: &Session,
    env: &HeraldEnv,
    table: &str,
    columns: &str,
    event_id: &str,
) -> Vec<R>
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    let cql = format!(
        "SELECT {columns} FROM {}.{table} WHERE tenant = 'acme' AND event_id = ?",
        env.name
    );
    let result = session.query_unpaged(cql, (event_id,)).await.unwrap();
    let rows = result.into_rows_result().unwrap();
    rows.rows::<R>().unwrap().map(Result::unwrap).collect()
}

async fn timeline(session: &Session, env: &HeraldEnv, event_id: &str) -> Vec<Row> {
    type Cells = (
        chrono::DateTime<chrono::Utc>,
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
    );
    let columns = "at, source, dispatch_id, channel, status, reason";
    event_rows::<Cells>(session, env, "timeline", columns, event_id)
        .await
        .into_iter()
        .map(|(at, source, dispatch, channel, status, reason)| {
            (
                at.timestamp_millis(),
                source,
                dispatch.unwrap_or_default(),
                channel.unwrap_or_default(),
                status,
                reason.unwrap_or_default(),
            )
        })
        .collect()
}

/// The latest state of `event_id`'s dispatch as the timeline API computes it: its status of
/// highest rank, of two of one rank the later.
async fn latest_state(session: &Session, env: &HeraldEnv, event_id: &str) -> String {
    type Cells = (chrono::DateTime<chrono::Utc>, String, Option<String>);
    let columns = "at, status, provider_message_id";
    let mut rows = event_rows::<Cells>(session, env, "timeline", columns, event_id).await;
    rows.sort_by_key(|(at, _, _)| *at);
    let rank = |(_, status, message): &Cells| {
        let status = herald_contracts::Status::from_symbol(status).unwrap();
        state_rank(status, message.as_deref())
    };
    // The last of the highest rank, in time order.
    let latest = rows
        .iter()
        .max_by_key(|row| rank(row))
        .expect("a timeline row");
    latest.1.clone()
}

/// lin's index rows: (event id, category), newest first.
async fn user_index(session: &Session, env: &HeraldEnv) -> Vec<(String, Option<String>)> {
    let cql = format!(
        "SELECT event_id, category FROM {}.notifications_by_user \
         WHERE tenant = 'acme' AND user_id = 'lin'",
        env.name
    );
    let result = session.query_unpaged(cql, ()).await.unwrap();
    let rows = result.into_rows_result().unwrap();
    rows.rows().unwrap().map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_is_tracked_step_by_step() {
    let env = webhook_env(HERALD, "track_flow", "instance_id = \"w1\"\n");
    let receiver = StandIn::start(|_| Reply::status(400)).await;
    let seed = env.write("seed.json", &seed(&format!("{}/hook", receiver.url())));
    env.run(&["seed", seed.to_str().unwrap()], None)
        .assert_code(0);
    let _router = env.spawn("router", &["router"], &[]);
    let _webhook = env.spawn("deliver", &["deliver", "--channel", "webhook"], &[]);
    let _inapp = env.spawn("deliver", &["deliver", "--channel", "inapp"], &[]);
    let track = spawn_track(&env);
    env.run(&["produce"], Some(&request("e1"))).assert_code(0);

    let fallback = "e1:fallback:inapp";
    // The inbox delivers what it stores: sent, then delivered.
    env.wait_for_outcome(fallback, &["delivered"]);
    let session = env.migrated_session().await;
    let steps = |rows: &[Row]| -> Vec<(String, String)> {
        rows.iter()
            .map(|r| (r.4.clone(), r.3.clone()))
            .collect::<Vec<_>>()
    };
    let origin = wait_for("the origin's timeline", WAIT, || {
        let rows = futures::executor::block_on(timeline(&session, &env, "e1"));
        (rows.len() >= 2).then_some(rows)
    });
    assert_eq!(
        steps(&origin),
        [
            ("ROUTED".to_owned(), "webhook".to_owned()),
            ("DEAD_LETTERED".to_owned(), "webhook".to_owned())
        ],
        "{origin:?}"
    );
    let derived = wait_for("the fallback's timeline", WAIT, || {
        let rows = futures::executor::block_on(timeline(&session, &env, fallback));
        (rows.len() >= 3).then_some(rows)
    });
    assert_eq!(
        steps(&derived),
        [
            ("ROUTED".to_owned(), "inapp".to_owned()),
            ("SENT".to_owned(), "inapp".to_owned()),
            ("DELIVERED".to_owned(), "inapp".to_owned())
        ],
        "{derived:?}"
    );
    assert!(origin.last().unwrap().0 <= derived.first().unwrap().0);
    // Five statuses, two notifications: one index row each, the fallback first (it shares its
    // origin's creation time and sorts before it).
    let category = Some("shop.hook".to_owned());
    assert_eq!(
        user_index(&session, &env).await,
        [
            (fallback.to_owned(), category.clone()),
            ("e1".to_owned(), category)
        ]
    );
    let written = timeline_sources(&session, &env).await;
    assert_eq!(
        written.keys().cloned().collect::<BTreeSet<_>>(),
        status_sources_on_topic(&env)
    );

    // The router and the workers put the request's category and creation time on their
    // statuses: the tracker counts them per category and times the fallback's delivery.
    for (channel, status) in [
        ("webhook", "routed"),
        ("webhook", "dead_lettered"),
        ("inapp", "routed"),
        ("inapp", "sent"),
        ("inapp", "delivered"),
    ] {
        let series = format!(
            r#"{TRACK_STATUSES}{{tenant="acme",category="shop.hook",channel="{channel}",status="{status}"}}"#
        );
        assert_eq!(track.metric(&series), Some(1.0), "{series}");
    }
    let timed =
        format!(r#"{TRACK_END_TO_END_SECONDS}_count{{channel="inapp",status="delivered"}}"#);
    assert_eq!(track.metric(&timed), Some(1.0), "{timed}");

    // The timeline API: every step in order, the fallback linked both ways.
    let key = env.create_api_key("acme", "read");
    let other = env.create_api_key("globex", "read,manage");
    let sender = env.create_api_key("acme", "send");
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);
    let get = |path: String, key: String| {
        let client = &client;
        async move { client.call(Method::GET, &path, &key, None).await }
    };
    let answer = get("/v1/notifications/e1".into(), key.clone()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let view = &answer.body;
    let statuses: Vec<&str> = view["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["routed", "dead_lettered"], "{view}");
    assert_eq!(view["dispatches"][0]["channel"], "webhook", "{view}");
    assert_eq!(view["dispatches"][0]["latest"], "dead_lettered", "{view}");
    assert_eq!(view["request"]["routed_channels"][0], "webhook", "{view}");
    assert_eq!(view["links"]["fallbacks"][0], fallback, "{view}");
    let answer = get(format!("/v1/notifications/{fallback}"), key.clone()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["links"]["origin"], "e1", "{answer:?}");
    assert_eq!(answer.body["dispatches"][0]["latest"], "delivered");
    let steps: Vec<&str> = answer.body["dispatches"][0]["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["routed", "sent", "delivered"]);
    // Another tenant's event is not found; a key without read or manage is refused.
    assert_eq!(
        get("/v1/notifications/e1".into(), other.clone())
            .await
            .status,
        404
    );
    assert_eq!(get("/v1/notifications/e1".into(), sender).await.status, 403);

    // The user's list, newest first, one page at a time, each notification once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/users/lin/notifications?limit=1&cursor={c}"),
            None => "/v1/users/lin/notifications?limit=1".to_owned(),
        };
        let page = get(path, key.clone()).await;
        assert_eq!(page.status, 200, "{page:?}");
        for n in page.body["notifications"].as_array().unwrap() {
            seen.push(n["event_id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(seen.len() <= 4, "{seen:?}");
    }
    assert_eq!(seen, [fallback, "e1"]);
    let bad = get(
        "/v1/users/lin/notifications?cursor=bm9wZQ".into(),
        key.clone(),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let empty = get("/v1/users/lin/notifications".into(), other).await;
    assert_eq!(empty.body["notifications"], serde_json::json!([]));

    // A notification routed a moment ago is visible within 2 s of its routed status.
    env.run(&["produce"], Some(&request("e2"))).assert_code(0);
    let deadline = std::time::Instant::now() + WAIT;
    let (routed_at, seen_at) = loop {
        let answer = get("/v1/notifications/e2".into(), key.clone()).await;
        if answer.status == 200 {
            let at = answer.body["statuses"][0]["at"].as_str().unwrap();
            let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
            break (at.with_timezone(&chrono::Utc), chrono::Utc::now());
        }
        assert!(std::time::Instant::now() < deadline, "e2 never visible");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delay = seen_at - routed_at;
    assert!(
        delay < chrono::Duration::seconds(2),
        "visible {delay} after it was routed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracker_leaves_one_row_per_status_record() {
    let env = HeraldEnv::new(HERALD, "track_kill");
    env.prepare(true);
    // The killed member's partitions go to the restarted one after the session timeout: the
    // broker's smallest, so the test does not wait out the default 45 s.
    env.append_config("\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n");
    let topic = env.topics().status();
    let kafka = env.kafka_config();
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    // Enough statuses that the kill lands mid-stream: the tracker reads the next batch while
    // one is written, and 300 were all written before the first poll saw a batch.
    let chunk = 2000;

    produce_raw_many(&kafka, &topic, &status_records(&codec, 0..chunk).await);
    let mut track = spawn_track(&env);
    let written = wait_for("the tracker to write a first batch", WAIT, || {
        track.metric(TRACK_STATUSES_WRITTEN).filter(|n| *n >= 1.0)
    });
    track.kill9();
    assert!(
        written < (3 * chunk) as f64,
        "killed mid-stream: {written} written"
    );
    // Statuses keep coming while it is down, and after it is back.
    produce_raw_many(
        &kafka,
        &topic,
        &status_records(&codec, chunk..2 * chunk).await,
    );
    let track = spawn_track(&env);
    produce_raw_many(
        &kafka,
        &topic,
        &[(b"acme:u1".to_vec(), b"not a status".to_vec())],
    );
    produce_raw_many(
        &kafka,
        &topic,
        &status_records(&codec, 2 * chunk..3 * chunk).await,
    );

    let on_topic = status_sources_on_topic(&env);
    assert_eq!(on_topic.len(), 9 * chunk + 1);
    let series = format!("{TRACK_UNDECODABLE}{{reason=\"undecodable\"}}");
    wait_for("the undecodable record skipped", WAIT, || {
        track.metric(&series).filter(|n| *n >= 1.0)
    });
    let session = env.migrated_session().await;
    let written = timeline_sources_once(&session, &env, 9 * chunk, WAIT).await;
    let missing: Vec<_> = on_topic.iter().filter(|s| !written.contains(*s)).collect();
    // Only the record that is not a status has no row.
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(written.iter().all(|s| on_topic.contains(s)));
    for i in [0, chunk, 3 * chunk - 1] {
        assert_eq!(
            latest_state(&session, &env, &format!("s-{i}")).await,
            "DELIVERED",
            "a late sent does not move s-{i} back"
        );
    }
}
