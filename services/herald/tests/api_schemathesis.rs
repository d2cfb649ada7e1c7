//! Schemathesis (property-based API testing from the OpenAPI document) against `herald api` on
//! the real stack, over every documented route with a key holding every scope: no answer is a
//! server error, and every status, content type and body is one the document declares.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use herald_test_support::api::ApiClient;
use herald_test_support::{HeraldEnv, python, run};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// Test cases per operation: enough to reach each route's error paths, few enough that the run
/// stays around a minute on the CI host.
const EXAMPLES_PER_OPERATION: &str = "30";

/// Path parameters and body fields naming what the demo seed holds, so that generated requests
/// reach the handlers' logic instead of stopping at 404 or at another tenant's 403.
const SCHEMATHESIS_CONFIG: &str = r#"
[parameters]
"path.user_id" = "ada"
"path.template_id" = "invoice_ready"
"path.category" = "billing.invoice_ready"
"path.id" = "fuzz-hook"
"path.token" = "fuzz-token"
"body.tenant" = "acme"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_as_documented_and_never_with_a_server_error() {
    let env = HeraldEnv::new(HERALD, "api_fuzz");
    env.prepare(true);
    env.seed_demo();
    let key = env.create_api_key("acme", "send,manage,read");
    let mut api = env.spawn_api("api", &[]);
    // The webhook endpoint and push token the config's path parameters name.
    let client = ApiClient::new(&api);
    let hook = serde_json::json!({"id": "fuzz-hook", "url": "https://hooks.example.com/in"});
    let made = client
        .post("/v1/users/ada/webhooks", Some(&key), &[], hook.to_string())
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    let token = serde_json::json!({"token": "fuzz-token"});
    let added = client
        .post(
            "/v1/users/ada/push_tokens",
            Some(&key),
            &[],
            token.to_string(),
        )
        .await;
    assert!(added.status < 300, "{added:?}");

    // The venv's console script, next to its python.
    let schemathesis = python().with_file_name("schemathesis");
    let reports = env.dir.join("schemathesis");
    let config = env.dir.join("schemathesis.toml");
    std::fs::write(&config, SCHEMATHESIS_CONFIG).unwrap();
    let mut command = Command::new(schemathesis);
    // It keeps a cache in its working directory: the env's, not the checkout.
    command
        .current_dir(&env.dir)
        .arg("--config-file")
        .arg(&config)
        .args([
            "run",
            &api.url("/openapi.json"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
            "--max-examples",
            EXAMPLES_PER_OPERATION,
            // One seed and no example database: a failure found once is found again.
            "--seed",
            "20261201",
            "--generation-database",
            "none",
            "--workers",
            "2",
            "--request-timeout",
            "10",
            "--no-color",
            "--report-dir",
        ])
        .arg(&reports)
        .args(["--header", &format!("Authorization: Bearer {key}")]);
    let fuzz = tokio::task::spawn_blocking(move || run(command, None))
        .await
        .unwrap();
    assert!(
        fuzz.code == 0,
        "schemathesis found problems (exit {:?}):\n{}\n{}",
        fuzz.code,
        fuzz.stdout,
        fuzz.stderr
    );
    println!("{}", fuzz.stdout);
    // It tested something: every operation of the document appears in its summary.
    assert!(
        fuzz.stdout.contains("POST /v1/notifications"),
        "{}",
        fuzz.stdout
    );
    api.role.terminate(std::time::Duration::from_secs(30));
}
