//! Logs and traces. Logs are JSON lines on stderr (stdout belongs to the CLI's own output);
//! traces go to an OTLP/HTTP endpoint when one is configured; W3C trace context is the
//! propagation format on every Kafka hop. A log line written inside an exported span carries
//! its `trace_id` and `span_id` (see [`trace_ids`]).
//!
//! The log level filters logs only: spans of Herald's own crates are exported at INFO and above
//! whatever the log level, so `log_level = "warn"` keeps traces whole (and its warnings carry
//! their trace ids).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

mod trace_ids;

/// The crates whose spans (and the events inside them) are exported: Herald's own.
const EXPORTED_TARGETS: &str = "herald";

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans (`telemetry.otlp_endpoint` is set). Instrumentation
/// that costs something per record, such as a span per delivery attempt and its attributes,
/// is made only then.
pub fn traces_exported() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `json` (default) or `text`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,herald_kafka=debug`. `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// OTLP/HTTP endpoint for traces (e.g. `http://otel-collector:4318/v1/traces`); none: no export.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` on exported spans; the role is appended (`herald-router`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

fn default_log_level() -> String {
    "info".into()
}

fn default_service_name() -> String {
    "herald".into()
}

impl TelemetryConfig {
    /// What deserializing cannot check, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map(drop)
            .map_err(|e| {
                format!(
                    "telemetry.log_level `{}` is not a filter: {e}",
                    self.log_level
                )
            })
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_level: default_log_level(),
            otlp_endpoint: None,
            service_name: default_service_name(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.otlp_endpoint: cannot build the exporter: {0}")]
    Exporter(String),
    #[error("telemetry.log_level: {0}")]
    Filter(String),
    #[error("logging was already initialised")]
    AlreadyInitialised,
}

/// Flushes and stops trace export when dropped; keep it alive for the life of the process.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace export did not shut down cleanly: {e}");
        }
    }
}

/// rdkafka's fallback `ClientContext::stats` logs every librdkafka statistics report (kilobytes
/// per client, every `statistics.interval.ms`) at INFO under this target, and nothing else of
/// use below WARN. Herald's own context turns the reports into metrics; a client created
/// without it (an offsets-only consumer, say) must not bury the log under them.
const RDKAFKA_STATISTICS_CAP: &str = "rdkafka::client=warn";

/// The filter directives for `configured` (RUST_LOG or `telemetry.log_level`): as given, plus
/// the cap on rdkafka's statistics logging unless they say something about rdkafka themselves.
fn directives(configured: &str) -> String {
    if configured.contains("rdkafka") {
        configured.to_owned()
    } else if configured.trim().is_empty() {
        RDKAFKA_STATISTICS_CAP.to_owned()
    } else {
        format!("{configured},{RDKAFKA_STATISTICS_CAP}")
    }
}

/// Sets up logging (and trace export) for a process running `role`.
pub fn init(config: &TelemetryConfig, role: &str) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => directives,
        _ => config.log_level.clone(),
    };
    let filter = EnvFilter::try_new(directives(&filter))
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;

    let fmt_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(trace_ids::WithTraceIds::json())
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .event_format(trace_ids::WithTraceIds::text())
            .with_writer(std::io::stderr)
            .boxed(),
    };

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            let resource = Resource::builder()
                .with_service_name(format!("{}-{role}", config.service_name))
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => None,
    };
    let otel_layer = provider.as_ref().map(|p| {
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("herald"))
            .with_filter(Targets::new().with_target(EXPORTED_TARGETS, tracing::Level::INFO))
    });

    // Each layer has its own filter: the log level does not decide which spans are exported.
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter))
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdkafka_statistics_stay_out_of_the_log_unless_asked_for() {
        assert_eq!(directives("info"), "info,rdkafka::client=warn");
        assert_eq!(
            directives("warn,herald_router=debug"),
            "warn,herald_router=debug,rdkafka::client=warn"
        );
        assert_eq!(directives(""), "rdkafka::client=warn");
        assert_eq!(directives("debug,rdkafka=debug"), "debug,rdkafka=debug");
        for configured in ["info", "debug", "trace,herald_kafka=info"] {
            EnvFilter::try_new(directives(configured)).unwrap();
        }
    }
}
