//! Provider configuration. The structs live in `herald-runtime` (as every role's configuration
//! does, so that `HeraldConfig` can carry them under `[deliver.providers]`); they are
//! re-exported here so the adapters keep naming them from this crate.

pub use herald_runtime::providers::*;
