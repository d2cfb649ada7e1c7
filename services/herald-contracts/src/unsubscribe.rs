//! One-click unsubscribe links (RFC 8058), shared by the email worker, which puts them in
//! `List-Unsubscribe`, and `herald api`, which serves them. A link names a tenant, a user, a
//! category and an expiry, signed with HMAC-SHA256 under `unsubscribe.secret`; the API opts
//! the user out of the category only for a link whose signature holds and which has not
//! expired, so nothing else is needed to trust it (no key, no stored state).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

use crate::secret::Secret;
use crate::signed::{Signer, require_both, validate_section};

/// The API route the links point at, under `unsubscribe.base_url`.
pub const UNSUBSCRIBE_PATH: &str = "/v1/unsubscribe";

/// `[unsubscribe]`: read by `herald deliver --channel email` and `herald api`, which must
/// share the secret. Off unless `base_url` and `secret` are set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeConfig {
    /// Where `herald api` is reached from a mail client, e.g. `https://notify.acme.example`;
    /// links are `<base_url>/v1/unsubscribe/<token>`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The HMAC-SHA256 key links are signed with: at least 32 bytes. Give it through the
    /// environment (`HERALD_UNSUBSCRIBE__SECRET`).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// How long a link works after the message was routed.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

fn default_ttl() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

impl Default for UnsubscribeConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            secret: None,
            ttl: default_ttl(),
        }
    }
}

impl UnsubscribeConfig {
    /// Checks the section; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        validate_section(
            "unsubscribe",
            self.base_url.as_deref(),
            self.secret.as_ref(),
        )?;
        if self.ttl < Duration::from_secs(60) {
            return Err("unsubscribe.ttl must be at least 1m".into());
        }
        Ok(())
    }

    /// The signer, when the section is set; an error when only half of it is (for the roles
    /// that sign or verify the links).
    pub fn links(&self) -> Result<Option<UnsubscribeLinks>, String> {
        let pair = require_both(
            "unsubscribe",
            self.base_url.as_deref(),
            self.secret.as_ref(),
        )?;
        Ok(pair.map(|(base_url, secret)| UnsubscribeLinks {
            base_url: base_url.trim_end_matches('/').to_owned(),
            signer: Signer::new(secret),
            ttl: self.ttl,
        }))
    }
}

/// What a valid link asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub tenant: String,
    pub user_id: String,
    pub category: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is damaged or was not issued by Herald")]
    Invalid,
    #[error("the link expired at {0}")]
    Expired(DateTime<Utc>),
}

/// Signs and checks links.
#[derive(Clone)]
pub struct UnsubscribeLinks {
    base_url: String,
    signer: Signer,
    ttl: Duration,
}

impl fmt::Debug for UnsubscribeLinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnsubscribeLinks")
            .field("base_url", &self.base_url)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl UnsubscribeLinks {
    /// Where links point, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The link for a message routed at `routed_at`: it expires `ttl` later.
    pub fn url(
        &self,
        tenant: &str,
        user_id: &str,
        category: &str,
        routed_at: DateTime<Utc>,
    ) -> String {
        let expires_at = routed_at + self.ttl;
        format!(
            "{}{UNSUBSCRIBE_PATH}/{}",
            self.base_url,
            self.token(tenant, user_id, category, expires_at)
        )
    }

    /// `<payload>.<mac>`, both unpadded base64url: the payload is the JSON array
    /// `[tenant, user_id, category, expiry in Unix seconds]`, the MAC HMAC-SHA256 over it.
    pub fn token(
        &self,
        tenant: &str,
        user_id: &str,
        category: &str,
        expires_at: DateTime<Utc>,
    ) -> String {
        self.signer
            .token(&(tenant, user_id, category, expires_at.timestamp()))
    }

    /// The request a token carries, if its signature holds and it has not expired at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Unsubscribe, LinkError> {
        let (tenant, user_id, category, expiry): (String, String, String, i64) =
            self.signer.verify(token).map_err(|_| LinkError::Invalid)?;
        let expires_at = DateTime::from_timestamp(expiry, 0).ok_or(LinkError::Invalid)?;
        if expires_at <= now {
            return Err(LinkError::Expired(expires_at));
        }
        Ok(Unsubscribe {
            tenant,
            user_id,
            category,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn links(secret: &str) -> UnsubscribeLinks {
        UnsubscribeConfig {
            base_url: Some("https://n.example/".into()),
            secret: Some(Secret::new(secret)),
            ttl: Duration::from_secs(3600),
        }
        .links()
        .unwrap()
        .unwrap()
    }

    #[test]
    fn a_link_round_trips_until_it_expires() {
        let signer = links(&"k".repeat(32));
        let now = Utc::now();
        let url = signer.url("acme", "ada", "billing.invoice_ready", now);
        let token = url
            .strip_prefix("https://n.example/v1/unsubscribe/")
            .unwrap();
        let asked = signer.verify(token, now).unwrap();
        assert_eq!(
            (
                asked.tenant.as_str(),
                asked.user_id.as_str(),
                asked.category.as_str()
            ),
            ("acme", "ada", "billing.invoice_ready")
        );
        assert!(matches!(
            signer.verify(token, now + chrono::Duration::hours(2)),
            Err(LinkError::Expired(_))
        ));
    }

    #[test]
    fn a_changed_token_or_another_key_is_refused() {
        let signer = links(&"k".repeat(32));
        let now = Utc::now();
        let token = signer.token("acme", "ada", "c", now + chrono::Duration::hours(1));
        let (payload, mac) = token.split_once('.').unwrap();
        let other = signer.token("acme", "bob", "c", now + chrono::Duration::hours(1));
        let forged = format!("{}.{mac}", other.split_once('.').unwrap().0);
        assert_eq!(signer.verify(&forged, now), Err(LinkError::Invalid));
        assert_eq!(signer.verify(payload, now), Err(LinkError::Invalid));
        assert_eq!(signer.verify("", now), Err(LinkError::Invalid));
        assert_eq!(
            links(&"x".repeat(32)).verify(&token, now),
            Err(LinkError::Invalid)
        );
    }

    #[test]
    fn the_section_is_all_or_nothing_where_it_is_used() {
        UnsubscribeConfig::default().validate().unwrap();
        let half = UnsubscribeConfig {
            base_url: Some("https://n.example".into()),
            ..UnsubscribeConfig::default()
        };
        // Loading takes half a section (roles without the secret ignore it); signing does not.
        half.validate().unwrap();
        let missing = half.links().err().unwrap();
        assert!(missing.contains("unsubscribe.secret"), "{missing}");
        assert!(missing.contains("HERALD_UNSUBSCRIBE__SECRET"), "{missing}");
        let short = UnsubscribeConfig {
            secret: Some(Secret::new("short")),
            ..half
        };
        assert!(short.validate().unwrap_err().contains("at least 32 bytes"));
    }
}
