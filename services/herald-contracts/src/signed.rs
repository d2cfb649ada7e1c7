//! Signed links: what the email worker puts in a message and `herald api` trusts when it comes
//! back (unsubscribe links, open and click tracking). A token is `<payload>.<mac>`, both
//! unpadded base64url: the payload is a JSON value, the MAC HMAC-SHA256 over the encoded
//! payload under a configured secret. A token whose MAC holds was issued by Herald, so its
//! payload is trusted as it is (no key, no stored state).

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;

use crate::secret::Secret;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// A token whose MAC does not hold, or whose payload is not what was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the link is damaged or was not issued by Herald")]
pub struct Forged;

/// Signs payloads and checks tokens under one secret.
#[derive(Clone)]
pub struct Signer {
    key: hmac::Key,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer(***)")
    }
}

impl Signer {
    pub fn new(secret: &Secret) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()),
        }
    }

    /// `<payload>.<mac>` for `payload` as JSON.
    pub fn token(&self, payload: &impl Serialize) -> String {
        // Serialising plain data (strings, numbers, tuples of them) cannot fail; an empty
        // payload would only ever fail verification.
        let json = serde_json::to_vec(payload).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    }

    /// The payload of a token whose MAC holds, read as `T`.
    pub fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<T, Forged> {
        let (payload, mac) = token.split_once('.').ok_or(Forged)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| Forged)?;
        // Constant-time comparison.
        hmac::verify(&self.key, payload.as_bytes(), &mac).map_err(|_| Forged)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Forged)?;
        serde_json::from_slice(&json).map_err(|_| Forged)
    }
}

/// Checks what every role can check of a `[section]` of signed links, whichever of its keys it
/// was given: an http(s) base URL, a secret of at least [`MIN_SECRET_LEN`] bytes. Whether both
/// are given is checked by the roles that sign or verify the links ([`require_both`]): in a
/// deployment only they are given the secret. The error names the key.
pub fn validate_section(
    section: &str,
    base_url: Option<&str>,
    secret: Option<&Secret>,
) -> Result<(), String> {
    if let Some(url) = base_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(format!(
            "{section}.base_url `{url}` must start with https:// (or http://)"
        ));
    }
    if let Some(secret) = secret
        && secret.expose().len() < MIN_SECRET_LEN
    {
        return Err(format!(
            "{section}.secret must be at least {MIN_SECRET_LEN} bytes"
        ));
    }
    Ok(())
}

/// The base URL and secret of a section a role signs or verifies links with: both, or neither
/// (`None`: the links are off). The error names the missing key and who needs it.
pub fn require_both<'a>(
    section: &str,
    base_url: Option<&'a str>,
    secret: Option<&'a Secret>,
) -> Result<Option<(&'a str, &'a Secret)>, String> {
    let env = format!("HERALD_{}__SECRET", section.to_ascii_uppercase());
    match (base_url, secret) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(format!(
            "{section}.secret must be set with {section}.base_url: give it to herald api and \
             the email worker ({env})"
        )),
        (None, Some(_)) => Err(format!(
            "{section}.base_url must be set with {section}.secret"
        )),
        (Some(url), Some(secret)) => Ok(Some((url, secret))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_verifies_only_under_its_secret_and_unchanged() {
        let signer = Signer::new(&Secret::new("k".repeat(32)));
        let token = signer.token(&("acme", "ada", 7));
        assert_eq!(
            signer.verify::<(String, String, i64)>(&token).unwrap(),
            ("acme".into(), "ada".into(), 7)
        );
        let other = Signer::new(&Secret::new("x".repeat(32)));
        assert_eq!(other.verify::<(String, String, i64)>(&token), Err(Forged));
        let (payload, mac) = token.split_once('.').unwrap();
        let swapped = signer.token(&("acme", "bob", 7));
        let forged = format!("{}.{mac}", swapped.split_once('.').unwrap().0);
        assert_eq!(signer.verify::<(String, String, i64)>(&forged), Err(Forged));
        assert_eq!(signer.verify::<(String, String, i64)>(payload), Err(Forged));
        // A valid MAC over a payload of another shape is refused too.
        assert_eq!(signer.verify::<(String, i64)>(&token), Err(Forged));
    }

    #[test]
    fn a_section_is_all_or_nothing_where_it_is_used() {
        assert_eq!(validate_section("s", None, None), Ok(()));
        let secret = Secret::new("k".repeat(32));
        // Loading accepts half a section: the roles without the secret do not use it.
        assert_eq!(validate_section("s", Some("https://x"), None), Ok(()));
        assert!(
            require_both("s", Some("https://x"), None)
                .unwrap_err()
                .contains("s.secret")
        );
        assert!(
            require_both("s", None, Some(&secret))
                .unwrap_err()
                .contains("s.base_url")
        );
        assert_eq!(require_both("s", None, None), Ok(None));
        assert_eq!(
            require_both("s", Some("https://x"), Some(&secret)).map(|p| p.map(|(u, _)| u)),
            Ok(Some("https://x"))
        );
        assert!(
            validate_section("s", Some("ftp://x"), Some(&secret))
                .unwrap_err()
                .contains("s.base_url")
        );
        assert!(
            validate_section("s", Some("https://x"), Some(&Secret::new("short")))
                .unwrap_err()
                .contains("at least 32 bytes")
        );
        assert_eq!(
            validate_section("s", Some("https://x"), Some(&secret)),
            Ok(())
        );
    }
}
