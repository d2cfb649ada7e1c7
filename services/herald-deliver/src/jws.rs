//! Compact JWTs signed with RS256 (FCM's service-account assertion) or ES256 (APNs provider
//! tokens), on aws-lc-rs, which rustls already brings: a JWT is three base64url parts and one
//! signature, not worth a JOSE library and its ASN.1 and time dependencies.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use std::fmt;

enum Key {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

/// A private key and the JWT header that goes with it.
pub struct JwtSigner {
    key: Key,
    /// `base64url(header)`, computed once.
    header: String,
    rng: SystemRandom,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alg = match self.key {
            Key::Rs256(_) => "RS256",
            Key::Es256(_) => "ES256",
        };
        write!(f, "JwtSigner({alg}, ***)")
    }
}

impl JwtSigner {
    /// An RSA key in PEM (`PRIVATE KEY`, PKCS#8, as in Google key files; or `RSA PRIVATE
    /// KEY`, PKCS#1). The header is `{"alg":"RS256","typ":"JWT"[,"kid":...]}`.
    pub fn rs256(pem: &str, kid: Option<&str>) -> Result<Self, String> {
        let key = if let Some(der) = pem_block(pem, "PRIVATE KEY")? {
            RsaKeyPair::from_pkcs8(&der)
        } else if let Some(der) = pem_block(pem, "RSA PRIVATE KEY")? {
            RsaKeyPair::from_der(&der)
        } else {
            return Err("no PRIVATE KEY block".into());
        }
        .map_err(|e| format!("not an RSA private key: {e}"))?;
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        Ok(Self::with_header(Key::Rs256(key), &header))
    }

    /// A P-256 key in PEM (`PRIVATE KEY`, PKCS#8, as in Apple `.p8` files). The header is
    /// `{"alg":"ES256","kid":...}`, as Apple documents it.
    pub fn es256(pem: &str, kid: &str) -> Result<Self, String> {
        let der = pem_block(pem, "PRIVATE KEY")?.ok_or("no PRIVATE KEY block")?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|e| format!("not a P-256 private key: {e}"))?;
        let header = serde_json::json!({"alg": "ES256", "kid": kid});
        Ok(Self::with_header(Key::Es256(key), &header))
    }

    fn with_header(key: Key, header: &serde_json::Value) -> Self {
        Self {
            key,
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            rng: SystemRandom::new(),
        }
    }

    /// `header.claims.signature`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, String> {
        let claims = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut jwt = format!("{}.{}", self.header, URL_SAFE_NO_PAD.encode(claims));
        let signature = match &self.key {
            Key::Rs256(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &self.rng, jwt.as_bytes(), &mut signature)
                    .map_err(|_| "RSA signing failed".to_owned())?;
                signature
            }
            // the fixed-size r‖s form is what JWS wants
            Key::Es256(key) => key
                .sign(&self.rng, jwt.as_bytes())
                .map_err(|_| "ECDSA signing failed".to_owned())?
                .as_ref()
                .to_vec(),
        };
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }
}

/// The DER bytes of the first `-----BEGIN {label}-----` block, if there is one.
fn pem_block(pem: &str, label: &str) -> Result<Option<Vec<u8>>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = pem.find(&begin) else {
        return Ok(None);
    };
    let body = &pem[start + begin.len()..];
    let stop = body
        .find(&end)
        .ok_or_else(|| format!("unterminated {label} block"))?;
    let text: String = body[..stop].split_whitespace().collect();
    STANDARD
        .decode(text)
        .map(Some)
        .map_err(|e| format!("{label} block is not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
    };

    fn pem(label: &str, der: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            STANDARD.encode(der)
        )
    }

    fn parts(jwt: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>, String) {
        let mut it = jwt.split('.');
        let (h, c, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        assert!(it.next().is_none());
        let json = |p: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
        (
            json(h),
            json(c),
            URL_SAFE_NO_PAD.decode(s).unwrap(),
            format!("{h}.{c}"),
        )
    }

    #[test]
    fn es256_tokens_verify_with_the_public_key() {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = key.to_pkcs8v1().unwrap();
        let signer = JwtSigner::es256(&pem("PRIVATE KEY", pkcs8.as_ref()), "KEY123").unwrap();
        let jwt = signer
            .sign(&serde_json::json!({"iss": "TEAM", "iat": 1}))
            .unwrap();
        let (header, claims, signature, signed) = parts(&jwt);
        assert_eq!(header, serde_json::json!({"alg": "ES256", "kid": "KEY123"}));
        assert_eq!(claims["iss"], "TEAM");
        assert_eq!(signature.len(), 64);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref())
            .verify(signed.as_bytes(), &signature)
            .unwrap();
        assert_eq!(format!("{signer:?}"), "JwtSigner(ES256, ***)");
    }

    #[test]
    fn rs256_tokens_verify_with_the_public_key() {
        let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = key.as_der().unwrap();
        let signer = JwtSigner::rs256(&pem("PRIVATE KEY", pkcs8.as_ref()), Some("k1")).unwrap();
        let jwt = signer.sign(&serde_json::json!({"scope": "s"})).unwrap();
        let (header, _, signature, signed) = parts(&jwt);
        assert_eq!(
            header,
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "k1"})
        );
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref())
            .verify(signed.as_bytes(), &signature)
            .unwrap();
    }

    #[test]
    fn refuses_what_is_not_a_key() {
        assert!(JwtSigner::es256("nothing", "k").is_err());
        assert!(
            JwtSigner::rs256(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
                None
            )
            .is_err()
        );
        assert!(JwtSigner::rs256("-----BEGIN PRIVATE KEY-----\n!!", None).is_err());
    }
}
