//! FCM HTTP v1. The service-account key signs an RS256 JWT assertion, exchanged at the key's
//! `token_uri` for an OAuth access token (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`),
//! cached until shortly before it expires; each token is then one
//! `POST {base}/v1/projects/{project}/messages:send` with that Bearer token.

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

use herald_contracts::secret::Secret;
use herald_contracts::{Dispatch, Priority};

use super::prefixed;
use crate::classify::{Answer, execute};
use crate::config::providers::FcmConfig;
use crate::error::required;
use crate::http::{UrlPath, base_url, client_builder};
use crate::jws::JwtSigner;
use crate::{BuildError, Outcome};

pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The longest assertion lifetime Google accepts.
const ASSERTION_LIFETIME: i64 = 3600;

/// The fields of a Google service-account key file that FCM needs (the file has more).
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: Secret,
    #[serde(default)]
    private_key_id: Option<String>,
    token_uri: String,
    project_id: String,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct AccessToken {
    value: Secret,
    renew_at: Instant,
}

pub struct Fcm {
    http: reqwest::Client,
    send_url: String,
    token_uri: String,
    client_email: String,
    signer: JwtSigner,
    refresh_margin: Duration,
    /// Held across an exchange, so concurrent sends wait for one exchange instead of each
    /// making their own.
    token: tokio::sync::Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fcm")
            .field("send_url", &self.send_url)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl Fcm {
    pub fn new(config: &FcmConfig) -> Result<Self, BuildError> {
        const KEY: &str = "fcm.service_account_file";
        let path = required(KEY, &config.service_account_file)?;
        let text = std::fs::read(path).map_err(|e| BuildError::file(KEY, path, e))?;
        let account: ServiceAccount = serde_json::from_slice(&text)
            .map_err(|e| BuildError::file(KEY, path, format!("not a service-account key: {e}")))?;
        let signer = JwtSigner::rs256(
            account.private_key.expose(),
            account.private_key_id.as_deref(),
        )
        .map_err(|e| BuildError::file(KEY, path, format!("private_key: {e}")))?;
        reqwest::Url::parse(&account.token_uri)
            .map_err(|e| BuildError::file(KEY, path, format!("token_uri: {e}")))?;
        let base = base_url("fcm.base_url", &config.base_url)?;
        let project = config.project_id.as_ref().unwrap_or(&account.project_id);
        Ok(Self {
            http: client_builder(config.timeout, config.connect_timeout).build()?,
            send_url: format!("{base}/v1/projects/{project}/messages:send"),
            token_uri: account.token_uri,
            client_email: account.client_email,
            signer,
            refresh_margin: config.refresh_margin,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    async fn access_token(&self) -> Result<Secret, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok(token.value.clone());
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Assertion {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME,
        };
        let assertion = self
            .signer
            .sign(&claims)
            .map_err(|e| Outcome::permanent(format!("fcm: signing the assertion: {e}")))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", JWT_BEARER_GRANT)
            .append_pair("assertion", &assertion)
            .finish();
        let request = self
            .http
            .post(&self.token_uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        let answer = execute(request, UrlPath::Shown)
            .await
            .and_then(Answer::success)
            .map_err(|o| prefixed("fcm token exchange", o))?;
        let token: TokenAnswer = serde_json::from_str(&answer.body).map_err(|_| {
            Outcome::transient("fcm token exchange: the answer has no access_token")
        })?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        // a token shorter-lived than twice the margin is still used for half its life
        let margin = self.refresh_margin.min(lifetime / 2);
        let value = Secret::new(token.access_token);
        *cached = Some(AccessToken {
            value: value.clone(),
            renew_at: Instant::now() + lifetime - margin,
        });
        Ok(value)
    }

    /// Forgets `rejected` (FCM answered 401), unless another send already replaced it.
    async fn invalidate(&self, rejected: &Secret) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| &t.value == rejected) {
            *cached = None;
        }
    }

    /// The request body for one token.
    pub fn message(token: &str, dispatch: &Dispatch) -> serde_json::Value {
        let c = &dispatch.content;
        let mut notification = serde_json::Map::new();
        if let Some(title) = &c.subject {
            notification.insert("title".into(), title.clone().into());
        }
        if let Some(body) = &c.text {
            notification.insert("body".into(), body.clone().into());
        }
        let mut data = serde_json::json!({
            "dispatch_id": dispatch.dispatch_id,
            "event_id": dispatch.event_id,
            "category": dispatch.category,
        });
        if let Some(payload) = &c.json {
            data["payload"] = payload.clone().into();
        }
        let urgent = matches!(dispatch.priority, Priority::Critical | Priority::High);
        let mut android = serde_json::json!({ "priority": if urgent { "high" } else { "normal" } });
        if let Some(deadline) = dispatch.deadline {
            let left = (deadline - chrono::Utc::now()).num_seconds().max(0);
            android["ttl"] = format!("{left}s").into();
        }
        serde_json::json!({
            "message": {
                "token": token,
                "notification": notification,
                "data": data,
                "android": android,
            }
        })
    }

    /// Sends to one token: the outcome, and whether FCM says the token is gone.
    pub(crate) async fn send(&self, token: &str, dispatch: &Dispatch) -> (Outcome, bool) {
        let access = match self.access_token().await {
            Ok(access) => access,
            Err(outcome) => return (outcome, false),
        };
        let request = self
            .http
            .post(&self.send_url)
            .bearer_auth(access.expose())
            .json(&Self::message(token, dispatch));
        let answer = match execute(request, UrlPath::Shown).await {
            Ok(answer) => answer,
            Err(outcome) => return (prefixed(herald_contracts::provider::FCM, outcome), false),
        };
        if answer.status == StatusCode::UNAUTHORIZED {
            self.invalidate(&access).await;
            return (
                Outcome::transient("fcm: the access token was rejected; a new one will be used"),
                false,
            );
        }
        let stale = token_is_stale(answer.status, &answer.body);
        match answer.success() {
            Ok(answer) => {
                let name = serde_json::from_str::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v["name"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                (Outcome::sent(name), false)
            }
            Err(outcome) => (prefixed(herald_contracts::provider::FCM, outcome), stale),
        }
    }
}

/// FCM says the token is gone: `UNREGISTERED` (404), or a 400 `INVALID_ARGUMENT` about the
/// token field rather than the rest of the message.
pub fn token_is_stale(status: StatusCode, body: &str) -> bool {
    let Ok(answer) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let error = &answer["error"];
    let details = error["details"].as_array().cloned().unwrap_or_default();
    let code = details
        .iter()
        .find_map(|d| d["errorCode"].as_str())
        .or_else(|| error["status"].as_str())
        .unwrap_or_default();
    match (status.as_u16(), code) {
        (_, "UNREGISTERED") => true,
        (400, "INVALID_ARGUMENT") => {
            let names_token = details.iter().any(|d| {
                d["fieldViolations"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|f| f["field"] == "message.token"))
            });
            names_token
                || error["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("registration token"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unregistered_and_invalid_token_answers_mark_the_token_stale() {
        let unregistered = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND",
            "details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert!(token_is_stale(StatusCode::NOT_FOUND, unregistered));
        let invalid_token = r#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT",
            "details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}"#;
        assert!(token_is_stale(StatusCode::BAD_REQUEST, invalid_token));
        let field = r#"{"error":{"code":400,"message":"Invalid value","status":"INVALID_ARGUMENT",
            "details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"Invalid registration token"}]}]}}"#;
        assert!(token_is_stale(StatusCode::BAD_REQUEST, field));
    }

    #[test]
    fn other_errors_leave_the_token_alone() {
        let bad_payload = r#"{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT",
            "details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data","description":"bad"}]}]}}"#;
        assert!(!token_is_stale(StatusCode::BAD_REQUEST, bad_payload));
        let quota = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"errorCode":"QUOTA_EXCEEDED"}]}}"#;
        assert!(!token_is_stale(StatusCode::TOO_MANY_REQUESTS, quota));
        assert!(!token_is_stale(StatusCode::INTERNAL_SERVER_ERROR, "oops"));
    }
}
