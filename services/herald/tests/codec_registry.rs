//! Herald's codec against the real schema registry. The first record of a kind goes through the
//! registry client, which registers the schema; later ones are framed directly with the schema
//! id it returned. Both ways must write the same bytes, for every shape of record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use chrono::{TimeZone, Utc};
use herald_contracts::registry::{Registration, RegistryAdmin};
use herald_contracts::schemas::SchemaKind;
use herald_contracts::{
    Channel, Codec, Decoded, NotificationRequest, RenderedContent, SmsEncoding, Status, StatusEvent,
};
use herald_test_support::HeraldEnv;
use herald_test_support::dispatch::sample_dispatch;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

fn codec(env: &HeraldEnv) -> Codec {
    Codec::new(&env.registry_config(), env.topics()).unwrap()
}

/// Encodes `first` on a new codec (through the registry client), again (framed directly: same
/// bytes), then `second` framed directly, which must equal what another new codec's client
/// writes for it. Returns `second`'s bytes and the codec that framed them.
async fn direct_matches_client<T>(
    env: &HeraldEnv,
    first: &T,
    second: &T,
    encode: impl AsyncFn(&Codec, &T) -> Vec<u8>,
) -> (Codec, Vec<u8>) {
    let warm = codec(env);
    let by_client = encode(&warm, first).await;
    assert_eq!(encode(&warm, first).await, by_client);
    let framed = encode(&warm, second).await;
    assert_eq!(framed, encode(&codec(env), second).await);
    (warm, framed)
}

#[tokio::test]
async fn dispatches_framed_directly_match_the_registry_clients_bytes() {
    let env = HeraldEnv::new(HERALD, "codec_dispatch");
    let email = sample_dispatch(Channel::Email, "ada@example.com");
    // The other side of every optional field: no subject or HTML, an SMS shape, a deadline and
    // a fallback chain.
    let mut sms = sample_dispatch(Channel::Sms, "+14155550100");
    sms.content = RenderedContent {
        text: Some("Ton code : 123 456".into()),
        sms_encoding: Some(SmsEncoding::Gsm7),
        sms_segments: Some(1),
        ..RenderedContent::default()
    };
    sms.deadline = Some(Utc.timestamp_millis_opt(1_900_000_000_000).unwrap());
    sms.fallback = vec![Channel::Email, Channel::Push];
    sms.attempt = 2;

    let (warm, framed) = direct_matches_client(&env, &email, &sms, async |codec, dispatch| {
        codec.encode_dispatch(dispatch).await.unwrap()
    })
    .await;
    match warm.decode(&framed).await.unwrap() {
        Decoded::Dispatch(decoded) => assert_eq!(decoded, sms),
        other => panic!("decoded as {:?}", other.schema_name()),
    }
}

#[tokio::test]
async fn statuses_and_requests_framed_directly_match_the_registry_clients_bytes() {
    let env = HeraldEnv::new(HERALD, "codec_status");
    let at = Utc.timestamp_millis_opt(1_800_000_000_123).unwrap();
    let routed = StatusEvent {
        event_id: "evt-1".into(),
        dispatch_id: None,
        tenant: "acme".into(),
        user_id: "ada".into(),
        channel: None,
        status: Status::Routed,
        reason: None,
        provider: None,
        provider_message_id: None,
        attempt: 0,
        at,
        scheduled_for: None,
        category: None,
        created_at: None,
    };
    let sent = StatusEvent {
        dispatch_id: Some("evt-1:sms".into()),
        channel: Some(Channel::Sms),
        status: Status::Sent,
        reason: Some("ok".into()),
        provider: Some("twilio".into()),
        provider_message_id: Some("SM123".into()),
        attempt: 3,
        scheduled_for: Some(at),
        category: Some("billing.invoice_ready".into()),
        created_at: Some(at),
        ..routed.clone()
    };
    let (warm, framed) = direct_matches_client(&env, &routed, &sent, async |codec, status| {
        codec.encode_status(status).await.unwrap()
    })
    .await;
    match warm.decode(&framed).await.unwrap() {
        Decoded::Status(decoded) => assert_eq!(decoded, sent),
        other => panic!("decoded as {:?}", other.schema_name()),
    }

    // Requests are registered under the requested topic's subject instead.
    let request = NotificationRequest::from_json(
        r#"{"event_id": "evt-2", "tenant": "acme", "category": "security.login",
            "template": {"id": "login_code"}, "recipient": {"user_id": "ada", "phone": "+14155550100"},
            "data": {"code": "123 456"}, "priority": "critical", "channels": ["sms"]}"#,
    )
    .unwrap();
    direct_matches_client(&env, &request, &request, async |codec, request| {
        codec.encode_request(request).await.unwrap()
    })
    .await;
}

/// A producer that moved to a newer, compatible version of the request schema (a field with a
/// default, one of them in the middle) registers it under the request subject and writes with
/// it; Herald, still on its compiled-in schema, reads the record into the same request.
#[tokio::test]
async fn a_request_written_with_a_newer_compatible_schema_decodes() {
    let env = HeraldEnv::new(HERALD, "codec_newer");
    env.run(&["schemas", "register"], None).assert_code(0);
    let subject = SchemaKind::Requested.subject(&env.topics());

    let mut newer: serde_json::Value =
        serde_json::from_str(SchemaKind::Requested.source()).unwrap();
    let fields = newer["fields"].as_array_mut().unwrap();
    fields.insert(
        2,
        serde_json::json!({"name": "campaign", "type": ["null", "string"], "default": null,
                           "doc": "added by a producer"}),
    );
    fields.push(
        serde_json::json!({"name": "source", "type": "string", "default": "api",
                                   "doc": "added by a producer"}),
    );
    let newer = newer.to_string();
    let producer = RegistryAdmin::new(env.registry_config()).unwrap();
    let Registration::Registered { id } = producer.register(&subject, &newer).await.unwrap() else {
        panic!("the newer schema was already registered");
    };

    let request = NotificationRequest::from_json(
        r#"{"event_id": "evt-newer", "tenant": "acme", "category": "billing.invoice_ready",
            "template": {"id": "invoice_ready", "version": 3},
            "recipient": {"user_id": "ada", "email": "ada@example.com"},
            "data": {"name": "Ada"}, "priority": "high", "channels": ["email", "sms"],
            "locale": "fr-CA", "created_at": "2026-11-21T10:00:00.123Z"}"#,
    )
    .unwrap();
    let Value::Record(mut written) = request.to_avro() else {
        panic!("a request is a record");
    };
    written.insert(
        2,
        (
            "campaign".into(),
            Value::Union(1, Box::new(Value::String("spring".into()))),
        ),
    );
    written.push(("source".into(), Value::String("crm".into())));
    let writer = apache_avro::Schema::parse_str(&newer).unwrap();
    let mut framed = vec![0];
    framed.extend_from_slice(&id.to_be_bytes());
    let body = GenericDatumWriter::builder(&writer)
        .build()
        .unwrap()
        .write_value_to_vec(Value::Record(written))
        .unwrap();
    framed.extend(body);

    let decoded = codec(&env).decode_request(&framed).await.unwrap();
    assert_eq!(decoded, request);
}
