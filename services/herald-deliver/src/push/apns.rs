//! APNs over HTTP/2 with token authentication: an ES256 provider token (`kid` = key id,
//! `iss` = team id, `iat`) reused for `token_lifetime`, and one
//! `POST {base}/3/device/{token}` per device token with `apns-topic`, `apns-push-type`,
//! `apns-priority`, `apns-id` (derived from the dispatch id and the token, so a retry carries
//! the same id) and, when the dispatch has a deadline, `apns-expiration`.

use aws_lc_rs::digest;
use reqwest::StatusCode;
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_contracts::secret::Secret;
use herald_contracts::{Dispatch, Priority};

use super::prefixed;
use crate::classify::execute;
use crate::config::providers::ApnsConfig;
use crate::error::required;
use crate::http::{UrlPath, base_url, client_builder};
use crate::jws::JwtSigner;
use crate::{BuildError, Outcome};

pub const APNS_ID: &str = "apns-id";
pub const APNS_TOPIC: &str = "apns-topic";
pub const APNS_PUSH_TYPE: &str = "apns-push-type";
pub const APNS_PRIORITY: &str = "apns-priority";
pub const APNS_EXPIRATION: &str = "apns-expiration";

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

pub struct Apns {
    http: reqwest::Client,
    base: String,
    topic: String,
    push_type: String,
    team_id: String,
    key_id: String,
    signer: JwtSigner,
    lifetime: Duration,
    token: Mutex<Option<(Secret, Instant)>>,
}

impl std::fmt::Debug for Apns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apns")
            .field("base", &self.base)
            .field("topic", &self.topic)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Apns {
    pub fn new(config: &ApnsConfig) -> Result<Self, BuildError> {
        let team_id = required("apns.team_id", &config.team_id)?;
        let key_id = required("apns.key_id", &config.key_id)?;
        let topic = required("apns.topic", &config.topic)?;
        let path = required("apns.key_file", &config.key_file)?;
        let pem = std::fs::read_to_string(path)
            .map_err(|e| BuildError::file("apns.key_file", path, e))?;
        let signer = JwtSigner::es256(&pem, key_id)
            .map_err(|e| BuildError::file("apns.key_file", path, e))?;
        for (key, value) in [
            ("apns.team_id", team_id),
            ("apns.key_id", key_id),
            ("apns.topic", topic),
            ("apns.push_type", &config.push_type),
        ] {
            if value.trim().is_empty() {
                return Err(BuildError::config(key, "must not be empty"));
            }
        }
        // APNs speaks only HTTP/2; over TLS that is negotiated, over plain http (a local
        // stand-in) it needs prior knowledge.
        let http = client_builder(config.timeout, config.connect_timeout)
            .http2_prior_knowledge()
            .build()?;
        Ok(Self {
            http,
            base: base_url("apns.base_url", &config.base_url)?,
            topic: topic.clone(),
            push_type: config.push_type.clone(),
            team_id: team_id.clone(),
            key_id: key_id.clone(),
            signer,
            lifetime: config.token_lifetime,
            token: Mutex::new(None),
        })
    }

    /// The provider token: the current one while it is younger than `token_lifetime`.
    fn provider_token(&self) -> Result<Secret, Outcome> {
        let mut cached = self
            .token
            .lock()
            .map_err(|_| Outcome::transient("apns: token cache poisoned"))?;
        if let Some((token, made)) = cached.as_ref()
            && made.elapsed() < self.lifetime
        {
            return Ok(token.clone());
        }
        let claims = Claims {
            iss: &self.team_id,
            iat: chrono::Utc::now().timestamp(),
        };
        let token =
            self.signer.sign(&claims).map(Secret::new).map_err(|e| {
                Outcome::permanent(format!("apns: signing the provider token: {e}"))
            })?;
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    fn forget_token(&self) {
        if let Ok(mut cached) = self.token.lock() {
            *cached = None;
        }
    }

    /// The JSON payload.
    pub fn payload(&self, dispatch: &Dispatch) -> serde_json::Value {
        let c = &dispatch.content;
        let aps = if self.push_type == "background" {
            serde_json::json!({ "content-available": 1 })
        } else {
            let mut alert = serde_json::Map::new();
            if let Some(title) = &c.subject {
                alert.insert("title".into(), title.clone().into());
            }
            if let Some(body) = &c.text {
                alert.insert("body".into(), body.clone().into());
            }
            serde_json::json!({ "alert": alert })
        };
        serde_json::json!({
            "aps": aps,
            "dispatch_id": dispatch.dispatch_id,
            "event_id": dispatch.event_id,
            "category": dispatch.category,
        })
    }

    /// Sends to one device token: the outcome, and whether APNs says the token is gone.
    pub(crate) async fn send(&self, token: &str, dispatch: &Dispatch) -> (Outcome, bool) {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return (
                Outcome::permanent("apns: the device token is not hexadecimal"),
                true,
            );
        }
        let provider_token = match self.provider_token() {
            Ok(t) => t,
            Err(outcome) => return (outcome, false),
        };
        let urgent = matches!(dispatch.priority, Priority::Critical | Priority::High)
            && self.push_type != "background";
        let apns_id = apns_id(&dispatch.dispatch_id, token);
        let mut request = self
            .http
            .post(format!("{}/3/device/{token}", self.base))
            .header(
                reqwest::header::AUTHORIZATION,
                format!("bearer {}", provider_token.expose()),
            )
            .header(APNS_TOPIC, &self.topic)
            .header(APNS_PUSH_TYPE, &self.push_type)
            .header(APNS_PRIORITY, if urgent { "10" } else { "5" })
            .header(APNS_ID, &apns_id)
            .json(&self.payload(dispatch));
        if let Some(deadline) = dispatch.deadline {
            request = request.header(APNS_EXPIRATION, deadline.timestamp().max(1).to_string());
        }
        let answer = match execute(request, UrlPath::Hidden).await {
            Ok(answer) => answer,
            Err(outcome) => return (prefixed(herald_contracts::provider::APNS, outcome), false),
        };
        let reason = serde_json::from_str::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if answer.status == StatusCode::FORBIDDEN
            && matches!(
                reason.as_str(),
                "ExpiredProviderToken" | "InvalidProviderToken"
            )
        {
            self.forget_token();
            if reason == "ExpiredProviderToken" {
                return (
                    Outcome::transient("apns: ExpiredProviderToken; a new token will be used"),
                    false,
                );
            }
        }
        let stale = answer.status == StatusCode::GONE
            || matches!(reason.as_str(), "BadDeviceToken" | "Unregistered");
        match answer.success() {
            Ok(answer) => {
                let id = answer.header(APNS_ID).unwrap_or(&apns_id).to_owned();
                (Outcome::sent(id), false)
            }
            Err(outcome) => (prefixed(herald_contracts::provider::APNS, outcome), stale),
        }
    }
}

/// A UUID (version 8, name-based) from the dispatch id and the device token.
pub fn apns_id(dispatch_id: &str, token: &str) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(dispatch_id.as_bytes());
    context.update(b"\0");
    context.update(token.as_bytes());
    let digest = context.finish();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_ids_are_stable_uuids_per_dispatch_and_token() {
        let a = apns_id("evt-1:push", "abcd");
        assert_eq!(a, apns_id("evt-1:push", "abcd"));
        assert_ne!(a, apns_id("evt-1:push", "abce"));
        assert_ne!(a, apns_id("evt-2:push", "abcd"));
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(a.len(), 36);
    }
}
