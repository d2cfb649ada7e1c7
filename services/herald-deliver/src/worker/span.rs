//! Each delivery attempt is a span in the trace the record came with: a consumer span
//! (OpenTelemetry messaging conventions) whose parent is the context in the record's
//! `traceparent` (the router's span, or the attempt that scheduled a retry), with Herald's
//! attributes (`herald.channel`, `herald.provider`, `herald.dispatch_id`, `herald.attempt`,
//! `herald.outcome`). The records an attempt produces carry its context on, so a retry, a
//! fallback and the statuses join the same trace.
//!
//! Spans are made only when they are exported ([`traces_exported`]); otherwise every function
//! here returns at once and the attempt costs nothing more than before.

use opentelemetry::trace::TraceContextExt as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use herald_contracts::{Channel, Dispatch};
use herald_kafka::headers::{PairsReader, PairsWriter};
use herald_runtime::telemetry::traces_exported;

use super::deliver::{DispatchRecord as _, Input};

/// How an attempt ended: `herald.outcome` on its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The provider took it (or it was sent before and its mark is written now).
    Sent,
    /// The ledger says an earlier attempt sent it; its `sent` status is emitted again.
    AlreadySent,
    /// The provider call failed transiently; the dispatch went to a retry tier.
    Retry,
    /// The circuit breaker was open; the dispatch went back to a retry tier uncalled.
    Deferred,
    /// Its deadline passed; `suppressed(expired)`.
    Expired,
    /// To the DLQ (permanent failure, retries exhausted, undecodable record).
    DeadLettered,
    /// Another worker may have sent it; reported `unknown`, not sent again.
    Ambiguous,
    /// A database or registry fault: the batch is aborted and the record read again.
    Aborted,
}

impl Ending {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ending::Sent => "sent",
            Ending::AlreadySent => "already_sent",
            Ending::Retry => "retry",
            Ending::Deferred => "deferred",
            Ending::Expired => "expired",
            Ending::DeadLettered => "dead_lettered",
            Ending::Ambiguous => "ambiguous",
            Ending::Aborted => "aborted",
        }
    }

    /// Whether the attempt failed (the span's status is then an error).
    fn failed(self) -> bool {
        matches!(self, Ending::Retry | Ending::DeadLettered | Ending::Aborted)
    }
}

/// The span of one attempt at `input`, a child of the context in its headers; disabled when
/// spans are not exported.
pub(crate) fn attempt(
    input: &Input,
    channel: Channel,
    provider: &'static str,
    group: &str,
) -> tracing::Span {
    if !traces_exported() {
        return tracing::Span::none();
    }
    let key = input.key.as_deref().map(String::from_utf8_lossy);
    // i64: the OpenTelemetry layer records an unsigned integer as text.
    let body_size = input
        .payload
        .as_ref()
        .map_or(0, |p| i64::try_from(p.len()).unwrap_or(i64::MAX));
    let span = tracing::info_span!(
        "deliver",
        otel.name = %format_args!("process {}", input.topic),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %input.topic,
        messaging.destination.partition.id = %input.partition,
        messaging.kafka.offset = input.offset,
        messaging.kafka.message.key = key.as_deref(),
        messaging.consumer.group.name = group,
        messaging.message.body.size = body_size,
        herald.channel = channel.as_str(),
        herald.provider = provider,
        herald.attempt = input.attempt(),
        herald.dispatch_id = Empty,
        herald.event_id = Empty,
        herald.outcome = Empty,
        error.type = Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&PairsReader(&input.headers))
    });
    // Fails only when no OpenTelemetry layer is installed, and then nothing is exported.
    let _ = span.set_parent(parent);
    span
}

/// Records the decoded dispatch on the current attempt's span.
pub(crate) fn dispatch(dispatch: &Dispatch) {
    if !traces_exported() {
        return;
    }
    let span = tracing::Span::current();
    span.record("herald.dispatch_id", dispatch.dispatch_id.as_str());
    span.record("herald.event_id", dispatch.event_id.as_str());
}

/// Records how the current attempt ended; `error_type` says why one that failed did.
pub(crate) fn end(ending: Ending, error_type: Option<&str>) {
    if traces_exported() {
        end_span(&tracing::Span::current(), ending, error_type);
    }
}

/// [`end`] on a span held, for an attempt that ended outside it.
pub(crate) fn end_span(span: &tracing::Span, ending: Ending, error_type: Option<&str>) {
    span.record("herald.outcome", ending.as_str());
    if ending.failed() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", error_type.unwrap_or(ending.as_str()));
    }
}

/// Replaces the trace context in `record_headers` (a record this attempt produces) with the
/// current attempt span's, so that whatever handles the record next is the attempt's child.
/// Without exported spans the context the input came with stays, passed on as is.
pub(crate) fn continue_trace(record_headers: &mut Vec<(String, Vec<u8>)>) {
    if !traces_exported() {
        return;
    }
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return;
    }
    // The writer replaces `traceparent` and `tracestate`, keeping the other headers.
    let mut writer = PairsWriter(std::mem::take(record_headers));
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut writer);
    });
    *record_headers = writer.0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        Input {
            topic: "notifications.dispatch.webhook".into(),
            partition: 2,
            offset: 41,
            key: Some(b"acme:ada".to_vec()),
            payload: Some(vec![0; 8]),
            headers: vec![(
                "traceparent".into(),
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
            )],
        }
    }

    /// Without an exporter (no `telemetry::init` in unit tests) an attempt makes no span and
    /// its records pass the context they came with on unchanged.
    #[test]
    fn without_export_nothing_is_made_and_the_context_passes_on() {
        assert!(!traces_exported());
        let input = input();
        let span = attempt(
            &input,
            Channel::Webhook,
            "webhook",
            "herald-deliver-webhook",
        );
        assert!(span.is_none());
        let _entered = span.enter();
        let mut headers = input.headers.clone();
        continue_trace(&mut headers);
        assert_eq!(headers, input.headers);
        end(Ending::Retry, Some("transient"));
    }

    #[test]
    fn failed_endings_are_the_ones_that_did_not_get_through() {
        let failed: Vec<&str> = [
            Ending::Sent,
            Ending::AlreadySent,
            Ending::Retry,
            Ending::Deferred,
            Ending::Expired,
            Ending::DeadLettered,
            Ending::Ambiguous,
            Ending::Aborted,
        ]
        .into_iter()
        .filter(|e| e.failed())
        .map(Ending::as_str)
        .collect();
        assert_eq!(failed, ["retry", "dead_lettered", "aborted"]);
    }
}
