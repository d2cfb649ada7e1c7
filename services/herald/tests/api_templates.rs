//! Template versions through `herald api`: a version that does not compile is refused with the
//! part's JSON Pointer and position; a new version is a draft that a preview renders but the
//! router does not, until it is published (then within `router.cache_ttl`); concurrent creates
//! get distinct numbers; scopes, tenants and unknown templates and versions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;

use herald_contracts::{Channel, Lane};
use herald_test_support::HeraldEnv;
use herald_test_support::api::{Answer, ApiClient};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

fn welcome(text: &str) -> serde_json::Value {
    serde_json::json!({"parts": {
        "email": {"default": {"subject": "Welcome {{name}}", "text": text}},
        "inapp": {"default": {"text": text}, "fr": {"text": "Bienvenue {{name}}"}},
    }})
}

/// A request for `welcome` over email, optionally pinned to a version.
fn request(event_id: &str, version: Option<i32>) -> serde_json::Value {
    serde_json::json!({
        "event_id": event_id,
        "category": "billing.invoice_ready",
        "template": {"id": "welcome", "version": version},
        "recipient": {"user_id": "guest-1", "email": "g@example.com"},
        "channels": ["email"],
        "data": {"name": "Ada"},
    })
}

/// The event's terminal outcome: the email dispatch's text when it was routed, else its
/// status and reason.
fn routed(env: &HeraldEnv, event_id: &str) -> Result<String, (String, String)> {
    let dispatches = env.topics().dispatch(Channel::Email, Lane::Bulk);
    let (status, _, reason) = env.wait_for_outcome(event_id, &["routed", "dead_lettered"]);
    let outcome = (status, reason);
    if outcome.0 != "routed" {
        return Err(outcome);
    }
    let dispatch = env
        .read_all(&dispatches)
        .into_iter()
        .find(|r| r["value"]["event_id"] == event_id)
        .expect("a routed event has a dispatch");
    Ok(dispatch["value"]["content"]["text"]
        .as_str()
        .unwrap()
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_drafts_until_published() {
    let env = HeraldEnv::new(HERALD, "api_templates");
    env.prepare(true);
    env.seed_demo();
    env.append_config("\n[router]\ncache_ttl = \"1s\"\n");
    let manage = env.create_api_key("acme", "send,manage");
    let read = env.create_api_key("acme", "read");
    let send_only = env.create_api_key("acme", "send");
    let globex = env.create_api_key("globex", "manage,read");
    let _router = env.spawn("router", &["router"], &[]);
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);
    let call = |method: Method, path: &str, key: &str, body: Option<serde_json::Value>| {
        let client = client.clone();
        let (path, key) = (path.to_owned(), key.to_owned());
        async move { client.call(method, &path, &key, body.as_ref()).await }
    };
    let versions = "/v1/templates/welcome/versions";

    // A part that does not compile: 422 naming it, with the position; nothing stored.
    let mut bad = welcome("Hello {{name}}");
    bad["parts"]["inapp"]["fr"]["text"] = "Bienvenue {{#if name}}".into();
    bad["parts"]["email"]["default"]["subject"] = "Welcome {{name}".into();
    let answer = call(Method::POST, versions, &manage, Some(bad)).await;
    let problem = answer.problem(422);
    assert_eq!(
        answer.pointers(),
        ["/parts/email/default/subject", "/parts/inapp/fr/text"]
    );
    let detail = problem["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("does not compile: line 1, column"),
        "{detail}"
    );
    let missing = call(Method::GET, "/v1/templates/welcome", &read, None).await;
    missing.problem(404);
    // Seed's rules: an email needs a subject.
    let answer = call(
        Method::POST,
        versions,
        &manage,
        Some(serde_json::json!({"parts": {"email": {"default": {"text": "x"}}}})),
    )
    .await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/parts/email/default"]);

    // Scopes: writing needs manage; reading needs read or manage.
    let answer = call(Method::POST, versions, &read, Some(welcome("x"))).await;
    answer.problem(403);
    let answer = call(Method::POST, versions, &send_only, Some(welcome("x"))).await;
    answer.problem(403);

    // v1, a draft.
    let created = call(
        Method::POST,
        versions,
        &manage,
        Some(welcome("v1 for {{name}}")),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["version"], 1);
    assert_eq!(created.body["published"], false);
    assert_eq!(
        created.body["parts"]["inapp"]["fr"]["text"],
        "Bienvenue {{name}}"
    );
    let answer = call(Method::GET, "/v1/templates/welcome", &send_only, None).await;
    answer.problem(403);

    // A preview renders the draft when asked for its version, not otherwise.
    let preview = |version: Option<i32>| {
        call(
            Method::POST,
            "/v1/templates/welcome/preview",
            &read,
            Some(
                serde_json::json!({"data": {"name": "Ada"}, "channels": ["email"], "version": version}),
            ),
        )
    };
    let answer = preview(Some(1)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.body["results"][0]["content"]["text"], "v1 for Ada",
        "{answer:?}"
    );
    preview(None).await.problem(404);

    // The router does not render a draft.
    assert_eq!(
        client.send(&manage, &request("t-draft", None)).await.status,
        202
    );
    assert_eq!(
        routed(&env, "t-draft"),
        Err(("dead_lettered".to_owned(), "unknown_template".to_owned()))
    );

    // Published, it is routed within the cache TTL: each try is a new event, so one that met
    // the cached draft-only rows is dead-lettered and the next tries again.
    let published = call(
        Method::POST,
        &format!("{versions}/1/publish"),
        &manage,
        None,
    )
    .await;
    assert_eq!(published.status, 200, "{published:?}");
    assert_eq!(published.body["published"], true);
    let published_at = published.body["published_at"].clone();
    assert!(published_at.is_string(), "{published:?}");
    let again = call(
        Method::POST,
        &format!("{versions}/1/publish"),
        &manage,
        None,
    )
    .await;
    assert_eq!(
        again.body["published_at"], published_at,
        "publishing again changes nothing"
    );
    let mut text = None;
    for i in 0..10 {
        let event_id = format!("t-published-{i}");
        let answer = client.send(&manage, &request(&event_id, None)).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        if let Ok(routed) = routed(&env, &event_id) {
            text = Some(routed);
            break;
        }
    }
    let text = text.expect("the published version is routed within the router's cache TTL");
    assert_eq!(text, "v1 for Ada");

    // Two concurrent creates get two numbers; both drafts.
    let (a, b) = tokio::join!(
        call(
            Method::POST,
            versions,
            &manage,
            Some(welcome("v2 for {{name}}"))
        ),
        call(
            Method::POST,
            versions,
            &manage,
            Some(welcome("v3 for {{name}}"))
        ),
    );
    assert_eq!((a.status, b.status), (201, 201), "{a:?} {b:?}");
    let mut numbers = [
        a.body["version"].as_i64().unwrap(),
        b.body["version"].as_i64().unwrap(),
    ];
    numbers.sort();
    assert_eq!(numbers, [2, 3]);
    let list = call(Method::GET, "/v1/templates/welcome", &read, None).await;
    assert_eq!(list.status, 200, "{list:?}");
    let listed: Vec<(i64, bool)> = list.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["published"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(3, false), (2, false), (1, true)]);
    assert_eq!(
        list.body["versions"][2]["channels"],
        serde_json::json!(["email", "inapp"])
    );
    assert_eq!(
        list.body["versions"][2]["locales"],
        serde_json::json!(["default", "fr"])
    );
    let one = call(Method::GET, &format!("{versions}/2"), &read, None).await;
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.body["version"], 2);
    assert!(one.body["parts"]["email"]["default"]["text"].is_string());

    // A request pinned to a draft is dead-lettered like an unknown version; unpinned, the
    // newest published version (v1) is still the one routed.
    assert_eq!(
        client
            .send(&manage, &request("t-pinned", Some(3)))
            .await
            .status,
        202
    );
    assert_eq!(
        routed(&env, "t-pinned"),
        Err(("dead_lettered".to_owned(), "unknown_template".to_owned()))
    );
    assert_eq!(
        client
            .send(&manage, &request("t-unpinned", None))
            .await
            .status,
        202
    );
    assert_eq!(routed(&env, "t-unpinned").unwrap(), "v1 for Ada");

    // Unknown template and version: 404; a bad version: 400.
    call(Method::GET, &format!("{versions}/9"), &read, None)
        .await
        .problem(404);
    call(
        Method::POST,
        &format!("{versions}/9/publish"),
        &manage,
        None,
    )
    .await
    .problem(404);
    call(Method::GET, "/v1/templates/nope", &read, None)
        .await
        .problem(404);
    call(Method::GET, &format!("{versions}/0"), &read, None)
        .await
        .problem(400);

    // Tenant isolation: globex sees none of acme's template, and its own `welcome` starts at 1.
    let answers: Vec<Answer> = vec![
        call(Method::GET, "/v1/templates/welcome", &globex, None).await,
        call(Method::GET, &format!("{versions}/1"), &globex, None).await,
        call(
            Method::POST,
            &format!("{versions}/2/publish"),
            &globex,
            None,
        )
        .await,
    ];
    for answer in &answers {
        answer.problem(404);
    }
    let theirs = call(
        Method::POST,
        versions,
        &globex,
        Some(welcome("globex {{name}}")),
    )
    .await;
    assert_eq!(theirs.status, 201, "{theirs:?}");
    assert_eq!(theirs.body["version"], 1);
    let ours = call(Method::GET, &format!("{versions}/2"), &read, None).await;
    assert_eq!(
        ours.body["published"], false,
        "globex's publish changed nothing of acme's"
    );
    let v2 = if a.body["version"] == 2 { &a } else { &b };
    assert_eq!(
        ours.body["parts"], v2.body["parts"],
        "versions are immutable"
    );
}
