//! Logs and traces. Logs are JSON lines on stderr (stdout belongs to the CLI's own output);
//! traces go to an OTLP/HTTP endpoint when one is configured; W3C trace context is the
//! propagation format on every Kafka hop.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

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
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
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
        tracing_opentelemetry::layer().with_tracer(p.tracer("herald"))
    });

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
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
