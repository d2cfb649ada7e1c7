//! FCM HTTP v1 and APNs against stand-ins that check the JWTs with the public keys (made by
//! the `openssl` command, not by the code under test).

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey, VerificationAlgorithm,
};
use axum::http::Version;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use herald_contracts::{Channel, Dispatch};
use herald_deliver::{ApnsConfig, FcmConfig, Outcome, Provider, PushProvider};
use herald_test_support::dispatch::sample_dispatch;
use herald_test_support::keys::{EC_P256, RSA_2048, openssl_key, write_service_account};
use herald_test_support::standin::{Recorded, Reply, StandIn};
use herald_test_support::test_dir;

use crate::common::{Failing, assert_failure_classes};

const CLIENT_EMAIL: &str = "herald@test-project.iam.gserviceaccount.com";
const PROJECT: &str = "test-project";
const SEND_PATH: &str = "/v1/projects/test-project/messages:send";
const TEAM_ID: &str = "TEAM123456";
const KEY_ID: &str = "KEY1234567";
const TOPIC: &str = "com.acme.app";
const LIVE: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const GONE: &str = "dead00000000000000000000000000000000000000000000000000000000dead";
const BAD: &str = "bad0";

/// Verifies a compact JWT's signature; returns its header and claims.
fn verify_jwt(
    jwt: &str,
    algorithm: &'static dyn VerificationAlgorithm,
    public_der: &[u8],
) -> Result<(serde_json::Value, serde_json::Value), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("not three parts".into());
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| e.to_string())?;
    UnparsedPublicKey::new(algorithm, public_der)
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "bad signature".to_owned())?;
    let json = |part: &str| -> Result<serde_json::Value, String> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())
    };
    Ok((json(header)?, json(claims)?))
}

/// A stand-in for Google's token endpoint and the FCM send endpoint. It exchanges a valid
/// assertion for `access-<n>` and accepts only the latest access token.
struct FcmStandIn {
    server: StandIn,
    failing: Failing,
    dir: PathBuf,
}

impl FcmStandIn {
    async fn start() -> Self {
        let dir = test_dir("push");
        let key = openssl_key(&dir, "fcm", RSA_2048);
        let failing = Failing::default();
        let override_ = failing.clone();
        let exchanges = Arc::new(AtomicUsize::new(0));
        let public = key.public_der.clone();
        let server = StandIn::start(move |request: &Recorded| {
            if request.path == "/token" {
                return exchange(request, &public, &exchanges);
            }
            let current = format!("Bearer access-{}", exchanges.load(Ordering::SeqCst));
            if request.path != SEND_PATH || request.header("authorization") != Some(current.as_str())
            {
                return Reply::json(401, serde_json::json!({"error": {"status": "UNAUTHENTICATED"}}));
            }
            if let Some(reply) = override_.get() {
                return reply;
            }
            let token = request.json()["message"]["token"].as_str().unwrap_or_default().to_owned();
            match token.as_str() {
                "fcm-gone" => Reply::json(404, serde_json::json!({"error": {
                    "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
                    "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}})),
                "fcm-invalid" => Reply::json(400, serde_json::json!({"error": {
                    "code": 400, "message": "The registration token is not a valid FCM registration token", "status": "INVALID_ARGUMENT",
                    "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"}]}})),
                _ => Reply::json(200, serde_json::json!({"name": format!("projects/{PROJECT}/messages/{token}-1")})),
            }
        })
        .await;
        write_service_account(
            &dir.join("service-account.json"),
            &key,
            PROJECT,
            CLIENT_EMAIL,
            &format!("{}/token", server.url()),
        );
        Self {
            server,
            failing,
            dir,
        }
    }

    fn config(&self) -> FcmConfig {
        toml::from_str(&format!(
            "base_url = \"{}\"\nservice_account_file = \"{}\"\n",
            self.server.url(),
            self.dir.join("service-account.json").display()
        ))
        .unwrap()
    }
}

/// The token endpoint: checks the grant and the RS256 assertion.
fn exchange(request: &Recorded, public: &[u8], exchanges: &AtomicUsize) -> Reply {
    let invalid = |why: &str| {
        Reply::json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": why}),
        )
    };
    if request.form_value("grant_type").as_deref()
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return invalid("grant_type");
    }
    let assertion = request.form_value("assertion").unwrap_or_default();
    let (header, claims) = match verify_jwt(&assertion, &RSA_PKCS1_2048_8192_SHA256, public) {
        Ok(parts) => parts,
        Err(e) => return invalid(&e),
    };
    let now = chrono::Utc::now().timestamp();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    let valid = header["alg"] == "RS256"
        && header["kid"] == "pk-1"
        && claims["iss"] == CLIENT_EMAIL
        && claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
        && claims["aud"]
            .as_str()
            .is_some_and(|a| a.ends_with("/token"))
        && (now - 60..=now + 5).contains(&iat)
        && exp > iat
        && exp - iat <= 3600;
    if !valid {
        return invalid(&format!("claims {header} {claims}"));
    }
    let n = exchanges.fetch_add(1, Ordering::SeqCst) + 1;
    Reply::json(
        200,
        serde_json::json!({"access_token": format!("access-{n}"), "expires_in": 3599, "token_type": "Bearer"}),
    )
}

/// An APNs stand-in (HTTP/2): checks the ES256 provider token and answers per device token.
struct ApnsStandIn {
    server: StandIn,
    failing: Failing,
    key_file: PathBuf,
}

impl ApnsStandIn {
    async fn start() -> Self {
        let dir = test_dir("push");
        let key = openssl_key(&dir, "apns", EC_P256);
        let failing = Failing::default();
        let override_ = failing.clone();
        let public = key.public_der.clone();
        let server = StandIn::start(move |request: &Recorded| {
            let token = request.header("authorization").and_then(|a| a.strip_prefix("bearer "));
            let verified = token.map(|t| verify_jwt(t, &ECDSA_P256_SHA256_FIXED, &public));
            match verified {
                Some(Ok((header, claims)))
                    if header == serde_json::json!({"alg": "ES256", "kid": KEY_ID})
                        && claims["iss"] == TEAM_ID
                        && claims["iat"].as_i64().is_some() => {}
                _ => return Reply::json(403, serde_json::json!({"reason": "InvalidProviderToken"})),
            }
            if let Some(reply) = override_.get() {
                return reply;
            }
            let device = request.path.strip_prefix("/3/device/").unwrap_or_default();
            if device == GONE {
                return Reply::json(410, serde_json::json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000_i64}));
            }
            if device == BAD {
                return Reply::json(400, serde_json::json!({"reason": "BadDeviceToken"}));
            }
            let id = request.header("apns-id").unwrap_or("none").to_owned();
            Reply::status(200).header("apns-id", &id)
        })
        .await;
        Self {
            server,
            failing,
            key_file: key.private_pem,
        }
    }

    fn config(&self) -> ApnsConfig {
        toml::from_str(&format!(
            "base_url = \"{}\"\nteam_id = \"{TEAM_ID}\"\nkey_id = \"{KEY_ID}\"\nkey_file = \"{}\"\ntopic = \"{TOPIC}\"\n",
            self.server.url(),
            self.key_file.display()
        ))
        .unwrap()
    }
}

fn push(address: &str) -> Dispatch {
    sample_dispatch(Channel::Push, address)
}

#[tokio::test]
async fn fcm_exchanges_a_signed_assertion_once_and_sends_with_the_cached_token() {
    let fcm = FcmStandIn::start().await;
    let provider = PushProvider::new(Some(&fcm.config()), None).unwrap();

    let first = push("fcm:tok-a");
    let report = provider.send(&first).await;
    assert_eq!(
        report.outcome,
        Outcome::sent(format!("projects/{PROJECT}/messages/tok-a-1"))
    );
    let second = push("tok-b");
    let report = provider.send(&second).await;
    assert_eq!(
        report.outcome,
        Outcome::sent(format!("projects/{PROJECT}/messages/tok-b-1"))
    );

    assert_eq!(
        fcm.server.requests_to("/token").len(),
        1,
        "one exchange for two sends"
    );
    let exchange = &fcm.server.requests_to("/token")[0];
    assert_eq!(
        exchange.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let sends = fcm.server.requests_to(SEND_PATH);
    assert_eq!(sends.len(), 2);
    assert!(
        sends
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer access-1"))
    );
    let message = &sends[0].json()["message"];
    assert_eq!(message["token"], "tok-a");
    assert_eq!(
        message["notification"]["title"],
        first.content.subject.clone().unwrap()
    );
    assert_eq!(
        message["notification"]["body"],
        first.content.text.clone().unwrap()
    );
    assert_eq!(message["data"]["dispatch_id"], first.dispatch_id);
    assert_eq!(
        message["data"]["payload"],
        first.content.json.clone().unwrap()
    );
    assert_eq!(message["android"]["priority"], "high");
    assert_eq!(sends[1].json()["message"]["token"], "tok-b");
}

#[tokio::test]
async fn fcm_reports_unregistered_and_invalid_tokens_as_stale() {
    let fcm = FcmStandIn::start().await;
    let provider = PushProvider::new(Some(&fcm.config()), None).unwrap();

    let report = provider
        .send(&push("fcm:fcm-gone,fcm-invalid,tok-ok"))
        .await;
    assert_eq!(
        report.outcome,
        Outcome::sent(format!("projects/{PROJECT}/messages/tok-ok-1"))
    );
    assert_eq!(report.stale_addresses, vec!["fcm:fcm-gone", "fcm-invalid"]);

    let report = provider.send(&push("fcm-gone")).await;
    assert!(
        matches!(&report.outcome, Outcome::Permanent { reason } if reason.contains("404")),
        "{report:?}"
    );
    assert_eq!(report.stale_addresses, vec!["fcm-gone"]);
}

#[tokio::test]
async fn fcm_classifies_rate_limits_faults_and_rejections() {
    let fcm = FcmStandIn::start().await;
    let provider = PushProvider::new(Some(&fcm.config()), None).unwrap();
    let dispatch = push("tok-a");
    assert_failure_classes(&provider, &dispatch, &fcm.failing).await;
    assert!(provider.send(&dispatch).await.stale_addresses.is_empty());
}

#[tokio::test]
async fn apns_sends_over_http2_with_an_es256_provider_token() {
    let apns = ApnsStandIn::start().await;
    let provider = PushProvider::new(None, Some(&apns.config())).unwrap();
    let dispatch = push(&format!("apns:{LIVE}"));

    let report = provider.send(&dispatch).await;
    let Outcome::Sent {
        provider_message_id,
        ..
    } = &report.outcome
    else {
        panic!("{report:?}");
    };
    let requests = apns.server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.version, Version::HTTP_2);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/3/device/{LIVE}"));
    assert_eq!(request.header("apns-topic"), Some(TOPIC));
    assert_eq!(request.header("apns-push-type"), Some("alert"));
    assert_eq!(request.header("apns-priority"), Some("10"));
    let apns_id = request.header("apns-id").unwrap();
    assert_eq!(provider_message_id, apns_id, "the id APNs answered");
    assert_eq!(
        uuid::Uuid::parse_str(apns_id)
            .unwrap()
            .hyphenated()
            .to_string(),
        apns_id
    );
    let payload = request.json();
    assert_eq!(
        payload["aps"]["alert"]["title"],
        dispatch.content.subject.clone().unwrap()
    );
    assert_eq!(
        payload["aps"]["alert"]["body"],
        dispatch.content.text.clone().unwrap()
    );
    assert_eq!(payload["dispatch_id"], dispatch.dispatch_id);

    // a retry of the same dispatch: same apns-id, same provider token (cached)
    provider.send(&dispatch).await;
    let requests = apns.server.requests();
    assert_eq!(requests[1].header("apns-id"), Some(apns_id));
    assert_eq!(
        requests[1].header("authorization"),
        request.header("authorization")
    );
}

#[tokio::test]
async fn apns_reports_unregistered_and_bad_tokens_as_stale() {
    let apns = ApnsStandIn::start().await;
    let provider = PushProvider::new(None, Some(&apns.config())).unwrap();
    let address = format!("apns:{GONE},apns:{BAD},apns:not-hex,apns:{LIVE}");
    let report = provider.send(&push(&address)).await;
    assert!(report.outcome.is_sent(), "{report:?}");
    assert_eq!(
        report.stale_addresses,
        vec![
            format!("apns:{GONE}"),
            format!("apns:{BAD}"),
            "apns:not-hex".into()
        ]
    );
    // the malformed token never reached the service
    assert_eq!(apns.server.requests().len(), 3);

    let report = provider.send(&push(&format!("apns:{GONE}"))).await;
    assert!(
        matches!(&report.outcome, Outcome::Permanent { reason } if reason.contains("410")),
        "{report:?}"
    );
}

#[tokio::test]
async fn apns_classifies_rate_limits_faults_and_rejections() {
    let apns = ApnsStandIn::start().await;
    let provider = PushProvider::new(None, Some(&apns.config())).unwrap();
    assert_failure_classes(&provider, &push(&format!("apns:{LIVE}")), &apns.failing).await;
}

#[tokio::test]
async fn tokens_for_both_services_go_to_each_and_are_sent_if_any_is_accepted() {
    let fcm = FcmStandIn::start().await;
    let apns = ApnsStandIn::start().await;
    let provider = PushProvider::new(Some(&fcm.config()), Some(&apns.config())).unwrap();

    let report = provider
        .send(&push(&format!("apns:{LIVE}, fcm:tok-a, fcm-gone")))
        .await;
    let Outcome::Sent {
        provider_message_id,
        ..
    } = &report.outcome
    else {
        panic!("{report:?}");
    };
    assert_eq!(
        provider_message_id.split(',').count(),
        2,
        "{provider_message_id}"
    );
    assert_eq!(report.stale_addresses, vec!["fcm-gone"]);
    assert_eq!(apns.server.requests().len(), 1);
    assert_eq!(fcm.server.requests_to(SEND_PATH).len(), 2);

    // none accepted, one transient: transient
    apns.failing.set(Some(Reply::status(503)));
    let report = provider.send(&push(&format!("apns:{LIVE},fcm-gone"))).await;
    assert!(
        matches!(report.outcome, Outcome::Transient { .. }),
        "{report:?}"
    );
    assert_eq!(report.stale_addresses, vec!["fcm-gone"]);
}

#[tokio::test]
async fn a_token_for_an_unconfigured_service_is_permanent() {
    let fcm = FcmStandIn::start().await;
    let provider = PushProvider::new(Some(&fcm.config()), None).unwrap();
    let report = provider.send(&push(&format!("apns:{LIVE}"))).await;
    assert_eq!(report.outcome, Outcome::permanent("apns: not configured"));
    assert!(report.stale_addresses.is_empty());
}
