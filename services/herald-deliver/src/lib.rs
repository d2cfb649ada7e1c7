//! Herald's provider adapters: one [`Provider`] per way of reaching a person, each turning a
//! [`Dispatch`](herald_contracts::Dispatch) into one provider call and classifying the answer
//! as an [`Outcome`] (sent with the provider's id, transient with an optional retry-after,
//! permanent with a reason). Retries, breakers, rate limits and the send ledger belong to the
//! delivery worker, not here.
//!
//! | channel | adapter | provider |
//! |---|---|---|
//! | email | [`SmtpProvider`] | any SMTP relay (lettre) |
//! | email | [`SendGridProvider`] | SendGrid v3 `mail/send` shape |
//! | sms | [`TwilioProvider`] | Twilio Messages API |
//! | push | [`PushProvider`] | FCM HTTP v1 and APNs (token prefix routing, see [`push`]) |
//! | webhook | [`WebhookProvider`] | any HTTPS endpoint, Standard Webhooks signatures |
//! | inapp | [`InboxProvider`] | the `inbox` table |
//!
//! A worker builds its channel's provider once with [`build_provider`] from a
//! [`ProvidersConfig`], and building is where the provider's required settings (its secrets
//! and key files among them) are checked: loading the configuration, which every process
//! does, checks only that each section's keys are known and its values well formed, so a
//! secret can be given to its own worker alone. For example:
//!
//! ```toml
//! [smtp]
//! host = "smtp.acme.example"        # security = "starttls" (587) | "tls" (465) | "none" (25)
//! username = "herald"
//! password = "..."                  # a Secret: never printed
//! from = "Acme <no-reply@acme.example>"
//! list_unsubscribe = "<https://acme.example/unsubscribe?u={user_id}&c={category}>"
//!
//! [twilio]
//! account_sid = "AC..."
//! auth_token = "..."
//! messaging_service_sid = "MG..."
//!
//! [fcm]
//! service_account_file = "/var/run/secrets/fcm.json"
//!
//! [apns]
//! team_id = "TEAM123456"
//! key_id = "KEY1234567"
//! key_file = "/var/run/secrets/apns.p8"
//! topic = "com.acme.app"
//!
//! [webhook]
//! default_secret = "whsec_..."
//! allow = ["10.20.0.0/16"]          # private targets that may receive webhooks
//! ```
//!
//! Logs name the provider, the dispatch id and the outcome class, never an address, a token
//! or a body.

mod build;
pub mod classify;
pub mod config;
pub mod email;
mod error;
mod http;
pub mod inbox;
pub mod jws;
mod outcome;
pub mod push;
pub mod sms;
pub mod template;
pub mod webhook;
pub mod worker;

pub use build::{StoreHandle, build_provider, signed_links};
pub use classify::{classify_error, classify_status, parse_retry_after};
pub use config::DeliverConfig;
pub use config::providers::{
    ApnsConfig, FcmConfig, ProvidersConfig, SendGridConfig, SmtpConfig, SmtpSecurity, TwilioConfig,
    WebhookConfig,
};
pub use email::EmailLinks;
pub use email::sendgrid::SendGridProvider;
pub use email::smtp::SmtpProvider;
pub use error::BuildError;
pub use inbox::InboxProvider;
pub use outcome::{Outcome, Provider, SendReport};
pub use push::PushProvider;
pub use sms::TwilioProvider;
pub use webhook::WebhookProvider;
