//! One trace from the producer to the provider: a request produced with a `traceparent` is
//! routed (the router's span, a child of the producer's) and delivered by the webhook worker,
//! whose attempt is a consumer span under the router's and whose provider call is an HTTP
//! client span under the attempt; the retry after a 503 is an attempt span under the first
//! one. The worker's statuses carry its attempt's context, and its log lines the trace id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald_contracts::{Channel, Lane, headers};
use herald_test_support::deliver::{DELIVER_DEFAULTS, spawn_webhook_worker, webhook_env};
use herald_test_support::otlp::{ExportedSpan, StandInCollector, Upstream, traceparent_ids};
use herald_test_support::standin::{Reply, StandIn};
use herald_test_support::wait_for;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(90);
/// A token in the webhook's path: the URL is the recipient's address, never shown on a span.
const PATH_TOKEN: &str = "T0-B0-s3cret";

/// The spans of one process (`herald-router`, `herald-deliver`) of kind `kind`.
fn of<'a>(spans: &'a [ExportedSpan], service: &str, kind: &str) -> Vec<&'a ExportedSpan> {
    spans
        .iter()
        .filter(|s| s.service == service && s.kind == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_attempt_is_a_span_under_the_routers() {
    // The provider answers 503 to the first call and 200 after: two attempts.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let standin = StandIn::start(move |_| match counted.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::status(503),
        _ => Reply::status(200),
    })
    .await;
    let env = tokio::task::block_in_place(|| {
        let env = webhook_env(HERALD, "deliver_traces", DELIVER_DEFAULTS);
        env.seed_demo();
        env
    });
    let collector = StandInCollector::start();
    let topics = env.topics();

    let upstream = Upstream::new(0xbeef);
    upstream
        .produce(
            &env,
            "acme:guest-hook",
            serde_json::json!({
                "event_id": "traced-hook",
                "tenant": "acme",
                "category": "orders.shipped",
                "template": {"id": "order_shipped"},
                "recipient": {
                    "user_id": "guest-hook",
                    "webhook_url": format!("{}/hooks/{PATH_TOKEN}", standin.url()),
                },
                "channels": ["webhook"],
                "data": {"order": "O-1", "carrier": "Post"},
            }),
        )
        .await;

    let otlp = (
        "HERALD_TELEMETRY__OTLP_ENDPOINT",
        collector.endpoint.as_str(),
    );
    let mut router = env.spawn(
        "router",
        &["router"],
        &[("HERALD_ROUTER__INSTANCE_ID", "traces-1"), otlp],
    );
    // The production log format; debug for the line the adapter logs inside the attempt.
    let mut worker = spawn_webhook_worker(
        &env,
        &[
            otlp,
            ("HERALD_TELEMETRY__LOG_FORMAT", "json"),
            ("HERALD_TELEMETRY__LOG_LEVEL", "warn,herald_deliver=debug"),
        ],
    );

    // The batch exporters send every few seconds: wait until the collector has the router's
    // span, both attempts and both provider calls.
    let spans = tokio::task::block_in_place(|| {
        wait_for("the router's and the worker's spans exported", WAIT, || {
            let spans = collector.spans();
            let done = of(&spans, "herald-router", "consumer").len() == 1
                && of(&spans, "herald-deliver", "consumer").len() == 2
                && of(&spans, "herald-deliver", "client").len() == 2;
            done.then_some(spans)
        })
    });

    // producer → router
    let routed = of(&spans, "herald-router", "consumer")[0];
    assert_eq!(routed.trace_id, upstream.trace_id);
    assert_eq!(routed.parent_span_id, upstream.span_id);

    // router → first attempt → second attempt, all in the producer's trace.
    let attempts = of(&spans, "herald-deliver", "consumer");
    let first = *attempts
        .iter()
        .find(|s| s.attr("herald.attempt") == 1)
        .expect("attempt 1");
    let second = *attempts
        .iter()
        .find(|s| s.attr("herald.attempt") == 2)
        .expect("attempt 2");
    for attempt in [first, second] {
        assert_eq!(attempt.trace_id, upstream.trace_id, "{attempt:?}");
        assert_eq!(attempt.attr("messaging.system"), "kafka");
        assert_eq!(attempt.attr("messaging.operation.type"), "process");
        assert_eq!(
            attempt.attr("messaging.kafka.message.key"),
            "acme:guest-hook"
        );
        assert!(attempt.attr("messaging.kafka.offset").is_i64());
        assert!(attempt.attr("messaging.message.body.size").is_i64());
        assert!(
            attempt
                .attr("messaging.destination.partition.id")
                .is_string()
        );
        assert!(
            attempt
                .attr("messaging.consumer.group.name")
                .as_str()
                .is_some_and(|g| g.contains("webhook")),
            "{attempt:?}"
        );
        assert_eq!(attempt.attr("herald.channel"), "webhook");
        assert_eq!(attempt.attr("herald.provider"), "webhook");
        assert_eq!(attempt.attr("herald.event_id"), "traced-hook");
        assert_eq!(
            attempt.attr("herald.dispatch_id"),
            first.attr("herald.dispatch_id")
        );
    }
    let dispatch_topic = topics.dispatch(Channel::Webhook, Lane::Bulk);
    let tier_topic = topics.retry(Channel::Webhook, 1);
    assert_eq!(first.parent_span_id, routed.span_id);
    assert_eq!(first.name, format!("process {dispatch_topic}"));
    assert_eq!(
        first.attr("messaging.destination.name"),
        dispatch_topic.as_str()
    );
    assert_eq!(first.attr("herald.outcome"), "retry");
    assert_eq!(first.attr("error.type"), "transient");
    assert!(first.error);
    assert_eq!(
        second.parent_span_id, first.span_id,
        "the retry joins the trace"
    );
    assert_eq!(
        second.attr("messaging.destination.name"),
        tier_topic.as_str()
    );
    assert_eq!(second.attr("herald.outcome"), "sent");
    assert!(!second.error);

    // attempt → provider call, without the address's path.
    let calls = of(&spans, "herald-deliver", "client");
    for (attempt, status) in [(first, 503), (second, 200)] {
        let call = calls
            .iter()
            .find(|c| c.parent_span_id == attempt.span_id)
            .unwrap_or_else(|| panic!("no HTTP span under {attempt:?}"));
        assert_eq!(call.trace_id, upstream.trace_id);
        assert_eq!(call.name, "POST");
        assert_eq!(call.attr("http.request.method"), "POST");
        assert_eq!(call.attr("server.address"), "127.0.0.1");
        assert_eq!(call.attr("server.port"), i64::from(standin.addr.port()));
        assert_eq!(call.attr("http.response.status_code"), status);
        assert_eq!(
            call.attr("url.full"),
            format!("{}/REDACTED", standin.url()).as_str()
        );
        assert_eq!(call.error, status >= 400, "{call:?}");
    }
    assert!(
        !format!("{spans:?}").contains(PATH_TOKEN),
        "the webhook path is not on any span"
    );

    // The worker's statuses continue from the attempt that wrote them.
    let statuses = tokio::task::block_in_place(|| env.tail_until(&topics.status(), 3, WAIT));
    for (status, attempt) in [("failed", first), ("sent", second)] {
        let record = statuses
            .iter()
            .find(|r| r["value"]["status"] == status)
            .unwrap_or_else(|| panic!("no {status} status in {statuses:?}"));
        assert_eq!(
            traceparent_ids(record["headers"][headers::TRACEPARENT].as_str().unwrap()),
            (upstream.trace_id.clone(), attempt.span_id.clone()),
            "{status}"
        );
    }

    // Stopped, the worker's log is whole: each attempt logged a line with its trace and span.
    for role in [&mut worker, &mut router] {
        let code = tokio::task::block_in_place(|| role.terminate(Duration::from_secs(30)));
        assert_eq!(code, Some(0), "{}", role.log_text());
    }
    let log = worker.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for attempt in [first, second] {
        assert!(
            lines
                .iter()
                .any(|l| l["trace_id"] == upstream.trace_id.as_str()
                    && l["span_id"] == attempt.span_id.as_str()),
            "no log line of attempt {} with its trace id:\n{log}",
            attempt.attr("herald.attempt")
        );
    }
}
