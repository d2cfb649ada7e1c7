//! A request goes through `herald produce` → registry + Kafka → `herald tail` and comes back
//! equal; bad lines are rejected by number and nothing is produced for them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_contracts::NotificationRequest;
use herald_contracts::request::MAX_DATA_BYTES;
use herald_contracts::topics::DLQ;
use herald_test_support::HeraldEnv;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

fn request(event_id: &str, user: &str) -> serde_json::Value {
    serde_json::json!({
        "event_id": event_id,
        "tenant": "acme",
        "category": "billing.invoice_ready",
        "template": {"id": "invoice_ready", "version": 2},
        "recipient": {"user_id": user, "email": "ada@example.com", "push_tokens": ["tok-1"]},
        "data": {"name": "Ada", "invoice": {"number": "INV-1", "amount": 12.5, "lines": [1, 2]}},
        "priority": "high",
        "channels": ["email", "push"],
        "locale": "fr-CA",
        "send_at": "2030-01-01T08:00:00Z",
        "expires_at": "2030-01-02T08:00:00Z",
        "created_at": "2026-11-21T10:00:00.123Z"
    })
}

#[test]
fn produce_then_tail_round_trips_and_rejects_bad_lines() {
    let env = HeraldEnv::new(HERALD, "produce");
    env.prepare(false);

    let good_1 = request("evt-1", "ada");
    let good_2 = request("evt-2", "grace");
    let mut missing_field = request("evt-3", "ada");
    missing_field.as_object_mut().unwrap().remove("category");
    let mut wrong_enum = request("evt-4", "ada");
    wrong_enum["priority"] = "urgent".into();
    let mut oversized = request("evt-5", "ada");
    oversized["data"] = serde_json::json!({"blob": "x".repeat(MAX_DATA_BYTES + 1)});
    let input = [
        good_1.to_string(),                     // line 1
        "{\"event_id\": \"evt-6\",".to_owned(), // line 2: malformed JSON
        missing_field.to_string(),              // line 3
        String::new(),                          // line 4: blank, skipped
        wrong_enum.to_string(),                 // line 5
        oversized.to_string(),                  // line 6
        good_2.to_string(),                     // line 7
    ]
    .join("\n");

    let produced = env.run(&["produce"], Some(&input));
    produced.assert_code(3);
    let stderr = &produced.stderr;
    for (line, reason) in [
        (2, "not a valid request"),
        (3, "missing field `category`"),
        (5, "unknown variant `urgent`"),
        (6, "the limit is"),
    ] {
        assert!(
            stderr.contains(&format!("line {line}: rejected: ")),
            "line {line}: {stderr}"
        );
        let text = stderr
            .lines()
            .find(|l| l.starts_with(&format!("line {line}:")))
            .unwrap();
        assert!(
            text.contains(reason),
            "line {line} should say {reason:?}: {text}"
        );
    }
    assert!(
        stderr.contains("produced 2, rejected 4, failed 0"),
        "{stderr}"
    );
    // Acknowledged event ids, in acknowledgement order (partitions acknowledge independently).
    let mut acknowledged: Vec<&str> = produced.stdout.lines().collect();
    acknowledged.sort_unstable();
    assert_eq!(acknowledged, vec!["evt-1", "evt-2"]);

    let requested = env.topics().requested();
    let tailed = env.run(&["tail", &requested], None);
    tailed.assert_code(0);
    let mut records: Vec<serde_json::Value> = tailed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    records.sort_by_key(|r| r["value"]["event_id"].as_str().unwrap().to_owned());
    assert_eq!(records.len(), 2, "{}", tailed.stdout);
    for (record, sent) in records.iter().zip([&good_1, &good_2]) {
        let expected =
            serde_json::to_value(NotificationRequest::from_json(&sent.to_string()).unwrap())
                .unwrap();
        assert_eq!(record["value"], expected);
        assert_eq!(record["schema"], "dev.herald.v1.NotificationRequested");
        assert_eq!(
            record["key"],
            format!("acme:{}", sent["recipient"]["user_id"].as_str().unwrap())
        );
        assert_eq!(record["topic"], requested.as_str());
    }
}

#[tokio::test]
async fn tail_shows_undecodable_records_with_their_bytes() {
    let env = HeraldEnv::new(HERALD, "tail_garbage");
    let dlq = env.topics().dlq();
    herald_test_support::kafka::create_topic(&env.kafka_config(), &dlq, 1).await;
    herald_test_support::kafka::produce_raw(
        &env.kafka_config(),
        &dlq,
        b"k",
        b"\x00\x00\x00\x00",
        &[("herald-error-stage", "decode")],
    );
    let tailed = env.run(&["tail", &dlq], None);
    tailed.assert_code(0);
    let record: serde_json::Value = serde_json::from_str(tailed.stdout.trim()).unwrap();
    assert_eq!(record["value"], serde_json::Value::Null);
    assert_eq!(record["value_hex"], "00000000");
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("not Confluent-framed"),
        "{record}"
    );
    assert_eq!(record["headers"]["herald-error-stage"], "decode");
}

#[test]
fn tail_of_a_missing_topic_fails_clearly() {
    let env = HeraldEnv::new(HERALD, "tail_missing");
    let run = env.run(&["tail", "no.such.topic.anywhere", "--timeout", "5s"], None);
    run.assert_code(1);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
}

/// With `kafka.topic_prefix` set (every test env has one), a Herald topic's logical name means
/// the prefixed topic; the full name still works.
#[tokio::test]
async fn tail_resolves_a_logical_topic_name_through_the_prefix() {
    let env = HeraldEnv::new(HERALD, "tail_prefix");
    let dlq = env.topics().dlq();
    assert_ne!(dlq, DLQ, "the env has a prefix");
    herald_test_support::kafka::create_topic(&env.kafka_config(), &dlq, 1).await;
    herald_test_support::kafka::produce_raw(&env.kafka_config(), &dlq, b"acme:ada", b"poison", &[]);
    for name in [DLQ, dlq.as_str()] {
        let tailed = env.run(&["tail", name, "--timeout", "20s"], None);
        tailed.assert_code(0);
        let record: serde_json::Value = serde_json::from_str(tailed.stdout.trim())
            .unwrap_or_else(|e| panic!("tail {name}: {e}: {}", tailed.stdout));
        assert_eq!(record["topic"], dlq.as_str(), "tail {name}");
        assert_eq!(record["key"], "acme:ada", "tail {name}");
    }
}
