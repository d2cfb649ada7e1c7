//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
//! where the key is the bytes of a `whsec_<base64>` secret.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

/// The secret's prefix; the rest is the key in standard base64.
pub const SECRET_PREFIX: &str = "whsec_";

/// A decoded signing key. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct SigningKey(hmac::Key);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the webhook signing secret is not `whsec_` followed by base64")]
pub struct InvalidSecret;

impl SigningKey {
    /// `whsec_<base64>` (the prefix may be left out, as the reference libraries allow).
    pub fn from_secret(secret: &str) -> Result<Self, InvalidSecret> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let bytes = STANDARD.decode(encoded).map_err(|_| InvalidSecret)?;
        if bytes.is_empty() {
            return Err(InvalidSecret);
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// The `webhook-signature` header value for this message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification (also checked against the Python
    /// `standardwebhooks` package).
    #[test]
    fn signs_the_specification_vector() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let bare = SigningKey::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            bare.sign("m", 1, b"x"),
            key.sign("m", 1, b"x"),
            "the prefix is optional"
        );
    }

    #[test]
    fn refuses_secrets_that_are_not_base64() {
        assert_eq!(
            SigningKey::from_secret("whsec_not base64!").unwrap_err(),
            InvalidSecret
        );
        assert_eq!(
            SigningKey::from_secret("whsec_").unwrap_err(),
            InvalidSecret
        );
        assert_eq!(
            format!("{:?}", SigningKey::from_secret("whsec_AAAA").unwrap()),
            "SigningKey(***)"
        );
    }
}
