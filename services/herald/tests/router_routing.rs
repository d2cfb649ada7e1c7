//! The router against the real stack: a table of routing cases, each asserting the records
//! that come out (dispatches, statuses, DLQ records).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_contracts::{Codec, NotificationRequest, headers};
use herald_test_support::HeraldEnv;
use herald_test_support::kafka::produce_raw;
use tokio_util::sync::CancellationToken;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(90);

fn request(event_id: &str, user: &str, category: &str, template: &str) -> serde_json::Value {
    serde_json::json!({
        "event_id": event_id,
        "tenant": "acme",
        "category": category,
        "template": {"id": template},
        "recipient": {"user_id": user},
        "data": {"name": "Ada", "code": "204 913", "invoice": {"number": "INV-7", "amount": "42.00"}},
    })
}

/// Status records grouped by event id: (status, channel, reason).
fn statuses(records: &[serde_json::Value]) -> BTreeMap<String, Vec<(String, String, String)>> {
    let mut by_event: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for r in records {
        let v = &r["value"];
        let text = |f: &str| v[f].as_str().unwrap_or("").to_owned();
        by_event.entry(text("event_id")).or_default().push((
            text("status"),
            text("channel"),
            text("reason"),
        ));
    }
    for list in by_event.values_mut() {
        list.sort();
    }
    by_event
}

fn s(status: &str, channel: &str, reason: &str) -> (String, String, String) {
    (status.to_owned(), channel.to_owned(), reason.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_cases_produce_exactly_the_expected_records() {
    let env = HeraldEnv::new(HERALD, "route");
    env.prepare(true);
    env.seed_demo();

    let mut expired = request("expired", "ada", "billing.invoice_ready", "invoice_ready");
    expired["created_at"] = "2020-01-01T00:00:00Z".into();
    expired["expires_at"] = "2021-01-01T00:00:00Z".into();
    let mut direct = request(
        "direct",
        "guest-17",
        "billing.invoice_ready",
        "invoice_ready",
    );
    direct["recipient"]["email"] = "guest@example.com".into();
    direct["channels"] = serde_json::json!(["email"]);
    direct["locale"] = "en-US".into();
    let mut missing_var = request(
        "missing-var",
        "ada",
        "billing.invoice_ready",
        "invoice_ready",
    );
    missing_var["data"] = serde_json::json!({"name": "Ada"});
    let mut login = request("login-ada", "ada", "security.login", "login_code");
    login["priority"] = "critical".into();
    // social.mention is capped at 2 per hour per channel; critical is exempt.
    let mut mention_critical = request("mention-critical", "ada", "social.mention", "mention");
    mention_critical["priority"] = "critical".into();
    let lines = [
        request("inv-ada", "ada", "billing.invoice_ready", "invoice_ready"),
        request("digest-ada", "ada", "marketing.digest", "invoice_ready"),
        request("login-grace", "grace", "security.login", "login_code"),
        request("inv-ada", "ada", "billing.invoice_ready", "invoice_ready"),
        expired,
        request(
            "unknown",
            "nobody",
            "billing.invoice_ready",
            "invoice_ready",
        ),
        direct,
        request("no-template", "ada", "billing.invoice_ready", "nope"),
        missing_var,
        login,
        request("mention-1", "ada", "social.mention", "mention"),
        request("mention-2", "ada", "social.mention", "mention"),
        request("mention-3", "ada", "social.mention", "mention"),
        mention_critical,
    ]
    .iter()
    .map(|l| l.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    env.run(&["produce"], Some(&lines)).assert_code(0);

    let topics = env.topics();
    let kafka = env.kafka_config();
    // Poison that `herald produce` would refuse: garbage bytes and an unknown schema id.
    produce_raw(
        &kafka,
        &topics.requested(),
        b"acme:ada",
        b"not avro at all",
        &[],
    );
    produce_raw(
        &kafka,
        &topics.requested(),
        b"acme:ada",
        &[0, 0x7f, 0xff, 0xff, 0xff, 2, 4],
        &[],
    );
    // The same event again, replayed on purpose.
    let codec = Codec::new(&env.registry_config(), topics.clone()).unwrap();
    let replayed = NotificationRequest::from_json(
        &request("inv-ada", "ada", "billing.invoice_ready", "invoice_ready").to_string(),
    )
    .unwrap();
    let bytes = codec.encode_request(&replayed).await.unwrap();
    produce_raw(
        &kafka,
        &topics.requested(),
        b"acme:ada",
        &bytes,
        &[(headers::REPLAY, "1")],
    );

    let shutdown = CancellationToken::new();
    let router = tokio::spawn(herald_router::run(env.config(), shutdown.clone()));

    let status_records = env.tail_until(&topics.status(), 17, WAIT);
    let dlq = env.tail_until(&topics.dlq(), 4, WAIT);
    shutdown.cancel();
    router.await.unwrap().unwrap();

    // The in-process router recorded into this process's metrics registry.
    let metrics = herald_runtime::admin::metrics_handle("router")
        .unwrap()
        .render();
    for stage in ["decode", "dedupe", "enrich", "policy", "render", "emit"] {
        let series = format!("herald_router_stage_seconds{{stage=\"{stage}\",quantile=\"0.5\"}}");
        assert!(
            metrics.contains(&series),
            "{series} missing from:\n{metrics}"
        );
    }
    assert!(metrics.contains("herald_router_transactions_total{result=\"committed\"}"));

    let by_event = statuses(&status_records);
    let expected: BTreeMap<String, Vec<(String, String, String)>> = [
        (
            "inv-ada",
            vec![
                s("routed", "email", ""),
                s("routed", "email", ""),
                s("routed", "inapp", ""),
                s("routed", "inapp", ""),
                s("suppressed", "", "duplicate"),
            ],
        ),
        ("digest-ada", vec![s("suppressed", "", "opted_out")]),
        (
            "login-grace",
            vec![
                s("suppressed", "push", "no_address"),
                s("suppressed", "sms", "no_address"),
            ],
        ),
        ("expired", vec![s("suppressed", "", "expired")]),
        ("unknown", vec![s("suppressed", "", "unknown_recipient")]),
        ("direct", vec![s("routed", "email", "")]),
        (
            "login-ada",
            vec![s("routed", "push", ""), s("routed", "sms", "")],
        ),
        ("mention-1", vec![s("routed", "inapp", "")]),
        ("mention-2", vec![s("routed", "inapp", "")]),
        ("mention-3", vec![s("suppressed", "inapp", "rate_limited")]),
        ("mention-critical", vec![s("routed", "inapp", "")]),
    ]
    .into_iter()
    .map(|(k, mut v)| {
        v.sort();
        (k.to_owned(), v)
    })
    .collect();
    assert_eq!(by_event, expected);
    assert_eq!(
        status_records.len(),
        17,
        "no status beyond the expected ones"
    );

    // DLQ: the original bytes with error headers.
    let mut classes: Vec<(String, String)> = dlq
        .iter()
        .map(|r| {
            let h = &r["headers"];
            (
                h[headers::ERROR_STAGE].as_str().unwrap().to_owned(),
                h[headers::ERROR_CLASS].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    classes.sort();
    assert_eq!(
        classes,
        vec![
            ("decode".to_owned(), "framing".to_owned()),
            ("decode".to_owned(), "undecodable".to_owned()),
            ("render".to_owned(), "render_error".to_owned()),
            ("render".to_owned(), "unknown_template".to_owned()),
        ]
    );
    for record in &dlq {
        assert_eq!(record["key"], "acme:ada");
        assert_eq!(
            record["headers"][headers::ORIGINAL_TOPIC],
            topics.requested()
        );
        assert!(
            record["headers"][headers::ORIGINAL_OFFSET]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .is_ok()
        );
    }

    // Dispatches: rendered per channel and locale, on the right lane.
    let email = env.tail_until(
        &topics.dispatch(
            herald_contracts::Channel::Email,
            herald_contracts::Lane::Bulk,
        ),
        3,
        WAIT,
    );
    let ada_email = email
        .iter()
        .find(|r| r["value"]["event_id"] == "inv-ada")
        .unwrap();
    assert_eq!(ada_email["value"]["address"], "ada@example.com");
    assert_eq!(ada_email["value"]["locale"], "fr-CA");
    assert_eq!(
        ada_email["value"]["content"]["subject"],
        "Votre facture INV-7 est prête"
    );
    assert_eq!(ada_email["value"]["fallback"], serde_json::json!(["sms"]));
    assert_eq!(ada_email["value"]["dispatch_id"], "inv-ada:email");
    let guest_email = email
        .iter()
        .find(|r| r["value"]["event_id"] == "direct")
        .unwrap();
    assert_eq!(guest_email["value"]["address"], "guest@example.com");
    assert_eq!(
        guest_email["value"]["content"]["subject"],
        "Your invoice INV-7 is ready"
    );
    let sms = env.tail_until(
        &topics.dispatch(
            herald_contracts::Channel::Sms,
            herald_contracts::Lane::Priority,
        ),
        1,
        WAIT,
    );
    assert_eq!(sms.len(), 1);
    assert_eq!(
        sms[0]["value"]["content"]["text"],
        "Your Acme code is 204 913"
    );
    assert_eq!(sms[0]["value"]["content"]["sms_encoding"], "gsm7");
    assert_eq!(sms[0]["value"]["content"]["sms_segments"], 1);
    assert_eq!(sms[0]["value"]["priority"], "critical");
}
