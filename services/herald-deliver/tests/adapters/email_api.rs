//! The SendGrid-shaped HTTP email API.

use herald_contracts::Channel;
use herald_deliver::{Outcome, Provider, SendGridConfig, SendGridProvider};
use herald_test_support::dispatch::sample_dispatch;
use herald_test_support::standin::{Reply, StandIn};

use crate::common::{Failing, assert_failure_classes};

fn config(base_url: &str) -> SendGridConfig {
    toml::from_str(&format!(
        r#"
        base_url = "{base_url}"
        api_key = "SG.test-key"
        from = "billing@acme.example"
        from_name = "Acme Billing"
        list_unsubscribe = "<https://acme.example/unsub?u={{user_id}}&c={{category}}>"
        list_unsubscribe_post = true
        idempotency_header = "Idempotency-Key"
        "#
    ))
    .unwrap()
}

#[tokio::test]
async fn posts_the_v3_mail_send_shape_and_reads_the_message_id() {
    let standin = StandIn::start(|_| Reply::status(202).header("X-Message-Id", "sg-msg-1")).await;
    let provider = SendGridProvider::new(&config(&standin.url())).unwrap();
    let dispatch = sample_dispatch(Channel::Email, "zoe@example.com");

    let report = provider.send(&dispatch).await;
    assert_eq!(report.outcome, Outcome::sent("sg-msg-1"));
    assert!(report.stale_addresses.is_empty());

    let requests = standin.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v3/mail/send");
    assert_eq!(request.header("authorization"), Some("Bearer SG.test-key"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("idempotency-key"),
        Some(dispatch.dispatch_id.as_str())
    );
    let body = request.json();
    let personalization = &body["personalizations"][0];
    assert_eq!(personalization["to"][0]["email"], "zoe@example.com");
    assert_eq!(
        personalization["custom_args"]["dispatch_id"],
        dispatch.dispatch_id
    );
    assert_eq!(body["custom_args"]["dispatch_id"], dispatch.dispatch_id);
    assert_eq!(body["custom_args"]["event_id"], dispatch.event_id);
    // The ids the Event Webhook echoes, which `herald api` matches events by.
    assert_eq!(body["custom_args"]["tenant"], dispatch.tenant);
    assert_eq!(body["custom_args"]["user_id"], dispatch.user_id);
    assert_eq!(body["custom_args"]["category"], dispatch.category);
    assert_eq!(
        body["custom_args"]["created_at"],
        dispatch.created_at.timestamp_millis().to_string()
    );
    assert_eq!(
        body["from"],
        serde_json::json!({"email": "billing@acme.example", "name": "Acme Billing"})
    );
    assert_eq!(body["subject"], dispatch.content.subject.clone().unwrap());
    assert_eq!(
        body["content"],
        serde_json::json!([
            {"type": "text/plain", "value": dispatch.content.text.clone().unwrap()},
            {"type": "text/html", "value": dispatch.content.html.clone().unwrap()},
        ])
    );
    assert_eq!(
        body["headers"]["List-Unsubscribe"],
        "<https://acme.example/unsub?u=u-1&c=billing.invoice_ready>"
    );
    assert_eq!(
        body["headers"]["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );
}

#[tokio::test]
async fn classifies_rate_limits_faults_and_rejections() {
    let failing = Failing::default();
    let override_ = failing.clone();
    let standin = StandIn::start(move |_| {
        override_
            .get()
            .unwrap_or_else(|| Reply::status(202).header("X-Message-Id", "ok"))
    })
    .await;
    let provider = SendGridProvider::new(&config(&standin.url())).unwrap();
    let dispatch = sample_dispatch(Channel::Email, "zoe@example.com");
    assert_failure_classes(&provider, &dispatch, &failing).await;
    assert_eq!(provider.send(&dispatch).await.outcome, Outcome::sent("ok"));
}

#[tokio::test]
async fn a_provider_that_is_down_is_transient() {
    // a port nothing listens on: bind, note it, close
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = SendGridProvider::new(&config(&format!("http://127.0.0.1:{port}"))).unwrap();
    let outcome = provider
        .send(&sample_dispatch(Channel::Email, "zoe@example.com"))
        .await
        .outcome;
    assert!(
        matches!(&outcome, Outcome::Transient { reason, .. } if reason.starts_with("connection failed")),
        "{outcome:?}"
    );
}
