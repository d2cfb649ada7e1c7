//! Open and click tracking on the real stack: an email of a category that opted in
//! (`track_engagement`), sent through the SMTP worker to a real SMTP server, has an open pixel
//! and its http(s) links rewritten to signed links of `herald api` in the HTML part (the text
//! part and a `mailto:` keep theirs); an email of another category has neither. Fetching the
//! pixel and the link twice each, from two API replicas, answers the image and a 302 to the
//! original URL every time and emits exactly one `opened` and one `clicked`; a modified link
//! is refused and emits nothing. With the database or the broker frozen, opens and clicks are
//! still answered and counted unrecorded, and recorded once the dependency is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use std::time::Duration;

use herald_contracts::Channel;
use herald_contracts::secret::Secret;
use herald_contracts::tracking::TrackingConfig;
use herald_runtime::metric_names::API_ENGAGEMENT;
use herald_test_support::api::{ApiClient, ApiProcess};
use herald_test_support::deliver::DELIVER_DEFAULTS;
use herald_test_support::dispatch::sample_dispatch;
use herald_test_support::smtp::{ReceivedMail, SinkOptions, SmtpSink};
use herald_test_support::{HeraldEnv, outcomes_by_event};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const BASE_URL: &str = "https://t.acme.example";
const SECRET: &str = "tracking-test-secret-0123456789abcdef";
const TRACKED: &str = "billing.engaged";
const TARGET: &str = "https://shop.example/orders/42?ref=mail&x=1";

fn request(event_id: &str, category: &str, template: &str) -> serde_json::Value {
    serde_json::json!({
        "event_id": event_id,
        "category": category,
        "template": {"id": template},
        "recipient": {"user_id": "zoe"},
        "data": {"name": "Zoé", "invoice": {"number": "INV-9", "amount": "9.00"}},
    })
}

/// The token after `<BASE_URL><route>/` in `html`, up to the closing quote.
fn token_in(html: &str, route: &str) -> String {
    let prefix = format!("\"{BASE_URL}{route}/");
    html.split(&prefix)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no {route} link in {html}"))
        .to_owned()
}

fn html_of(mail: &ReceivedMail) -> String {
    mail.part("text/html").expect("an HTML part")["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The sum of `herald_api_engagement_total` series of `kind` and `outcome` over replicas.
fn engagement_count(apis: &[&ApiProcess], kind: &str, outcome: &str) -> f64 {
    apis.iter()
        .filter_map(|api| api.role.admin_get("/metrics"))
        .flat_map(|(_, text)| {
            text.lines()
                .filter(|line| {
                    line.starts_with(API_ENGAGEMENT)
                        && line.contains(&format!("kind=\"{kind}\""))
                        && line.contains(&format!("outcome=\"{outcome}\""))
                })
                .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_open_and_click_of_a_tracked_email_are_emitted_once() {
    let env = HeraldEnv::new(HERALD, "email_engagement");
    env.prepare(true);
    env.seed_demo();
    let sink = SmtpSink::start(SinkOptions::default());
    env.append_config(&format!(
        "\n[tracking]\nbase_url = \"{BASE_URL}/\"\nsecret = \"{SECRET}\"\n\n\
         [deliver]\n{DELIVER_DEFAULTS}\n\
         [deliver.providers.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
         from = \"Acme <no-reply@acme.example>\"\n",
        sink.port
    ));
    let key = env.create_api_key("acme", "send,manage");
    let api = env.spawn_api("api", &[]);
    let api2 = env.spawn_api("api2", &[]);
    let client = ApiClient::new(&api);

    // A category that opts in, a template with links, and the recipient.
    let category = client
        .call(
            Method::PUT,
            &format!("/v1/categories/{TRACKED}"),
            &key,
            Some(&serde_json::json!({"channels": ["email"], "track_engagement": true})),
        )
        .await;
    assert_eq!(category.status, 200, "{category:?}");
    assert_eq!(category.body["track_engagement"], true);
    let html = "<html><body><p>Hello {{name}},</p>\
        <p><a class=\"button\" href=\"https://shop.example/orders/42?ref=mail&amp;x=1\">Your order</a>\
        or <a href='mailto:help@acme.example'>write to us</a>.</p></body></html>";
    let text = format!("Hello {{{{name}}}}, your order: {TARGET}");
    let version = client
        .post(
            "/v1/templates/engaged/versions",
            Some(&key),
            &[],
            serde_json::json!({"parts": {"email": {"default": {
                "subject": "Order for {{name}}", "text": text, "html": html,
            }}}})
            .to_string(),
        )
        .await;
    assert_eq!(version.status, 201, "{version:?}");
    let published = client
        .post(
            "/v1/templates/engaged/versions/1/publish",
            Some(&key),
            &[],
            "",
        )
        .await;
    assert_eq!(published.status, 200, "{published:?}");
    let user = client
        .call(
            Method::PUT,
            "/v1/users/zoe",
            &key,
            Some(&serde_json::json!({"email": "zoe@example.com"})),
        )
        .await;
    assert_eq!(user.status, 200, "{user:?}");

    let _router = env.spawn("router", &["router"], &[]);
    let _worker = env.spawn("deliver", &["deliver", "--channel", "email"], &[]);
    assert_eq!(
        client
            .send(&key, &request("t-1", TRACKED, "engaged"))
            .await
            .status,
        202
    );
    assert_eq!(
        client
            .send(
                &key,
                &request("p-1", "billing.invoice_ready", "invoice_ready")
            )
            .await
            .status,
        202
    );
    let mails = sink.wait_for_messages(2, Duration::from_secs(60));
    let subject_of = |m: &ReceivedMail| m.header("Subject").unwrap_or_default();
    let tracked = mails
        .iter()
        .find(|m| subject_of(m).starts_with("Order for"))
        .expect("the tracked email");
    let plain = mails
        .iter()
        .find(|m| !subject_of(m).starts_with("Order for"))
        .expect("the other email");

    // The tracked HTML: the link rewritten, the mailto kept, the pixel at the end of the
    // body; the text part keeps the original link. The other category is untouched.
    let tracked_html = html_of(tracked);
    assert!(
        !tracked_html.contains("https://shop.example"),
        "{tracked_html}"
    );
    assert!(
        tracked_html.contains("<a class=\"button\" href=\"https://t.acme.example/v1/t/click/"),
        "{tracked_html}"
    );
    assert!(
        tracked_html.contains("href='mailto:help@acme.example'"),
        "{tracked_html}"
    );
    assert!(
        tracked_html.contains("<img src=\"https://t.acme.example/v1/t/open/"),
        "{tracked_html}"
    );
    assert!(tracked_html.contains("\"></body></html>"), "{tracked_html}");
    let tracked_text = tracked.part("text/plain").unwrap()["content"]
        .as_str()
        .unwrap();
    assert!(tracked_text.contains(TARGET), "{tracked_text}");
    assert!(!tracked_text.contains("/v1/t/"), "{tracked_text}");
    assert!(!html_of(plain).contains("/v1/t/"), "{}", html_of(plain));

    let open = token_in(&tracked_html, "/v1/t/open");
    let click = token_in(&tracked_html, "/v1/t/click");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // Twice each, from either replica: the image and the redirect every time.
    for replica in [&api, &api2] {
        let pixel = http
            .get(replica.url(&format!("/v1/t/open/{open}")))
            .send()
            .await
            .unwrap();
        assert_eq!(pixel.status(), 200);
        assert_eq!(pixel.headers()["content-type"], "image/gif");
        assert!(
            pixel.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("no-store")
        );
        assert!(pixel.bytes().await.unwrap().starts_with(b"GIF89a"));
    }
    for replica in [&api2, &api] {
        let redirect = http
            .get(replica.url(&format!("/v1/t/click/{click}")))
            .send()
            .await
            .unwrap();
        assert_eq!(redirect.status(), 302);
        assert_eq!(redirect.headers()["location"], TARGET);
        assert!(
            redirect.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("no-store")
        );
    }

    // Modified links: another payload under the link's signature, one changed character, a
    // pixel's token used as a link. Refused as problems; nothing emitted.
    let (click_payload, click_mac) = click.split_once('.').unwrap();
    let (open_payload, _) = open.split_once('.').unwrap();
    let mut changed = click_payload.as_bytes().to_vec();
    let last = changed.len() - 1;
    changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
    let changed = format!("{}.{click_mac}", String::from_utf8(changed).unwrap());
    for path in [
        format!("/v1/t/click/{open_payload}.{click_mac}"),
        format!("/v1/t/click/{changed}"),
        format!("/v1/t/click/{open}"),
        format!("/v1/t/open/{click}"),
        "/v1/t/click/not-a-token".to_owned(),
    ] {
        let refused = http.get(api.url(&path)).send().await.unwrap();
        assert_eq!(refused.status(), 400, "{path}");
        assert!(refused.headers().get("location").is_none(), "{path}");
        assert_eq!(
            refused.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }

    // Every answer came after the broker acknowledged what it emitted: the topic, read to its
    // end, holds exactly one `opened` and one `clicked` of the dispatch.
    let records = env.read_all(&env.topics().status());
    let engaged: Vec<&serde_json::Value> = records
        .iter()
        .map(|r| &r["value"])
        .filter(|v| v["status"] == "opened" || v["status"] == "clicked")
        .collect();
    let mut statuses: Vec<&str> = engaged
        .iter()
        .map(|v| v["status"].as_str().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["clicked", "opened"], "{engaged:?}");
    for v in &engaged {
        assert_eq!(v["event_id"], "t-1");
        assert_eq!(v["dispatch_id"], "t-1:email");
        assert_eq!(v["channel"], "email");
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["user_id"], "zoe");
        assert_eq!(v["category"], TRACKED);
        assert!(v["created_at"].is_string(), "{v}");
    }
    assert!(
        outcomes_by_event(&records)["p-1"]
            .iter()
            .all(|(status, _, _)| status != "opened" && status != "clicked")
    );
    // The repeats were counted, not emitted.
    for kind in ["open", "click"] {
        assert_eq!(engagement_count(&[&api, &api2], kind, "recorded"), 1.0);
        assert_eq!(engagement_count(&[&api, &api2], kind, "repeat"), 1.0);
    }

    outages_still_answer_and_record_later(&env, &api, &http).await;
}

/// With the database or the broker frozen, a person's open still gets the image and a click
/// the redirect, within the request timeout, and the miss is counted `unrecorded`; once the
/// dependency is back, their next open or click is recorded. The database outage emits nothing
/// (a first open cannot be told from a repeat), so exactly one `opened` follows; the broker
/// outage may leave one more `clicked` (a record the frozen broker takes when it resumes, after
/// its producer gave up on it: the duplicate window `tracking.rs` documents).
async fn outages_still_answer_and_record_later(
    env: &HeraldEnv,
    api: &ApiProcess,
    http: &reqwest::Client,
) {
    let links = TrackingConfig {
        base_url: Some(BASE_URL.into()),
        secret: Some(Secret::new(SECRET)),
        ..TrackingConfig::default()
    }
    .links()
    .unwrap()
    .unwrap();
    let mut dispatch = sample_dispatch(Channel::Email, "zoe@example.com");
    dispatch.user_id = "zoe".into();
    let local = |url: String| api.url(url.strip_prefix(BASE_URL).unwrap());
    let open = local(links.open_url(&dispatch));
    let click = local(links.click_url(&dispatch, TARGET));
    let count_of = |kind: &str, outcome: &str| engagement_count(&[api], kind, outcome);
    let recorded_before = [count_of("open", "recorded"), count_of("click", "recorded")];
    let answered_within = |started: std::time::Instant| {
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "answered after {took:?}");
    };

    {
        let _frozen = env.stack.freeze_database();
        let started = std::time::Instant::now();
        let pixel = http.get(&open).send().await.unwrap();
        assert_eq!(pixel.status(), 200);
        assert!(pixel.bytes().await.unwrap().starts_with(b"GIF89a"));
        answered_within(started);
    }
    assert_eq!(count_of("open", "unrecorded"), 1.0);
    {
        let _frozen = env.stack.freeze_broker();
        let started = std::time::Instant::now();
        let redirect = http.get(&click).send().await.unwrap();
        assert_eq!(redirect.status(), 302);
        assert_eq!(redirect.headers()["location"], TARGET);
        answered_within(started);
    }
    assert_eq!(count_of("click", "unrecorded"), 1.0);

    // Back: the next open and click are recorded (the database may take a moment to answer
    // again, which counts another miss and is retried, as a person opening again would).
    for ((url, kind), before) in [(&open, "open"), (&click, "click")]
        .into_iter()
        .zip(recorded_before)
    {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let answer = http.get(url.as_str()).send().await.unwrap();
            assert!(
                answer.status() == 200 || answer.status() == 302,
                "{answer:?}"
            );
            if count_of(kind, "recorded") > before {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no recorded {kind}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let records = env.read_all(&env.topics().status());
    let count = |status: &str| {
        records
            .iter()
            .filter(|r| r["value"]["dispatch_id"] == dispatch.dispatch_id.as_str())
            .filter(|r| r["value"]["status"] == status)
            .count()
    };
    assert_eq!(count("opened"), 1, "{records:?}");
    assert!((1..=2).contains(&count("clicked")), "{records:?}");
}
