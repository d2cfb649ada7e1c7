//! Email over SMTP (lettre, pooled): multipart/alternative text + HTML, a Message-ID derived
//! from the dispatch id, List-Unsubscribe from a configured template or signed links, and
//! open and click tracking in the HTML of categories that opted in ([`super::tracked`]).

use futures::future::BoxFuture;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{Error as SmtpError, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::error::Error as _;

use herald_contracts::Dispatch;

use herald_contracts::unsubscribe::UnsubscribeLinks;

use super::tracked::{EngagementTracking, header_urls};
use super::{
    EmailLinks, LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST, ListUnsubscribe, ONE_CLICK, domain_of,
    message_id,
};
use crate::classify::truncate_reason;
use crate::config::providers::{SmtpConfig, SmtpSecurity};
use crate::error::required;
use crate::outcome::logged;
use crate::{BuildError, Outcome, Provider, SendReport};

#[derive(Debug)]
pub struct SmtpProvider {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    message_id_domain: String,
    list_unsubscribe: Option<ListUnsubscribe>,
    tracking: Option<EngagementTracking>,
}

impl SmtpProvider {
    /// Builds the pooled transport (no connection is made until the first send). Call it
    /// inside a Tokio runtime: the pool starts its reaper task there.
    pub fn new(config: &SmtpConfig) -> Result<Self, BuildError> {
        Self::with_unsubscribe(config, None)
    }

    /// As [`Self::new`], with `List-Unsubscribe` pointing at signed links when `links` is
    /// given (`[unsubscribe]`).
    pub fn with_unsubscribe(
        config: &SmtpConfig,
        links: Option<&UnsubscribeLinks>,
    ) -> Result<Self, BuildError> {
        Self::with_links(
            config,
            EmailLinks {
                unsubscribe: links,
                tracking: None,
            },
        )
    }

    /// As [`Self::new`], with the signed links of `[unsubscribe]` and `[tracking]` that are
    /// given.
    pub fn with_links(config: &SmtpConfig, links: EmailLinks<'_>) -> Result<Self, BuildError> {
        let host = required("smtp.host", &config.host)?;
        let from: Mailbox = required("smtp.from", &config.from)?
            .parse()
            .map_err(|e| BuildError::config("smtp.from", format!("not a mailbox: {e}")))?;
        let reply_to = config
            .reply_to
            .as_deref()
            .map(str::parse::<Mailbox>)
            .transpose()
            .map_err(|e| BuildError::config("smtp.reply_to", format!("not a mailbox: {e}")))?;
        let message_id_domain = match &config.message_id_domain {
            Some(domain) => domain.clone(),
            None => domain_of(from.email.as_ref())
                .map(str::to_owned)
                .ok_or_else(|| BuildError::config("smtp.message_id_domain", "must be set"))?,
        };
        let list_unsubscribe = ListUnsubscribe::configure(
            "smtp.list_unsubscribe",
            config.list_unsubscribe.as_deref(),
            config.list_unsubscribe_post,
            links.unsubscribe,
        )?;
        let tls = match config.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::Starttls => Tls::Required(tls_parameters(host, config)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(host, config)?),
        };
        let port = config.port.unwrap_or(match config.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(config.timeout))
            .pool_config(PoolConfig::new().max_size(config.pool_max_size.max(1)));
        match (&config.username, &config.password) {
            (Some(user), password) => {
                let password = password
                    .as_ref()
                    .map(|p| p.expose().to_owned())
                    .unwrap_or_default();
                builder = builder.credentials(Credentials::new(user.clone(), password));
            }
            (None, Some(_)) => {
                return Err(BuildError::config(
                    "smtp.password",
                    "is set but smtp.username is not",
                ));
            }
            (None, None) => {}
        }
        Ok(Self {
            transport: builder.build(),
            from,
            reply_to,
            message_id_domain,
            list_unsubscribe,
            tracking: links
                .tracking
                .map(|tracking| EngagementTracking::new(tracking, links.unsubscribe)),
        })
    }

    /// The message lettre will send; `Err` is the permanent reason it cannot be built.
    pub fn message(&self, dispatch: &Dispatch) -> Result<Message, String> {
        let to: Mailbox = dispatch
            .address
            .parse()
            .map_err(|_| "the recipient address is not a valid mailbox".to_owned())?;
        let content = &dispatch.content;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(content.subject.clone().unwrap_or_default())
            .message_id(Some(message_id(dispatch, &self.message_id_domain)));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let mut unsubscribe_urls = Vec::new();
        if let Some(list_unsubscribe) = &self.list_unsubscribe {
            let (value, one_click) = list_unsubscribe.header(dispatch);
            unsubscribe_urls = header_urls(&value);
            builder = builder.header(ListUnsubscribeHeader(value));
            if one_click {
                builder = builder.header(ListUnsubscribePost);
            }
        }
        // Only the HTML part is tracked: the text part keeps the original links.
        let html = match (&content.html, &self.tracking) {
            (Some(html), Some(tracking)) if dispatch.track_engagement => {
                Some(tracking.html(dispatch, html, &unsubscribe_urls))
            }
            (html, _) => html.clone(),
        };
        let built = match (&content.text, html) {
            (Some(text), Some(html)) => {
                builder.multipart(MultiPart::alternative_plain_html(text.clone(), html))
            }
            (Some(text), None) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text.clone()),
            ),
            (None, Some(html)) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html),
            ),
            (None, None) => return Err("the dispatch has neither a text nor an HTML body".into()),
        };
        built.map_err(|e| format!("cannot build the message: {e}"))
    }

    async fn deliver(&self, dispatch: &Dispatch) -> Outcome {
        let message = match self.message(dispatch) {
            Ok(message) => message,
            Err(reason) => return Outcome::permanent(reason),
        };
        match self.transport.send(message).await {
            Ok(_) => Outcome::sent(message_id(dispatch, &self.message_id_domain)),
            Err(e) => classify_smtp_error(&e),
        }
    }
}

impl Provider for SmtpProvider {
    fn name(&self) -> &'static str {
        herald_contracts::provider::SMTP
    }

    fn send<'a>(&'a self, dispatch: &'a Dispatch) -> BoxFuture<'a, SendReport> {
        Box::pin(async move { logged(self.name(), dispatch, self.deliver(dispatch).await.into()) })
    }
}

fn tls_parameters(host: &str, config: &SmtpConfig) -> Result<TlsParameters, BuildError> {
    let mut builder = TlsParameters::builder(host.to_owned());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| BuildError::file("smtp.ca_file", path, e))?;
        let certificate =
            Certificate::from_pem(&pem).map_err(|e| BuildError::file("smtp.ca_file", path, e))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build_rustls()
        .map_err(|e| BuildError::config("smtp", format!("TLS setup: {e}")))
}

/// 5xx replies and messages the client cannot send are permanent; 4xx replies, timeouts,
/// network and TLS failures and a closed pool are transient.
pub fn classify_smtp_error(err: &SmtpError) -> Outcome {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    let reason = format!("SMTP: {}", truncate_reason(&text));
    if err.is_permanent() || err.is_client() {
        Outcome::permanent(reason)
    } else {
        Outcome::transient(reason)
    }
}

#[derive(Debug, Clone)]
struct ListUnsubscribeHeader(String);

impl Header for ListUnsubscribeHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(LIST_UNSUBSCRIBE)
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(LIST_UNSUBSCRIBE_POST)
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), ONE_CLICK.to_owned())
    }
}
