//! Provider callbacks on the real stack. SendGrid Event Webhook batches and Twilio status
//! callbacks, signed in the test the way each provider documents (an ECDSA P-256 key made
//! here; HMAC-SHA1 under a test auth token), become `delivered`, `opened`, `clicked` and
//! `failed` statuses on `notifications.status`, matched to the dispatch the worker sent; a
//! forged, unsigned or replayed callback is 401 and emits nothing (the status topic, read to
//! its end, holds nothing of it). A hard bounce suppresses the address: the router answers the
//! next email to it `suppressed(bounced_address)`, and routes again after the suppression is
//! deleted through the API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

use herald_contracts::headers::STATUS_ID;
use herald_contracts::{Channel, Codec, Lane};
use herald_test_support::api::{Answer, ApiClient};
use herald_test_support::deliver::{DELIVER_DEFAULTS, produce_dispatch};
use herald_test_support::dispatch::sample_dispatch;
use herald_test_support::standin::{Reply, StandIn};
use herald_test_support::{HeraldEnv, Outcome, outcome, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const PUBLIC_BASE: &str = "https://notify.acme.example";
const TWILIO_TOKEN: &str = "twilio-test-auth-token";

/// Signs Event Webhook requests as SendGrid does, with a key of its own.
struct SendGridSigner(EcdsaKeyPair);

impl SendGridSigner {
    fn new() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .unwrap();
        Self(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap())
    }

    /// The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo.
    fn public_key(&self) -> String {
        STANDARD.encode(self.0.public_key().as_der().unwrap().as_ref())
    }

    /// base64 DER ECDSA signature of the timestamp followed by the body.
    fn sign(&self, timestamp: &str, body: &str) -> String {
        let signed = format!("{timestamp}{body}");
        let signature = self
            .0
            .sign(&SystemRandom::new(), signed.as_bytes())
            .unwrap();
        STANDARD.encode(signature.as_ref())
    }
}

async fn post_sendgrid(
    client: &ApiClient,
    body: &str,
    timestamp: &str,
    signature: Option<&str>,
) -> Answer {
    let mut headers = vec![("x-twilio-email-event-webhook-timestamp", timestamp)];
    if let Some(signature) = signature {
        headers.push(("x-twilio-email-event-webhook-signature", signature));
    }
    client
        .post("/v1/callbacks/sendgrid", None, &headers, body.to_owned())
        .await
}

/// Every status on the topic now, read to its end.
fn statuses(env: &HeraldEnv) -> Vec<Value> {
    tokio::task::block_in_place(|| env.read_all(&env.topics().status()))
        .into_iter()
        .map(|record| record["value"].clone())
        .collect()
}

/// (status, reason) of a dispatch's statuses from `provider`, in topic order.
fn from_provider(statuses: &[Value], dispatch_id: &str, provider: &str) -> Vec<(String, String)> {
    statuses
        .iter()
        .filter(|s| s["dispatch_id"] == dispatch_id && s["provider"] == provider)
        .map(|s| {
            (
                s["status"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_owned(), reason.to_owned())
}

fn invoice(event_id: &str) -> Value {
    json!({
        "event_id": event_id,
        "category": "billing.invoice_ready",
        "template": {"id": "invoice_ready"},
        "recipient": {"user_id": "zoe"},
        "data": {"name": "Zoé", "invoice": {"number": "INV-7", "amount": "7.00"}},
    })
}

/// Sends new invoices to zoe until one's first routing status is `wanted` (the router's
/// suppression cache lives `router.cache_ttl`, 1 s here): each try is a new event.
async fn send_until(env: &HeraldEnv, client: &ApiClient, key: &str, prefix: &str, wanted: Outcome) {
    for i in 0..15 {
        let event_id = format!("{prefix}-{i}");
        assert_eq!(client.send(key, &invoice(&event_id)).await.status, 202);
        let first = tokio::task::block_in_place(|| {
            env.wait_for_outcome(&event_id, &["routed", "suppressed"])
        });
        if first == wanted {
            return;
        }
    }
    panic!("no invoice to zoe was {wanted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_events_become_statuses_and_a_hard_bounce_suppresses_the_address() {
    let signer = SendGridSigner::new();
    let sendgrid = StandIn::start(|_| Reply::status(202).header("x-message-id", "sgmsg-1")).await;
    let env = HeraldEnv::new(HERALD, "api_callbacks_sendgrid");
    env.prepare(true);
    env.seed_demo();
    env.append_config(&format!(
        "\n[router]\ncache_ttl = \"1s\"\n\n\
         [api.callbacks.sendgrid]\npublic_key = \"{}\"\ntolerance = \"10m\"\n\n\
         [deliver]\n{DELIVER_DEFAULTS}\n\
         [deliver.providers.sendgrid]\nbase_url = \"{}\"\napi_key = \"SG.test-key\"\n\
         from = \"billing@acme.example\"\n",
        signer.public_key(),
        sendgrid.url()
    ));
    let key = env.create_api_key("acme", "send,manage,read");
    let reader = env.create_api_key("acme", "read");
    let _router = env.spawn("router", &["router"], &[]);
    let _worker = env.spawn("deliver", &["deliver", "--channel", "email"], &[]);
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);
    let user = client
        .call(
            Method::PUT,
            "/v1/users/zoe",
            &key,
            Some(&json!({"email": "Zoe@Example.com"})),
        )
        .await;
    assert_eq!(user.status, 200, "{user:?}");

    // The email goes out through SendGrid with Herald's ids in custom_args.
    assert_eq!(client.send(&key, &invoice("cb-1")).await.status, 202);
    let sent = tokio::task::block_in_place(|| {
        wait_for("the SendGrid request", Duration::from_secs(60), || {
            sendgrid.requests_to("/v3/mail/send").into_iter().next()
        })
    });
    let personalization = sent.json()["personalizations"][0].clone();
    let mut args = personalization["custom_args"].clone();
    // The request's creation time, in ms as text (custom_args values are strings).
    let created_at = args["created_at"].take();
    assert!(
        created_at
            .as_str()
            .is_some_and(|ms| ms.parse::<i64>().is_ok()),
        "{created_at}"
    );
    assert_eq!(
        args,
        json!({"tenant": "acme", "user_id": "zoe", "event_id": "cb-1", "dispatch_id": "cb-1:email",
               "category": "billing.invoice_ready", "created_at": null})
    );
    args["created_at"] = created_at;
    let address = personalization["to"][0]["email"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = Utc::now().timestamp();
    let event = |kind: &str, at: i64| {
        let mut event = json!({
            "email": address,
            "timestamp": at,
            "event": kind,
            "sg_event_id": format!("sg-{kind}-{at}"),
            "sg_message_id": "sgmsg-1.filter0001.16648.5515E0B88.0",
        });
        for (name, value) in args.as_object().unwrap() {
            event[name] = value.clone();
        }
        event
    };

    // A batch as SendGrid posts it: three statuses, and what Herald skips but answers 200
    // (an event it does not record, one sent by something else on the account, an unknown
    // type).
    let batch = json!([
        event("processed", now - 5),
        event("delivered", now - 4),
        event("open", now - 3),
        event("click", now - 2),
        {"email": "other@example.com", "timestamp": now, "event": "delivered"},
        event("teleported", now - 1),
    ])
    .to_string();
    let stamp = now.to_string();
    let signature = signer.sign(&stamp, &batch);
    // Posted twice, as SendGrid does when it missed the first answer.
    for _ in 0..2 {
        let answer = post_sendgrid(&client, &batch, &stamp, Some(&signature)).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.body,
            json!({"emitted": 3, "ignored": 1, "unmatched": 1, "unknown": 1})
        );
    }

    // Forged, unsigned, replayed and re-used signatures: 401, nothing emitted.
    let mut forged_event = event("delivered", now);
    forged_event["event_id"] = "cb-forged".into();
    forged_event["dispatch_id"] = "cb-forged:email".into();
    let forged = json!([forged_event]).to_string();
    let hour_ago = (now - 3600).to_string();
    let refusals = [
        (
            stamp.clone(),
            Some(SendGridSigner::new().sign(&stamp, &forged)),
        ),
        (stamp.clone(), None),
        (hour_ago.clone(), Some(signer.sign(&hour_ago, &forged))),
        (stamp.clone(), Some(signature.clone())),
        (stamp.clone(), Some("bm90IGEgc2lnbmF0dXJl".to_owned())),
    ];
    for (timestamp, signature) in &refusals {
        post_sendgrid(&client, &forged, timestamp, signature.as_deref())
            .await
            .problem(401);
    }
    assert_eq!(
        api.role.metric("herald_api_callback_rejected_total"),
        Some(refusals.len() as f64)
    );

    // What SendGrid reported of cb-1 (the worker's own `sent` aside).
    let reported = |all: &[Value]| -> Vec<(String, String)> {
        from_provider(all, "cb-1:email", "sendgrid")
            .into_iter()
            .filter(|(status, _)| status != "sent")
            .collect()
    };
    let all = statuses(&env);
    assert!(
        all.iter().all(|s| s["event_id"] != "cb-forged"),
        "a refused callback emitted a status"
    );
    // Each event became its status at SendGrid's time, the same both times it was posted (a
    // batch's statuses are published concurrently: their order is in their times).
    let mut found = reported(&all);
    found.sort();
    let mut expected: Vec<(String, String)> = ["delivered", "opened", "clicked"]
        .repeat(2)
        .into_iter()
        .map(|status| pair(status, ""))
        .collect();
    expected.sort();
    assert_eq!(found, expected);
    for (status, at) in [
        ("delivered", now - 4),
        ("opened", now - 3),
        ("clicked", now - 2),
    ] {
        let times: Vec<DateTime<Utc>> = all
            .iter()
            .filter(|s| s["dispatch_id"] == "cb-1:email" && s["status"] == status)
            .map(|s| s["at"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            times,
            vec![DateTime::from_timestamp(at, 0).unwrap(); 2],
            "{status}"
        );
    }
    // Both copies of a status carry SendGrid's event id as their identity, which keys the
    // tracker's timeline row: the batch posted twice is one row per event.
    let records = tokio::task::block_in_place(|| env.read_all(&env.topics().status()));
    let mut identities: Vec<&str> = records
        .iter()
        .filter(|r| r["value"]["dispatch_id"] == "cb-1:email")
        .filter(|r| r["value"]["provider"] == "sendgrid" && r["value"]["status"] != "sent")
        .map(|r| r["headers"][STATUS_ID].as_str().unwrap())
        .collect();
    identities.sort_unstable();
    let mut expected_identities: Vec<String> = [("delivered", 4), ("open", 3), ("click", 2)]
        .iter()
        .flat_map(|(kind, ago)| {
            let identity = format!("sendgrid:sg-{kind}-{}", now - ago);
            [identity.clone(), identity]
        })
        .collect();
    expected_identities.sort_unstable();
    assert_eq!(identities, expected_identities);

    // A hard bounce: failed(bounced), and the address is suppressed for the tenant.
    let mut bounce = event("bounce", now);
    bounce["type"] = "bounce".into();
    bounce["reason"] = "550 5.1.1 unknown user".into();
    let body = json!([bounce]).to_string();
    let answer = post_sendgrid(&client, &body, &stamp, Some(&signer.sign(&stamp, &body))).await;
    assert_eq!(answer.body["emitted"], 1, "{answer:?}");
    assert_eq!(
        reported(&statuses(&env)).last(),
        Some(&pair("failed", "bounced"))
    );
    let found = client
        .call(
            Method::GET,
            "/v1/suppressions/ZOE@example.com",
            &reader,
            None,
        )
        .await;
    assert_eq!(found.status, 200, "{found:?}");
    assert_eq!(found.body["address"], "zoe@example.com");
    assert_eq!(found.body["reason"], "bounce");
    assert_eq!(found.body["provider"], "sendgrid");
    assert_eq!(found.body["source_dispatch_id"], "cb-1:email");

    // The next email to zoe is suppressed.
    send_until(
        &env,
        &client,
        &key,
        "cb-after-bounce",
        outcome("suppressed", "email", "bounced_address"),
    )
    .await;

    // A manual suppression, and the list a page at a time.
    let added = client
        .post(
            "/v1/suppressions",
            Some(&key),
            &[],
            json!({"address": "Manual@Example.net"}).to_string(),
        )
        .await;
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(added.body["reason"], "manual");
    client
        .post(
            "/v1/suppressions",
            Some(&key),
            &[],
            json!({"address": "nope"}).to_string(),
        )
        .await
        .problem(422);
    let mut listed = Vec::new();
    let mut path = "/v1/suppressions?limit=1".to_owned();
    loop {
        let page = client.call(Method::GET, &path, &reader, None).await;
        assert_eq!(page.status, 200, "{page:?}");
        for s in page.body["suppressions"].as_array().unwrap() {
            listed.push(s["address"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/suppressions?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    listed.sort();
    assert_eq!(listed, ["manual@example.net", "zoe@example.com"]);
    client
        .call(Method::GET, "/v1/suppressions?cursor=bm9wZQ", &reader, None)
        .await
        .problem(400);

    // Deleting takes manage; then the address is emailed again.
    let path = "/v1/suppressions/zoe@example.com";
    client
        .call(Method::DELETE, path, &reader, None)
        .await
        .problem(403);
    let deleted = client.call(Method::DELETE, path, &key, None).await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    client
        .call(Method::GET, path, &key, None)
        .await
        .problem(404);
    client
        .call(Method::DELETE, path, &key, None)
        .await
        .problem(404);
    send_until(
        &env,
        &client,
        &key,
        "cb-after-delete",
        outcome("routed", "email", ""),
    )
    .await;
}

/// `X-Twilio-Signature` for a POST to `url` with `params`.
fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut signed = url.to_owned();
    for (name, value) in sorted {
        signed.push_str(name);
        signed.push_str(value);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    STANDARD.encode(hmac::sign(&key, signed.as_bytes()).as_ref())
}

/// A status callback as Twilio posts it, signed with `token` for `signed_url`.
async fn post_twilio(
    client: &ApiClient,
    path: &str,
    signed_url: &str,
    token: &str,
    params: &[(&str, &str)],
) -> Answer {
    let signature = twilio_signature(token, signed_url, params);
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        body.append_pair(name, value);
    }
    client
        .post_form(path, &[("x-twilio-signature", &signature)], body.finish())
        .await
}

fn callback<'a>(sid: &'a str, status: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", "AC123"),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15005550006"),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_status_callbacks_become_statuses() {
    // Each message's sid is made of its number, so the test knows it.
    let twilio = StandIn::start(|request| {
        let to = request.form_value("To").unwrap_or_default();
        Reply::json(
            201,
            json!({"sid": format!("SM{}", to.trim_start_matches('+'))}),
        )
    })
    .await;
    let env = HeraldEnv::new(HERALD, "api_callbacks_twilio");
    env.prepare(true);
    env.append_config(&format!(
        "\n[api.callbacks.twilio]\nauth_token = \"{TWILIO_TOKEN}\"\n\
         public_base_url = \"{PUBLIC_BASE}/\"\nmatch_wait = \"500ms\"\n\n\
         [deliver]\n{DELIVER_DEFAULTS}\n\
         [deliver.providers.twilio]\nbase_url = \"{}\"\naccount_sid = \"AC123\"\n\
         auth_token = \"{TWILIO_TOKEN}\"\nfrom = \"+15005550006\"\n\
         status_callback = \"{PUBLIC_BASE}/v1/callbacks/twilio?d={{dispatch_id}}\"\n",
        twilio.url()
    ));
    let _worker = env.spawn("deliver", &["deliver", "--channel", "sms"], &[]);
    let api = env.spawn_api("api", &[]);
    let client = ApiClient::new(&api);

    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    let delivered = sample_dispatch(Channel::Sms, "+14155550101");
    let failed = sample_dispatch(Channel::Sms, "+14155550102");
    for dispatch in [&delivered, &failed] {
        produce_dispatch(&env, &codec, Lane::Bulk, dispatch).await;
    }
    // Both sent (the worker recorded their sids right after its ledger mark).
    tokio::task::block_in_place(|| {
        wait_for("both SMS sent", Duration::from_secs(60), || {
            let all: Vec<Value> = env
                .read_all(&env.topics().status())
                .into_iter()
                .map(|r| r["value"].clone())
                .collect();
            [&delivered, &failed]
                .iter()
                .all(|d| from_provider(&all, &d.dispatch_id, "twilio") == [pair("sent", "")])
                .then_some(())
        })
    });
    let callback_path = |number: &str| {
        let request = twilio
            .requests()
            .into_iter()
            .find(|r| r.form_value("To").as_deref() == Some(number))
            .unwrap();
        let url = request.form_value("StatusCallback").unwrap();
        url.strip_prefix(PUBLIC_BASE).unwrap().to_owned()
    };
    let (path_1, path_2) = (callback_path("+14155550101"), callback_path("+14155550102"));
    let public = |path: &str| format!("{PUBLIC_BASE}{path}");

    // `sent` is not recorded; `delivered` is.
    let answer = post_twilio(
        &client,
        &path_1,
        &public(&path_1),
        TWILIO_TOKEN,
        &callback("SM14155550101", "sent"),
    )
    .await;
    assert_eq!(
        answer.body,
        json!({"emitted": 0, "ignored": 1, "unmatched": 0, "unknown": 0})
    );
    let answer = post_twilio(
        &client,
        &path_1,
        &public(&path_1),
        TWILIO_TOKEN,
        &callback("SM14155550101", "delivered"),
    )
    .await;
    assert_eq!(answer.body["emitted"], 1, "{answer:?}");

    // Signed with another token, or for the URL this process sees rather than the public one
    // Twilio called: 401, nothing emitted.
    let claim = callback("SM14155550102", "delivered");
    post_twilio(&client, &path_2, &public(&path_2), "another-token", &claim)
        .await
        .problem(401);
    post_twilio(&client, &path_2, &api.url(&path_2), TWILIO_TOKEN, &claim)
        .await
        .problem(401);
    // Undelivered, with Twilio's error code.
    let mut undelivered = callback("SM14155550102", "undelivered");
    undelivered.push(("ErrorCode", "30003"));
    let answer = post_twilio(
        &client,
        &path_2,
        &public(&path_2),
        TWILIO_TOKEN,
        &undelivered,
    )
    .await;
    assert_eq!(answer.body["emitted"], 1, "{answer:?}");
    // A sid Herald never sent: answered 200 after match_wait, counted unmatched.
    let answer = post_twilio(
        &client,
        &path_1,
        &public(&path_1),
        TWILIO_TOKEN,
        &callback("SMnope", "delivered"),
    )
    .await;
    assert_eq!(answer.body["unmatched"], 1, "{answer:?}");
    assert_eq!(
        api.role.metric("herald_api_callback_rejected_total"),
        Some(2.0)
    );

    let all = statuses(&env);
    assert_eq!(
        from_provider(&all, &delivered.dispatch_id, "twilio"),
        [pair("sent", ""), pair("delivered", "")]
    );
    assert_eq!(
        from_provider(&all, &failed.dispatch_id, "twilio"),
        [
            pair("sent", ""),
            pair("failed", "undelivered: twilio error 30003")
        ]
    );
    let status = all
        .iter()
        .find(|s| s["dispatch_id"] == delivered.dispatch_id.as_str() && s["status"] == "delivered")
        .unwrap();
    assert_eq!(status["provider_message_id"], "SM14155550101");
    assert_eq!(status["event_id"], delivered.event_id.as_str());
    assert_eq!(status["user_id"], "u-1");
    assert_eq!(status["channel"], "sms");
    // The category and creation time the SMS worker recorded with the message id, as every
    // status carries them (the tracker's per-category rates and end-to-end latency).
    assert_eq!(status["category"], delivered.category.as_str());
    assert!(status["created_at"].is_string(), "{status}");
}
