//! `herald track` through a database outage: with Cassandra frozen, the tracker keeps the
//! statuses that arrive, goes unready, does not exit and commits nothing it has not written;
//! once the database answers again it writes every status exactly once (one timeline row per
//! status record, none missing) and is ready again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_contracts::Codec;
use herald_contracts::metric_names::{TRACK_STATUSES_WRITTEN, TRACK_WRITE_FAILURES};
use herald_test_support::kafka::produce_raw_many;
use herald_test_support::track::{status_records, status_sources_on_topic, timeline_sources_once};
use herald_test_support::{HeraldEnv, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const WAIT: Duration = Duration::from_secs(60);
/// Readiness follows a lost or recovered dependency within this (DESIGN: `/readyz`).
const WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_that_arrive_while_the_database_is_away_are_written_once_it_is_back() {
    let env = HeraldEnv::new(HERALD, "track_db_outage");
    env.prepare(true);
    let topic = env.topics().status();
    let kafka = env.kafka_config();
    let codec = Codec::new(&env.registry_config(), env.topics()).unwrap();
    let chunk = 100;
    produce_raw_many(&kafka, &topic, &status_records(&codec, 0..chunk).await);
    // Writes to the frozen server fail after 2 s, so the tracker retries several times.
    let mut track = env.spawn(
        "track",
        &["track"],
        &[("HERALD_STORE__REQUEST_TIMEOUT", "2s")],
    );
    wait_for("the first statuses written", WAIT, || {
        track
            .metric(TRACK_STATUSES_WRITTEN)
            .filter(|n| *n >= (3 * chunk) as f64)
    });
    wait_for("the tracker ready", WAIT, || track.ready().filter(|r| *r));

    {
        let _frozen = env.stack.freeze_database();
        produce_raw_many(
            &kafka,
            &topic,
            &status_records(&codec, chunk..2 * chunk).await,
        );
        wait_for("a failed write", WAIT, || {
            track.metric(TRACK_WRITE_FAILURES).filter(|n| *n >= 1.0)
        });
        wait_for("the tracker unready", WITHIN, || {
            track.ready().filter(|r| !*r)
        });
        // Nothing of the second chunk can have been written: the database is frozen.
        assert_eq!(
            track.metric(TRACK_STATUSES_WRITTEN),
            Some((3 * chunk) as f64)
        );
        assert!(!track.has_exited(), "the tracker exited during the outage");
    }

    wait_for("the tracker ready again", WAIT, || {
        track.ready().filter(|r| *r)
    });
    produce_raw_many(
        &kafka,
        &topic,
        &status_records(&codec, 2 * chunk..3 * chunk).await,
    );
    let on_topic = status_sources_on_topic(&env);
    assert_eq!(on_topic.len(), 9 * chunk);
    let session = env.migrated_session().await;
    let written = timeline_sources_once(&session, &env, 9 * chunk, WAIT).await;
    assert_eq!(written, on_topic);
    assert!(!track.has_exited());
}
