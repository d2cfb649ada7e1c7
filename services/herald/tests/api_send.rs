//! `herald api` on the real stack: sending with tenant API keys (202 only after Kafka
//! acknowledged, with the records on notifications.requested), every error as problem+json
//! (401, 403, 400, 413, 422, 404), batches with per-item results, tenant isolation, key
//! revocation within the cache bound, and idempotency end to end through a router.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_test_support::api::ApiClient as Client;
use herald_test_support::{HeraldEnv, outcome, outcomes_by_event};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// A request the demo seed routes to one email dispatch: a guest with a direct address.
fn request(user: &str) -> serde_json::Value {
    serde_json::json!({
        "category": "billing.invoice_ready",
        "template": {"id": "invoice_ready"},
        "recipient": {"user_id": user, "email": "guest@example.com"},
        "channels": ["email"],
        "locale": "en-US",
        "data": {"name": "Ada", "invoice": {"number": "INV-7", "amount": "42.00"}},
    })
}

/// Event ids on the env's notifications.requested, read to the end.
fn requested_ids(env: &HeraldEnv) -> Vec<String> {
    env.read_all(&env.topics().requested())
        .iter()
        .map(|r| r["value"]["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_authenticates_validates_and_answers_after_kafka() {
    let env = HeraldEnv::new(HERALD, "api_send");
    env.prepare(true);
    let acme = env.create_api_key("acme", "send,read");
    let acme_manage = env.create_api_key("acme", "manage");
    let globex = env.create_api_key("globex", "send");
    let revoked = env.create_api_key("acme", "send");
    let mut api = env.spawn_api(
        "api",
        &[
            ("HERALD_API__BODY_LIMIT", "65536"),
            ("HERALD_API__KEY_CACHE_TTL", "1s"),
        ],
    );
    let client = Client::new(&api);
    let mut accepted = Vec::new();

    // The OpenAPI document, without a key, is the repository's copy.
    let served = client
        .http
        .get(api.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let kept = std::fs::read_to_string(
        herald_test_support::repo_root().join("services/herald-api/openapi.json"),
    )
    .unwrap();
    assert_eq!(served.text().await.unwrap().trim_end(), kept.trim_end());

    // 202 with the event id, in the key's tenant when the body names none.
    let answer = client.send(&acme, &request("guest-1")).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.content_type, "application/json");
    let event_id = answer.body["event_id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&event_id).is_ok(), "{event_id}");
    accepted.push(event_id);
    let mut named = request("guest-2");
    named["tenant"] = "acme".into();
    named["event_id"] = "api-evt-2".into();
    let answer = client.send(&acme, &named).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.body["event_id"], "api-evt-2");
    accepted.push("api-evt-2".into());

    // 401: no key, not a key, an unknown key, a tampered key.
    let body = request("guest-3").to_string();
    let no_key = client
        .post("/v1/notifications", None, &[], body.clone())
        .await;
    no_key.problem(401);
    let not_bearer = client
        .post(
            "/v1/notifications",
            None,
            &[("authorization", &format!("Basic {acme}"))],
            body.clone(),
        )
        .await;
    not_bearer.problem(401);
    for key in [
        "nonsense".to_owned(),
        "hrld_0123456789abcdef_c2VjcmV0".to_owned(),
        format!("{acme}x"),
    ] {
        client
            .post("/v1/notifications", Some(&key), &[], body.clone())
            .await
            .problem(401);
    }

    // 403: a key without the send scope; a body naming another tenant, either way round.
    let answer = client.send(&acme_manage, &request("guest-3")).await;
    assert!(
        answer.problem(403)["detail"]
            .as_str()
            .unwrap()
            .contains("`send` scope")
    );
    let mut other_tenant = request("guest-3");
    other_tenant["tenant"] = "globex".into();
    client.send(&acme, &other_tenant).await.problem(403);
    other_tenant["tenant"] = "acme".into();
    client.send(&globex, &other_tenant).await.problem(403);
    // globex's own request lands in globex.
    let answer = client.send(&globex, &request("guest-4")).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let mut globex_ids = vec![answer.body["event_id"].as_str().unwrap().to_owned()];
    accepted.extend(globex_ids.clone());

    // 422 naming the field by JSON Pointer; 400 for what is not JSON; 413 over the limit.
    let mut bad = request("guest-5");
    bad["recipient"]["email"] = "not-an-address".into();
    let answer = client.send(&acme, &bad).await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/recipient/email"]);
    let mut bad = request("guest-5");
    bad["priority"] = "urgent".into();
    let answer = client.send(&acme, &bad).await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/priority"]);
    let mut bad = request("guest-5");
    bad.as_object_mut().unwrap().remove("template");
    let answer = client.send(&acme, &bad).await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/template"]);
    client
        .post("/v1/notifications", Some(&acme), &[], "{\"tenant\":")
        .await
        .problem(400);
    let mut huge = request("guest-6");
    huge["data"]["blob"] = "x".repeat(70_000).into();
    client.send(&acme, &huge).await.problem(413);

    // Batches: per-item results in order; the valid ones are produced.
    let mut bad_item = request("batch-2");
    bad_item["channels"] = serde_json::json!(["email", "fax"]);
    let mut foreign_item = request("batch-3");
    foreign_item["tenant"] = "globex".into();
    let batch = serde_json::json!({"notifications": [request("batch-1"), bad_item, foreign_item, request("batch-4")]});
    let answer = client
        .post(
            "/v1/notifications/batch",
            Some(&acme),
            &[],
            batch.to_string(),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let results = answer.body["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 422, 403, 202]);
    assert_eq!(
        results[1]["problem"]["errors"][0]["pointer"],
        "/notifications/1/channels/1"
    );
    for i in [0, 3] {
        accepted.push(results[i]["event_id"].as_str().unwrap().to_owned());
    }
    let too_many = serde_json::json!({"notifications": vec![request("many"); 1001]});
    let answer = client
        .post(
            "/v1/notifications/batch",
            Some(&acme),
            &[],
            too_many.to_string(),
        )
        .await;
    // 1001 requests are over the 64 KiB limit of this test's API; under it, 422 names the list.
    answer.problem(413);
    let answer = client
        .post(
            "/v1/notifications/batch",
            Some(&acme),
            &[],
            "{\"notifications\": []}",
        )
        .await;
    answer.problem(422);
    assert_eq!(answer.pointers(), ["/notifications"]);

    // An Idempotency-Key names one event per (tenant, key).
    let first = client
        .send_once(&acme, "order-1", &request("guest-7"))
        .await;
    let again = client
        .send_once(&acme, "order-1", &request("guest-7"))
        .await;
    let elsewhere = client
        .send_once(&globex, "order-1", &request("guest-7"))
        .await;
    assert_eq!(
        (first.status, again.status, elsewhere.status),
        (202, 202, 202)
    );
    assert_eq!(first.body["event_id"], again.body["event_id"]);
    assert_ne!(first.body["event_id"], elsewhere.body["event_id"]);
    accepted.push(first.body["event_id"].as_str().unwrap().to_owned());
    globex_ids.push(elsewhere.body["event_id"].as_str().unwrap().to_owned());
    accepted.extend(globex_ids.clone());

    // Unknown routes are problems too.
    client
        .post("/v1/nothing", Some(&acme), &[], "{}")
        .await
        .problem(404);

    // A revoked key is refused within api.key_cache_ttl (1 s here); list never shows a key.
    let answer = client.send(&revoked, &request("guest-8")).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    accepted.push(answer.body["event_id"].as_str().unwrap().to_owned());
    let revoked_id = &revoked[5..21];
    env.run(&["apikey", "revoke", revoked_id], None)
        .assert_code(0);
    env.run(&["apikey", "revoke", "ffffffffffffffff"], None)
        .assert_code(1);
    let started = std::time::Instant::now();
    loop {
        let answer = client.send(&revoked, &request("guest-9")).await;
        if answer.status == 401 {
            answer.problem(401);
            break;
        }
        assert_eq!(answer.status, 202, "{answer:?}");
        accepted.push(answer.body["event_id"].as_str().unwrap().to_owned());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a revoked key still works"
        );
    }
    let listed = env.run(&["apikey", "list", "--tenant", "acme"], None);
    listed.assert_code(0);
    assert!(listed.stdout.contains(revoked_id), "{}", listed.stdout);
    assert!(!listed.stdout.contains("globex"), "{}", listed.stdout);
    for key in [&acme, &acme_manage, &globex, &revoked] {
        assert!(!listed.stdout.contains(&key[22..]), "a key was printed");
        assert!(
            !api.role.log_text().contains(&key[22..]),
            "a key was logged"
        );
    }

    // Every 202 is on notifications.requested, in the key's tenant.
    let records = env.read_all(&env.topics().requested());
    for id in &accepted {
        let record = records
            .iter()
            .find(|r| r["value"]["event_id"] == id.as_str())
            .unwrap_or_else(|| panic!("202'd event {id} is not on notifications.requested"));
        let tenant = record["value"]["tenant"].as_str().unwrap();
        assert_eq!(
            record["key"].as_str().unwrap().split(':').next(),
            Some(tenant)
        );
    }
    // Tenant isolation: globex's records are exactly the ones globex's key sent.
    for record in &records {
        let id = record["value"]["event_id"].as_str().unwrap().to_owned();
        let tenant = record["value"]["tenant"].as_str().unwrap();
        assert_eq!(tenant == "globex", globex_ids.contains(&id), "{record}");
    }
    let metrics = api.role.admin_get("/metrics").unwrap().1;
    assert!(
        metrics.contains("herald_api_requests_total{route=\"/v1/notifications\",status=\"202\"}"),
        "{metrics}"
    );
    // SIGTERM: the API finishes and exits 0, as the other roles do.
    assert_eq!(api.role.terminate(Duration::from_secs(30)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_twice_is_routed_once() {
    let env = HeraldEnv::new(HERALD, "api_idem");
    env.prepare(true);
    env.seed_demo();
    let key = env.create_api_key("acme", "send");
    let _router = env.spawn("router", &["router"], &[]);
    let api = env.spawn_api("api", &[]);
    let client = Client::new(&api);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer = client
            .send_once(&key, "invoice-INV-7", &request("guest-17"))
            .await;
        assert_eq!(answer.status, 202, "{answer:?}");
        ids.push(answer.body["event_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    let event_id = ids[0].clone();
    assert_eq!(
        requested_ids(&env)
            .iter()
            .filter(|id| **id == event_id)
            .count(),
        2,
        "both requests were accepted"
    );
    // One routed notification: routed once, the second suppressed as a duplicate.
    let statuses = env.tail_until(&env.topics().status(), 2, Duration::from_secs(60));
    let by_event = outcomes_by_event(&statuses);
    assert_eq!(
        by_event.get(&event_id),
        Some(&vec![
            outcome("routed", "email", ""),
            outcome("suppressed", "", "duplicate"),
        ]),
        "{by_event:?}"
    );
    let email = env.read_all(&env.topics().dispatch(
        herald_contracts::Channel::Email,
        herald_contracts::Lane::Bulk,
    ));
    let dispatched = email
        .iter()
        .filter(|r| r["value"]["event_id"] == event_id.as_str())
        .count();
    assert_eq!(dispatched, 1);
}
