//! Helpers the adapter modules share.

use scylla::client::session::Session;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use herald_contracts::Dispatch;
use herald_deliver::{Outcome, Provider};
use herald_store::StoreConfig;
use herald_test_support::standin::Reply;
use herald_test_support::{Stack, unique};

/// A reply that replaces a stand-in's normal answer while it is set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Failing(Arc<Mutex<Option<Reply>>>);

impl Failing {
    pub(crate) fn set(&self, reply: Option<Reply>) {
        *self.0.lock().unwrap() = reply;
    }

    pub(crate) fn get(&self) -> Option<Reply> {
        self.0.lock().unwrap().clone()
    }
}

/// 500 → transient; 429 with `Retry-After: 7` → transient after 7 s; 503 with an HTTP-date
/// two minutes ahead → transient after about that; 400 → permanent with the provider's text.
pub(crate) async fn assert_failure_classes(
    provider: &dyn Provider,
    dispatch: &Dispatch,
    failing: &Failing,
) {
    failing.set(Some(Reply::status(500).body("upstream exploded")));
    let outcome = provider.send(dispatch).await.outcome;
    assert!(
        matches!(&outcome, Outcome::Transient { reason, retry_after: None } if reason.contains("500") && reason.contains("upstream exploded")),
        "500: {outcome:?}"
    );

    failing.set(Some(Reply::status(429).header("Retry-After", "7")));
    let outcome = provider.send(dispatch).await.outcome;
    assert!(
        matches!(&outcome, Outcome::Transient { retry_after: Some(d), .. } if *d == Duration::from_secs(7)),
        "429: {outcome:?}"
    );

    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    failing.set(Some(Reply::status(503).header("Retry-After", &date)));
    let outcome = provider.send(dispatch).await.outcome;
    assert!(
        matches!(&outcome, Outcome::Transient { retry_after: Some(d), .. } if (Duration::from_secs(100)..=Duration::from_secs(120)).contains(d)),
        "503: {outcome:?}"
    );

    failing.set(Some(Reply::json(
        400,
        serde_json::json!({"error": {"message": "the field is invalid"}}),
    )));
    let outcome = provider.send(dispatch).await.outcome;
    assert!(
        matches!(&outcome, Outcome::Permanent { reason } if reason.contains("400") && reason.contains("the field is invalid")),
        "400: {outcome:?}"
    );
    failing.set(None);
}

/// A fresh keyspace with every migration applied, and a session on the local stack.
pub(crate) async fn migrated_keyspace(name: &str) -> (Arc<Session>, StoreConfig) {
    let config = StoreConfig {
        nodes: vec![Stack::from_env().cql],
        keyspace: unique(name),
        request_timeout: Duration::from_secs(30),
        ..StoreConfig::default()
    };
    let session = herald_store::connect(&config).await.unwrap();
    herald_store::migrate(&session, &config).await.unwrap();
    (Arc::new(session), config)
}
