//! Tenant API keys: `hrld_<key id>_<secret>`. The key id (16 hex digits) names the stored row;
//! the secret (32 random bytes, base64url) is never stored, only its SHA-256, which a request's
//! secret is compared against in constant time.

use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::BTreeSet;
use std::fmt;

const PREFIX: &str = "hrld_";
const KEY_ID_LEN: usize = 16;
const SECRET_BYTES: usize = 32;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Send notifications.
    Send,
    /// Manage users, preferences, categories, templates and webhook endpoints.
    Manage,
    /// Read what was sent and stored.
    Read,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Send, Scope::Manage, Scope::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Manage => "manage",
            Scope::Read => "read",
        }
    }

    /// A comma-separated list (`send,manage`); unknown names are refused.
    pub fn parse_list(text: &str) -> Result<BTreeSet<Scope>, String> {
        let scopes = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| {
                Scope::ALL
                    .into_iter()
                    .find(|s| s.as_str() == name)
                    .ok_or_else(|| format!("unknown scope `{name}` (send, manage, read)"))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        if scopes.is_empty() {
            return Err("no scope given (send, manage, read)".into());
        }
        Ok(scopes)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key just made: the whole key to show once, and what to store.
pub struct NewKey {
    pub key_id: String,
    /// The key as the client sends it. Shown once; never stored or logged.
    pub token: String,
    pub secret_sha256: Vec<u8>,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomError;

/// Makes a new key from the system's random generator.
pub fn generate() -> Result<NewKey, RandomError> {
    let mut id = [0u8; KEY_ID_LEN / 2];
    let mut secret = [0u8; SECRET_BYTES];
    rand::fill(&mut id).map_err(|_| RandomError)?;
    rand::fill(&mut secret).map_err(|_| RandomError)?;
    let key_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret = URL_SAFE_NO_PAD.encode(secret);
    Ok(NewKey {
        token: format!("{PREFIX}{key_id}_{secret}"),
        secret_sha256: sha256(secret.as_bytes()),
        key_id,
    })
}

/// A key as presented in a request, split into its id and secret.
pub struct Presented<'a> {
    pub key_id: &'a str,
    secret: &'a str,
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl<'a> Presented<'a> {
    /// `None` when `token` does not have the shape of a Herald key.
    pub fn parse(token: &'a str) -> Option<Self> {
        let rest = token.strip_prefix(PREFIX)?;
        let key_id = rest.get(..KEY_ID_LEN)?;
        let secret = rest.get(KEY_ID_LEN..)?.strip_prefix('_')?;
        let hex = key_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (hex && !secret.is_empty() && secret.len() <= 128).then_some(Self { key_id, secret })
    }

    /// Whether the secret hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        constant_time::verify_slices_are_equal(&sha256(self.secret.as_bytes()), stored).is_ok()
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_matches_only_its_own_hash() {
        let key = generate().unwrap();
        assert!(key.token.starts_with("hrld_"));
        assert!(!format!("{key:?}").contains(&key.token[21..]));
        let presented = Presented::parse(&key.token).unwrap();
        assert_eq!(presented.key_id, key.key_id);
        assert!(presented.matches(&key.secret_sha256));
        let other = generate().unwrap();
        assert!(!presented.matches(&other.secret_sha256));
        assert!(!presented.matches(&[]));
        let tampered = format!("{}x", key.token);
        assert!(
            !Presented::parse(&tampered)
                .unwrap()
                .matches(&key.secret_sha256)
        );
    }

    #[test]
    fn malformed_keys_are_not_keys() {
        for token in [
            "",
            "hrld_",
            "hrld_0123456789abcdef",
            "hrld_0123456789abcdef_",
            "hrld_0123456789ABCDEF_secret",
            "hrld_0123456789abcdefXsecret",
            "sk_0123456789abcdef_secret",
            "hrld_0123456789abcdé_secret",
        ] {
            assert!(Presented::parse(token).is_none(), "{token}");
        }
    }

    #[test]
    fn scopes_parse_from_a_list() {
        assert_eq!(
            Scope::parse_list("send, read").unwrap(),
            BTreeSet::from([Scope::Send, Scope::Read])
        );
        assert!(
            Scope::parse_list("send,admin")
                .unwrap_err()
                .contains("admin")
        );
        assert!(Scope::parse_list("").is_err());
    }
}
