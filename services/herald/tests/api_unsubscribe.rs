//! One-click unsubscribe (RFC 8058) on the real stack: an email sent through the SMTP worker
//! carries `List-Unsubscribe` with a signed link to `herald api` and
//! `List-Unsubscribe-Post`; `GET` on the link shows a confirmation page, `POST` opts the user
//! out of the category and the router then suppresses it; a tampered or expired link is
//! refused and writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use std::time::Duration;

use herald_contracts::secret::Secret;
use herald_contracts::unsubscribe::UnsubscribeConfig;
use herald_test_support::api::ApiClient;
use herald_test_support::deliver::DELIVER_DEFAULTS;
use herald_test_support::smtp::{SinkOptions, SmtpSink};
use herald_test_support::{HeraldEnv, outcome};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const BASE_URL: &str = "https://notify.acme.example";
const SECRET: &str = "unsubscribe-test-secret-0123456789abcdef";
const CATEGORY: &str = "billing.invoice_ready";

fn invoice(event_id: &str) -> serde_json::Value {
    serde_json::json!({
        "event_id": event_id,
        "category": CATEGORY,
        "template": {"id": "invoice_ready"},
        "recipient": {"user_id": "zoe"},
        "data": {"name": "Zoé", "invoice": {"number": "INV-7", "amount": "7.00"}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_link_opts_the_user_out_of_the_category() {
    let env = HeraldEnv::new(HERALD, "api_unsubscribe");
    env.prepare(true);
    env.seed_demo();
    let sink = SmtpSink::start(SinkOptions::default());
    env.append_config(&format!(
        "\n[router]\ncache_ttl = \"1s\"\n\n\
         [unsubscribe]\nbase_url = \"{BASE_URL}/\"\nsecret = \"{SECRET}\"\nttl = \"1h\"\n\n\
         [deliver]\n{DELIVER_DEFAULTS}\n\
         [deliver.providers.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
         from = \"Acme <no-reply@acme.example>\"\n",
        sink.port
    ));
    let key = env.create_api_key("acme", "send,manage");
    let _router = env.spawn("router", &["router"], &[]);
    let _worker = env.spawn("deliver", &["deliver", "--channel", "email"], &[]);
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);
    let user = client
        .call(
            Method::PUT,
            "/v1/users/zoe",
            &key,
            Some(&serde_json::json!({"email": "zoe@example.com"})),
        )
        .await;
    assert_eq!(user.status, 200, "{user:?}");

    // The email carries both headers, the link signed for zoe and the category.
    assert_eq!(client.send(&key, &invoice("u-1")).await.status, 202);
    let mail = sink
        .wait_for_messages(1, Duration::from_secs(60))
        .pop()
        .unwrap();
    assert_eq!(
        mail.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let header = mail.header("List-Unsubscribe").unwrap();
    let token = header
        .strip_prefix(&format!("<{BASE_URL}/v1/unsubscribe/"))
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or_else(|| panic!("not a signed link: {header}"))
        .to_owned();
    let link = format!("/v1/unsubscribe/{token}");

    // GET: a confirmation page with a form; nothing written.
    let page = client.http.get(api.url(&link)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains(CATEGORY) && html.contains("<form method=\"post\""),
        "{html}"
    );
    let opted_out = || async {
        let answer = client
            .call(Method::GET, "/v1/users/zoe/preferences", &key, None)
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["categories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["category"] == CATEGORY && c["opted_out"] == true)
    };
    assert!(!opted_out().await);

    // A tampered link (another user under the same signature) and an expired one (signed with
    // the same secret) are refused, with nothing written.
    let (_, mac) = token.split_once('.').unwrap();
    let links = UnsubscribeConfig {
        base_url: Some(BASE_URL.into()),
        secret: Some(Secret::new(SECRET)),
        ttl: Duration::from_secs(3600),
    }
    .links()
    .unwrap()
    .unwrap();
    let hour = chrono::Duration::hours(1);
    let bob = links.token("acme", "bob", CATEGORY, chrono::Utc::now() + hour);
    let tampered = format!("{}.{mac}", bob.split_once('.').unwrap().0);
    let expired = links.token("acme", "zoe", CATEGORY, chrono::Utc::now() - hour);
    for (token, status) in [(&tampered, 400), (&expired, 410), (&"x".to_owned(), 400)] {
        let path = format!("/v1/unsubscribe/{token}");
        let answer = client
            .post(&path, None, &[], "List-Unsubscribe=One-Click")
            .await;
        answer.problem(status);
        let answer = client.call(Method::GET, &path, "", None).await;
        answer.problem(status);
    }
    assert!(!opted_out().await);

    // POST (what a mail client sends for one click): opted out; twice is harmless.
    for _ in 0..2 {
        let answer = client
            .http
            .post(api.url(&link))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    assert!(opted_out().await);

    // The router suppresses the category for zoe once its profile cache (1 s) has expired:
    // each try is a new event, and one that met the cached profile is sent.
    let mut suppressed = false;
    for i in 2..12 {
        let event_id = format!("u-{i}");
        assert_eq!(client.send(&key, &invoice(&event_id)).await.status, 202);
        let outcome_ = env.wait_for_outcome(&event_id, &["routed", "suppressed"]);
        if outcome_ == outcome("suppressed", "", "opted_out") {
            suppressed = true;
            break;
        }
    }
    assert!(
        suppressed,
        "the router still routes the category after the opt-out"
    );
}
