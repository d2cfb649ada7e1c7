//! The trace and span ids on log lines: a line logged inside an exported span says which trace
//! and span it belongs to, so a trace found in the tracing backend leads to its log lines and
//! back. The ids come from the OpenTelemetry context the tracing layer attaches while a span is
//! entered; without an exporter there is none, and a line is formatted as before at the cost
//! of one thread-local lookup.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// A line format (`Format<Json>` or `Format<Full>`) with the current trace and span ids added:
/// JSON lines get top-level `trace_id` and `span_id` fields, text lines end with
/// `trace_id=… span_id=…`.
#[derive(Debug)]
pub(crate) struct WithTraceIds<F> {
    inner: F,
}

impl WithTraceIds<Format<Json>> {
    pub(crate) fn json() -> Self {
        Self {
            inner: tracing_subscriber::fmt::format()
                .json()
                .with_current_span(true),
        }
    }
}

impl WithTraceIds<Format<Full>> {
    pub(crate) fn text() -> Self {
        Self {
            inner: tracing_subscriber::fmt::format(),
        }
    }
}

/// The ids of the span whose OpenTelemetry context is current on this thread, if any.
fn current_ids() -> Option<(TraceId, SpanId)> {
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let context = span.span_context();
        context
            .is_valid()
            .then(|| (context.trace_id(), context.span_id()))
    })
}

/// How a line format takes the ids: formatted aside, then spliced into the line.
pub(crate) trait Splice: Sized {
    /// The format to write a line aside with, for a writer that has colours or not.
    fn aside(&self, ansi: bool) -> Self;
    fn splice(line: &str, trace_id: TraceId, span_id: SpanId) -> String;
}

impl Splice for Format<Json> {
    fn aside(&self, _ansi: bool) -> Self {
        self.clone()
    }

    fn splice(line: &str, trace_id: TraceId, span_id: SpanId) -> String {
        splice_json(line, trace_id, span_id)
    }
}

impl Splice for Format<Full> {
    /// A `Writer` made aside has no colours of its own, so the format is told whether the
    /// line's writer has.
    fn aside(&self, ansi: bool) -> Self {
        self.clone().with_ansi(ansi)
    }

    fn splice(line: &str, trace_id: TraceId, span_id: SpanId) -> String {
        splice_text(line, trace_id, span_id)
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N> + Splice,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner.aside(writer.has_ansi_escapes()).format_event(
            ctx,
            Writer::new(&mut line),
            event,
        )?;
        write!(writer, "{}", F::splice(&line, trace_id, span_id))
    }
}

/// `{"trace_id":"…","span_id":"…",<the rest of the object>`; a line that is not an object is
/// left as it is.
fn splice_json(line: &str, trace_id: TraceId, span_id: SpanId) -> String {
    let Some(rest) = line.strip_prefix('{') else {
        return line.to_owned();
    };
    let comma = if rest.starts_with('}') { "" } else { "," };
    format!("{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{comma}{rest}")
}

/// The line with ` trace_id=… span_id=…` before its newline.
fn splice_text(line: &str, trace_id: TraceId, span_id: SpanId) -> String {
    let body = line.strip_suffix('\n').unwrap_or(line);
    format!("{body} trace_id={trace_id} span_id={span_id}\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use opentelemetry::trace::{SpanContext, TracerProvider as _};
    use opentelemetry::trace::{TraceFlags, TraceState};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn ids_go_first_in_json_and_last_in_text() {
        let trace_id = TraceId::from_hex(TRACE).unwrap();
        let span_id = SpanId::from_hex(SPAN).unwrap();
        let json = splice_json("{\"level\":\"INFO\"}\n", trace_id, span_id);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["trace_id"], TRACE);
        assert_eq!(parsed["span_id"], SPAN);
        assert_eq!(parsed["level"], "INFO");
        assert!(json.ends_with('\n'));
        let empty = splice_json("{}", trace_id, span_id);
        assert!(
            serde_json::from_str::<serde_json::Value>(&empty).is_ok(),
            "{empty}"
        );
        assert_eq!(
            splice_text("t INFO x: hello a=1\n", trace_id, span_id),
            format!("t INFO x: hello a=1 trace_id={TRACE} span_id={SPAN}\n")
        );
    }

    /// Lines written into a shared buffer.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// A line logged in a span whose parent came from another process carries that trace's id
    /// (and the span's own id); a line outside any span carries none.
    #[test]
    fn a_line_in_an_exported_span_carries_its_trace_id() {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let lines = Lines::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(WithTraceIds::json())
                    .with_writer(lines.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let upstream = SpanContext::new(
                TraceId::from_hex(TRACE).unwrap(),
                SpanId::from_hex(SPAN).unwrap(),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            );
            let span = tracing::info_span!("work");
            span.set_parent(opentelemetry::Context::new().with_remote_span_context(upstream))
                .unwrap();
            span.in_scope(|| tracing::info!("inside"));
            tracing::info!("outside");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let logged: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(logged.len(), 2, "{text}");
        assert_eq!(logged[0]["fields"]["message"], "inside");
        assert_eq!(logged[0]["trace_id"], TRACE);
        let own_span = logged[0]["span_id"].as_str().unwrap();
        assert_eq!(own_span.len(), 16);
        assert_ne!(own_span, SPAN, "the span's own id, not its parent's");
        assert_eq!(logged[1]["fields"]["message"], "outside");
        assert!(logged[1].get("trace_id").is_none(), "{}", logged[1]);
    }
}
