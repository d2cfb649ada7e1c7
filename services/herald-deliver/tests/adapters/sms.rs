//! The Twilio Messages API shape.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use herald_contracts::Channel;
use herald_deliver::{Outcome, Provider, TwilioConfig, TwilioProvider};
use herald_test_support::dispatch::sample_dispatch;
use herald_test_support::standin::{Reply, StandIn};

use crate::common::{Failing, assert_failure_classes};

const PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json";

fn config(base_url: &str, sender: &str) -> TwilioConfig {
    toml::from_str(&format!(
        r#"
        base_url = "{base_url}"
        account_sid = "AC0123456789abcdef"
        auth_token = "twilio-token"
        {sender}
        status_callback = "https://herald.example/callbacks/twilio?dispatch={{dispatch_id}}"
        timeout = "5s"
        "#
    ))
    .unwrap()
}

fn created() -> Reply {
    Reply::json(
        201,
        serde_json::json!({"sid": "SM0000000000000000000000000000001", "status": "queued"}),
    )
}

#[tokio::test]
async fn posts_a_form_with_basic_auth_and_reads_the_sid() {
    let standin = StandIn::start(|_| created()).await;
    let provider =
        TwilioProvider::new(&config(&standin.url(), r#"from = "+15005550006""#)).unwrap();
    let mut dispatch = sample_dispatch(Channel::Sms, "+14155550100");
    dispatch.content.text = Some("Votre code : 123 456 — valable 5 min".into());

    let report = provider.send(&dispatch).await;
    assert_eq!(
        report.outcome,
        Outcome::sent("SM0000000000000000000000000000001")
    );

    let requests = standin.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, PATH);
    let expected = format!(
        "Basic {}",
        STANDARD.encode("AC0123456789abcdef:twilio-token")
    );
    assert_eq!(request.header("authorization"), Some(expected.as_str()));
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.form_value("To").as_deref(), Some("+14155550100"));
    assert_eq!(request.form_value("From").as_deref(), Some("+15005550006"));
    assert_eq!(request.form_value("MessagingServiceSid"), None);
    assert_eq!(request.form_value("Body"), dispatch.content.text);
    let callback = format!(
        "https://herald.example/callbacks/twilio?dispatch={}",
        dispatch.dispatch_id.replace(':', "%3A")
    );
    assert_eq!(request.form_value("StatusCallback"), Some(callback));
}

#[tokio::test]
async fn a_messaging_service_replaces_the_sender_number() {
    let standin = StandIn::start(|_| created()).await;
    let provider = TwilioProvider::new(&config(
        &standin.url(),
        r#"messaging_service_sid = "MG0001""#,
    ))
    .unwrap();
    let dispatch = sample_dispatch(Channel::Sms, "+14155550100");
    assert!(provider.send(&dispatch).await.outcome.is_sent());
    let request = &standin.requests()[0];
    assert_eq!(
        request.form_value("MessagingServiceSid").as_deref(),
        Some("MG0001")
    );
    assert_eq!(request.form_value("From"), None);
}

#[tokio::test]
async fn classifies_rate_limits_faults_and_rejections() {
    let failing = Failing::default();
    let override_ = failing.clone();
    let standin = StandIn::start(move |_| override_.get().unwrap_or_else(created)).await;
    let provider =
        TwilioProvider::new(&config(&standin.url(), r#"from = "+15005550006""#)).unwrap();
    let dispatch = sample_dispatch(Channel::Sms, "+14155550100");
    assert_failure_classes(&provider, &dispatch, &failing).await;
}
