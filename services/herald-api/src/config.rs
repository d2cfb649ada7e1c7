//! `[api]`: the HTTP API's section of the configuration file (`herald api`).

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

use herald_contracts::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the API (`/v1/...`) is served. The admin endpoints stay on `admin.listen`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes; a larger one is answered 413.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// How long one request may take before it is answered 503 (with `Retry-After`).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a send waits for Kafka to acknowledge its record (librdkafka's
    /// `message.timeout.ms`) before it is answered 503. Below `request_timeout`, so that a
    /// send always learns its record's fate before the request gives up.
    #[serde(default = "default_produce_timeout", with = "humantime_serde")]
    pub produce_timeout: Duration,
    /// How long a verified API key is remembered: a revoked key stops working within this.
    #[serde(default = "default_key_cache_ttl", with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// How long a shutdown may take to finish the requests in flight.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Provider delivery callbacks (`[api.callbacks.sendgrid]`, `[api.callbacks.twilio]`).
    #[serde(default)]
    pub callbacks: CallbacksConfig,
    /// The in-app inbox's user tokens and browser access (`[api.inbox]`).
    #[serde(default)]
    pub inbox: InboxConfig,
}

/// `[api.inbox]`: the inbox routes (`/v1/inbox/...`) take short-lived user tokens that
/// `POST /v1/users/{user_id}/inbox-token` issues; both answer 404 until `token_secret` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    /// Signs user tokens (HS256), at least 32 bytes (`HERALD_API__INBOX__TOKEN_SECRET`).
    /// Every replica needs the same one. Never logged.
    #[serde(default)]
    pub token_secret: Option<Secret>,
    /// The secret before the last rotation: tokens it signed are still accepted until they
    /// expire. Set it to the old `token_secret` for one `token_ttl` after rotating.
    #[serde(default)]
    pub previous_token_secret: Option<Secret>,
    /// How long an issued user token is valid.
    #[serde(default = "default_token_ttl", with = "humantime_serde")]
    pub token_ttl: Duration,
    /// The web origins whose pages may call the inbox routes, per tenant
    /// (`acme = ["https://app.acme.example"]`). A browser page of any other origin cannot read
    /// the answers (CORS); servers and mobile apps are not affected.
    #[serde(default)]
    pub allowed_origins: std::collections::BTreeMap<String, Vec<String>>,
    /// How often an idle stream (`GET /v1/inbox/stream`) sends a comment line, so that proxies
    /// do not close it.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How far back each replica keeps changes, so that a client reconnecting with
    /// `Last-Event-ID` gets exactly what it missed; an older position gets a `reset` event.
    #[serde(default = "default_resume_window", with = "humantime_serde")]
    pub resume_window: Duration,
    /// The most memory the changes kept for resuming may take, in bytes, whatever their age
    /// (a new message takes its rendered content plus about 200 bytes).
    #[serde(default = "default_resume_buffer_bytes")]
    pub resume_buffer_bytes: usize,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self {
            token_secret: None,
            previous_token_secret: None,
            token_ttl: default_token_ttl(),
            allowed_origins: std::collections::BTreeMap::new(),
            heartbeat: default_heartbeat(),
            resume_window: default_resume_window(),
            resume_buffer_bytes: default_resume_buffer_bytes(),
        }
    }
}

fn default_token_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(15)
}
fn default_resume_window() -> Duration {
    Duration::from_secs(600)
}
fn default_resume_buffer_bytes() -> usize {
    64 * 1024 * 1024
}

/// The shortest token secret accepted, in bytes.
pub const MIN_TOKEN_SECRET_LEN: usize = 32;

impl InboxConfig {
    fn validate(&self) -> Result<(), String> {
        for (key, secret) in [
            ("token_secret", &self.token_secret),
            ("previous_token_secret", &self.previous_token_secret),
        ] {
            if let Some(secret) = secret
                && secret.expose().len() < MIN_TOKEN_SECRET_LEN
            {
                return Err(format!(
                    "api.inbox.{key} must be at least {MIN_TOKEN_SECRET_LEN} bytes"
                ));
            }
        }
        if self.previous_token_secret.is_some() && self.token_secret.is_none() {
            return Err(
                "api.inbox.previous_token_secret is set without api.inbox.token_secret".into(),
            );
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(24 * 3600)).contains(&self.token_ttl) {
            return Err(format!(
                "api.inbox.token_ttl is {:?}; it must be between 1m and 24h",
                self.token_ttl
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.heartbeat) {
            return Err(format!(
                "api.inbox.heartbeat is {:?}; it must be between 1s and 5m",
                self.heartbeat
            ));
        }
        if self.resume_window > Duration::from_secs(86_400) {
            return Err(
                "api.inbox.resume_window must be at most 1 day (notifications.inbox's retention)"
                    .into(),
            );
        }
        for (tenant, origins) in &self.allowed_origins {
            for origin in origins {
                if !is_origin(origin) {
                    return Err(format!(
                        "api.inbox.allowed_origins.{tenant} has `{origin}`, which is not an \
                         origin: scheme, host and optional port, no path (https://app.example)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `https://host[:port]` (or http), as a browser sends it in `Origin`: no path, no slash.
fn is_origin(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// `[api.callbacks]`: each provider's callback route answers 404 until its section is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    #[serde(default)]
    pub sendgrid: SendGridCallbacks,
    #[serde(default)]
    pub twilio: TwilioCallbacks,
}

/// `[api.callbacks.sendgrid]`: the signed Event Webhook (`POST /v1/callbacks/sendgrid`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridCallbacks {
    /// The webhook's verification key as SendGrid shows it (Mail Settings, Signed Event
    /// Webhook): base64 of the DER `SubjectPublicKeyInfo` of an ECDSA P-256 key.
    #[serde(default)]
    pub public_key: Option<String>,
    /// How far the signed `X-Twilio-Email-Event-Webhook-Timestamp` may be from now: an older
    /// (replayed) or future request is refused 401.
    #[serde(default = "default_tolerance", with = "humantime_serde")]
    pub tolerance: Duration,
}

/// `[api.callbacks.twilio]`: Messaging status callbacks (`POST /v1/callbacks/twilio`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioCallbacks {
    /// The account's auth token, which signs `X-Twilio-Signature`
    /// (`HERALD_API__CALLBACKS__TWILIO__AUTH_TOKEN`). Never logged.
    #[serde(default)]
    pub auth_token: Option<Secret>,
    /// The public origin Twilio calls, as in `deliver.providers.twilio.status_callback`
    /// (`https://notify.acme.example`): the signature covers the full URL Twilio called, which
    /// behind a proxy or ingress is not the one this process sees. The request's path and
    /// query are appended.
    #[serde(default)]
    pub public_base_url: Option<String>,
    /// How long a callback whose message id the delivery worker has not recorded yet waits
    /// for it (Twilio can call before the worker wrote it), before it is counted unmatched.
    #[serde(default = "default_match_wait", with = "humantime_serde")]
    pub match_wait: Duration,
}

fn default_tolerance() -> Duration {
    Duration::from_secs(600)
}
fn default_match_wait() -> Duration {
    Duration::from_secs(2)
}

impl Default for SendGridCallbacks {
    fn default() -> Self {
        Self {
            public_key: None,
            tolerance: default_tolerance(),
        }
    }
}

impl Default for TwilioCallbacks {
    fn default() -> Self {
        Self {
            auth_token: None,
            public_base_url: None,
            match_wait: default_match_wait(),
        }
    }
}

impl SendGridCallbacks {
    /// The configured verification key, parsed; `None` when unset. The error names the key.
    pub fn verification_key(&self) -> Result<Option<ParsedPublicKey>, String> {
        let Some(text) = self.public_key.as_deref() else {
            return Ok(None);
        };
        let der = STANDARD
            .decode(text.trim())
            .map_err(|e| format!("api.callbacks.sendgrid.public_key is not base64: {e}"))?;
        ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, der)
            .map(Some)
            .map_err(|e| {
                format!(
                    "api.callbacks.sendgrid.public_key is not a DER-encoded P-256 public key \
                     (SubjectPublicKeyInfo, as SendGrid shows it): {e}"
                )
            })
    }
}

impl TwilioCallbacks {
    /// The public origin without a trailing `/`, when both it and the auth token are set.
    pub fn enabled(&self) -> Option<(&Secret, &str)> {
        let token = self.auth_token.as_ref()?;
        let base = self.public_base_url.as_deref()?.trim_end_matches('/');
        Some((token, base))
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_body_limit() -> usize {
    1024 * 1024
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_produce_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_key_cache_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(15)
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            body_limit: default_body_limit(),
            request_timeout: default_request_timeout(),
            produce_timeout: default_produce_timeout(),
            key_cache_ttl: default_key_cache_ttl(),
            shutdown_grace: default_shutdown_grace(),
            callbacks: CallbacksConfig::default(),
            inbox: InboxConfig::default(),
        }
    }
}

impl ApiConfig {
    /// What deserializing cannot check, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1024..=64 * 1024 * 1024).contains(&self.body_limit) {
            return Err(format!(
                "api.body_limit is {}; it must be between 1024 and 67108864 (64 MiB)",
                self.body_limit
            ));
        }
        if self.produce_timeout < Duration::from_secs(1) {
            return Err("api.produce_timeout must be at least 1s".into());
        }
        // librdkafka checks message timeouts about once a second: leave it room to answer.
        if self.produce_timeout + Duration::from_secs(2) > self.request_timeout {
            return Err(format!(
                "api.produce_timeout ({:?}) must be at least 2s below api.request_timeout ({:?}), \
                 so that a send learns its record's fate before the request times out",
                self.produce_timeout, self.request_timeout
            ));
        }
        let sendgrid = &self.callbacks.sendgrid;
        sendgrid.verification_key()?;
        if sendgrid.tolerance < Duration::from_secs(10) {
            return Err("api.callbacks.sendgrid.tolerance must be at least 10s".into());
        }
        let twilio = &self.callbacks.twilio;
        match (&twilio.auth_token, &twilio.public_base_url) {
            (Some(_), None) => {
                return Err(
                    "api.callbacks.twilio.public_base_url must be set with auth_token".into(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "api.callbacks.twilio.auth_token must be set with public_base_url".into(),
                );
            }
            (Some(token), Some(url)) => {
                if token.expose().is_empty() {
                    return Err("api.callbacks.twilio.auth_token is empty".into());
                }
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(format!(
                        "api.callbacks.twilio.public_base_url `{url}` must start with https:// \
                         (or http://)"
                    ));
                }
            }
            (None, None) => {}
        }
        self.inbox.validate()?;
        if twilio.match_wait > Duration::from_secs(5) {
            return Err(
                "api.callbacks.twilio.match_wait must be at most 5s (Twilio waits 15s for an answer)"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_a_produce_timeout_near_the_request_timeout_is_not() {
        ApiConfig::default().validate().unwrap();
        let config = ApiConfig {
            produce_timeout: Duration::from_secs(9),
            ..ApiConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error.contains("api.produce_timeout"), "{error}");
        let config = ApiConfig {
            body_limit: 10,
            ..ApiConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("api.body_limit"));
    }

    #[test]
    fn inbox_settings_are_checked_with_the_key_named() {
        let mut config = ApiConfig::default();
        config.inbox.token_secret = Some(Secret::new("short"));
        let error = config.validate().unwrap_err();
        assert!(error.contains("api.inbox.token_secret"), "{error}");
        config.inbox.token_secret = Some(Secret::new("s".repeat(32)));
        config.validate().unwrap();
        config.inbox.token_ttl = Duration::from_secs(2 * 86_400);
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("api.inbox.token_ttl")
        );
        config.inbox.token_ttl = Duration::from_secs(600);
        for bad in [
            "app.example",
            "https://app.example/",
            "https://app.example/inbox",
            "https://",
        ] {
            config.inbox.allowed_origins = [("acme".to_owned(), vec![bad.to_owned()])].into();
            let error = config.validate().unwrap_err();
            assert!(
                error.contains("api.inbox.allowed_origins.acme"),
                "{bad}: {error}"
            );
        }
        config.inbox.allowed_origins = [(
            "acme".to_owned(),
            vec![
                "https://app.acme.example".to_owned(),
                "http://127.0.0.1:8080".to_owned(),
            ],
        )]
        .into();
        config.validate().unwrap();
        assert!(!format!("{config:?}").contains("sssss"));
    }

    #[test]
    fn callback_settings_are_checked_with_the_key_named() {
        let mut config = ApiConfig::default();
        config.callbacks.sendgrid.public_key = Some("not base64!".into());
        let error = config.validate().unwrap_err();
        assert!(
            error.contains("api.callbacks.sendgrid.public_key"),
            "{error}"
        );
        config.callbacks.sendgrid.public_key = Some(STANDARD.encode(b"not a key"));
        let error = config.validate().unwrap_err();
        assert!(error.contains("P-256"), "{error}");
        // A real key, as SendGrid shows it.
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.as_ref(),
        )
        .unwrap();
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let der = pair.public_key().as_der().unwrap();
        config.callbacks.sendgrid.public_key = Some(STANDARD.encode(der.as_ref()));
        config.validate().unwrap();

        config.callbacks.twilio.auth_token = Some(Secret::new("token"));
        let error = config.validate().unwrap_err();
        assert!(
            error.contains("api.callbacks.twilio.public_base_url"),
            "{error}"
        );
        config.callbacks.twilio.public_base_url = Some("notify.acme.example".into());
        assert!(config.validate().unwrap_err().contains("https://"));
        config.callbacks.twilio.public_base_url = Some("https://notify.acme.example/".into());
        config.validate().unwrap();
        assert_eq!(
            config.callbacks.twilio.enabled().map(|(_, base)| base),
            Some("https://notify.acme.example")
        );
        // The token never shows in Debug output.
        assert!(!format!("{config:?}").contains("\"token\""));
    }
}
