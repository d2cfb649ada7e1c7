//! Webhooks: the dispatch as JSON, POSTed to the address (a URL) and signed per Standard
//! Webhooks with the endpoint's secret. Private-network targets are refused unless
//! allow-listed ([`ssrf`]); redirects are not followed.
//!
//! The body, identical on every retry of a dispatch:
//!
//! ```json
//! {"type": "<category>", "timestamp": "<event created_at, RFC 3339>",
//!  "data": {"dispatch_id": "...", "event_id": "...", "tenant": "...", "user_id": "...",
//!           "category": "...", "priority": "high", "locale": "fr",
//!           "subject": "..." | null, "text": "..." | null, "html": "..." | null,
//!           "payload": <the rendered JSON content, parsed; a string if it is not JSON> | null}}
//! ```
//!
//! Headers: `webhook-id` (the dispatch id: receivers deduplicate on it),
//! `webhook-timestamp` (seconds, the time of this attempt), `webhook-signature`.

pub mod secrets;
pub mod signature;
pub mod ssrf;

use futures::future::BoxFuture;
use reqwest::header::CONTENT_TYPE;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use herald_contracts::{Dispatch, Priority};

use crate::classify::execute;
use crate::config::providers::WebhookConfig;
use crate::http::{UrlPath, client_builder};
use crate::outcome::logged;
use crate::{BuildError, Outcome, Provider, SendReport};
use secrets::SecretLookup;
use signature::SigningKey;
use ssrf::{Guard, GuardedResolver};

pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

#[derive(Debug)]
pub struct WebhookProvider {
    http: reqwest::Client,
    guard: Arc<Guard>,
    secrets: Arc<dyn SecretLookup>,
    default_key: Option<SigningKey>,
}

impl WebhookProvider {
    /// `secrets` finds per-endpoint secrets ([`secrets::EndpointSecrets`] reads
    /// `webhook_endpoints`; [`secrets::NoEndpointSecrets`] when there is no database).
    pub fn new(config: &WebhookConfig, secrets: Arc<dyn SecretLookup>) -> Result<Self, BuildError> {
        let guard = Arc::new(
            Guard::new(&config.allow).map_err(|m| BuildError::config("webhook.allow", m))?,
        );
        let default_key = config
            .default_secret
            .as_ref()
            .map(|s| SigningKey::from_secret(s.expose()))
            .transpose()
            .map_err(|e| BuildError::config("webhook.default_secret", e.to_string()))?;
        let http = client_builder(config.timeout, config.connect_timeout)
            // a proxy would resolve the name itself, past the guard
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(guard.clone())))
            .build()?;
        Ok(Self {
            http,
            guard,
            secrets,
            default_key,
        })
    }

    async fn deliver(&self, dispatch: &Dispatch) -> Outcome {
        let url = match reqwest::Url::parse(&dispatch.address) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => return Outcome::permanent("the webhook address is not an http(s) URL"),
        };
        let Some(host) = url.host_str() else {
            return Outcome::permanent("the webhook URL has no host");
        };
        // The resolver only sees names; an address in the URL is checked here.
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            && let Err(refused) = self.guard.check_all(host, &[SocketAddr::new(ip, 0)])
        {
            return Outcome::permanent(refused.to_string());
        }
        let key = match self
            .secrets
            .secret(&dispatch.tenant, &dispatch.user_id, &dispatch.address)
            .await
        {
            Ok(Some(secret)) => match SigningKey::from_secret(secret.expose()) {
                Ok(key) => key,
                Err(e) => return Outcome::permanent(format!("the endpoint's secret: {e}")),
            },
            Ok(None) => match &self.default_key {
                Some(key) => key.clone(),
                None => {
                    return Outcome::permanent(
                        "no signing secret: the URL is not a registered endpoint of the user \
                         and webhook.default_secret is not set",
                    );
                }
            },
            Err(e) if e.is_transient() => {
                return Outcome::transient(format!("reading the endpoint's secret: {e}"));
            }
            Err(e) => return Outcome::permanent(format!("reading the endpoint's secret: {e}")),
        };
        let body = match webhook_body(dispatch) {
            Ok(body) => body,
            Err(e) => return Outcome::permanent(format!("encoding the webhook body: {e}")),
        };
        let timestamp = chrono::Utc::now().timestamp();
        let signature = key.sign(&dispatch.dispatch_id, timestamp, &body);
        let request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(WEBHOOK_ID, &dispatch.dispatch_id)
            .header(WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(WEBHOOK_SIGNATURE, signature)
            .body(body);
        match execute(request, UrlPath::Hidden)
            .await
            .and_then(|a| a.success())
        {
            Ok(_) => Outcome::sent(&dispatch.dispatch_id),
            Err(outcome) => outcome,
        }
    }
}

impl Provider for WebhookProvider {
    fn name(&self) -> &'static str {
        herald_contracts::provider::WEBHOOK
    }

    fn send<'a>(&'a self, dispatch: &'a Dispatch) -> BoxFuture<'a, SendReport> {
        Box::pin(async move { logged(self.name(), dispatch, self.deliver(dispatch).await.into()) })
    }
}

/// The JSON body for `dispatch` (see the module documentation), serialized straight from the
/// dispatch rather than through a `serde_json::Value` copy of it. Fields are declared in sorted
/// order: the bytes are those a `Value` object writes, as the body was first built.
pub fn webhook_body(dispatch: &Dispatch) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        data: Data<'a>,
        timestamp: String,
        #[serde(rename = "type")]
        kind: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Data<'a> {
        category: &'a str,
        dispatch_id: &'a str,
        event_id: &'a str,
        html: &'a Option<String>,
        locale: &'a str,
        payload: Option<serde_json::Value>,
        priority: &'a Priority,
        subject: &'a Option<String>,
        tenant: &'a str,
        text: &'a Option<String>,
        user_id: &'a str,
    }
    let content = &dispatch.content;
    let payload = content.json.as_deref().map(|text| {
        serde_json::from_str::<serde_json::Value>(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
    });
    serde_json::to_vec(&Body {
        data: Data {
            category: &dispatch.category,
            dispatch_id: &dispatch.dispatch_id,
            event_id: &dispatch.event_id,
            html: &content.html,
            locale: &dispatch.locale,
            payload,
            priority: &dispatch.priority,
            subject: &content.subject,
            tenant: &dispatch.tenant,
            text: &content.text,
            user_id: &dispatch.user_id,
        },
        timestamp: dispatch
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        kind: &dispatch.category,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_contracts::Channel;
    use herald_test_support::dispatch::sample_dispatch;

    fn body(dispatch: &Dispatch) -> serde_json::Value {
        serde_json::from_slice(&webhook_body(dispatch).unwrap()).unwrap()
    }

    #[test]
    fn the_body_is_the_documented_shape_and_stable_across_attempts() {
        let mut dispatch = sample_dispatch(Channel::Webhook, "https://hooks.example/in");
        let first = body(&dispatch);
        assert_eq!(first["type"], "billing.invoice_ready");
        assert_eq!(first["data"]["dispatch_id"], dispatch.dispatch_id);
        assert_eq!(first["data"]["priority"], "high");
        assert_eq!(first["data"]["payload"]["invoice"], "INV-42");
        assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
        dispatch.attempt = 3;
        assert_eq!(body(&dispatch), first);
        dispatch.content.json = Some("not json".into());
        assert_eq!(body(&dispatch)["data"]["payload"], "not json");
    }

    /// The body as it was first built: a `serde_json::Value`, written with sorted keys.
    fn body_as_a_value(dispatch: &Dispatch) -> String {
        let content = &dispatch.content;
        let payload = content.json.as_deref().map(|text| {
            serde_json::from_str::<serde_json::Value>(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
        });
        serde_json::json!({
            "type": dispatch.category,
            "timestamp": dispatch
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": {
                "dispatch_id": dispatch.dispatch_id,
                "event_id": dispatch.event_id,
                "tenant": dispatch.tenant,
                "user_id": dispatch.user_id,
                "category": dispatch.category,
                "priority": dispatch.priority,
                "locale": dispatch.locale,
                "subject": content.subject,
                "text": content.text,
                "html": content.html,
                "payload": payload,
            },
        })
        .to_string()
    }

    #[test]
    fn the_bytes_are_those_the_value_built_body_had() {
        let mut dispatch = sample_dispatch(Channel::Webhook, "https://hooks.example/in");
        let mut cases = vec![dispatch.clone()];
        dispatch.content.json = Some(r#"{"z": 1, "a": {"y": [1, "é\n"], "b": null}}"#.into());
        dispatch.content.subject = Some("Quote \" and <tag> ✓".into());
        cases.push(dispatch.clone());
        dispatch.content.json = Some("not json".into());
        dispatch.content.html = None;
        dispatch.content.text = None;
        dispatch.content.subject = None;
        cases.push(dispatch.clone());
        dispatch.content.json = None;
        dispatch.priority = herald_contracts::Priority::Critical;
        cases.push(dispatch);
        for dispatch in cases {
            let bytes = webhook_body(&dispatch).unwrap();
            assert_eq!(
                String::from_utf8(bytes).unwrap(),
                body_as_a_value(&dispatch)
            );
        }
    }
}
