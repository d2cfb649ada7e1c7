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
}

impl BuildError {
    pub(crate) fn config(key: &str, message: impl Into<String>) -> Self {
        BuildError::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn file(key: &str, path: &std::path::Path, message: impl ToString) -> Self {
        BuildError::File {
            key: key.into(),
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }
}

impl From<reqwest::Error> for BuildError {
    fn from(e: reqwest::Error) -> Self {
        BuildError::Http(e.to_string())
    }
}
