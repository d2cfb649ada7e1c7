//! `POST /v1/templates/{id}/preview` renders as the router does: the preview of a request's
//! template equals the content of the dispatch the router makes for the same request, locale
//! fallback and SMS shape included; a render error is returned, not sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use std::time::Duration;

use herald_contracts::{Channel, Lane};
use herald_test_support::HeraldEnv;
use herald_test_support::api::ApiClient;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_equals_the_routed_dispatch() {
    let env = HeraldEnv::new(HERALD, "api_preview");
    env.prepare(true);
    env.seed_demo();
    let key = env.create_api_key("acme", "send,read");
    let globex = env.create_api_key("globex", "read");
    let _router = env.spawn("router", &["router"], &[]);
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);
    let data = serde_json::json!({"name": "Zoé", "invoice": {"number": "INV-9", "amount": "9.00"}});

    // The router's dispatch for a French-Canadian guest over email and SMS.
    let request = serde_json::json!({
        "event_id": "preview-1",
        "category": "billing.invoice_ready",
        "template": {"id": "invoice_ready"},
        "recipient": {"user_id": "guest-1", "email": "g@example.com", "phone": "+14155550100"},
        "channels": ["email", "sms"],
        "locale": "fr-CA",
        "data": data,
    });
    let answer = client.send(&key, &request).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let dispatched = |channel| {
        env.tail_until(
            &env.topics().dispatch(channel, Lane::Bulk),
            1,
            Duration::from_secs(60),
        )
        .into_iter()
        .find(|r| r["value"]["event_id"] == "preview-1")
        .unwrap()["value"]["content"]
            .clone()
    };

    let preview = client
        .call(
            Method::POST,
            "/v1/templates/invoice_ready/preview",
            &key,
            Some(
                &serde_json::json!({"data": data, "channels": ["email", "sms"], "locale": "fr-CA"}),
            ),
        )
        .await;
    assert_eq!(preview.status, 200, "{preview:?}");
    let results = preview.body["results"].as_array().unwrap();
    assert_eq!(results[0]["channel"], "email");
    assert_eq!(results[0]["locale"], "fr", "fr-CA falls back to fr");
    assert_eq!(results[0]["version"], 1);
    assert_eq!(results[1]["locale"], "default");
    for (result, channel) in results.iter().zip([Channel::Email, Channel::Sms]) {
        let content = &result["content"];
        let routed = dispatched(channel);
        for part in ["subject", "text", "html", "sms_encoding", "sms_segments"] {
            assert_eq!(
                content.get(part).unwrap_or(&serde_json::Value::Null),
                routed.get(part).unwrap_or(&serde_json::Value::Null),
                "{channel} {part}: preview {content} routed {routed}"
            );
        }
    }
    assert!(
        results[0]["content"]["subject"]
            .as_str()
            .unwrap()
            .contains("INV-9")
    );
    assert_eq!(results[1]["content"]["sms_segments"], 1);

    // Every channel the template has by default; a missing variable is the router's error.
    let preview = client
        .call(
            Method::POST,
            "/v1/templates/invoice_ready/preview",
            &key,
            Some(&serde_json::json!({"data": {"name": "Ada"}})),
        )
        .await;
    let results = preview.body["results"].as_array().unwrap();
    let channels: Vec<&str> = results
        .iter()
        .map(|r| r["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["email", "sms", "inapp"]);
    assert!(
        results[0]["error"]
            .as_str()
            .unwrap()
            .contains("invoice.number"),
        "{preview:?}"
    );

    // Unknown template, another tenant's template, a bad body.
    client
        .call(
            Method::POST,
            "/v1/templates/nope/preview",
            &key,
            Some(&serde_json::json!({})),
        )
        .await
        .problem(404);
    client
        .call(
            Method::POST,
            "/v1/templates/invoice_ready/preview",
            &globex,
            Some(&serde_json::json!({})),
        )
        .await
        .problem(404);
    let answer = client
        .call(
            Method::POST,
            "/v1/templates/invoice_ready/preview",
            &key,
            Some(&serde_json::json!({"channels": ["fax"]})),
        )
        .await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/channels/0"]);
}
