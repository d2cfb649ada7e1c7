//! Defects found in review, each shown against the real stack: template versions resolved per
//! channel, a re-seeded template going live, the locale a dispatch reports, a `dead_lettered`
//! status for every poison event that can be named, the record key checked against the
//! recipient, the configured `data` limit, channel overrides that narrow and never widen, and
//! frequency caps counted in the window an event is released in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_contracts::metric_names::ROUTER_UNIDENTIFIED_DEAD_LETTERS;
use herald_contracts::{Channel, Codec, Lane, NotificationRequest, headers};
use herald_router::RouterConfig;
use herald_test_support::kafka::produce_raw;
use herald_test_support::{HeraldEnv, Outcome, metric_value, outcome, outcomes_by_event, wait_for};
use tokio_util::sync::CancellationToken;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(90);

const SEED: &str = r#"{
  "users": [
    {"tenant": "acme", "user_id": "lin", "email": "lin@example.com", "phone": "+14155550111",
     "locale": "fr-CA", "time_zone": "UTC", "quiet_hours": {"start": "22:00", "end": "07:00"},
     "webhooks": [
       {"id": "orders", "url": "https://a.example.com/hook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
       {"id": "audit", "url": "https://b.example.com/hook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
       {"id": "old", "url": "https://c.example.com/hook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "enabled": false}
     ]}
  ],
  "categories": [
    {"tenant": "acme", "category": "shop.receipt", "channels": ["email", "sms"]},
    {"tenant": "acme", "category": "shop.hook", "channels": ["webhook"]},
    {"tenant": "acme", "category": "shop.alert", "channels": ["inapp"], "fallback": ["email", "sms"]},
    {"tenant": "acme", "category": "social.ping", "channels": ["inapp"],
     "rate_limit": {"count": 2, "window": "1h"}}
  ],
  "templates": [
    {"tenant": "acme", "template_id": "receipt", "version": 1, "channel": "email", "locale": "default",
     "subject": "Receipt {{order}}", "text": "v1 {{order}}"},
    {"tenant": "acme", "template_id": "receipt", "version": 1, "channel": "email", "locale": "fr",
     "subject": "Reçu {{order}}", "text": "v1 fr {{order}}"},
    {"tenant": "acme", "template_id": "receipt", "version": 1, "channel": "sms", "locale": "default",
     "text": "SMS v1 {{order}}"},
    {"tenant": "acme", "template_id": "receipt", "version": 2, "channel": "email", "locale": "default",
     "subject": "Receipt v2 {{order}}", "text": "v2 {{order}}"},
    {"tenant": "acme", "template_id": "receipt", "version": 2, "channel": "email", "locale": "fr",
     "subject": "Reçu v2 {{order}}", "text": "v2 fr {{order}}"},
    {"tenant": "acme", "template_id": "receipt", "version": 1, "channel": "webhook", "locale": "default",
     "json": "{\"order\": \"{{order}}\"}"},
    {"tenant": "acme", "template_id": "ping", "version": 1, "channel": "inapp", "locale": "default",
     "text": "ping {{order}}"}
  ]
}"#;

/// A request for lin, created at noon UTC (outside her quiet hours) unless changed.
fn request(event_id: &str, category: &str, template: &str) -> serde_json::Value {
    serde_json::json!({
        "created_at": "2026-06-15T12:00:00Z",
        "event_id": event_id,
        "tenant": "acme",
        "category": category,
        "template": {"id": template},
        "recipient": {"user_id": "lin"},
        "data": {"order": "A-1"},
    })
}

fn parse(json: &serde_json::Value) -> NotificationRequest {
    NotificationRequest::from_json(&json.to_string()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_defects_are_fixed_against_the_real_stack() {
    let env = HeraldEnv::new(HERALD, "correct");
    env.prepare(true);
    let seed = env.write("seed.json", SEED);
    env.run(&["seed", seed.to_str().unwrap()], None)
        .assert_code(0);
    let topics = env.topics();
    let kafka = env.kafka_config();
    let codec = Codec::new(&env.registry_config(), topics.clone()).unwrap();

    // `herald produce` refuses data over the configured limit, naming the setting.
    let mut big = request("too-big", "shop.receipt", "receipt");
    big["data"] = serde_json::json!({"blob": "x".repeat(2_000)});
    let refused = run_with_limit(&env, &big.to_string(), "1000");
    refused.assert_code(3);
    assert!(
        refused
            .stderr
            .contains("the limit is 1000 (router.max_data_bytes)"),
        "{}",
        refused.stderr
    );

    let mut missing_var = request("render-error", "shop.receipt", "receipt");
    missing_var["data"] = serde_json::json!({});
    let mut narrowed = request("override-narrow", "shop.receipt", "receipt");
    narrowed["channels"] = serde_json::json!(["push", "email"]);
    // Three pings created in three different hours of lin's quiet hours, all released when
    // they end (07:00): the cap of 2 per hour applies to the hour they are released in.
    let ping = |id: &str, created_at: &str| {
        let mut r = request(id, "social.ping", "ping");
        r["created_at"] = created_at.into();
        r
    };
    let lines = [
        request("per-channel", "shop.receipt", "receipt"),
        request("two-hooks", "shop.hook", "receipt"),
        request("no-template", "shop.receipt", "nope"),
        missing_var,
        narrowed,
        ping("capped-1", "2026-06-15T22:10:00Z"),
        ping("capped-2", "2026-06-15T23:10:00Z"),
        ping("capped-3", "2026-06-16T00:10:00Z"),
    ]
    .iter()
    .map(|l| l.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    env.run(&["produce"], Some(&lines)).assert_code(0);

    // What `herald produce` would refuse, written by a producer of its own.
    let requested = topics.requested();
    produce_raw(&kafka, &requested, b"acme:lin", b"\x00garbage", &[]);
    let mut invalid = parse(&request("invalid-field", "shop.receipt", "receipt"));
    invalid.category = "Not A Category".into();
    let invalid = codec.encode_request(&invalid).await.unwrap();
    produce_raw(&kafka, &requested, b"acme:lin", &invalid, &[]);
    let wrong_key = parse(&request("wrong-key", "shop.receipt", "receipt"));
    let wrong_key = codec.encode_request(&wrong_key).await.unwrap();
    produce_raw(&kafka, &requested, b"acme:someone-else", &wrong_key, &[]);
    // The last step of a fallback chain (inapp, then email failed; SMS is the last), created
    // in quiet hours: deferred, then released with its chain, so it does not fall back to
    // email again as the category's chain would have it.
    let mut last_step = request(
        "alert-1:fallback:email:fallback:sms",
        "shop.alert",
        "receipt",
    );
    last_step["created_at"] = "2026-06-15T23:30:00Z".into();
    last_step["channels"] = serde_json::json!(["sms"]);
    let last_step = codec.encode_request(&parse(&last_step)).await.unwrap();
    produce_raw(
        &kafka,
        &requested,
        b"acme:lin",
        &last_step,
        &[(headers::FALLBACK_CHAIN, "")],
    );
    let mut big = parse(&request("too-big", "shop.receipt", "receipt"));
    big.data = serde_json::json!({"blob": "x".repeat(200 * 1024)});
    let big = codec.encode_request(&big).await.unwrap();
    produce_raw(&kafka, &requested, b"acme:lin", &big, &[]);

    let config = RouterConfig {
        cache_ttl: Duration::from_secs(1),
        scheduler_interval: Duration::from_millis(200),
        ..RouterConfig::default()
    };
    let shutdown = CancellationToken::new();
    let router = tokio::spawn(herald_router::run(env.common(), config, shutdown.clone()));

    const EXPECTED_STATUSES: usize = 19;
    env.tail_until(&topics.status(), EXPECTED_STATUSES, WAIT);
    env.tail_until(&topics.dlq(), 6, WAIT);
    let email = Channel::Email;
    let email_topic = topics.dispatch(email, Lane::Bulk);

    // A template body seeded again under the same version is live within the cache TTL.
    let reseed = SEED.replace("Reçu v2 {{order}}", "Reçu v2 bis {{order}}");
    let reseed = env.write("reseed.json", &reseed);
    env.run(&["seed", reseed.to_str().unwrap()], None)
        .assert_code(0);
    let reseeded_at = std::time::Instant::now();
    let mut attempt = 0;
    let subject = wait_for("the re-seeded subject", WAIT, || {
        attempt += 1;
        let id = format!("reseed-{attempt}");
        let mut r = request(&id, "shop.receipt", "receipt");
        r["channels"] = serde_json::json!(["email"]);
        env.run(&["produce"], Some(&r.to_string())).assert_code(0);
        let subject = wait_for(&format!("{id}'s dispatch"), WAIT, || {
            env.read_all(&email_topic)
                .into_iter()
                .find(|d| d["value"]["event_id"] == id.as_str())
                .map(|d| {
                    d["value"]["content"]["subject"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
        });
        subject.contains("bis").then_some(subject)
    });
    assert_eq!(subject, "Reçu v2 bis A-1");
    assert!(
        reseeded_at.elapsed() < Duration::from_secs(30),
        "the new body took {:?}",
        reseeded_at.elapsed()
    );

    shutdown.cancel();
    router.await.unwrap().unwrap();

    // Every router is stopped: exact reads from here on.
    let status_records = env.read_all(&topics.status());
    let mut by_event = outcomes_by_event(&status_records);
    by_event.retain(|id, _| !id.starts_with("reseed-"));
    let expected: BTreeMap<String, Vec<Outcome>> = [
        (
            "per-channel",
            vec![outcome("routed", "email", ""), outcome("routed", "sms", "")],
        ),
        (
            "two-hooks",
            vec![
                outcome("routed", "webhook", ""),
                outcome("routed", "webhook", ""),
            ],
        ),
        (
            "no-template",
            vec![outcome("dead_lettered", "", "unknown_template")],
        ),
        (
            "render-error",
            vec![outcome("dead_lettered", "", "render_error")],
        ),
        (
            "override-narrow",
            vec![
                outcome("routed", "email", ""),
                outcome("suppressed", "push", "not_allowed"),
            ],
        ),
        (
            "invalid-field",
            vec![outcome("dead_lettered", "", "invalid_field")],
        ),
        (
            "wrong-key",
            vec![outcome("dead_lettered", "", "key_mismatch")],
        ),
        (
            "too-big",
            vec![outcome("dead_lettered", "", "data_too_large")],
        ),
        (
            "alert-1:fallback:email:fallback:sms",
            vec![
                outcome("routed", "sms", ""),
                outcome("scheduled", "", "quiet_hours"),
            ],
        ),
    ]
    .into_iter()
    .map(|(k, mut v)| {
        v.sort();
        (k.to_owned(), v)
    })
    .collect();
    let capped: Vec<(String, Vec<Outcome>)> = by_event
        .iter()
        .filter(|(id, _)| id.starts_with("capped-"))
        .map(|(id, v)| (id.clone(), v.clone()))
        .collect();
    by_event.retain(|id, _| !id.starts_with("capped-"));
    assert_eq!(by_event, expected);
    // The pings: each scheduled, then two routed and one over the cap.
    assert_eq!(capped.len(), 3);
    let mut outcomes: Vec<Outcome> = Vec::new();
    for (id, list) in &capped {
        assert!(
            list.contains(&outcome("scheduled", "", "quiet_hours")),
            "{id}: {list:?}"
        );
        assert_eq!(list.len(), 2, "{id}: {list:?}");
        outcomes.extend(list.iter().filter(|l| l.0 != "scheduled").cloned());
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        vec![
            outcome("routed", "inapp", ""),
            outcome("routed", "inapp", ""),
            outcome("suppressed", "inapp", "rate_limited"),
        ]
    );
    let reseeds = status_records
        .iter()
        .filter(|r| {
            r["value"]["event_id"]
                .as_str()
                .unwrap()
                .starts_with("reseed-")
        })
        .count();
    assert_eq!(
        status_records.len(),
        EXPECTED_STATUSES + reseeds,
        "no status beyond the expected ones"
    );

    // Each poison record is on the DLQ once, with its class; the garbage one names no event,
    // so it has no status and is counted instead.
    let dlq = env.read_all(&topics.dlq());
    let mut classes: Vec<String> = dlq
        .iter()
        .map(|r| {
            r["headers"][headers::ERROR_CLASS]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    classes.sort();
    assert_eq!(
        classes,
        [
            "data_too_large",
            "invalid_field",
            "key_mismatch",
            "render_error",
            "undecodable",
            "unknown_template"
        ]
    );
    let metrics = herald_runtime::admin::metrics_handle("router")
        .unwrap()
        .render();
    assert_eq!(
        metric_value(
            &metrics,
            &format!("{ROUTER_UNIDENTIFIED_DEAD_LETTERS}{{class=\"undecodable\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );

    // Versions per channel: v2 exists for email only, so SMS stays on v1; the locale is the
    // template's (`fr` for a `fr-CA` reader), not the reader's.
    let dispatches = env.read_all(&email_topic);
    let email = dispatches
        .iter()
        .find(|d| d["value"]["event_id"] == "per-channel")
        .unwrap();
    assert_eq!(email["value"]["template"]["version"], 2);
    assert_eq!(email["value"]["locale"], "fr");
    assert_eq!(email["value"]["content"]["subject"], "Reçu v2 A-1");
    let sms = env.read_all(&topics.dispatch(Channel::Sms, Lane::Bulk));
    let sms = sms
        .iter()
        .find(|d| d["value"]["event_id"] == "per-channel")
        .unwrap();
    assert_eq!(sms["value"]["template"]["version"], 1);
    assert_eq!(sms["value"]["locale"], "default");
    assert_eq!(sms["value"]["content"]["text"], "SMS v1 A-1");
    let last_step = env.read_all(&topics.dispatch(Channel::Sms, Lane::Bulk));
    let last_step = last_step
        .iter()
        .find(|d| d["value"]["event_id"] == "alert-1:fallback:email:fallback:sms")
        .unwrap();
    assert_eq!(last_step["value"]["fallback"], serde_json::json!([]));
    // One webhook dispatch per enabled endpoint, each with an id of its own.
    let hooks = env.read_all(&topics.dispatch(Channel::Webhook, Lane::Bulk));
    let mut hooks: Vec<(String, String)> = hooks
        .iter()
        .filter(|d| d["value"]["event_id"] == "two-hooks")
        .map(|d| {
            (
                d["value"]["dispatch_id"].as_str().unwrap().to_owned(),
                d["value"]["address"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    hooks.sort();
    assert_eq!(
        hooks,
        [
            (
                "two-hooks:webhook:audit".to_owned(),
                "https://b.example.com/hook".to_owned()
            ),
            (
                "two-hooks:webhook:orders".to_owned(),
                "https://a.example.com/hook".to_owned()
            ),
        ]
    );
    assert!(last_step["value"]["fallback_request"].is_null());
}

/// `herald produce` with `router.max_data_bytes` set through the environment.
fn run_with_limit(env: &HeraldEnv, input: &str, limit: &str) -> herald_test_support::Run {
    let mut command = env.command(&["produce"]);
    command.env("HERALD_ROUTER__MAX_DATA_BYTES", limit);
    herald_test_support::run(command, Some(input))
}
