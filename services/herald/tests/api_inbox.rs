//! The in-app inbox on the real stack: notifications sent through the API are routed and
//! written by the in-app worker; a user token lists them (pages stay stable while new ones
//! arrive), counts them, and marks them seen, read and archived, each change emitting its
//! status once on `notifications.status`; a token opens only its own user's inbox (403), an
//! expired or tampered one is 401; browsers of the tenant's origins may call it (CORS).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use std::collections::BTreeSet;
use std::time::Duration;

use herald_api::config::InboxConfig;
use herald_api::inbox::token::InboxTokens;
use herald_contracts::secret::Secret;
use herald_test_support::api::{Answer, ApiClient};
use herald_test_support::inbox::{InboxEnv, ORIGIN, TOKEN_SECRET, news};
use herald_test_support::wait_for;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(60);

struct Inbox<'a> {
    client: &'a ApiClient,
    token: String,
}

impl Inbox<'_> {
    async fn get(&self, path: &str) -> Answer {
        self.client.call(Method::GET, path, &self.token, None).await
    }

    async fn counts(&self) -> (u64, u64, u64) {
        let answer = self.get("/v1/inbox/counts").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let n = |k: &str| answer.body[k].as_u64().unwrap();
        (n("total"), n("unread"), n("unseen"))
    }

    /// The counts once the inbox holds `want` messages (the worker writes them).
    async fn wait_for_total(&self, want: u64) -> (u64, u64, u64) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let counts = self.counts().await;
            if counts.0 == want {
                return counts;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{counts:?}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The ids of one page, and its cursor.
    async fn page(&self, query: &str) -> (Vec<String>, Option<String>) {
        let answer = self.get(&format!("/v1/inbox/messages?{query}")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let ids = answer.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        (ids, answer.body["next_cursor"].as_str().map(str::to_owned))
    }

    /// Every id a filter lists, following cursors.
    async fn all(&self, filter: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let query = match &cursor {
                Some(c) => format!("filter={filter}&limit=3&cursor={c}"),
                None => format!("filter={filter}&limit=3"),
            };
            let (page, next) = self.page(&query).await;
            ids.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => return ids,
            }
        }
    }

    async fn mark(&self, body: serde_json::Value) -> Answer {
        self.client
            .call(Method::POST, "/v1/inbox/mark", &self.token, Some(&body))
            .await
    }

    async fn changed(&self, body: serde_json::Value) -> Vec<String> {
        let answer = self.mark(body).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_token_reads_counts_and_marks_only_its_own_inbox() {
    let inbox = InboxEnv::start(HERALD, "api_inbox");
    let (env, key) = (&inbox.env, &inbox.key);
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);
    let ada = Inbox {
        client: &client,
        token: inbox.token(&client, "ada").await,
    };
    let bob = Inbox {
        client: &client,
        token: inbox.token(&client, "bob").await,
    };
    // A user Herald does not know gets no token.
    let unknown = client
        .call(Method::POST, "/v1/users/nobody/inbox-token", key, None)
        .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    for n in 1..=5 {
        assert_eq!(client.send(key, &news("ada", n)).await.status, 202);
    }
    assert_eq!(client.send(key, &news("bob", 1)).await.status, 202);
    assert_eq!(ada.wait_for_total(5).await, (5, 5, 5));
    assert_eq!(bob.wait_for_total(1).await, (1, 1, 1));

    // A message as the page shows it: rendered, with its action URL, newest first.
    let first = ada.get("/v1/inbox/messages?limit=1").await;
    let newest = &first.body["messages"][0];
    assert_eq!(newest["title"], "News 5", "{first:?}");
    assert_eq!(newest["body"], "Item 5 is out");
    assert_eq!(newest["action_url"], "https://app.acme.example/news/5");
    assert_eq!(newest["data"]["n"], "5");
    assert_eq!(newest["category"], "team.news");
    assert_eq!(newest["priority"], "normal");
    assert_eq!(newest["event_id"], "news-ada-5");
    assert!(newest["read_at"].is_null() && newest["seen_at"].is_null());

    // Pages stay stable while new messages arrive: the second and third pages, read after
    // two more arrived, hold exactly the rest of the first five.
    let (page1, cursor) = ada.page("limit=2").await;
    assert_eq!(page1.len(), 2);
    for n in 6..=7 {
        assert_eq!(client.send(key, &news("ada", n)).await.status, 202);
    }
    assert_eq!(ada.wait_for_total(7).await, (7, 7, 7));
    let (page2, cursor) = ada
        .page(&format!("limit=2&cursor={}", cursor.unwrap()))
        .await;
    let (page3, cursor) = ada
        .page(&format!("limit=2&cursor={}", cursor.unwrap()))
        .await;
    assert_eq!(page2.len(), 2);
    assert_eq!(page3.len(), 1);
    assert_eq!(cursor, None);
    let first_five: Vec<String> = [page1, page2, page3].concat();
    assert_eq!(first_five.iter().collect::<BTreeSet<_>>().len(), 5);
    let everything = ada.all("inbox").await;
    assert_eq!(everything.len(), 7);
    assert_eq!(everything[2..], first_five[..]);
    let titles: Vec<String> = {
        let answer = ada.get("/v1/inbox/messages?limit=7").await;
        answer.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        titles,
        (1..=7)
            .rev()
            .map(|n| format!("News {n}"))
            .collect::<Vec<_>>()
    );

    // Marks: each changes a message once, and the counts follow.
    let seen = ada
        .changed(serde_json::json!({"action": "seen", "message_ids": [&everything[0]]}))
        .await;
    assert_eq!(seen, [everything[0].clone()]);
    assert_eq!(ada.counts().await, (7, 7, 6));
    let read = ada
        .changed(
            serde_json::json!({"action": "read", "message_ids": [&everything[0], &everything[1]]}),
        )
        .await;
    assert_eq!(read, [everything[0].clone(), everything[1].clone()]);
    assert_eq!(ada.counts().await, (7, 5, 5));
    // Again: nothing changes, nothing is emitted; seen after read is no change either.
    let again = ada
        .changed(
            serde_json::json!({"action": "read", "message_ids": [&everything[0], &everything[1]]}),
        )
        .await;
    assert!(again.is_empty(), "{again:?}");
    let seen_after_read = ada
        .changed(serde_json::json!({"action": "seen", "message_ids": [&everything[1]]}))
        .await;
    assert!(seen_after_read.is_empty());
    let archived = ada
        .changed(serde_json::json!({"action": "archived", "message_ids": [&everything[6]]}))
        .await;
    assert_eq!(archived.len(), 1);
    assert_eq!(ada.counts().await, (6, 4, 4));
    assert_eq!(ada.all("archived").await, [everything[6].clone()]);
    assert_eq!(ada.all("unread").await, everything[2..6].to_vec());
    let all_read = ada
        .changed(serde_json::json!({"action": "read", "all": true}))
        .await;
    assert_eq!(all_read, everything[2..6].to_vec());
    assert_eq!(ada.counts().await, (6, 0, 0));
    assert!(ada.all("unread").await.is_empty());
    assert_eq!(ada.all("all").await, everything);
    let one = ada
        .get(&format!("/v1/inbox/messages/{}", everything[3]))
        .await;
    assert_eq!(one.status, 200, "{one:?}");
    assert!(one.body["read_at"].is_string() && one.body["seen_at"].is_string());

    // Bad marks change nothing.
    for (body, status) in [
        (serde_json::json!({"action": "read"}), 422),
        (
            serde_json::json!({"action": "read", "all": true, "message_ids": [&everything[0]]}),
            422,
        ),
        (serde_json::json!({"action": "shred", "all": true}), 422),
        (
            serde_json::json!({"action": "read", "message_ids": ["not-an-id"]}),
            400,
        ),
    ] {
        let answer = ada.mark(body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {answer:?}");
    }

    // One user's token never opens another's inbox.
    let (bobs, _) = bob.page("").await;
    assert_eq!(bobs.len(), 1);
    assert!(!everything.contains(&bobs[0]));
    let peek = bob
        .get(&format!("/v1/inbox/messages/{}", everything[2]))
        .await;
    assert_eq!(peek.status, 403, "{peek:?}");
    let meddle = bob
        .mark(serde_json::json!({"action": "archived", "message_ids": [&everything[2], &bobs[0]]}))
        .await;
    assert_eq!(meddle.status, 403, "{meddle:?}");
    assert_eq!(
        bob.counts().await,
        (1, 1, 1),
        "bob's own message was not archived either"
    );

    // Expired, tampered, missing tokens and tenant keys are 401.
    let tokens = InboxTokens::from_config(&InboxConfig {
        token_secret: Some(Secret::new(TOKEN_SECRET)),
        token_ttl: Duration::from_secs(60),
        ..InboxConfig::default()
    })
    .unwrap();
    let (expired, _) = tokens.issue(
        "acme",
        "ada",
        chrono::Utc::now() - chrono::Duration::hours(1),
    );
    let (header, rest) = ada.token.split_once('.').unwrap();
    let (_, mac) = rest.split_once('.').unwrap();
    let bob_claims = bob.token.split('.').nth(1).unwrap();
    let tampered = format!("{header}.{bob_claims}.{mac}");
    for token in [expired.as_str(), tampered.as_str(), key.as_str(), "x"] {
        let answer = client
            .call(Method::GET, "/v1/inbox/counts", token, None)
            .await;
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    let bare = client
        .http
        .get(api.url("/v1/inbox/counts"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    let expired_detail = client
        .call(Method::GET, "/v1/inbox/counts", &expired, None)
        .await;
    assert!(
        expired_detail.body["detail"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{expired_detail:?}"
    );
    // A token in the query, as EventSource sends it.
    let in_query = client
        .http
        .get(api.url(&format!("/v1/inbox/counts?access_token={}", ada.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(in_query.status(), 200);

    // Browsers: the tenant's origin may call, another may not read the answer.
    let preflight = client
        .http
        .request(Method::OPTIONS, api.url("/v1/inbox/mark"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{preflight:?}");
    assert_eq!(preflight.headers()["access-control-allow-origin"], ORIGIN);
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let from = |origin: &'static str| {
        client
            .http
            .get(api.url("/v1/inbox/counts"))
            .bearer_auth(&ada.token)
            .header("origin", origin)
            .send()
    };
    let allowed = from(ORIGIN).await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], ORIGIN);
    let other = from("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Every change emitted its status once, for the right message.
    let statuses = wait_for("the inbox statuses on notifications.status", WAIT, || {
        let records = env.read_all(&env.topics().status());
        let marks: Vec<(String, String)> = records
            .iter()
            .filter(|r| {
                matches!(
                    r["value"]["status"].as_str(),
                    Some("seen" | "read" | "archived")
                )
            })
            .map(|r| {
                (
                    r["value"]["status"].as_str().unwrap().to_owned(),
                    r["value"]["event_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (marks.len() >= 8).then_some(marks)
    });
    let count = |status: &str| statuses.iter().filter(|(s, _)| s == status).count();
    assert_eq!(
        (count("seen"), count("read"), count("archived")),
        (1, 6, 1),
        "{statuses:?}"
    );
    let read_events: BTreeSet<&str> = statuses
        .iter()
        .filter(|(s, _)| s == "read")
        .map(|(_, e)| e.as_str())
        .collect();
    let expected: Vec<String> = (2..=7).map(|n| format!("news-ada-{n}")).collect();
    assert_eq!(read_events, expected.iter().map(String::as_str).collect());
}

#[test]
fn the_api_refuses_to_start_the_inbox_without_its_topic() {
    let env = herald_test_support::HeraldEnv::new(HERALD, "api_inbox_no_topic");
    env.run(&["db", "migrate"], None).assert_code(0);
    let mut api = env.spawn(
        "api",
        &["api"],
        &[
            ("HERALD_API__INBOX__TOKEN_SECRET", TOKEN_SECRET),
            ("HERALD_API__LISTEN", "127.0.0.1:0"),
        ],
    );
    wait_for("herald api to exit", WAIT, || {
        api.has_exited().then_some(())
    });
    let log = api.log_text();
    assert!(
        log.contains("notifications.inbox does not exist") && log.contains("herald topics apply"),
        "{log}"
    );
}
