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
