//! Errors in building an adapter from its configuration: reported once at start, naming the
//! key. Sending never fails; it ends in an [`crate::Outcome`].

use herald_contracts::Channel;
use herald_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    #[error("{key}: cannot use {path}: {message}")]
    File {
        key: String,
        path: String,
        message: String,
    },
    #[error("building the HTTP client: {0}")]
    Http(String),
    #[error("no provider is configured for the {channel} channel: set {keys}")]
    NotConfigured {
        channel: Channel,
        keys: &'static str,
    },
    #[error("preparing statements: {0}")]
    Store(#[from] StoreError),
    /// `[unsubscribe]` or `[tracking]` given in part to the email worker.
    #[error("{0}")]
    Links(String),
}

impl BuildError {
    pub(crate) fn config(key: &str, message: impl Into<String>) -> Self {
        BuildError::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// `key` (`twilio.auth_token`) is not set: its `[deliver.providers]` setting and the
    /// environment variable that gives it to this worker alone.
    pub(crate) fn missing(key: &str) -> Self {
        let (section, field) = key.split_once('.').unwrap_or((key, key));
        let variable = format!(
            "HERALD_DELIVER__PROVIDERS__{}",
            key.to_uppercase().replace('.', "__")
        );
        BuildError::config(
            key,
            format!(
                "is not set: give this worker {field} in [deliver.providers.{section}] or {variable}"
            ),
        )
    }

    pub(crate) fn file(key: &str, path: &std::path::Path, message: impl ToString) -> Self {
        BuildError::File {
            key: key.into(),
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
}

/// A setting the provider cannot do without. Loading the configuration leaves it optional (a
/// process that does not use the provider is not given its secrets), so building requires it.
pub(crate) fn required<'a, T>(key: &str, value: &'a Option<T>) -> Result<&'a T, BuildError> {
    value.as_ref().ok_or_else(|| BuildError::missing(key))
}

impl From<reqwest::Error> for BuildError {
    fn from(e: reqwest::Error) -> Self {
        BuildError::Http(e.to_string())
    }
}
