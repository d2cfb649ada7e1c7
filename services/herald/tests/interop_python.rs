//! Interop with the official Confluent Python client: its AvroSerializer's records decode in
//! Herald, and Herald's records decode with its AvroDeserializer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use herald_contracts::{Channel, NotificationRequest, Priority};
use herald_test_support::{HeraldEnv, python, repo_root, run};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

fn script(name: &str) -> String {
    repo_root()
        .join("services/herald/tests/interop")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn a_record_from_the_python_avro_serializer_decodes_in_herald() {
    let env = HeraldEnv::new(HERALD, "interop_in");
    env.prepare(false);
    let topic = env.topics().requested();
    let record = serde_json::json!({
        "event_id": "py-1",
        "tenant": "acme",
        "category": "security.login",
        "template": {"id": "login_code", "version": null},
        "recipient": {"user_id": "ada", "email": null, "phone": "+14155550100",
                      "push_tokens": ["tok-a", "tok-b"], "webhook_url": null},
        "data": "{\"code\":\"123 456\"}",
        "priority": "CRITICAL",
        "channels": ["SMS", "PUSH"],
        "locale": "fr-CA",
        "send_at": null,
        "expires_at": 1_900_000_000_000_i64,
        "created_at": 1_800_000_000_123_i64
    });
    let mut command = Command::new(python());
    command.args([
        script("produce_avro.py"),
        env.stack.kafka.clone(),
        env.stack.registry.clone(),
        topic.clone(),
        repo_root()
            .join("schemas/notification_requested.avsc")
            .display()
            .to_string(),
        record.to_string(),
    ]);
    run(command, None).assert_code(0);

    let tailed = env.run(&["tail", &topic], None);
    tailed.assert_code(0);
    let line: serde_json::Value = serde_json::from_str(tailed.stdout.trim()).unwrap();
    assert_eq!(line["key"], "acme:ada");
    let decoded: NotificationRequest = serde_json::from_value(line["value"].clone()).unwrap();
    assert_eq!(decoded.event_id, "py-1");
    assert_eq!(decoded.priority, Priority::Critical);
    assert_eq!(decoded.channels, Some(vec![Channel::Sms, Channel::Push]));
    assert_eq!(decoded.recipient.phone.as_deref(), Some("+14155550100"));
    assert_eq!(decoded.recipient.push_tokens, vec!["tok-a", "tok-b"]);
    assert_eq!(decoded.data, serde_json::json!({"code": "123 456"}));
    assert_eq!(decoded.locale.as_deref(), Some("fr-CA"));
    assert_eq!(
        decoded.created_at.unwrap().timestamp_millis(),
        1_800_000_000_123
    );
    assert_eq!(
        decoded.expires_at.unwrap().timestamp_millis(),
        1_900_000_000_000
    );
}

#[test]
fn a_record_herald_produced_decodes_with_the_python_avro_deserializer() {
    let env = HeraldEnv::new(HERALD, "interop_out");
    env.prepare(false);
    let request = serde_json::json!({
        "event_id": "rs-1",
        "tenant": "acme",
        "category": "billing.invoice_ready",
        "template": {"id": "invoice_ready", "version": 3},
        "recipient": {"user_id": "grace", "email": "grace@example.com"},
        "data": {"amount": "12.00"},
        "priority": "low",
        "channels": ["email", "inapp"],
        "created_at": "2027-01-15T08:00:00.250Z"
    });
    env.run(&["produce"], Some(&request.to_string()))
        .assert_code(0);

    let mut command = Command::new(python());
    command.args([
        script("consume_avro.py"),
        env.stack.kafka.clone(),
        env.stack.registry.clone(),
        env.topics().requested(),
        "1".to_owned(),
    ]);
    let consumed = run(command, None);
    consumed.assert_code(0);
    let line: serde_json::Value = serde_json::from_str(consumed.stdout.trim()).unwrap();
    assert_eq!(line["key"], "acme:grace");
    let value = &line["value"];
    assert_eq!(value["event_id"], "rs-1");
    assert_eq!(
        value["template"],
        serde_json::json!({"id": "invoice_ready", "version": 3})
    );
    assert_eq!(value["recipient"]["email"], "grace@example.com");
    assert_eq!(value["recipient"]["phone"], serde_json::Value::Null);
    assert_eq!(value["priority"], "LOW");
    assert_eq!(value["channels"], serde_json::json!(["EMAIL", "INAPP"]));
    assert_eq!(value["send_at"], serde_json::Value::Null);
    assert_eq!(value["created_at"], 1_800_000_000_250_i64); // 2027-01-15T08:00:00.250Z
    let data: serde_json::Value = serde_json::from_str(value["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, serde_json::json!({"amount": "12.00"}));
}
