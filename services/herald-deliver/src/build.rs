//! Building the provider a worker's channel needs from [`ProvidersConfig`].

use scylla::client::session::Session;
use std::sync::Arc;

use herald_contracts::Channel;
use herald_contracts::tracking::{TrackingConfig, TrackingLinks};
use herald_contracts::unsubscribe::{UnsubscribeConfig, UnsubscribeLinks};
use herald_store::StoreConfig;

use crate::config::providers::ProvidersConfig;
use crate::email::EmailLinks;
use crate::email::sendgrid::SendGridProvider;
use crate::email::smtp::SmtpProvider;
use crate::inbox::InboxProvider;
use crate::push::PushProvider;
use crate::sms::TwilioProvider;
use crate::webhook::WebhookProvider;
use crate::webhook::secrets::{CachedSecrets, EndpointSecrets, NoEndpointSecrets, SecretLookup};
use crate::{BuildError, Provider};

/// The unsubscribe and tracking links `channel`'s worker signs: the email worker's, when their
/// sections are set; no other channel signs any. A section given in part (a base URL without
/// its secret) is an error here, in a role that signs, and not at loading: in a deployment only
/// the email worker and `herald api` are given the secrets.
pub fn signed_links(
    channel: Channel,
    unsubscribe: &UnsubscribeConfig,
    tracking: &TrackingConfig,
) -> Result<(Option<UnsubscribeLinks>, Option<TrackingLinks>), BuildError> {
    if channel != Channel::Email {
        return Ok((None, None));
    }
    Ok((
        unsubscribe.links().map_err(BuildError::Links)?,
        tracking.links().map_err(BuildError::Links)?,
    ))
}

/// The database, for the adapters that use it (inbox, webhook endpoint secrets).
#[derive(Debug, Clone, Copy)]
pub struct StoreHandle<'a> {
    pub session: &'a Arc<Session>,
    pub config: &'a StoreConfig,
}

/// The provider for `channel`. Email takes `smtp` or `sendgrid` (exactly one); push takes
/// `fcm` and/or `apns`; inapp needs `store`; webhook reads endpoint secrets through `store`
/// when given; email's `List-Unsubscribe` points at signed links when `links.unsubscribe` is
/// given (`[unsubscribe]`), and SMTP email of categories that opted in is tracked when
/// `links.tracking` is (`[tracking]`). Call it inside a Tokio runtime.
pub async fn build_provider(
    channel: Channel,
    config: &ProvidersConfig,
    store: Option<StoreHandle<'_>>,
    links: EmailLinks<'_>,
) -> Result<Arc<dyn Provider>, BuildError> {
    Ok(match channel {
        Channel::Email => match (&config.smtp, &config.sendgrid) {
            (Some(smtp), None) => Arc::new(SmtpProvider::with_links(smtp, links)?),
            (None, Some(sendgrid)) => Arc::new(SendGridProvider::with_unsubscribe(
                sendgrid,
                links.unsubscribe,
            )?),
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
                Some(store) => Arc::new(CachedSecrets::new(
                    EndpointSecrets::prepare(store.session.clone(), store.config).await?,
                    config.webhook.endpoint_cache_capacity,
                    config.webhook.endpoint_cache_ttl,
                )),
                None => Arc::new(NoEndpointSecrets),
            };
            Arc::new(WebhookProvider::new(&config.webhook, secrets)?)
        }
        Channel::Inapp => match store {
            Some(store) => Arc::new(
                InboxProvider::prepare(store.session.clone(), store.config, config.inapp.retention)
                    .await?,
            ),
            None => {
                return Err(BuildError::NotConfigured {
                    channel,
                    keys: "store (the inbox lives in the database)",
                });
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn error(channel: Channel, toml_text: &str) -> String {
        let config: ProvidersConfig = toml::from_str(toml_text).unwrap();
        match build_provider(channel, &config, None, EmailLinks::default()).await {
            Ok(provider) => panic!("built {provider:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn configuration_mistakes_fail_at_build_naming_the_key() {
        let smtp = "[smtp]\nhost = \"h\"\nfrom = \"a@b.example\"\n";
        let sendgrid = "[sendgrid]\napi_key = \"k\"\nfrom = \"a@b.example\"\n";
        assert!(
            error(Channel::Email, &format!("{smtp}{sendgrid}"))
                .await
                .contains("keep one")
        );
        assert_eq!(
            error(Channel::Email, "").await,
            "no provider is configured for the email channel: set smtp or sendgrid"
        );
        let bad_template = format!("{smtp}list_unsubscribe = \"<{{user}}>\"\n");
        let message = error(Channel::Email, &bad_template).await;
        assert!(
            message.starts_with("smtp.list_unsubscribe: unknown placeholder `{user}`"),
            "{message}"
        );
        let both = "[twilio]\naccount_sid = \"AC1\"\nauth_token = \"t\"\nfrom = \"+1\"\nmessaging_service_sid = \"MG1\"\n";
        assert!(
            error(Channel::Sms, both)
                .await
                .starts_with("twilio.from: set exactly one")
        );
        assert!(
            error(Channel::Push, "[apns]\nteam_id = \"T\"\nkey_id = \"K\"\nkey_file = \"/nonexistent.p8\"\ntopic = \"t\"\n")
                .await
                .starts_with("apns.key_file: cannot use /nonexistent.p8")
        );
        assert!(
            error(
                Channel::Webhook,
                "[webhook]\ndefault_secret = \"whsec_!!\"\n"
            )
            .await
            .starts_with("webhook.default_secret:")
        );
        assert!(
            error(Channel::Webhook, "[webhook]\nallow = [\"http://x\"]\n")
                .await
                .starts_with("webhook.allow:")
        );
        assert!(error(Channel::Inapp, "").await.contains("inapp"));
    }

    #[tokio::test]
    async fn a_missing_required_setting_fails_at_build_naming_the_key_and_variable() {
        // Loading leaves these optional, so that only the provider's own worker needs them.
        for (channel, toml_text, key) in [
            (
                Channel::Sms,
                "[twilio]\naccount_sid = \"AC1\"\nfrom = \"+1\"\n",
                "twilio.auth_token",
            ),
            (
                Channel::Sms,
                "[twilio]\nauth_token = \"t\"\nfrom = \"+1\"\n",
                "twilio.account_sid",
            ),
            (
                Channel::Email,
                "[sendgrid]\nfrom = \"a@b.example\"\n",
                "sendgrid.api_key",
            ),
            (
                Channel::Email,
                "[sendgrid]\napi_key = \"k\"\n",
                "sendgrid.from",
            ),
            (
                Channel::Email,
                "[smtp]\nfrom = \"a@b.example\"\n",
                "smtp.host",
            ),
            (Channel::Email, "[smtp]\nhost = \"h\"\n", "smtp.from"),
            (Channel::Push, "[fcm]\n", "fcm.service_account_file"),
            (
                Channel::Push,
                "[apns]\nteam_id = \"T\"\nkey_id = \"K\"\ntopic = \"t\"\n",
                "apns.key_file",
            ),
        ] {
            let message = error(channel, toml_text).await;
            let (section, field) = key.split_once('.').unwrap();
            let variable = format!(
                "HERALD_DELIVER__PROVIDERS__{}__{}",
                section.to_uppercase(),
                field.to_uppercase()
            );
            assert_eq!(
                message,
                format!(
                    "{key}: is not set: give this worker {field} in \
                     [deliver.providers.{section}] or {variable}"
                )
            );
        }
    }

    #[tokio::test]
    async fn a_configured_channel_builds_its_provider() {
        let config: ProvidersConfig = toml::from_str(
            "[smtp]\nhost = \"localhost\"\nfrom = \"Acme <a@b.example>\"\nsecurity = \"none\"\n",
        )
        .unwrap();
        let provider = build_provider(Channel::Email, &config, None, EmailLinks::default())
            .await
            .unwrap();
        assert_eq!(provider.name(), "smtp");
        let config: ProvidersConfig = toml::from_str(
            "[twilio]\naccount_sid = \"AC1\"\nauth_token = \"twilio-secret\"\nfrom = \"+1\"\n\n\
             [sendgrid]\napi_key = \"sendgrid-secret\"\nfrom = \"a@b.example\"\n",
        )
        .unwrap();
        for channel in [Channel::Sms, Channel::Email] {
            let provider = build_provider(channel, &config, None, EmailLinks::default())
                .await
                .unwrap();
            let debug = format!("{provider:?}");
            assert!(!debug.contains("-secret"), "{debug}");
        }
        let webhook = build_provider(
            Channel::Webhook,
            &ProvidersConfig::default(),
            None,
            EmailLinks::default(),
        )
        .await
        .unwrap();
        assert_eq!(webhook.name(), "webhook");
    }
}
