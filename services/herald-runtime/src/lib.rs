//! What every Herald role shares: the configuration loader (file plus `HERALD_` environment
//! overrides) and the sections every role reads ([`CommonConfig`]), JSON logs and OpenTelemetry
//! traces, the admin HTTP server (`/healthz`, `/readyz`, `/metrics`) and shutdown on SIGTERM.
//! Each role's own section lives in the role's crate.

pub mod admin;
pub mod allocations;
pub mod cache;
mod common;
pub mod config;
mod env_text;
pub mod health;
pub mod instance;
pub use herald_contracts::metric_names;
pub mod shutdown;
pub mod telemetry;

pub use common::CommonConfig;
pub use config::ConfigError;
