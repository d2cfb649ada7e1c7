//! Email over an HTTP API in the SendGrid v3 shape: `POST {base}/v3/mail/send`, Bearer API key,
//! JSON personalizations/from/subject/content, answered `202` with `X-Message-Id`.
//!
//! The dispatch id is the idempotency key, in a configurable header and in `custom_args`,
//! with the tenant, user and event ids: the provider echoes them in every Event Webhook event,
//! which is how `herald api` matches an event to its dispatch.

use futures::future::BoxFuture;
use reqwest::header::{HeaderName, HeaderValue};

use herald_contracts::Dispatch;
use herald_contracts::unsubscribe::UnsubscribeLinks;

use super::{LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST, ListUnsubscribe, ONE_CLICK};
use crate::classify::execute;
use crate::config::providers::SendGridConfig;
use crate::error::required;
use crate::http::{UrlPath, base_url, client_builder};
use crate::outcome::logged;
use crate::{BuildError, Outcome, Provider, SendReport};

pub const SEND_PATH: &str = "/v3/mail/send";
pub const MESSAGE_ID_HEADER: &str = "x-message-id";

#[derive(Debug)]
pub struct SendGridProvider {
    http: reqwest::Client,
    url: String,
    api_key: herald_contracts::secret::Secret,
    from: serde_json::Value,
    reply_to: Option<serde_json::Value>,
    list_unsubscribe: Option<ListUnsubscribe>,
    idempotency_header: HeaderName,
}

impl SendGridProvider {
    pub fn new(config: &SendGridConfig) -> Result<Self, BuildError> {
        Self::with_unsubscribe(config, None)
    }

    /// As [`Self::new`], with `List-Unsubscribe` pointing at signed links when `links` is
    /// given (`[unsubscribe]`).
    pub fn with_unsubscribe(
        config: &SendGridConfig,
        links: Option<&UnsubscribeLinks>,
    ) -> Result<Self, BuildError> {
        let base = base_url("sendgrid.base_url", &config.base_url)?;
        let api_key = required("sendgrid.api_key", &config.api_key)?;
        let sender = required("sendgrid.from", &config.from)?;
        let idempotency_header = HeaderName::from_bytes(config.idempotency_header.as_bytes())
            .map_err(|e| BuildError::config("sendgrid.idempotency_header", e.to_string()))?;
        HeaderValue::from_str(&format!("Bearer {}", api_key.expose()))
            .map_err(|_| BuildError::config("sendgrid.api_key", "is not a valid header value"))?;
        let mut from = serde_json::json!({ "email": sender });
        if let Some(name) = &config.from_name {
            from["name"] = name.clone().into();
        }
        let list_unsubscribe = ListUnsubscribe::configure(
            "sendgrid.list_unsubscribe",
            config.list_unsubscribe.as_deref(),
            config.list_unsubscribe_post,
            links,
        )?;
        Ok(Self {
            http: client_builder(config.timeout, config.connect_timeout).build()?,
            url: format!("{base}{SEND_PATH}"),
            api_key: api_key.clone(),
            from,
            reply_to: config
                .reply_to
                .as_ref()
                .map(|r| serde_json::json!({ "email": r })),
            list_unsubscribe,
            idempotency_header,
        })
    }

    /// The request body for `dispatch`; `Err` is the permanent reason there is none.
    pub fn body(&self, dispatch: &Dispatch) -> Result<serde_json::Value, String> {
        let c = &dispatch.content;
        // the API wants text/plain before text/html
        let mut content = Vec::new();
        if let Some(text) = &c.text {
            content.push(serde_json::json!({"type": "text/plain", "value": text}));
        }
        if let Some(html) = &c.html {
            content.push(serde_json::json!({"type": "text/html", "value": html}));
        }
        if content.is_empty() {
            return Err("the dispatch has neither a text nor an HTML body".into());
        }
        let custom_args = serde_json::json!({
            "dispatch_id": dispatch.dispatch_id,
            "event_id": dispatch.event_id,
            "tenant": dispatch.tenant,
            "user_id": dispatch.user_id,
            // For the statuses of SendGrid's event webhook: its dashboards count them per
            // category and time delivery from the request's creation (milliseconds, as text:
            // custom_args values are strings).
            "category": dispatch.category,
            "created_at": dispatch.created_at.timestamp_millis().to_string(),
        });
        let mut body = serde_json::json!({
            "personalizations": [{
                "to": [{"email": dispatch.address}],
                "custom_args": custom_args,
            }],
            "from": self.from,
            "subject": c.subject.clone().unwrap_or_default(),
            "content": content,
            "custom_args": custom_args,
        });
        if let Some(reply_to) = &self.reply_to {
            body["reply_to"] = reply_to.clone();
        }
        if let Some(list_unsubscribe) = &self.list_unsubscribe {
            let (url, one_click) = list_unsubscribe.header(dispatch);
            let mut headers = serde_json::json!({ LIST_UNSUBSCRIBE: url });
            if one_click {
                headers[LIST_UNSUBSCRIBE_POST] = ONE_CLICK.into();
            }
            body["headers"] = headers;
        }
        Ok(body)
    }

    async fn deliver(&self, dispatch: &Dispatch) -> Outcome {
        let body = match self.body(dispatch) {
            Ok(body) => body,
            Err(reason) => return Outcome::permanent(reason),
        };
        let request = self
            .http
            .post(&self.url)
            .bearer_auth(self.api_key.expose())
            .header(self.idempotency_header.clone(), &dispatch.dispatch_id)
            .json(&body);
        match execute(request, UrlPath::Shown)
            .await
            .and_then(|a| a.success())
        {
            Ok(answer) => Outcome::sent(answer.header(MESSAGE_ID_HEADER).unwrap_or_default()),
            Err(outcome) => outcome,
        }
    }
}

impl Provider for SendGridProvider {
    fn name(&self) -> &'static str {
        herald_contracts::provider::SENDGRID
    }

    fn send<'a>(&'a self, dispatch: &'a Dispatch) -> BoxFuture<'a, SendReport> {
        Box::pin(async move { logged(self.name(), dispatch, self.deliver(dispatch).await.into()) })
    }
}
