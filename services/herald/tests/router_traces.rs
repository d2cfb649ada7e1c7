//! One span per routed event, a child of the upstream producer's trace, exported over OTLP; the
//! records the event produces carry that span's context to the next hop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_contracts::{Channel, Lane, headers};
use herald_test_support::otlp::{StandInCollector, Upstream, contains_bytes, traceparent_ids};
use herald_test_support::{HeraldEnv, unhex, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_gets_a_span_in_the_upstream_trace() {
    let env = HeraldEnv::new(HERALD, "traces");
    env.prepare(true);
    env.seed_demo();
    let collector = StandInCollector::start();

    let upstream = Upstream::new(0xfeed);
    upstream
        .produce(
            &env,
            "acme:guest-1",
            serde_json::json!({
                "event_id": "traced-1",
                "tenant": "acme",
                "category": "billing.invoice_ready",
                "template": {"id": "invoice_ready"},
                "recipient": {"user_id": "guest-1", "email": "guest@example.com"},
                "channels": ["email"],
                "data": {"name": "G", "invoice": {"number": "INV-1", "amount": "1.00"}},
            }),
        )
        .await;
    let topics = env.topics();

    let mut router = env.spawn(
        "router",
        &["router"],
        &[
            ("HERALD_ROUTER__INSTANCE_ID", "traces-1"),
            ("HERALD_TELEMETRY__OTLP_ENDPOINT", &collector.endpoint),
        ],
    );
    let dispatches = env.tail_until(&topics.dispatch(Channel::Email, Lane::Bulk), 1, WAIT);
    let statuses = env.tail_until(&topics.status(), 1, WAIT);

    // The dispatch and the status continue the upstream trace from the router's span.
    let (trace, router_span) = traceparent_ids(
        dispatches[0]["headers"][headers::TRACEPARENT]
            .as_str()
            .unwrap(),
    );
    assert_eq!(trace, upstream.trace_id);
    assert_ne!(
        router_span, upstream.span_id,
        "the router's own span is the parent now"
    );
    assert_eq!(
        traceparent_ids(
            statuses[0]["headers"][headers::TRACEPARENT]
                .as_str()
                .unwrap()
        ),
        (trace.clone(), router_span.clone())
    );

    // Stopping the router flushes its spans; the export holds the router's span with the
    // upstream trace id and the upstream span as its parent.
    assert_eq!(router.terminate(Duration::from_secs(30)), Some(0));
    let exported = wait_for("the router's span exported", WAIT, || {
        let body = collector.received();
        contains_bytes(&body, &unhex(&router_span)).then_some(body)
    });
    assert!(contains_bytes(&exported, &unhex(&upstream.trace_id)));
    assert!(contains_bytes(&exported, &unhex(&upstream.span_id)));
    assert!(
        contains_bytes(&exported, b"process "),
        "span named for the operation"
    );
}
