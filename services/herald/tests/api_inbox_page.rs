//! The reference inbox page (`GET /inbox`) in a real, headless Chromium: opened with a user
//! token, it shows a notification produced to Kafka without a reload, and clicking "Mark read"
//! lowers the badge and puts a `read` status on `notifications.status`. The page's screenshot
//! is kept in the test's directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_runtime::metric_names::API_INBOX_STREAMS;
use herald_test_support::api::ApiClient;
use herald_test_support::browser::Browser;
use herald_test_support::inbox::{InboxEnv, news};
use herald_test_support::wait_for;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const PIPELINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_page_updates_live_and_marks_read() {
    let inbox = InboxEnv::start(HERALD, "api_inbox_page");
    let env = &inbox.env;
    let Some(browser) = Browser::start(&env.dir.join("chromedriver.log")).await else {
        return;
    };
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);
    let token = inbox.token(&client, "ada").await;

    browser
        .open(&api.url(&format!("/inbox#token={token}")))
        .await;
    browser
        .wait_for(
            "the page to connect its stream",
            "return document.getElementById('status').textContent === 'live';",
            PIPELINE,
        )
        .await;
    wait_for("the page's stream", Duration::from_secs(20), || {
        (api.role.metric(API_INBOX_STREAMS) == Some(1.0)).then_some(())
    });
    let shown = browser
        .script("return document.querySelectorAll('#messages li').length;")
        .await;
    assert_eq!(shown, 0);

    // A notification produced to Kafka appears without a reload.
    let mut request = news("ada", 1);
    request["tenant"] = "acme".into();
    env.run(&["produce"], Some(&format!("{request}\n")))
        .assert_code(0);
    let title = browser
        .wait_for(
            "the new message on the page",
            "const li = document.querySelector('#messages li .title'); \
             return li && li.textContent;",
            PIPELINE,
        )
        .await;
    assert_eq!(title, "News 1");
    let badge = browser
        .wait_for(
            "the badge to count it",
            "const b = document.getElementById('badge'); return b.dataset.count === '1' && b.textContent;",
            PIPELINE,
        )
        .await;
    assert_eq!(badge, "1");
    let link = browser
        .script("return document.querySelector('#messages li a.title').getAttribute('href');")
        .await;
    assert_eq!(link, "https://app.acme.example/news/1");
    browser.screenshot(&env.dir.join("inbox-unread.png")).await;

    // Mark read: the badge drops to zero and a `read` status is recorded.
    browser.click("#messages li .mark-read").await;
    browser
        .wait_for(
            "the badge to drop",
            "return document.getElementById('badge').dataset.count === '0';",
            PIPELINE,
        )
        .await;
    let unread = browser
        .script("return document.querySelectorAll('#messages li.unread').length;")
        .await;
    assert_eq!(unread, 0);
    let screenshot = env.dir.join("inbox-read.png");
    browser.screenshot(&screenshot).await;
    println!("screenshot: {}", screenshot.display());
    let statuses = wait_for("the read status", PIPELINE, || {
        let records = env.read_all(&env.topics().status());
        let read: Vec<_> = records
            .into_iter()
            .filter(|r| r["value"]["status"] == "read")
            .collect();
        (!read.is_empty()).then_some(read)
    });
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0]["value"]["event_id"], "news-ada-1");
    assert_eq!(statuses[0]["value"]["user_id"], "ada");
}
