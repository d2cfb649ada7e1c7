//! Signing keys for the push providers and other key material, made by the `openssl` command
//! (not by the code under test, so that a test checking a signature does not trust what it
//! checks).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `openssl genpkey` arguments for an APNs signing key (ES256).
pub const EC_P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
/// `openssl genpkey` arguments for a Google service-account key (RS256).
pub const RSA_2048: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];

/// A PKCS#8 private key (PEM file) and its public key (SubjectPublicKeyInfo DER).
#[derive(Debug)]
pub struct KeyPair {
    pub private_pem: PathBuf,
    pub public_der: Vec<u8>,
}

/// `openssl <args>`, which must succeed.
pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new key pair in `dir` (`<name>.pem`, `<name>.pub.der`); `algorithm` is [`EC_P256`],
/// [`RSA_2048`] or other `openssl genpkey` arguments.
pub fn openssl_key(dir: &Path, name: &str, algorithm: &[&str]) -> KeyPair {
    let private_pem = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.der"));
    let mut genpkey = vec!["genpkey"];
    genpkey.extend(algorithm);
    genpkey.extend(["-out", private_pem.to_str().unwrap()]);
    openssl(&genpkey);
    openssl(&[
        "pkey",
        "-in",
        private_pem.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        public.to_str().unwrap(),
    ]);
    KeyPair {
        private_pem,
        public_der: std::fs::read(public).unwrap(),
    }
}

/// A Google service-account key file (the JSON FCM reads) at `path`, for `key` (RS256).
pub fn write_service_account(
    path: &Path,
    key: &KeyPair,
    project_id: &str,
    client_email: &str,
    token_uri: &str,
) {
    let account = serde_json::json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "pk-1",
        "private_key": std::fs::read_to_string(&key.private_pem).unwrap(),
        "client_email": client_email,
        "client_id": "1",
        "token_uri": token_uri,
    });
    std::fs::write(path, account.to_string()).unwrap();
}
