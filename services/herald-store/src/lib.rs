//! ScyllaDB storage (Apache Cassandra 5 in local tests, through the same driver): connecting,
//! the versioned CQL migrations of keyspace `herald`, and the seed loader for users,
//! preferences, category defaults and templates.

pub mod api_keys;
mod batcher;
pub mod categories;
pub mod config;
pub mod dedupe;
pub mod directory;
pub mod engagement;
pub mod error;
pub mod frequency_cap;
pub mod inbox;
pub mod migrate;
pub mod provider_messages;
pub mod push_tokens;
pub mod schedule;
pub mod seed;
pub mod send_ledger;
pub mod session;
pub mod suppressions;
pub mod templates;
pub mod timeline;
pub mod timeline_read;
mod unlogged;
pub mod users;
pub mod webhooks;

pub use config::StoreConfig;
pub use error::StoreError;
pub use migrate::{MigrationReport, migrate};
pub use session::{connect, connect_keyspace, ping, statements_sent};
