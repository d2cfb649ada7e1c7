//! Building the provider a worker's channel needs from [`ProvidersConfig`].

use scylla::client::session::Session;
use std::sync::Arc;

use herald_contracts::Channel;
use herald_store::StoreConfig;

use crate::config::ProvidersConfig;
use crate::email::sendgrid::SendGridProvider;
use crate::email::smtp::SmtpProvider;
use crate::inbox::InboxProvider;
use crate::push::PushProvider;
use crate::sms::TwilioProvider;
use crate::webhook::WebhookProvider;
use crate::webhook::secrets::{EndpointSecrets, NoEndpointSecrets, SecretLookup};
use crate::{BuildError, Provider};

/// The database, for the adapters that use it (inbox, webhook endpoint secrets).
#[derive(Debug, Clone, Copy)]
pub struct StoreHandle<'a> {
    pub session: &'a Arc<Session>,
    pub config: &'a StoreConfig,
}

/// The provider for `channel`. Email takes `smtp` or `sendgrid` (exactly one); push takes
/// `fcm` and/or `apns`; inapp needs `store`; webhook reads endpoint secrets through `store`
/// when given. Call it inside a Tokio runtime.
pub async fn build_provider(
    channel: Channel,
    config: &ProvidersConfig,
    store: Option<StoreHandle<'_>>,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(match channel {
        Channel::Email => match (&config.smtp, &config.sendgrid) {
            (Some(smtp), None) => Arc::new(SmtpProvider::new(smtp)?),
            (None, Some(sendgrid)) => Arc::new(SendGridProvider::new(sendgrid)?),
            (Some(_), Some(_)) => {
                return Err(BuildError::config(
                    "smtp",
                    "both smtp and sendgrid are configured; keep one",
                ));
            }
            (None, None) => {
                return Err(BuildError::NotConfigured {
                    channel,
                    keys: "smtp or sendgrid",
                });
            }
        },
        Channel::Sms => match &config.twilio {
            Some(twilio) => Arc::new(TwilioProvider::new(twilio)?),
            None => {
                return Err(BuildError::NotConfigured {
                    channel,
                    keys: "twilio",
                });
            }
        },
        Channel::Push => Arc::new(PushProvider::new(
            config.fcm.as_ref(),
            config.apns.as_ref(),
        )?),
        Channel::Webhook => {
            let secrets: Arc<dyn SecretLookup> = match store {
                Some(store) => {
                    Arc::new(EndpointSecrets::prepare(store.session.clone(), store.config).await?)
                }
                None => Arc::new(NoEndpointSecrets),
            };
            Arc::new(WebhookProvider::new(&config.webhook, secrets)?)
        }
        Channel::Inapp => match store {
            Some(store) => {
                Arc::new(InboxProvider::prepare(store.session.clone(), store.config).await?)
            }
            None => {
                return Err(BuildError::NotConfigured {
                    channel,
                    keys: "store (the inbox lives in the database)",
                });
            }
        },
    })
}
