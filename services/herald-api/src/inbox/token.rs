//! User tokens: what a tenant's backend hands its front end so that a browser or an app reads
//! one user's inbox without ever holding a tenant key. A token is a JWT (RFC 7519) signed with
//! HS256 under `api.inbox.token_secret`, naming the tenant, the user and an expiry; nothing is
//! stored, so every replica verifies it alone. Only HS256 is accepted (never `none`), and the
//! audience must be the inbox's: a JWT minted for something else under the same secret is
//! refused.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

use crate::config::InboxConfig;

/// The token's `iss` and `aud`.
const ISSUER: &str = "herald";
const AUDIENCE: &str = "herald-inbox";
const ALGORITHM: &str = "HS256";

/// Who a valid token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxUser {
    pub tenant: String,
    pub user_id: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a token is refused (both are 401; the detail tells a developer which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the inbox token is malformed, or was not signed by this Herald")]
    Invalid,
    #[error("the inbox token has expired: ask your backend for a new one")]
    Expired,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    tenant: String,
    iat: i64,
    exp: i64,
}

/// Issues and verifies user tokens.
#[derive(Clone)]
pub struct InboxTokens {
    current: hmac::Key,
    /// The secret before a rotation, still accepted (never used to sign).
    previous: Option<hmac::Key>,
    ttl: Duration,
}

impl fmt::Debug for InboxTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl InboxTokens {
    /// `None` when `api.inbox.token_secret` is not set: the inbox is off.
    pub fn from_config(config: &InboxConfig) -> Option<Self> {
        let key = |secret: &herald_contracts::secret::Secret| {
            hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes())
        };
        Some(Self {
            current: key(config.token_secret.as_ref()?),
            previous: config.previous_token_secret.as_ref().map(key),
            ttl: config.token_ttl,
        })
    }

    /// A token for `user_id` of `tenant`, valid from `now` for `api.inbox.token_ttl`.
    pub fn issue(
        &self,
        tenant: &str,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> (String, DateTime<Utc>) {
        let expires_at = now + self.ttl;
        let header = Header {
            alg: ALGORITHM.to_owned(),
            typ: Some("JWT".to_owned()),
        };
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user_id.to_owned(),
            tenant: tenant.to_owned(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let signed = format!("{}.{}", encode(&header), encode(&claims));
        let mac = hmac::sign(&self.current, signed.as_bytes());
        (
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref())),
            expires_at,
        )
    }

    /// The user a token stands for, if its signature holds and it has not expired at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<InboxUser, TokenError> {
        let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let (header, claims) = signed.split_once('.').ok_or(TokenError::Invalid)?;
        let header: Header = decode(header)?;
        if header.alg != ALGORITHM {
            return Err(TokenError::Invalid);
        }
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Invalid)?;
        // Constant-time comparisons, under the current secret then the previous one.
        let holds = |key: &hmac::Key| hmac::verify(key, signed.as_bytes(), &mac).is_ok();
        if !(holds(&self.current) || self.previous.as_ref().is_some_and(holds)) {
            return Err(TokenError::Invalid);
        }
        let claims: Claims = decode(claims)?;
        if claims.iss != ISSUER || claims.aud != AUDIENCE || claims.sub.is_empty() {
            return Err(TokenError::Invalid);
        }
        let expires_at = DateTime::from_timestamp(claims.exp, 0).ok_or(TokenError::Invalid)?;
        if expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(InboxUser {
            tenant: claims.tenant,
            user_id: claims.sub,
            expires_at,
        })
    }
}

/// A token part: base64url JSON. Serialising plain strings and integers cannot fail.
fn encode(value: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

fn decode<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, TokenError> {
    let json = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Invalid)?;
    serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use herald_contracts::secret::Secret;

    fn tokens(secret: &str, previous: Option<&str>) -> InboxTokens {
        InboxTokens::from_config(&InboxConfig {
            token_secret: Some(Secret::new(secret)),
            previous_token_secret: previous.map(Secret::new),
            token_ttl: Duration::from_secs(600),
            ..InboxConfig::default()
        })
        .unwrap()
    }

    const A: &str = "inbox-secret-a-0123456789abcdef0123";
    const B: &str = "inbox-secret-b-0123456789abcdef0123";

    #[test]
    fn a_token_names_its_user_until_it_expires() {
        let tokens = tokens(A, None);
        let now = Utc::now();
        let (token, expires_at) = tokens.issue("acme", "ada", now);
        let user = tokens.verify(&token, now).unwrap();
        assert_eq!(
            (user.tenant.as_str(), user.user_id.as_str()),
            ("acme", "ada")
        );
        assert_eq!(user.expires_at.timestamp(), expires_at.timestamp());
        assert_eq!(
            tokens.verify(&token, now + chrono::Duration::seconds(601)),
            Err(TokenError::Expired)
        );
        // A standard JWT: three parts, HS256 in the header.
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "HS256");
    }

    #[test]
    fn tampered_foreign_and_unsigned_tokens_are_refused() {
        let tokens_a = tokens(A, None);
        let now = Utc::now();
        let (token, _) = tokens_a.issue("acme", "ada", now);
        let (header, rest) = token.split_once('.').unwrap();
        let (_, mac) = rest.split_once('.').unwrap();
        // Another user's claims under ada's signature.
        let (bob, _) = tokens_a.issue("acme", "bob", now);
        let bob_claims = bob.split('.').nth(1).unwrap();
        let swapped = format!("{header}.{bob_claims}.{mac}");
        assert_eq!(tokens_a.verify(&swapped, now), Err(TokenError::Invalid));
        // `alg: none` with no signature.
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let unsigned = format!("{none}.{bob_claims}.");
        assert_eq!(tokens_a.verify(&unsigned, now), Err(TokenError::Invalid));
        // Signed under another secret; garbage.
        assert_eq!(
            tokens(B, None).verify(&token, now),
            Err(TokenError::Invalid)
        );
        for garbage in ["", "a.b", "a.b.c", "a.b.c.d", &format!("{token}x")] {
            assert_eq!(
                tokens_a.verify(garbage, now),
                Err(TokenError::Invalid),
                "{garbage}"
            );
        }
    }

    #[test]
    fn after_a_rotation_the_previous_secret_still_verifies_but_never_signs() {
        let now = Utc::now();
        let (old, _) = tokens(A, None).issue("acme", "ada", now);
        let rotated = tokens(B, Some(A));
        assert!(rotated.verify(&old, now).is_ok());
        let (new, _) = rotated.issue("acme", "ada", now);
        assert!(tokens(B, None).verify(&new, now).is_ok());
        assert_eq!(tokens(A, None).verify(&new, now), Err(TokenError::Invalid));
    }
}
