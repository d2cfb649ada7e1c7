//! Every metric name Herald exports, declared once.

/// Gauge, always 1, labelled with the version and role: lets dashboards see what runs where.
pub const BUILD_INFO: &str = "herald_build_info";
