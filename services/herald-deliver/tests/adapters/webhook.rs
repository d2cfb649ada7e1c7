//! Webhooks: signatures checked by the Python `standardwebhooks` package, the private-network
//! guard, redirects, per-endpoint secrets from `webhook_endpoints`.

use std::process::Command;
use std::sync::Arc;

use herald_contracts::Channel;
use herald_deliver::webhook::secrets::NoEndpointSecrets;
use herald_deliver::{
    Outcome, Provider, ProvidersConfig, StoreHandle, WebhookConfig, WebhookProvider, build_provider,
};
use herald_test_support::dispatch::sample_dispatch;
use herald_test_support::standin::{Recorded, Reply, StandIn};
use herald_test_support::{python, run, unique};

use crate::common::{Failing, assert_failure_classes, migrated_keyspace};

const DEFAULT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ENDPOINT_SECRET: &str = "whsec_c2VjcmV0LW9mLXRoZS1lbmRwb2ludC0xMjM0NTY=";

fn config(allow: &[&str]) -> WebhookConfig {
    WebhookConfig {
        default_secret: Some(herald_contracts::secret::Secret::new(DEFAULT_SECRET)),
        allow: allow.iter().map(|s| s.to_string()).collect(),
        ..WebhookConfig::default()
    }
}

fn provider(allow: &[&str]) -> WebhookProvider {
    WebhookProvider::new(&config(allow), Arc::new(NoEndpointSecrets)).unwrap()
}

/// What `standardwebhooks.Webhook(secret).verify(body, headers)` returns for a recorded
/// request (the payload), or its error.
fn verify_in_python(secret: &str, request: &Recorded) -> Result<serde_json::Value, String> {
    let dir = std::env::temp_dir()
        .join("herald-tests")
        .join(unique("webhook"));
    std::fs::create_dir_all(&dir).unwrap();
    let body = dir.join("body");
    std::fs::write(&body, &request.body).unwrap();
    let headers = serde_json::json!({
        "webhook-id": request.header("webhook-id"),
        "webhook-timestamp": request.header("webhook-timestamp"),
        "webhook-signature": request.header("webhook-signature"),
    });
    let script = "import json, sys\n\
                  from standardwebhooks import Webhook\n\
                  body = open(sys.argv[2], 'rb').read()\n\
                  payload = Webhook(sys.argv[1]).verify(body, json.loads(sys.argv[3]))\n\
                  print(json.dumps(payload))\n";
    let mut command = Command::new(python());
    command
        .arg("-c")
        .arg(script)
        .arg(secret)
        .arg(&body)
        .arg(headers.to_string());
    let out = run(command, None);
    if out.code == 0 {
        Ok(serde_json::from_str(out.stdout.trim()).unwrap())
    } else {
        Err(out.stderr)
    }
}

#[tokio::test]
async fn posts_the_signed_body_that_standardwebhooks_verifies() {
    let standin = StandIn::start(|_| Reply::status(204)).await;
    let provider = provider(&["127.0.0.1/32"]);
    let dispatch = sample_dispatch(Channel::Webhook, &format!("{}/hooks/in?x=1", standin.url()));

    let report = provider.send(&dispatch).await;
    assert_eq!(report.outcome, Outcome::sent(&dispatch.dispatch_id));

    let requests = standin.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/in?x=1");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("webhook-id"),
        Some(dispatch.dispatch_id.as_str())
    );
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    assert!(
        request
            .header("webhook-signature")
            .unwrap()
            .starts_with("v1,")
    );

    let payload = verify_in_python(DEFAULT_SECRET, request).unwrap();
    assert_eq!(payload["type"], "billing.invoice_ready");
    assert_eq!(payload["data"]["dispatch_id"], dispatch.dispatch_id);
    assert_eq!(payload["data"]["event_id"], dispatch.event_id);
    assert_eq!(payload["data"]["tenant"], "acme");
    assert_eq!(payload["data"]["user_id"], "u-1");
    assert_eq!(
        payload["data"]["text"],
        dispatch.content.text.clone().unwrap()
    );
    assert_eq!(payload["data"]["payload"]["invoice"], "INV-42");

    // the same check fails with another secret: the verification is real
    let err = verify_in_python(ENDPOINT_SECRET, request).unwrap_err();
    assert!(err.contains("WebhookVerificationError"), "{err}");
}

#[tokio::test]
async fn classifies_rate_limits_faults_rejections_and_redirects() {
    let failing = Failing::default();
    let override_ = failing.clone();
    let standin =
        StandIn::start(move |_| override_.get().unwrap_or_else(|| Reply::status(200))).await;
    let provider = provider(&["127.0.0.1"]);
    let dispatch = sample_dispatch(Channel::Webhook, &format!("{}/hook", standin.url()));
    assert_failure_classes(&provider, &dispatch, &failing).await;

    let before = standin.requests().len();
    failing.set(Some(
        Reply::status(307).header("location", "http://169.254.169.254/"),
    ));
    let outcome = provider.send(&dispatch).await.outcome;
    assert!(
        matches!(&outcome, Outcome::Permanent { reason } if reason.contains("307") && reason.contains("redirects are not followed")),
        "{outcome:?}"
    );
    assert_eq!(
        standin.requests().len(),
        before + 1,
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn private_network_targets_are_refused_unless_allow_listed() {
    let standin = StandIn::start(|_| Reply::status(200)).await;
    let port = standin.addr.port();
    let guarded = provider(&[]);
    for (url, kind) in [
        (format!("http://127.0.0.1:{port}/hook"), "loopback"),
        ("http://10.0.0.1/hook".to_owned(), "private"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "cloud metadata",
        ),
        (format!("http://localhost:{port}/hook"), "loopback"),
        (format!("http://[::1]:{port}/hook"), "loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}/hook"), "loopback"),
    ] {
        let outcome = guarded
            .send(&sample_dispatch(Channel::Webhook, &url))
            .await
            .outcome;
        assert!(
            matches!(&outcome, Outcome::Permanent { reason } if reason.starts_with("webhook target refused") && reason.contains(kind)),
            "{url}: {outcome:?}"
        );
    }
    assert!(standin.requests().is_empty(), "nothing reached the target");

    // allow-listed by name, and by block
    for (allow, url) in [
        ("localhost", format!("http://localhost:{port}/by-name")),
        ("127.0.0.0/8", format!("http://localhost:{port}/by-block")),
        ("127.0.0.1", format!("http://127.0.0.1:{port}/by-address")),
    ] {
        let dispatch = sample_dispatch(Channel::Webhook, &url);
        let outcome = provider(&[allow]).send(&dispatch).await.outcome;
        assert_eq!(outcome, Outcome::sent(&dispatch.dispatch_id), "{allow}");
    }
    assert_eq!(standin.requests().len(), 3);
}

#[tokio::test]
async fn addresses_that_are_not_http_urls_are_permanent() {
    let guarded = provider(&[]);
    for address in ["ftp://example.com/x", "not a url", "file:///etc/passwd"] {
        let outcome = guarded
            .send(&sample_dispatch(Channel::Webhook, address))
            .await
            .outcome;
        assert_eq!(
            outcome,
            Outcome::permanent("the webhook address is not an http(s) URL"),
            "{address}"
        );
    }
}

#[tokio::test]
async fn a_registered_endpoint_is_signed_with_its_own_secret() {
    let (session, store) = migrated_keyspace("deliver_webhook").await;
    let standin = StandIn::start(|_| Reply::status(200)).await;
    let registered = format!("{}/registered", standin.url());
    session
        .query_unpaged(
            format!(
                "INSERT INTO {} (tenant, user_id, endpoint_id, url, secret, enabled) VALUES (?, ?, ?, ?, ?, ?)",
                store.table("webhook_endpoints")
            ),
            ("acme", "u-1", "ep-1", &registered, ENDPOINT_SECRET, true),
        )
        .await
        .unwrap();
    let providers = ProvidersConfig {
        webhook: config(&["127.0.0.1/32"]),
        ..ProvidersConfig::default()
    };
    let provider = build_provider(
        Channel::Webhook,
        &providers,
        Some(StoreHandle {
            session: &session,
            config: &store,
        }),
        herald_deliver::EmailLinks::default(),
    )
    .await
    .unwrap();
    assert_eq!(provider.name(), "webhook");

    let to_endpoint = sample_dispatch(Channel::Webhook, &registered);
    assert!(provider.send(&to_endpoint).await.outcome.is_sent());
    let direct = sample_dispatch(Channel::Webhook, &format!("{}/direct", standin.url()));
    assert!(provider.send(&direct).await.outcome.is_sent());

    let requests = standin.requests();
    assert_eq!(requests.len(), 2);
    verify_in_python(ENDPOINT_SECRET, &requests[0]).unwrap();
    verify_in_python(DEFAULT_SECRET, &requests[1]).unwrap();
    assert!(verify_in_python(DEFAULT_SECRET, &requests[0]).is_err());
}

#[tokio::test]
async fn without_any_secret_the_delivery_is_permanent() {
    let provider =
        WebhookProvider::new(&WebhookConfig::default(), Arc::new(NoEndpointSecrets)).unwrap();
    let outcome = provider
        .send(&sample_dispatch(
            Channel::Webhook,
            "https://hooks.example/in",
        ))
        .await
        .outcome;
    assert!(
        matches!(&outcome, Outcome::Permanent { reason } if reason.starts_with("no signing secret")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_target_that_never_answers_times_out_as_transient() {
    // the kernel completes the connection; nobody ever reads the request or answers
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let provider = WebhookProvider::new(
        &WebhookConfig {
            timeout: std::time::Duration::from_millis(300),
            ..config(&["127.0.0.1"])
        },
        Arc::new(NoEndpointSecrets),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let outcome = provider
        .send(&sample_dispatch(Channel::Webhook, &url))
        .await
        .outcome;
    assert!(
        matches!(&outcome, Outcome::Transient { reason, retry_after: None } if reason.starts_with("timed out")),
        "{outcome:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(silent);
}
