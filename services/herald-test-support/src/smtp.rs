//! A real SMTP server process for email tests: `python/smtp_sink.py` (aiosmtpd) run from the
//! test venv, storing what it accepts so a test can read the message back as Python's email
//! package decodes it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{python, repo_root, test_dir, wait_for};

/// How the sink secures connections.
#[derive(Debug, Clone, Default)]
pub enum SinkTls {
    #[default]
    None,
    /// STARTTLS offered and required, with this certificate and key (PEM files).
    Starttls { cert: PathBuf, key: PathBuf },
    /// TLS from the first byte.
    Implicit { cert: PathBuf, key: PathBuf },
}

#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// Require AUTH with this user and password.
    pub auth: Option<(String, String)>,
    pub tls: SinkTls,
}

/// A running sink on 127.0.0.1; the process is killed when this is dropped.
#[derive(Debug)]
pub struct SmtpSink {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

/// One accepted message: `json` has `mail_from`, `rcpt_tos`, `login`, `tls`, `content_type`,
/// `headers` (decoded), `raw_headers` (as sent) and `parts` (`content_type`, `charset`,
/// `transfer_encoding`, decoded `content`); `raw` is the message as received.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub json: serde_json::Value,
    pub raw: String,
}

impl ReceivedMail {
    /// A decoded header (names are matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(&self.json["headers"], name)
    }

    /// A header exactly as it was sent, before RFC 2047 decoding.
    pub fn raw_header(&self, name: &str) -> Option<String> {
        header_in(&self.json["raw_headers"], name)
    }

    /// The decoded content of the first part of this MIME type.
    pub fn part(&self, content_type: &str) -> Option<&serde_json::Value> {
        self.json["parts"]
            .as_array()?
            .iter()
            .find(|p| p["content_type"] == content_type)
    }
}

fn header_in(headers: &serde_json::Value, name: &str) -> Option<String> {
    headers.as_object()?.iter().find_map(|(k, v)| {
        k.eq_ignore_ascii_case(name)
            .then(|| v.as_str().map(str::to_owned))
            .flatten()
    })
}

impl SmtpSink {
    pub fn start(options: SinkOptions) -> Self {
        let dir = test_dir("smtp");
        let script = repo_root().join("services/herald-test-support/python/smtp_sink.py");
        let mut command = Command::new(python());
        command.arg(&script).arg(&dir);
        if let Some((user, password)) = &options.auth {
            command.arg("--auth").arg(format!("{user}:{password}"));
        }
        match &options.tls {
            SinkTls::None => {}
            SinkTls::Starttls { cert, key } => {
                command.arg("--starttls").arg(cert).arg(key);
            }
            SinkTls::Implicit { cert, key } => {
                command.arg("--implicit-tls").arg(cert).arg(key);
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("smtp sink did not start: {line:?}")
            });
        Self { port, dir, child }
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        read_messages(&self.dir)
    }

    /// Waits until at least `count` messages were accepted.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        wait_for(
            &format!("{count} messages in the smtp sink"),
            timeout,
            || {
                let messages = self.messages();
                (messages.len() >= count).then_some(messages)
            },
        )
    }
}

fn read_messages(dir: &Path) -> Vec<ReceivedMail> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|path| ReceivedMail {
            json: serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap(),
            raw: String::from_utf8_lossy(&std::fs::read(path.with_extension("eml")).unwrap())
                .into_owned(),
        })
        .collect()
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1, made with the
/// `openssl` command in `dir`.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA certificate (PEM), for the client to trust.
    pub ca: PathBuf,
    /// The server certificate and its key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn localhost_certificates(dir: &Path) -> TestCertificates {
    let p = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    std::fs::write(
        p("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "2",
        "-subj",
        "/CN=Herald test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(&csr);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    TestCertificates {
        ca: p("ca.crt"),
        cert: p("server.crt"),
        key: p("server.key"),
    }
}
