//! SMS through the Twilio Messages API: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded `To`, `From` or `MessagingServiceSid`, `Body`, `StatusCallback`, basic auth
//! `sid:token`; answered `201` with the message `sid`.

use futures::future::BoxFuture;

use herald_contracts::Dispatch;
use herald_contracts::secret::Secret;

use crate::classify::execute;
use crate::config::providers::TwilioConfig;
use crate::error::required;
use crate::http::{UrlPath, base_url, client_builder};
use crate::outcome::logged;
use crate::template::Template;
use crate::{BuildError, Outcome, Provider, SendReport};

#[derive(Debug)]
enum Sender {
    From(String),
    Service(String),
}

#[derive(Debug)]
pub struct TwilioProvider {
    http: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: Secret,
    sender: Sender,
    status_callback: Option<Template>,
}

impl TwilioProvider {
    pub fn new(config: &TwilioConfig) -> Result<Self, BuildError> {
        let base = base_url("twilio.base_url", &config.base_url)?;
        let sid = required("twilio.account_sid", &config.account_sid)?;
        let auth_token = required("twilio.auth_token", &config.auth_token)?;
        if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(BuildError::config(
                "twilio.account_sid",
                "must be letters and digits (AC...)",
            ));
        }
        let sender = match (&config.from, &config.messaging_service_sid) {
            (Some(from), None) => Sender::From(from.clone()),
            (None, Some(service)) => Sender::Service(service.clone()),
            _ => {
                return Err(BuildError::config(
                    "twilio.from",
                    "set exactly one of twilio.from and twilio.messaging_service_sid",
                ));
            }
        };
        let status_callback = config
            .status_callback
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|m| BuildError::config("twilio.status_callback", m))?;
        Ok(Self {
            http: client_builder(config.timeout, config.connect_timeout).build()?,
            url: format!("{base}/2010-04-01/Accounts/{sid}/Messages.json"),
            account_sid: sid.clone(),
            auth_token: auth_token.clone(),
            sender,
            status_callback,
        })
    }

    /// The form fields for `dispatch`; `Err` is the permanent reason there are none.
    pub fn form(&self, dispatch: &Dispatch) -> Result<String, String> {
        let body = dispatch
            .content
            .text
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or("the dispatch has no text body")?;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("To", &dispatch.address);
        match &self.sender {
            Sender::From(from) => form.append_pair("From", from),
            Sender::Service(sid) => form.append_pair("MessagingServiceSid", sid),
        };
        form.append_pair("Body", body);
        if let Some(callback) = &self.status_callback {
            form.append_pair("StatusCallback", &callback.render(dispatch));
        }
        Ok(form.finish())
    }

    async fn deliver(&self, dispatch: &Dispatch) -> Outcome {
        let form = match self.form(dispatch) {
            Ok(form) => form,
            Err(reason) => return Outcome::permanent(reason),
        };
        let request = self
            .http
            .post(&self.url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        match execute(request, UrlPath::Shown)
            .await
            .and_then(|a| a.success())
        {
            Ok(answer) => {
                let sid = serde_json::from_str::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v["sid"].as_str().map(str::to_owned));
                if sid.is_none() {
                    tracing::warn!(
                        provider = herald_contracts::provider::TWILIO,
                        dispatch_id = %dispatch.dispatch_id,
                        "accepted without a message sid"
                    );
                }
                Outcome::sent(sid.unwrap_or_default())
            }
            Err(outcome) => outcome,
        }
    }
}

impl Provider for TwilioProvider {
    fn name(&self) -> &'static str {
        herald_contracts::provider::TWILIO
    }

    /// Status callbacks carry only `MessageSid` (`herald api` matches it to the dispatch).
    fn callbacks_by_message_id(&self) -> bool {
        true
    }

    fn send<'a>(&'a self, dispatch: &'a Dispatch) -> BoxFuture<'a, SendReport> {
        Box::pin(async move { logged(self.name(), dispatch, self.deliver(dispatch).await.into()) })
    }
}
