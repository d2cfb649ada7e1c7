//! Every metric name Herald exports, declared once.

/// Gauge, always 1, labelled with the version and role: lets dashboards see what runs where.
pub const BUILD_INFO: &str = "herald_build_info";
/// Allocations the process made (0 unless its binary counts them, as `herald` does).
pub const PROCESS_ALLOCATIONS: &str = "herald_process_allocations_total";
/// Bytes the process holds allocated now (0 unless its binary counts them): beside RSS, what is
/// live rather than kept by the allocator.
pub const PROCESS_HEAP_BYTES: &str = "herald_process_heap_bytes";
/// Statements the process sent to the database (a batch is one; a paged read one per page).
pub const STORE_STATEMENTS: &str = "herald_store_statements_total";

/// Router: events consumed, by outcome (`routed`, `suppressed`, `dead_lettered`) and reason.
pub const ROUTER_EVENTS: &str = "herald_router_events_total";
/// Router: dispatch records emitted, by channel.
pub const ROUTER_DISPATCHES: &str = "herald_router_dispatches_total";
/// Router: transactions, by result (`committed`, `aborted`).
pub const ROUTER_TRANSACTIONS: &str = "herald_router_transactions_total";
/// Router: seconds from an event's creation to its routing.
pub const ROUTER_END_TO_END_SECONDS: &str = "herald_router_end_to_end_seconds";
/// Router: seconds per stage of routing one event, by stage (`decode`, `dedupe`, `enrich`,
/// `policy`, `render`, `emit`).
pub const ROUTER_STAGE_SECONDS: &str = "herald_router_stage_seconds";
/// Router: seconds from beginning a batch's transaction to its commit (or failure).
pub const ROUTER_COMMIT_SECONDS: &str = "herald_router_commit_seconds";
/// Router: seconds spent routing one event.
pub const ROUTER_EVENT_SECONDS: &str = "herald_router_event_seconds";
/// Router: cache lookups, by cache (`profile`, `category`, `template`, `suppression`) and result
/// (`hit`, `miss`).
pub const ROUTER_CACHE_LOOKUPS: &str = "herald_router_cache_lookups_total";
/// Router: records dead-lettered without a status because they name no event (undecodable
/// bytes, no event id, tenant or user id), by error class. Each such record is on the DLQ only.
pub const ROUTER_UNIDENTIFIED_DEAD_LETTERS: &str = "herald_router_unidentified_dead_letters_total";
/// Router: transient faults (database, registry) that paused processing, by stage.
pub const ROUTER_TRANSIENT_FAULTS: &str = "herald_router_transient_faults_total";
/// Scheduler: deferred notifications published again because they were due.
pub const SCHEDULER_RELEASED: &str = "herald_scheduler_released_total";
/// Scheduler: seconds between a deferred notification's due time and its release.
pub const SCHEDULER_RELEASE_DELAY_SECONDS: &str = "herald_scheduler_release_delay_seconds";
/// Scheduler: sweeps that stopped on an error (database or Kafka), retried on the next tick.
pub const SCHEDULER_SWEEP_ERRORS: &str = "herald_scheduler_sweep_errors_total";
/// Scheduler: shards of minute buckets a sweep could not empty because a read or a release
/// failed; each is recorded and read again by every sweep until one empties it.
pub const SCHEDULER_BUCKET_FAILURES: &str = "herald_scheduler_bucket_failures_total";
/// Scheduler: shards of minute buckets recorded as failed and waiting for a retry, as a sweep
/// found them.
pub const SCHEDULER_RETRY_BUCKETS: &str = "herald_scheduler_retry_buckets";
/// Scheduler: releases whose publish timed out after it may have reached the broker; the retry
/// may publish a second copy, which the router drops by deduplication.
pub const SCHEDULER_AMBIGUOUS_PUBLISHES: &str = "herald_scheduler_ambiguous_publishes_total";

/// Every consumer: records not yet consumed per partition (last stable offset minus the
/// consumer's position), by topic and partition; from librdkafka statistics.
pub const CONSUMER_LAG: &str = "herald_consumer_lag_records";
/// Every role: 1 while a dependency (`kafka`, `database`, `registry`) answered its last
/// readiness check, else 0.
pub const DEPENDENCY_UP: &str = "herald_dependency_up";
/// Every consumer: times it was created anew after going without partitions and without a
/// group coordinator for `kafka.consumer_rebuild_after`.
pub const CONSUMER_REBUILDS: &str = "herald_consumer_rebuilds_total";
/// Every consumer in a group: partitions assigned to it now (after each rebalance).
pub const CONSUMER_ASSIGNED_PARTITIONS: &str = "herald_consumer_assigned_partitions";

/// Delivery: provider calls, by provider and outcome class (`sent`, `transient`, `permanent`).
pub const DELIVER_OUTCOMES: &str = "herald_deliver_outcomes_total";
/// Delivery: seconds one provider call took, by provider.
pub const DELIVER_PROVIDER_SECONDS: &str = "herald_deliver_provider_seconds";
/// Delivery: provider calls in flight now.
pub const DELIVER_IN_FLIGHT: &str = "herald_deliver_in_flight";
/// Delivery: cache lookups, by cache (`webhook_endpoint`) and result (`hit`, `miss`).
pub const DELIVER_CACHE_LOOKUPS: &str = "herald_deliver_cache_lookups_total";
/// Delivery: send-ledger claims that did not simply succeed, by result (`already_sent`: a
/// redelivered dispatch was not sent again; `busy`: another worker held it; `taken_over`: a
/// stale claim was replaced).
pub const DELIVER_LEDGER_HITS: &str = "herald_deliver_ledger_hits_total";
/// Delivery: ambiguous dispatches (another worker began sending them and recorded no result),
/// by what was done (`resent`, `reported`).
pub const DELIVER_AMBIGUOUS: &str = "herald_deliver_ambiguous_total";
/// Delivery: dispatches moved to a retry tier, by tier.
pub const DELIVER_RETRIES: &str = "herald_deliver_retries_total";
/// Delivery: records dead-lettered, by error class.
pub const DELIVER_DEAD_LETTERED: &str = "herald_deliver_dead_lettered_total";
/// Delivery: batch transactions, by result (`committed`, `aborted`).
pub const DELIVER_TRANSACTIONS: &str = "herald_deliver_transactions_total";
/// Delivery: seconds from beginning a batch's transaction to its commit (or failure).
pub const DELIVER_COMMIT_SECONDS: &str = "herald_deliver_commit_seconds";
/// Delivery: transient faults (database, registry) that paused processing, by stage
/// (`database`, `schema_registry`).
pub const DELIVER_TRANSIENT_FAULTS: &str = "herald_deliver_transient_faults_total";
/// Delivery: retry-tier partitions paused until their next record is due.
pub const DELIVER_HELD_PARTITIONS: &str = "herald_deliver_held_partitions";
/// Delivery: the provider's circuit breaker, by provider: 0 closed, 1 half-open, 2 open.
pub const DELIVER_BREAKER_STATE: &str = "herald_deliver_breaker_state";
/// Delivery: dispatches deferred to a retry tier without a provider call because the breaker
/// was open, by provider.
pub const DELIVER_BREAKER_DEFERRED: &str = "herald_deliver_breaker_deferred_total";
/// Delivery: seconds a provider call waited for a rate-limit token (only calls that waited),
/// by provider.
pub const DELIVER_RATE_LIMIT_WAIT_SECONDS: &str = "herald_deliver_rate_limit_wait_seconds";
/// Delivery: fallback requests sent back to the router after a dead-lettered dispatch, by the
/// channel that failed.
pub const DELIVER_FALLBACKS: &str = "herald_deliver_fallbacks_total";
/// Delivery: dispatches suppressed because their deadline passed, by when it was found
/// (`before_send`: already past; `before_retry`: it would pass before the next attempt).
pub const DELIVER_EXPIRED: &str = "herald_deliver_expired_total";
/// Delivery: provider message ids that could not be recorded for status callbacks (a later
/// callback for that message is then unmatched), by provider.
pub const DELIVER_MESSAGE_INDEX_FAILURES: &str = "herald_deliver_message_index_failures_total";

/// Tracker: status records written to the timeline.
pub const TRACK_STATUSES_WRITTEN: &str = "herald_track_statuses_written_total";
/// Tracker: status records skipped because they could not be decoded as a status, by reason
/// (`undecodable`, `not_a_status`).
pub const TRACK_UNDECODABLE: &str = "herald_track_undecodable_total";
/// Tracker: CQL rows written (timeline rows and user index rows; rewrites after a failed
/// write included).
pub const TRACK_CQL_ROWS: &str = "herald_track_cql_rows_total";
/// Tracker: CQL requests sent (unlogged batches of rows).
pub const TRACK_CQL_REQUESTS: &str = "herald_track_cql_requests_total";
/// Tracker: batch writes that failed and were retried (the database was down or slow).
pub const TRACK_WRITE_FAILURES: &str = "herald_track_write_failures_total";
/// Tracker: statuses recorded, by tenant, category, channel and status (`sent`, `delivered`,
/// `failed`, `opened`, `clicked`, `dead_lettered`, `suppressed`, ...): the delivery dashboard's
/// rates. `channel` is `none` for statuses about the event as a whole, `category` is `unknown`
/// when the writer did not know it, and both tenant and category are `other` past the
/// tracker's bound on distinct (tenant, category) pairs.
pub const TRACK_STATUSES: &str = "herald_track_statuses_total";
/// Tracker: seconds from a request's `created_at` to its dispatch's `sent` or `delivered`
/// status, by channel and status; a histogram (buckets from 50 ms to a day).
pub const TRACK_END_TO_END_SECONDS: &str = "herald_track_end_to_end_seconds";
/// Tracker: statuses counted under tenant and category `other` because the bound on distinct
/// (tenant, category) pairs was reached.
pub const TRACK_LABEL_OVERFLOW: &str = "herald_track_label_overflow_total";

/// API: requests answered, by route (the matched path) and status code.
pub const API_REQUESTS: &str = "herald_api_requests_total";
/// API: seconds to answer one request, by route.
pub const API_REQUEST_SECONDS: &str = "herald_api_request_seconds";
/// API: notification requests sent to Kafka, by result (`acked`: the broker acknowledged the
/// record and the client got 202; `unavailable`: not acknowledged in time, the client got 503).
pub const API_PRODUCED: &str = "herald_api_produced_total";
/// API: statuses the API observed itself (provider callbacks, opens, clicks) sent to
/// `notifications.status`, by status and result (`acked`, `unavailable`).
pub const API_STATUSES: &str = "herald_api_statuses_total";
/// API: API key lookups, by result (`hit`, `miss`) of the short-lived key cache.
pub const API_KEY_CACHE_LOOKUPS: &str = "herald_api_key_cache_lookups_total";
/// API: provider callback events (SendGrid events, Twilio status callbacks), by provider and
/// outcome (`emitted`: a status was published; `ignored`: an event Herald does not record, such
/// as `processed` or `queued`; `unmatched`: no Herald ids, or a message id Herald does not know;
/// `unknown`: an event type Herald does not know).
pub const API_CALLBACK_EVENTS: &str = "herald_api_callback_events_total";
/// API: provider callbacks refused before reading their events, by provider and reason
/// (`signature`: missing or wrong; `timestamp`: outside `api.callbacks.sendgrid.tolerance`;
/// `not_configured`: the provider's callback settings are not set).
pub const API_CALLBACK_REJECTED: &str = "herald_api_callback_rejected_total";
/// API: addresses added to a tenant's suppression list, by source (`bounce`, `complaint`,
/// `api`).
pub const API_SUPPRESSIONS_ADDED: &str = "herald_api_suppressions_added_total";
/// API: email opens and clicks served (`GET /v1/t/open|click/{token}` with a valid token), by
/// kind (`open`, `click`) and outcome (`recorded`: the dispatch's first, its `opened` or
/// `clicked` status was published; `repeat`: not the first, counted only; `late`: after
/// `tracking.record_for`; `unrecorded`: Kafka or the database failed, the next one tries again).
pub const API_ENGAGEMENT: &str = "herald_api_engagement_total";
/// API: inbox streams (`GET /v1/inbox/stream`) connected to this replica.
pub const API_INBOX_STREAMS: &str = "herald_api_inbox_streams";
/// API: inbox changes read from `notifications.inbox`, by change (`message`, `seen`, `read`,
/// `archived`).
pub const API_INBOX_CHANGES: &str = "herald_api_inbox_changes_total";
