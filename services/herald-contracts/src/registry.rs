//! The schema registry: its configuration, and the two administrative calls `herald schemas
//! register` makes (set a subject's compatibility, register a schema) with the registry's own
//! reason when it refuses.

use serde::Deserialize;
use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::SrSettings;

use crate::secret::Secret;

/// Where the Confluent-compatible schema registry is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL, e.g. `http://127.0.0.1:8081` (a path prefix is fine).
    #[serde(default = "default_url")]
    pub url: String,
    /// Basic-auth user, if the registry needs one.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Per-request timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_url() -> String {
    "http://127.0.0.1:8081".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: default_url(),
            username: None,
            password: None,
            timeout: default_timeout(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("schema registry refused {what} (HTTP {status}): {reason}")]
    Refused {
        what: String,
        status: u16,
        reason: String,
    },
    #[error("schema registry settings are invalid: {0}")]
    Settings(String),
}

impl RegistryConfig {
    /// What deserializing cannot check, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "registry.url `{}` must start with http:// or https://",
                self.url
            ));
        }
        Ok(())
    }

    fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// Settings for schema_registry_converter's encoder and decoder.
    pub fn sr_settings(&self) -> Result<SrSettings, RegistryError> {
        let mut builder = SrSettings::new_builder(self.base().to_owned());
        builder.set_timeout(self.timeout);
        if let Some(user) = &self.username {
            builder.set_basic_authorization(user, self.password.as_ref().map(Secret::expose));
        }
        builder
            .build()
            .map_err(|e| RegistryError::Settings(e.to_string()))
    }
}

/// What registering one schema did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// The subject already had exactly this schema.
    Unchanged { id: u32, version: u32 },
    /// A new version was registered.
    Registered { id: u32 },
}

/// A small client for the administrative endpoints of the Confluent registry API.
#[derive(Debug, Clone)]
pub struct RegistryAdmin {
    config: RegistryConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct SchemaLookup {
    id: u32,
    version: u32,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryAdmin {
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| RegistryError::Settings(e.to_string()))?;
        Ok(Self { config, http })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}/{path}", self.config.base());
        let builder = self
            .http
            .request(method, url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE);
        match &self.config.username {
            Some(user) => {
                builder.basic_auth(user, self.config.password.as_ref().map(Secret::expose))
            }
            None => builder,
        }
    }

    async fn send(
        &self,
        what: &str,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let response = builder
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                url: self.config.url.clone(),
                message: e.to_string(),
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let reason = serde_json::from_str::<ErrorBody>(&text)
            .ok()
            .and_then(|b| b.message)
            .unwrap_or(text);
        Err(RegistryError::Refused {
            what: what.to_owned(),
            status,
            reason,
        })
    }

    /// Reads the registry's global configuration: a cheap request, for readiness.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        self.send(
            "the global config",
            self.request(reqwest::Method::GET, "config"),
        )
        .await?;
        Ok(())
    }

    /// Sets the subject's compatibility level (e.g. `BACKWARD`).
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let body = serde_json::json!({ "compatibility": level });
        self.send(
            &format!("compatibility {level} for {subject}"),
            self.request(reqwest::Method::PUT, &format!("config/{}", encode(subject)))
                .body(body.to_string()),
        )
        .await?;
        Ok(())
    }

    /// Registers `schema` under `subject`, or reports that it is already there. An incompatible
    /// schema is refused with the registry's reason.
    pub async fn register(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Registration, RegistryError> {
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" }).to_string();
        let lookup = self
            .send(
                &format!("lookup in {subject}"),
                self.request(
                    reqwest::Method::POST,
                    &format!("subjects/{}", encode(subject)),
                )
                .body(body.clone()),
            )
            .await;
        match lookup {
            Ok(response) => {
                let found: SchemaLookup = json(response, subject).await?;
                return Ok(Registration::Unchanged {
                    id: found.id,
                    version: found.version,
                });
            }
            // 404: the subject or this schema is not there yet.
            Err(RegistryError::Refused { status: 404, .. }) => {}
            Err(other) => return Err(other),
        }
        let response = self
            .send(
                &format!("the schema for {subject}"),
                self.request(
                    reqwest::Method::POST,
                    &format!("subjects/{}/versions", encode(subject)),
                )
                .body(body),
            )
            .await?;
        let registered: Registered = json(response, subject).await?;
        Ok(Registration::Registered { id: registered.id })
    }
}

async fn json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    subject: &str,
) -> Result<T, RegistryError> {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| RegistryError::Refused {
        what: format!("an answer about {subject}"),
        status,
        reason: format!("unreadable answer ({e}): {text}"),
    })
}

/// Subjects are dotted names; percent-encode the few characters a path cannot carry.
fn encode(subject: &str) -> String {
    subject
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' | '~' => c.to_string(),
            other => {
                let mut buf = [0u8; 4];
                other
                    .encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}
