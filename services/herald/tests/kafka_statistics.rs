//! librdkafka's statistics feed the consumer-lag gauge and nothing else: a role running at the
//! default log level writes none of them to its log (rdkafka's own fallback logs every
//! statistics report at INFO, a multi-kilobyte line per client every interval).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_contracts::metric_names::CONSUMER_LAG;
use herald_runtime::telemetry::TelemetryConfig;
use herald_test_support::deliver::{DELIVER_DEFAULTS, webhook_env};
use herald_test_support::wait_for;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[test]
fn a_worker_at_the_default_log_level_logs_no_client_statistics() {
    let env = webhook_env(HERALD, "stats_log", DELIVER_DEFAULTS);
    // Statistics every 200 ms instead of every 5 s, so that every client of the worker has
    // reported many times by the time the test looks.
    env.append_config("\n[kafka.properties]\n\"statistics.interval.ms\" = \"200\"\n");
    let default_level = TelemetryConfig::default().log_level;
    let mut worker = env.spawn(
        "deliver",
        &["deliver", "--channel", "webhook"],
        &[("HERALD_TELEMETRY__LOG_LEVEL", default_level.as_str())],
    );

    // Statistics did arrive: they are what the lag gauge is made from.
    wait_for("consumer lag on /metrics", Duration::from_secs(60), || {
        worker.metric(CONSUMER_LAG)
    });
    // A clean stop also hands the clients' last queued reports to their contexts.
    assert_eq!(worker.terminate(Duration::from_secs(60)), Some(0));

    let log = worker.log_text();
    assert!(
        log.contains("partitions assigned"),
        "the worker logged at {default_level}: {log}"
    );
    let statistics: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Client stats") || l.contains("Statistics {"))
        .map(|l| &l[..l.len().min(200)])
        .collect();
    assert!(
        statistics.is_empty(),
        "{} statistics lines in the log, e.g. {:?}",
        statistics.len(),
        statistics.first()
    );
}
