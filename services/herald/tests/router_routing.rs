//! The router against the real stack: a table of routing cases, each asserting the records
//! that come out (dispatches, statuses, DLQ records).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_contracts::{Codec, NotificationRequest, headers};
use herald_router::RouterConfig;
use herald_test_support::kafka::produce_raw;
use herald_test_support::{
    HeraldEnv, Outcome, TEST_PARTITIONS, outcome, outcomes_by_event, unhex, wait_for,
};
use tokio_util::sync::CancellationToken;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(90);
/// Status records the routing cases produce, all told.
const EXPECTED_STATUSES: usize = 33;

/// Requests are created at noon in Ada's time zone (America/Montreal), outside her quiet
/// hours (22:00–07:00), unless a case says otherwise: policy is evaluated at creation time.
fn request(event_id: &str, user: &str, category: &str, template: &str) -> serde_json::Value {
    serde_json::json!({
        "created_at": "2026-06-15T16:00:00Z",
        "event_id": event_id,
        "tenant": "acme",
        "category": category,
        "template": {"id": template},
        "recipient": {"user_id": user},
        "data": {"name": "Ada", "code": "204 913", "invoice": {"number": "INV-7", "amount": "42.00"}},
    })
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
    // Quiet hours 22:00–07:00 in America/Montreal (EDT, UTC-4, in June).
    let at = |id: &str, created_at: &str| {
        let mut r = request(id, "ada", "billing.invoice_ready", "invoice_ready");
        r["created_at"] = created_at.into();
        r
    };
    let quiet_evening = at("quiet-evening", "2026-06-16T02:30:00Z"); // 22:30 local
    let quiet_morning = at("quiet-morning", "2026-06-16T08:00:00Z"); // 04:00 local
    // 23:00 EST on 7 March 2026; the clocks spring forward at 02:00 that night, so the window
    // ends at 07:00 EDT, 11:00 UTC, not 12:00.
    let quiet_dst = at("quiet-dst", "2026-03-08T04:00:00Z");
    let mut quiet_critical = at("quiet-critical", "2026-06-16T02:30:00Z");
    quiet_critical["priority"] = "critical".into();
    // A send-at a few seconds ahead, for a recipient without quiet hours.
    let send_at = chrono::Utc::now() + chrono::TimeDelta::seconds(8);
    let mut send_later = request(
        "send-later",
        "guest-18",
        "billing.invoice_ready",
        "invoice_ready",
    );
    send_later["recipient"]["email"] = "later@example.com".into();
    send_later["channels"] = serde_json::json!(["email"]);
    send_later["created_at"] = serde_json::Value::Null;
    send_later["send_at"] = send_at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .into();
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
        quiet_evening,
        quiet_morning,
        quiet_dst,
        quiet_critical,
        send_later,
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
    // The same event again, replayed by a `recover` replay: deduplicated like any other, and
    // its status says it came from the replay.
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
        &[
            (headers::REPLAY_ID, "r1"),
            (headers::REPLAY_MODE, "recover"),
        ],
    );

    // A release from the schedule published twice (a scheduler died between publishing and
    // deleting it): routed once.
    let mut released = request(
        "released-twice",
        "guest-19",
        "billing.invoice_ready",
        "invoice_ready",
    );
    released["recipient"]["email"] = "twice@example.com".into();
    released["channels"] = serde_json::json!(["email"]);
    let released = NotificationRequest::from_json(&released.to_string()).unwrap();
    let bytes = codec.encode_request(&released).await.unwrap();
    for _ in 0..2 {
        produce_raw(
            &kafka,
            &topics.requested(),
            b"acme:guest-19",
            &bytes,
            &[(headers::SCHEDULED_FOR, "1781539200000")],
        );
    }

    // A fallback request at the end of its chain: routed to its one channel, no further
    // fallback even though the category has one.
    let mut last = request(
        "fallback-last:fallback:sms",
        "guest-20",
        "billing.invoice_ready",
        "invoice_ready",
    );
    last["recipient"]["phone"] = "+14155550123".into();
    last["channels"] = serde_json::json!(["sms"]);
    let last = NotificationRequest::from_json(&last.to_string()).unwrap();
    produce_raw(
        &kafka,
        &topics.requested(),
        b"acme:guest-20",
        &codec.encode_request(&last).await.unwrap(),
        &[(headers::FALLBACK_CHAIN, "")],
    );

    let shutdown = CancellationToken::new();
    let router = tokio::spawn(herald_router::run(
        env.common(),
        RouterConfig::default(),
        shutdown.clone(),
    ));

    let status_records = env.tail_until(&topics.status(), EXPECTED_STATUSES, WAIT);
    let dlq = env.tail_until(&topics.dlq(), 4, WAIT);
    // Consumer lag comes from librdkafka statistics (every 5 s): every partition of the
    // requested topic shows up, and with everything routed, at zero.
    let requested = topics.requested();
    wait_for("consumer lag at zero", WAIT, || {
        let text = herald_runtime::admin::metrics_handle("router")
            .unwrap()
            .render();
        let lags: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("herald_consumer_lag_records{")
                    && l.contains(&format!("topic=\"{requested}\""))
            })
            .collect();
        (lags.len() == TEST_PARTITIONS as usize && lags.iter().all(|l| l.ends_with(" 0")))
            .then_some(())
    });
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

    let by_event = outcomes_by_event(&status_records);
    let expected: BTreeMap<String, Vec<Outcome>> = [
        (
            "inv-ada",
            vec![
                outcome("routed", "email", ""),
                outcome("routed", "inapp", ""),
                outcome("suppressed", "", "duplicate"),
                outcome("suppressed", "", "duplicate"),
            ],
        ),
        ("digest-ada", vec![outcome("suppressed", "", "opted_out")]),
        (
            "login-grace",
            vec![
                outcome("suppressed", "push", "no_address"),
                outcome("suppressed", "sms", "no_address"),
            ],
        ),
        ("expired", vec![outcome("suppressed", "", "expired")]),
        (
            "unknown",
            vec![outcome("suppressed", "", "unknown_recipient")],
        ),
        ("direct", vec![outcome("routed", "email", "")]),
        (
            "login-ada",
            vec![outcome("routed", "push", ""), outcome("routed", "sms", "")],
        ),
        ("mention-1", vec![outcome("routed", "inapp", "")]),
        ("mention-2", vec![outcome("routed", "inapp", "")]),
        (
            "mention-3",
            vec![outcome("suppressed", "inapp", "rate_limited")],
        ),
        ("mention-critical", vec![outcome("routed", "inapp", "")]),
        (
            "quiet-evening",
            vec![
                outcome("scheduled", "", "quiet_hours"),
                outcome("routed", "email", ""),
                outcome("routed", "inapp", ""),
            ],
        ),
        (
            "quiet-morning",
            vec![
                outcome("scheduled", "", "quiet_hours"),
                outcome("routed", "email", ""),
                outcome("routed", "inapp", ""),
            ],
        ),
        (
            "quiet-dst",
            vec![
                outcome("scheduled", "", "quiet_hours"),
                outcome("routed", "email", ""),
                outcome("routed", "inapp", ""),
            ],
        ),
        (
            "quiet-critical",
            vec![
                outcome("routed", "email", ""),
                outcome("routed", "inapp", ""),
            ],
        ),
        (
            "send-later",
            vec![
                outcome("scheduled", "", "send_at"),
                outcome("routed", "email", ""),
            ],
        ),
        ("released-twice", vec![outcome("routed", "email", "")]),
        (
            "fallback-last:fallback:sms",
            vec![outcome("routed", "sms", "")],
        ),
        // Dead-lettered events that name themselves end with a status too; the garbage and
        // the unknown schema id name nothing and are on the DLQ only.
        (
            "no-template",
            vec![outcome("dead_lettered", "", "unknown_template")],
        ),
        (
            "missing-var",
            vec![outcome("dead_lettered", "", "render_error")],
        ),
    ]
    .into_iter()
    .map(|(k, mut v)| {
        v.sort();
        (k.to_owned(), v)
    })
    .collect();
    assert_eq!(by_event, expected);
    // The replayed copy's status names the replay; no other status does.
    let from_replay: Vec<&serde_json::Value> = status_records
        .iter()
        .filter(|r| r["headers"][headers::REPLAY_ID] == "r1")
        .collect();
    assert_eq!(from_replay.len(), 1, "{from_replay:?}");
    assert_eq!(from_replay[0]["value"]["event_id"], "inv-ada");
    assert_eq!(from_replay[0]["value"]["reason"], "duplicate");
    assert_eq!(from_replay[0]["headers"][headers::REPLAY_MODE], "recover");
    assert_eq!(
        status_records.len(),
        EXPECTED_STATUSES,
        "no status beyond the expected ones"
    );

    // Deferred events are due when their quiet hours end (DST included) or at their send-at,
    // and are routed no earlier.
    let status_of = |event: &str, status: &str| {
        status_records
            .iter()
            .find(|r| r["value"]["event_id"] == event && r["value"]["status"] == status)
            .unwrap_or_else(|| panic!("no {status} status for {event}"))["value"]
            .clone()
    };
    let send_at_millis = send_at.timestamp_millis();
    for (event, due) in [
        ("quiet-evening", "2026-06-16T11:00:00Z".to_owned()),
        ("quiet-morning", "2026-06-16T11:00:00Z".to_owned()),
        ("quiet-dst", "2026-03-08T11:00:00Z".to_owned()),
        (
            "send-later",
            chrono::DateTime::from_timestamp_millis(send_at_millis)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
    ] {
        let scheduled = status_of(event, "scheduled");
        let due_at: chrono::DateTime<chrono::Utc> = due.parse().unwrap();
        let scheduled_for: chrono::DateTime<chrono::Utc> = scheduled["scheduled_for"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(scheduled_for, due_at, "{event}");
        let routed_at: chrono::DateTime<chrono::Utc> = status_of(event, "routed")["at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            routed_at >= due_at,
            "{event} routed at {routed_at}, due {due_at}"
        );
    }

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
    // The template's locale: Ada reads fr-CA, and invoice_ready has a `fr` part.
    assert_eq!(ada_email["value"]["locale"], "fr");
    assert_eq!(
        ada_email["value"]["content"]["subject"],
        "Votre facture INV-7 est prête"
    );
    assert_eq!(ada_email["value"]["fallback"], serde_json::json!(["sms"]));
    // The request that takes over on SMS if the email is dead-lettered.
    let fallback = codec
        .decode_request(&unhex(
            ada_email["value"]["fallback_request"].as_str().unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(fallback.event_id, "inv-ada:fallback:sms");
    assert_eq!(
        fallback.channels,
        Some(vec![herald_contracts::Channel::Sms])
    );
    assert_eq!(fallback.recipient.user_id, "ada");
    assert_eq!(fallback.data["invoice"]["number"], "INV-7");
    let last_sms = env.tail_until(
        &topics.dispatch(herald_contracts::Channel::Sms, herald_contracts::Lane::Bulk),
        1,
        WAIT,
    );
    assert_eq!(
        last_sms[0]["value"]["event_id"],
        "fallback-last:fallback:sms"
    );
    assert_eq!(last_sms[0]["value"]["fallback"], serde_json::json!([]));
    assert!(last_sms[0]["value"]["fallback_request"].is_null());
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
