//! SMTP against a real SMTP server process (aiosmtpd), read back with Python's email package.

use std::time::Duration;

use herald_contracts::Channel;
use herald_deliver::email::message_id;
use herald_deliver::{Outcome, Provider, SmtpConfig, SmtpProvider};
use herald_test_support::dispatch::sample_dispatch;
use herald_test_support::smtp::{SinkOptions, SinkTls, SmtpSink, localhost_certificates};
use herald_test_support::unique;

fn config(extra: &str) -> SmtpConfig {
    toml::from_str(&format!(
        r#"
        from = "Acme Billing <billing@acme.example>"
        reply_to = "support@acme.example"
        list_unsubscribe = "<https://acme.example/unsub?u={{user_id}}&c={{category}}>, <mailto:unsubscribe@acme.example?subject={{dispatch_id}}>"
        list_unsubscribe_post = true
        timeout = "10s"
        {extra}
        "#
    ))
    .unwrap()
}

#[tokio::test]
async fn sends_multipart_alternative_with_the_headers_and_encodings() {
    let sink = SmtpSink::start(SinkOptions {
        auth: Some(("herald".into(), "s3cret".into())),
        ..SinkOptions::default()
    });
    let provider = SmtpProvider::new(&config(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nusername = \"herald\"\npassword = \"s3cret\"",
        sink.port
    )))
    .unwrap();
    let dispatch = sample_dispatch(Channel::Email, "Zoë Dupont <zoe@example.com>");

    let report = provider.send(&dispatch).await;
    let expected_id = message_id(&dispatch, "acme.example");
    assert_eq!(report.outcome, Outcome::sent(&expected_id));

    let mail = sink.wait_for_messages(1, Duration::from_secs(10)).remove(0);
    assert_eq!(mail.json["mail_from"], "billing@acme.example");
    assert_eq!(
        mail.json["rcpt_tos"],
        serde_json::json!(["zoe@example.com"])
    );
    assert_eq!(mail.json["login"], "herald");
    assert_eq!(mail.json["content_type"], "multipart/alternative");

    let content = &dispatch.content;
    assert_eq!(mail.header("Subject"), content.subject);
    assert!(
        mail.raw_header("Subject").unwrap().contains("=?utf-8?"),
        "the subject is RFC 2047 encoded: {:?}",
        mail.raw_header("Subject")
    );
    assert_eq!(mail.header("Message-ID"), Some(expected_id.clone()));
    assert!(expected_id.starts_with(&format!("<{}", dispatch.event_id)));
    assert_eq!(
        mail.header("List-Unsubscribe"),
        Some(format!(
            "<https://acme.example/unsub?u=u-1&c=billing.invoice_ready>, <mailto:unsubscribe@acme.example?subject={}>",
            dispatch.dispatch_id.replace(':', "%3A")
        ))
    );
    assert_eq!(
        mail.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert_eq!(
        mail.header("From").as_deref(),
        Some("Acme Billing <billing@acme.example>")
    );
    assert_eq!(
        mail.header("Reply-To").as_deref(),
        Some("support@acme.example")
    );
    assert_eq!(
        mail.header("To").as_deref(),
        Some("Zoë Dupont <zoe@example.com>")
    );

    let text = mail.part("text/plain").unwrap();
    let html = mail.part("text/html").unwrap();
    assert_eq!(text["content"], content.text.clone().unwrap());
    assert_eq!(html["content"], content.html.clone().unwrap());
    for part in [text, html] {
        assert_eq!(part["charset"], "utf-8");
        let encoding = part["transfer_encoding"].as_str().unwrap();
        assert!(
            ["quoted-printable", "base64"].contains(&encoding),
            "{encoding}"
        );
    }
    assert!(mail.raw.is_ascii(), "non-ASCII text is transfer-encoded");
}

#[tokio::test]
async fn starttls_and_implicit_tls_with_a_private_ca() {
    let dir = std::env::temp_dir()
        .join("herald-tests")
        .join(unique("smtp_tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let certs = localhost_certificates(&dir);
    for (security, tls) in [
        (
            "starttls",
            SinkTls::Starttls {
                cert: certs.cert.clone(),
                key: certs.key.clone(),
            },
        ),
        (
            "tls",
            SinkTls::Implicit {
                cert: certs.cert.clone(),
                key: certs.key.clone(),
            },
        ),
    ] {
        let sink = SmtpSink::start(SinkOptions { auth: None, tls });
        let provider = SmtpProvider::new(&config(&format!(
            "host = \"localhost\"\nport = {}\nsecurity = \"{security}\"\nca_file = \"{}\"",
            sink.port,
            certs.ca.display()
        )))
        .unwrap();
        let dispatch = sample_dispatch(Channel::Email, "zoe@example.com");
        let report = provider.send(&dispatch).await;
        assert!(report.outcome.is_sent(), "{security}: {report:?}");
        let mail = sink.wait_for_messages(1, Duration::from_secs(10)).remove(0);
        assert_eq!(mail.json["tls"], true, "{security}");
        assert_eq!(
            mail.part("text/plain").unwrap()["content"],
            dispatch.content.text.clone().unwrap()
        );
    }
}

#[tokio::test]
async fn rejected_credentials_are_permanent_and_an_unreachable_relay_is_transient() {
    let sink = SmtpSink::start(SinkOptions {
        auth: Some(("herald".into(), "s3cret".into())),
        ..SinkOptions::default()
    });
    let provider = SmtpProvider::new(&config(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nusername = \"herald\"\npassword = \"wrong\"",
        sink.port
    )))
    .unwrap();
    let outcome = provider
        .send(&sample_dispatch(Channel::Email, "zoe@example.com"))
        .await
        .outcome;
    assert!(
        matches!(&outcome, Outcome::Permanent { reason } if reason.contains("535")),
        "{outcome:?}"
    );
    assert!(sink.messages().is_empty());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = SmtpProvider::new(&config(&format!(
        "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\""
    )))
    .unwrap();
    let outcome = provider
        .send(&sample_dispatch(Channel::Email, "zoe@example.com"))
        .await
        .outcome;
    assert!(matches!(outcome, Outcome::Transient { .. }), "{outcome:?}");
}

#[tokio::test]
async fn an_address_that_is_not_a_mailbox_is_permanent() {
    let provider = SmtpProvider::new(&config(
        "host = \"127.0.0.1\"\nport = 1\nsecurity = \"none\"",
    ))
    .unwrap();
    let outcome = provider
        .send(&sample_dispatch(Channel::Email, "not an address"))
        .await
        .outcome;
    assert_eq!(
        outcome,
        Outcome::permanent("the recipient address is not a valid mailbox")
    );
}
