//! One error type for storage, which says whether waiting can help.

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach the database at {nodes}: {message}")]
    Unreachable { nodes: String, message: String },
    #[error("database request failed: {0}")]
    Request(String),
    #[error("unexpected answer from the database: {0}")]
    Answer(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(
        "migration {version} ({name}) was changed after it was applied (checksum {applied} applied, {now} now); add a new migration instead"
    )]
    MigrationChanged {
        version: i32,
        name: String,
        applied: String,
        now: String,
    },
    #[error("{0}")]
    Seed(String),
}

impl StoreError {
    /// True when retrying later can succeed (the database is down or slow).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unreachable { .. } | StoreError::Request(_)
        )
    }
}

impl From<scylla::errors::ExecutionError> for StoreError {
    fn from(e: scylla::errors::ExecutionError) -> Self {
        StoreError::Request(e.to_string())
    }
}

impl From<scylla::errors::PrepareError> for StoreError {
    fn from(e: scylla::errors::PrepareError) -> Self {
        StoreError::Request(e.to_string())
    }
}

/// Errors in reading an answer's rows: the schema is not what the code expects.
macro_rules! answer_error {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(e: $error) -> Self {
                StoreError::Answer(e.to_string())
            }
        }
    )*};
}

answer_error!(
    scylla::errors::IntoRowsResultError,
    scylla::errors::RowsError,
    scylla::errors::DeserializationError,
    scylla::errors::MaybeFirstRowError,
    scylla::errors::FirstRowError,
    scylla::errors::SingleRowError
);
