//! Managing users and preferences through `herald api`: create/replace, read, delete, with
//! `herald seed`'s rules (422), scopes (403) and tenant isolation (another tenant's user is 404
//! to a key, and unchanged); the router sees a change (a global opt-out suppresses a send).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use std::time::Duration;

use herald_test_support::api::ApiClient;
use herald_test_support::{HeraldEnv, outcome, outcomes_by_event};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_preferences_are_managed_inside_the_key_s_tenant() {
    let env = HeraldEnv::new(HERALD, "api_manage");
    env.prepare(true);
    let acme = env.create_api_key("acme", "manage,send");
    let acme_read = env.create_api_key("acme", "read");
    let acme_send = env.create_api_key("acme", "send");
    let globex = env.create_api_key("globex", "manage");
    let _router = env.spawn("router", &["router"], &[("HERALD_ROUTER__CACHE_TTL", "1s")]);
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);
    let user = "/v1/users/ada";
    let preferences = "/v1/users/ada/preferences";

    // Create, read back (with the read scope too), and the scopes that may not.
    let profile = serde_json::json!({
        "email": "ada@example.com", "phone": "+14155550100", "push_tokens": ["tok-1"],
        "locale": "fr-CA", "time_zone": "America/Montreal",
    });
    let answer = client.call(Method::PUT, user, &acme, Some(&profile)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    for key in [&acme, &acme_read] {
        let answer = client.call(Method::GET, user, key, None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body["email"], "ada@example.com");
        assert_eq!(answer.body["time_zone"], "America/Montreal");
        assert_eq!(answer.body["push_tokens"], serde_json::json!(["tok-1"]));
    }
    client
        .call(Method::PUT, user, &acme_read, Some(&profile))
        .await
        .problem(403);
    client
        .call(Method::GET, user, &acme_send, None)
        .await
        .problem(403);
    client
        .call(Method::GET, "/v1/users/nobody", &acme, None)
        .await
        .problem(404);

    // Seed's rules: an unknown time zone, a bad quiet-hours time, an unknown field or channel.
    let answer = client
        .call(
            Method::PUT,
            user,
            &acme,
            Some(&serde_json::json!({"time_zone": "Mars/Olympus"})),
        )
        .await;
    assert!(
        answer.problem(422)["detail"]
            .as_str()
            .unwrap()
            .contains("Mars/Olympus")
    );
    let answer = client
        .call(
            Method::PUT,
            user,
            &acme,
            Some(&serde_json::json!({"emial": "x"})),
        )
        .await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/emial"]);
    let answer = client
        .call(
            Method::PUT,
            preferences,
            &acme,
            Some(&serde_json::json!({"quiet_hours": {"start": "25:00", "end": "07:00"}})),
        )
        .await;
    answer.problem(422);
    let answer = client
        .call(
            Method::PUT,
            preferences,
            &acme,
            Some(&serde_json::json!({"categories": [{"category": "c", "channels": ["fax"]}]})),
        )
        .await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/categories/0/channels/0"]);

    // Preferences: replaced whole, read back.
    let first = serde_json::json!({
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "categories": [
            {"category": "billing.invoice_ready", "channels": ["email", "inapp"]},
            {"category": "marketing.digest", "opted_out": true},
        ],
    });
    let answer = client
        .call(Method::PUT, preferences, &acme, Some(&first))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["quiet_hours"]["start"], "22:00");
    assert_eq!(answer.body["categories"].as_array().unwrap().len(), 2);
    let second = serde_json::json!({
        "global_opt_out": true,
        "categories": [{"category": "marketing.digest", "opted_out_channels": ["sms"]}],
    });
    client
        .call(Method::PUT, preferences, &acme, Some(&second))
        .await;
    let answer = client
        .call(Method::GET, preferences, &acme_read, None)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.body,
        serde_json::json!({
            "global_opt_out": true,
            "quiet_hours": null,
            "categories": [{"category": "marketing.digest", "channels": null, "opted_out": false, "opted_out_channels": ["sms"]}],
        })
    );

    // Tenant isolation: globex cannot see, change or delete acme's ada; its own ada is its own.
    client
        .call(Method::GET, user, &globex, None)
        .await
        .problem(404);
    client
        .call(Method::DELETE, user, &globex, None)
        .await
        .problem(404);
    client
        .call(Method::PUT, preferences, &globex, Some(&first))
        .await
        .problem(404);
    let answer = client
        .call(
            Method::PUT,
            user,
            &globex,
            Some(&serde_json::json!({"email": "other@example.com"})),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = client.call(Method::GET, user, &acme, None).await;
    assert_eq!(answer.body["email"], "ada@example.com");

    // The router sees the global opt-out (within its cache TTL, 1 s here).
    let request = serde_json::json!({
        "event_id": "after-opt-out",
        "category": "billing.invoice_ready",
        "template": {"id": "invoice_ready"},
        "recipient": {"user_id": "ada"},
        "data": {},
    });
    let answer = client.send(&acme, &request).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let statuses = env.tail_until(&env.topics().status(), 1, Duration::from_secs(60));
    assert_eq!(
        outcomes_by_event(&statuses).get("after-opt-out"),
        Some(&vec![outcome("suppressed", "", "opted_out")])
    );

    // Delete: gone for acme, globex's ada stays.
    let answer = client.call(Method::DELETE, user, &acme, None).await;
    assert_eq!(answer.status, 204, "{answer:?}");
    client
        .call(Method::GET, user, &acme, None)
        .await
        .problem(404);
    client
        .call(Method::GET, preferences, &acme, None)
        .await
        .problem(404);
    let answer = client.call(Method::GET, user, &globex, None).await;
    assert_eq!(answer.body["email"], "other@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn categories_and_push_tokens() {
    let env = HeraldEnv::new(HERALD, "api_categories");
    env.prepare(true);
    let acme = env.create_api_key("acme", "manage");
    let acme_read = env.create_api_key("acme", "read");
    let globex = env.create_api_key("globex", "manage");
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);
    let category = "/v1/categories/security.login";

    // Categories: create, read, replace, 422 by seed's rules, tenant isolation, delete.
    let defaults = serde_json::json!({
        "channels": ["sms", "push"], "fallback": ["email"], "mandatory": true,
        "rate_limit": {"count": 5, "window": "1h"},
    });
    let answer = client
        .call(Method::PUT, category, &acme, Some(&defaults))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = client.call(Method::GET, category, &acme_read, None).await;
    assert_eq!(
        answer.body,
        serde_json::json!({
            "category": "security.login", "channels": ["sms", "push"], "fallback": ["email"],
            "mandatory": true, "rate_limit": {"count": 5, "window": "3600s"},
            "track_engagement": false,
        })
    );
    let answer = client
        .call(
            Method::PUT,
            category,
            &acme,
            Some(&serde_json::json!({"channels": []})),
        )
        .await;
    assert!(
        answer.problem(422)["detail"]
            .as_str()
            .unwrap()
            .contains("channels is empty")
    );
    let answer = client
        .call(
            Method::PUT,
            category,
            &acme,
            Some(&serde_json::json!({"channels": ["email"], "fallback": ["fax"]})),
        )
        .await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/fallback/0"]);
    client
        .call(Method::PUT, category, &acme_read, Some(&defaults))
        .await
        .problem(403);
    client
        .call(Method::GET, "/v1/categories/Not-Lower", &acme, None)
        .await
        .problem(400);
    client
        .call(Method::GET, category, &globex, None)
        .await
        .problem(404);
    client
        .call(Method::DELETE, category, &globex, None)
        .await
        .problem(404);
    let answer = client.call(Method::DELETE, category, &acme, None).await;
    assert_eq!(answer.status, 204, "{answer:?}");
    client
        .call(Method::GET, category, &acme, None)
        .await
        .problem(404);

    // Push tokens: added to and removed from an existing user only.
    let user = "/v1/users/ada";
    let tokens = "/v1/users/ada/push_tokens";
    client
        .call(
            Method::POST,
            tokens,
            &acme,
            Some(&serde_json::json!({"token": "tok-1"})),
        )
        .await
        .problem(404);
    let answer = client
        .call(
            Method::PUT,
            user,
            &acme,
            Some(&serde_json::json!({"push_tokens": ["tok-1"]})),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    for token in ["tok-2", "tok-2"] {
        let answer = client
            .call(
                Method::POST,
                tokens,
                &acme,
                Some(&serde_json::json!({"token": token})),
            )
            .await;
        assert_eq!(answer.status, 204, "{answer:?}");
    }
    let answer = client
        .call(
            Method::POST,
            tokens,
            &acme,
            Some(&serde_json::json!({"token": "has blank"})),
        )
        .await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/token"]);
    client
        .call(
            Method::POST,
            tokens,
            &globex,
            Some(&serde_json::json!({"token": "tok-3"})),
        )
        .await
        .problem(404);
    let answer = client
        .call(
            Method::DELETE,
            "/v1/users/ada/push_tokens/tok-1",
            &acme,
            None,
        )
        .await;
    assert_eq!(answer.status, 204, "{answer:?}");
    let answer = client.call(Method::GET, user, &acme, None).await;
    assert_eq!(answer.body["push_tokens"], serde_json::json!(["tok-2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_endpoints_show_their_secret_once() {
    let env = HeraldEnv::new(HERALD, "api_webhooks");
    env.prepare(true);
    let acme = env.create_api_key("acme", "manage");
    let acme_read = env.create_api_key("acme", "read");
    let globex = env.create_api_key("globex", "manage");
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);
    let hooks = "/v1/users/ada/webhooks";
    let body = serde_json::json!({"id": "main", "url": "https://hooks.example.com/ada"});

    client
        .call(Method::POST, hooks, &acme, Some(&body))
        .await
        .problem(404);
    let answer = client
        .call(
            Method::PUT,
            "/v1/users/ada",
            &acme,
            Some(&serde_json::json!({})),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let created = client.call(Method::POST, hooks, &acme, Some(&body)).await;
    assert_eq!(created.status, 201, "{created:?}");
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let generated = client
        .call(
            Method::POST,
            hooks,
            &acme,
            Some(&serde_json::json!({"url": "http://hooks.example.com/other"})),
        )
        .await;
    assert_eq!(generated.status, 201, "{generated:?}");
    let other_id = generated.body["id"].as_str().unwrap().to_owned();
    let answer = client
        .call(
            Method::POST,
            hooks,
            &acme,
            Some(&serde_json::json!({"url": "ftp://x"})),
        )
        .await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/url"]);
    client
        .call(Method::POST, hooks, &acme_read, Some(&body))
        .await
        .problem(403);

    let listed = client.call(Method::GET, hooks, &acme_read, None).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let endpoints = listed.body["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    assert!(endpoints.iter().all(|e| e.get("secret").is_none()));

    let answer = client
        .call(Method::POST, &format!("{hooks}/main/disable"), &acme, None)
        .await;
    assert_eq!(answer.body["enabled"], false, "{answer:?}");
    let answer = client
        .call(Method::POST, &format!("{hooks}/main/rotate"), &acme, None)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let rotated = answer.body["secret"].as_str().unwrap();
    assert!(rotated.starts_with("whsec_") && rotated != secret);
    client
        .call(Method::POST, &format!("{hooks}/nope/rotate"), &acme, None)
        .await
        .problem(404);
    client
        .call(Method::GET, hooks, &globex, None)
        .await
        .problem(404);
    client
        .call(Method::DELETE, &format!("{hooks}/main"), &globex, None)
        .await
        .problem(404);

    let answer = client
        .call(Method::DELETE, &format!("{hooks}/main"), &acme, None)
        .await;
    assert_eq!(answer.status, 204, "{answer:?}");
    let listed = client.call(Method::GET, hooks, &acme, None).await;
    let ids: Vec<&str> = listed.body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [other_id.as_str()]);
    let log = api.role.log_text();
    assert!(!log.contains(&secret[6..]) && !log.contains(&rotated[6..]));
}
