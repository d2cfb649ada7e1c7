//! Kafka plumbing shared by every role: client configuration (with librdkafka properties passed
//! through), the declared topic plan and its reconciliation against a cluster, and W3C trace
//! context carried in record headers.

pub mod config;
pub mod context;
pub mod engine;
pub mod group;
pub mod headers;
pub mod metadata;
pub mod probe;
pub mod renewal;
pub mod topic_apply;
pub mod topic_plan;
pub mod transaction;

pub use config::KafkaConfig;
pub use context::HeraldContext;
pub use probe::MetadataProbe;
pub use renewal::{RenewingProducer, needs_new_client};
pub use topic_apply::{ApplyReport, TopicAction, apply_plan};
pub use topic_plan::{PlanError, TopicPlan, TopicSpec};
