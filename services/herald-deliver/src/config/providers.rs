//! Provider configuration: one struct per adapter, every field documented, unknown keys
//! refused, durations human-readable (`10s`, `50m`), credentials in [`Secret`]. Base URLs are
//! configurable so that tests point the adapters at local stand-ins.
//!
//! Every process loads the whole configuration, but only a delivery worker uses a provider,
//! and an operator gives a provider's secret (a Twilio token, a SendGrid key, a key file) to
//! that worker alone. So loading checks a provider section's shape (unknown keys, malformed
//! values) and leaves the settings the provider cannot do without optional here:
//! [`crate::build_provider`] requires them, naming the key, when the worker (or
//! `herald config check --channel <channel>`) builds the provider.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use herald_contracts::secret::Secret;

/// Every provider a delivery worker may use. A worker builds, and so fully checks, only the
/// one its channel needs (see [`crate::build_provider`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Email over SMTP. Set this or `sendgrid`, not both.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Email over an HTTP API in the SendGrid v3 `mail/send` shape.
    #[serde(default)]
    pub sendgrid: Option<SendGridConfig>,
    /// SMS over the Twilio Messages API.
    #[serde(default)]
    pub twilio: Option<TwilioConfig>,
    /// Push to Android and web tokens (FCM HTTP v1).
    #[serde(default)]
    pub fcm: Option<FcmConfig>,
    /// Push to Apple device tokens (APNs, HTTP/2).
    #[serde(default)]
    pub apns: Option<ApnsConfig>,
    /// Signed webhook deliveries.
    #[serde(default)]
    pub webhook: WebhookConfig,
    /// The in-app inbox (`[deliver.providers.inapp]`).
    #[serde(default)]
    pub inapp: InappConfig,
}

/// `[deliver.providers.inapp]`: how the in-app worker writes the `inbox` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InappConfig {
    /// How long a message stays in the inbox, counted from the notification's creation: its
    /// row is written with a CQL TTL of what remains of this, so it disappears on its own.
    #[serde(default = "default_inbox_retention", with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for InappConfig {
    fn default() -> Self {
        Self {
            retention: default_inbox_retention(),
        }
    }
}

fn default_inbox_retention() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

impl InappConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(Duration::from_secs(60)..=herald_store::provider_messages::MAX_TTL)
            .contains(&self.retention)
        {
            return Err(format!(
                "deliver.providers.inapp.retention is {:?}; it must be between 1m and 20 years \
                 (CQL's longest TTL)",
                self.retention
            ));
        }
        Ok(())
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (default port 587).
    #[default]
    Starttls,
    /// TLS from the first byte, "SMTPS" (default port 465).
    Tls,
    /// No encryption at all (default port 25): only for a relay on the same host, or tests.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The relay's host name (also the name its TLS certificate must carry). Required.
    #[serde(default)]
    pub host: Option<String>,
    /// The relay's port; default 587, 465 or 25 according to `security`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    /// AUTH user; none: no authentication.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// A PEM file of extra root certificates to trust (a relay with a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The sender mailbox, e.g. `Acme <no-reply@acme.example>`. Required.
    #[serde(default)]
    pub from: Option<String>,
    /// Optional Reply-To mailbox.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The right-hand side of Message-IDs (`<dispatch-id@domain>`); default: the domain of
    /// `from`.
    #[serde(default)]
    pub message_id_domain: Option<String>,
    /// The List-Unsubscribe header value, with `{tenant}`, `{user_id}`, `{category}`,
    /// `{event_id}` and `{dispatch_id}` replaced (percent-encoded), e.g.
    /// `<https://acme.example/unsubscribe?u={user_id}&c={category}>`. None: no header, or
    /// the signed links of `[unsubscribe]` (served by `herald api`) when that is set.
    #[serde(default)]
    pub list_unsubscribe: Option<String>,
    /// Also send `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058); the
    /// List-Unsubscribe URL must then accept a POST.
    #[serde(default)]
    pub list_unsubscribe_post: bool,
    /// How long one SMTP command may take.
    #[serde(default = "default_smtp_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Connections kept open to the relay.
    #[serde(default = "default_smtp_pool")]
    pub pool_max_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridConfig {
    /// API base URL.
    #[serde(default = "default_sendgrid_url")]
    pub base_url: String,
    /// API key, sent as a Bearer token. Required.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Sender address (must be a verified sender). Required.
    #[serde(default)]
    pub from: Option<String>,
    /// Sender display name.
    #[serde(default)]
    pub from_name: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    /// List-Unsubscribe header template, as for SMTP.
    #[serde(default)]
    pub list_unsubscribe: Option<String>,
    /// Also send `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
    #[serde(default)]
    pub list_unsubscribe_post: bool,
    /// The request header that carries the dispatch id as idempotency key (the dispatch id
    /// also travels as `custom_args.dispatch_id`).
    #[serde(default = "default_idempotency_header")]
    pub idempotency_header: String,
    /// Whole-request timeout.
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// API base URL.
    #[serde(default = "default_twilio_url")]
    pub base_url: String,
    /// Account SID (`AC...`), the basic-auth user and part of the path. Required.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// Auth token, the basic-auth password. Required.
    #[serde(default)]
    pub auth_token: Option<Secret>,
    /// Sender number (E.164). Set this or `messaging_service_sid`.
    #[serde(default)]
    pub from: Option<String>,
    /// Messaging service (`MG...`) that picks the sender.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Where Twilio posts delivery updates, with the same placeholders as List-Unsubscribe:
    /// `herald api`'s `https://<public host>/v1/callbacks/twilio` (see `api.callbacks.twilio`;
    /// a query such as `?d={dispatch_id}` is allowed, and signed by Twilio with the URL).
    /// None: no callback.
    #[serde(default)]
    pub status_callback: Option<String>,
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// FCM API base URL (`{base_url}/v1/projects/{project_id}/messages:send`).
    #[serde(default = "default_fcm_url")]
    pub base_url: String,
    /// The Google service-account JSON key file (needs `client_email`, `private_key`,
    /// `token_uri`, `project_id`; `private_key_id` is sent as the JWT `kid` when present).
    /// Required.
    #[serde(default)]
    pub service_account_file: Option<PathBuf>,
    /// Send to this project instead of the key's `project_id`.
    #[serde(default)]
    pub project_id: Option<String>,
    /// An access token is renewed this long before it expires.
    #[serde(default = "default_refresh_margin", with = "humantime_serde")]
    pub refresh_margin: Duration,
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// APNs base URL: `https://api.push.apple.com`, or `https://api.sandbox.push.apple.com`
    /// for development builds. An `http://` URL (tests) speaks HTTP/2 with prior knowledge.
    #[serde(default = "default_apns_url")]
    pub base_url: String,
    /// The Apple developer team id (the token's `iss`). Required.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The id of the signing key (the token's `kid`). Required.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The `.p8` signing key (PKCS#8 PEM, P-256). Required.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The app's bundle id (`apns-topic`). Required.
    #[serde(default)]
    pub topic: Option<String>,
    /// `apns-push-type`.
    #[serde(default = "default_push_type")]
    pub push_type: String,
    /// How long one provider token is reused; Apple accepts a token for an hour and refuses
    /// renewals more often than every 20 minutes.
    #[serde(default = "default_token_lifetime", with = "humantime_serde")]
    pub token_lifetime: Duration,
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The signing secret (`whsec_<base64>`) for a URL that has no row in
    /// `webhook_endpoints` (a direct URL in the request). None: such URLs are refused.
    #[serde(default)]
    pub default_secret: Option<Secret>,
    /// Targets exempt from the private-network guard: host names (`hooks.internal`,
    /// `*.internal`), addresses or CIDR blocks (`10.1.0.0/16`).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Whole-request timeout.
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long an endpoint's secret, once read from `webhook_endpoints`, is used without
    /// reading it again: a rotated secret takes effect within this time.
    #[serde(default = "default_endpoint_cache_ttl", with = "humantime_serde")]
    pub endpoint_cache_ttl: Duration,
    /// Endpoints whose secrets are kept in memory at most.
    #[serde(default = "default_endpoint_cache_capacity")]
    pub endpoint_cache_capacity: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            default_secret: None,
            allow: Vec::new(),
            timeout: default_http_timeout(),
            connect_timeout: default_connect_timeout(),
            endpoint_cache_ttl: default_endpoint_cache_ttl(),
            endpoint_cache_capacity: default_endpoint_cache_capacity(),
        }
    }
}

fn default_endpoint_cache_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_endpoint_cache_capacity() -> usize {
    10_000
}

fn default_smtp_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_smtp_pool() -> u32 {
    10
}
fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_sendgrid_url() -> String {
    "https://api.sendgrid.com".into()
}
fn default_idempotency_header() -> String {
    "Idempotency-Key".into()
}
fn default_twilio_url() -> String {
    "https://api.twilio.com".into()
}
fn default_fcm_url() -> String {
    "https://fcm.googleapis.com".into()
}
fn default_refresh_margin() -> Duration {
    Duration::from_secs(300)
}
fn default_apns_url() -> String {
    "https://api.push.apple.com".into()
}
fn default_push_type() -> String {
    "alert".into()
}
fn default_token_lifetime() -> Duration {
    Duration::from_secs(50 * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_toml_with_defaults_and_refuses_unknown_keys() {
        let config: ProvidersConfig = toml_from(
            r#"
            [twilio]
            account_sid = "AC1"
            auth_token = "t"
            from = "+15550001111"
            timeout = "2s"

            [webhook]
            allow = ["10.1.0.0/16"]
            "#,
        )
        .unwrap();
        let twilio = config.twilio.unwrap();
        assert_eq!(twilio.base_url, "https://api.twilio.com");
        assert_eq!(twilio.timeout, Duration::from_secs(2));
        assert_eq!(format!("{:?}", twilio.auth_token), "Some(Secret(***))");
        assert_eq!(config.webhook.allow, vec!["10.1.0.0/16"]);
        let err = toml_from("[twilio]\naccount_sid = \"AC1\"\nauth_token = \"t\"\nfrm = \"x\"")
            .unwrap_err();
        assert!(err.contains("frm"), "{err}");
    }

    #[test]
    fn a_section_without_its_secret_or_key_file_loads_but_keeps_its_shape() {
        // As every process but the provider's own worker sees it: the secret and key file are
        // given to that worker only.
        let config = toml_from(
            "[twilio]\naccount_sid = \"AC1\"\nfrom = \"+15550001111\"\n\
             [sendgrid]\nfrom = \"a@b.example\"\n\
             [apns]\nteam_id = \"T\"\n\
             [fcm]\n\
             [smtp]\nport = 2525\n",
        )
        .unwrap();
        assert!(config.twilio.unwrap().auth_token.is_none());
        assert!(config.sendgrid.unwrap().api_key.is_none());
        assert!(config.apns.unwrap().key_file.is_none());
        assert!(config.fcm.unwrap().service_account_file.is_none());
        assert!(config.smtp.unwrap().host.is_none());
        // Unknown keys and malformed values are still refused.
        let err = toml_from("[sendgrid]\nfrom = \"a@b.example\"\napi_kye = \"k\"").unwrap_err();
        assert!(err.contains("api_kye"), "{err}");
        let err = toml_from("[twilio]\nauth_token = 42").unwrap_err();
        assert!(err.contains("auth_token"), "{err}");
        let err = toml_from("[apns]\ntoken_lifetime = \"soon\"").unwrap_err();
        assert!(err.contains("token_lifetime"), "{err}");
    }

    fn toml_from(text: &str) -> Result<ProvidersConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
