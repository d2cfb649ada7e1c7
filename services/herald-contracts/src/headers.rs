//! Every Kafka header name Herald reads or writes, declared once.

/// Every Herald header name starts with this.
pub const HERALD_PREFIX: &str = "herald-";

/// W3C trace context (https://www.w3.org/TR/trace-context/).
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// On every record `herald replay` (or `herald dlq redrive`) copies: the replay's id, its mode
/// (`recover` or `resend`) and where the record was copied from. Deduplication does not look at
/// them (a `resend` replay derives new ids instead, so the same replay run twice routes once);
/// they are there so that a notification's status trail shows it came from a replay.
pub const REPLAY_ID: &str = "herald-replay-id";
pub const REPLAY_MODE: &str = "herald-replay-mode";
pub const REPLAY_SOURCE_TOPIC: &str = "herald-replay-source-topic";
pub const REPLAY_SOURCE_PARTITION: &str = "herald-replay-source-partition";
pub const REPLAY_SOURCE_OFFSET: &str = "herald-replay-source-offset";
/// On a record `herald dlq redrive` sent back from the DLQ: how many times it has been
/// redriven. A record that fails again returns to the DLQ with it, so redrives stop at
/// `--max-redrives` instead of looping.
pub const REDRIVE_COUNT: &str = "herald-redrive-count";

/// The headers the router and the delivery workers copy from a record onto every record and
/// status they derive from it.
pub const REPLAY_HEADERS: [&str; 6] = [
    REPLAY_ID,
    REPLAY_MODE,
    REPLAY_SOURCE_TOPIC,
    REPLAY_SOURCE_PARTITION,
    REPLAY_SOURCE_OFFSET,
    REDRIVE_COUNT,
];

/// On a requested event released from the schedule (quiet hours, send-at): the epoch
/// milliseconds it was due. The router deduplicates releases by (event id, this value) and
/// evaluates policy at this instant instead of the event's creation time.
pub const SCHEDULED_FOR: &str = "herald-scheduled-for";

/// On a status a provider may report twice (SendGrid sends a batch of events again when it got
/// no 2xx): the status's own identity, `<provider>:<the provider's event id>`. `herald track`
/// keys the status's timeline row by it instead of the record's offset, so a repeat rewrites
/// the same row.
pub const STATUS_ID: &str = "herald-status-id";

/// On a fallback request a delivery worker publishes after a dead-lettered dispatch: the
/// fallback channels left after this one, comma-separated (possibly empty). The router uses it
/// instead of the category's fallback chain, so a chain is walked once.
pub const FALLBACK_CHAIN: &str = "herald-fallback-chain";

/// Delivery attempt number, counted from 1 (the first attempt is 1), on dispatches travelling
/// through retry tiers and on DLQ records. Statuses and the dispatch's own `attempt` field
/// count the attempts made before, from 0.
pub const ATTEMPT: &str = "herald-attempt";
/// When a retried dispatch is due (epoch milliseconds).
pub const DUE_AT: &str = "herald-due-at";
/// On a dispatch deferred by an open circuit breaker: when it was first deferred (epoch
/// milliseconds), so that deferrals are bounded (`deliver.breaker.max_deferral`). Dropped at
/// the next real provider attempt.
pub const DEFERRED_SINCE: &str = "herald-deferred-since";

/// Error headers on every DLQ record.
pub const ERROR_STAGE: &str = "herald-error-stage";
pub const ERROR_CLASS: &str = "herald-error-class";
pub const ERROR_MESSAGE: &str = "herald-error-message";
pub const ORIGINAL_TOPIC: &str = "herald-original-topic";
pub const ORIGINAL_PARTITION: &str = "herald-original-partition";
pub const ORIGINAL_OFFSET: &str = "herald-original-offset";
