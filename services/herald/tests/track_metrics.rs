//! `herald track`'s delivery metrics on the real stack: statuses produced to
//! notifications.status move the counter of their (tenant, category, channel, status) and the
//! end-to-end latency histogram of their channel, as the tracker's `/metrics` shows them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use std::time::Duration;

use herald_contracts::metric_names::{TRACK_END_TO_END_SECONDS, TRACK_STATUSES};
use herald_contracts::{Channel, Codec, Status, StatusEvent};
use herald_test_support::kafka::produce_raw_many;
use herald_test_support::{HeraldEnv, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(60);

/// One dispatch's status of `tenant`, written 2.5 s after the request was made.
fn status(
    tenant: &str,
    category: Option<&str>,
    channel: Option<Channel>,
    status: Status,
    i: usize,
) -> StatusEvent {
    let created_at = Utc.timestamp_millis_opt(1_800_000_000_000).unwrap();
    StatusEvent {
        event_id: format!("m-{i}"),
        dispatch_id: channel.map(|c| format!("m-{i}:{c}")),
        tenant: tenant.into(),
        user_id: format!("u{}", i % 3),
        channel,
        status,
        at: created_at + chrono::Duration::milliseconds(2_500),
        category: category.map(str::to_owned),
        created_at: Some(created_at),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_move_the_trackers_counters_and_latency() {
    let env = HeraldEnv::new(HERALD, "track_metrics");
    env.prepare(true);
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    let billing = Some("billing.invoice_ready");
    let email = Some(Channel::Email);
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(status("acme", billing, email, Status::Routed, i));
        statuses.push(status("acme", billing, email, Status::Sent, i));
    }
    for i in 0..2 {
        statuses.push(status("acme", billing, email, Status::Delivered, i));
    }
    statuses.push(status("acme", billing, email, Status::Opened, 0));
    statuses.push(status("acme", billing, email, Status::Clicked, 0));
    statuses.push(status("acme", billing, email, Status::DeadLettered, 3));
    statuses.push(status(
        "globex",
        Some("shop.order"),
        Some(Channel::Sms),
        Status::Sent,
        4,
    ));
    // From a writer that knew no category; about the event as a whole (no channel).
    statuses.push(status("acme", None, email, Status::Failed, 5));
    statuses.push(status("acme", billing, None, Status::Scheduled, 6));
    let mut records = Vec::new();
    for s in &statuses {
        records.push((s.key().into_bytes(), codec.encode_status(s).await.unwrap()));
    }
    produce_raw_many(&env.kafka_config(), &env.topics().status(), &records);

    let track = env.spawn(
        "track",
        &["track"],
        &[("HERALD_TELEMETRY__LOG_LEVEL", "warn,herald_track=info")],
    );
    let counter = |tenant: &str, category: &str, channel: &str, status: &str| {
        format!(
            r#"{TRACK_STATUSES}{{tenant="{tenant}",category="{category}",channel="{channel}",status="{status}"}}"#
        )
    };
    let mut expected: Vec<(String, f64)> = [
        ("routed", 3.0),
        ("sent", 3.0),
        ("delivered", 2.0),
        ("opened", 1.0),
        ("clicked", 1.0),
        ("dead_lettered", 1.0),
    ]
    .into_iter()
    .map(|(status, n)| (counter("acme", "billing.invoice_ready", "email", status), n))
    .collect();
    expected.extend([
        (counter("globex", "shop.order", "sms", "sent"), 1.0),
        (counter("acme", "unknown", "email", "failed"), 1.0),
        (
            counter("acme", "billing.invoice_ready", "none", "scheduled"),
            1.0,
        ),
    ]);
    // Counters only grow: each waits for its value, then must not have passed it.
    for (series, value) in &expected {
        let found = wait_for(&format!("{series} to reach {value}"), WAIT, || {
            track.metric(series).filter(|n| n >= value)
        });
        assert_eq!(found, *value, "{series}");
    }
    assert_eq!(track.metric(TRACK_STATUSES), Some(statuses.len() as f64));

    // 2.5 s from creation: in the 2.5 s bucket, not in the 1 s one; opened is not timed.
    let latency = |suffix: &str, labels: &str| {
        track.metric(&format!("{TRACK_END_TO_END_SECONDS}_{suffix}{{{labels}}}"))
    };
    let email_sent = r#"channel="email",status="sent""#;
    assert_eq!(latency("count", email_sent), Some(3.0));
    assert_eq!(latency("sum", email_sent), Some(7.5));
    assert_eq!(
        latency("bucket", &format!(r#"{email_sent},le="1""#)),
        Some(0.0)
    );
    assert_eq!(
        latency("bucket", &format!(r#"{email_sent},le="2.5""#)),
        Some(3.0)
    );
    assert_eq!(
        latency("count", r#"channel="email",status="delivered""#),
        Some(2.0)
    );
    assert_eq!(
        latency("count", r#"channel="sms",status="sent""#),
        Some(1.0)
    );
    assert_eq!(latency("count", r#"channel="email",status="opened""#), None);
}
