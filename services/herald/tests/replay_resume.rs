//! A replay killed with SIGKILL at random points and resumed each time copies every record of
//! its range exactly once (guarantee 7): each batch's copies and the replay group's offsets
//! commit in one transaction, and the resumed run fences the dead one's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_contracts::headers;
use herald_test_support::kafka::{committed_total, create_topic, produce_raw_many, read_raw};
use herald_test_support::{HeraldEnv, TEST_PARTITIONS, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const RECORDS: usize = 20_000;
const KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_and_resumed_copies_each_record_once() {
    let (env, source, into) = source_and_copies("replay_kill", RECORDS).await;
    let kafka = env.kafka_config();
    let id = "kill-resume";
    let group = kafka.group(&format!("herald-replay-{id}"));
    let start = [
        "replay", "--topic", &source, "--into", &into, "--from", "earliest", "--mode", "recover",
        "--id", id, "--rate", "2500",
    ];
    let resume = ["replay", "--resume", id, "--rate", "2500"];
    // Kill points: somewhere in each fifth of the range, at a random record count, so the kill
    // lands inside a batch as often as between two.
    for kill in 0..KILLS {
        let args: &[&str] = if kill == 0 { &start } else { &resume };
        let mut replay = env.spawn("replay", args, &[]);
        let past = (kill + 1) * RECORDS / 5 + fastrand_below(RECORDS / 5);
        wait_for(
            &format!("the replay past {past} records"),
            Duration::from_secs(120),
            || (committed_total(&kafka, &group, &source) >= past as i64).then_some(()),
        );
        replay.kill9();
    }
    let last = env.run(&resume, None);
    last.assert_code(0);

    assert_copied_once(&env, &into, id, RECORDS);
}

/// A random number below `n`, from the clock (no RNG crate needed for one number per kill).
fn fastrand_below(n: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    nanos % n.max(1)
}

/// A test env with `records` records (values `r<i>`) in a topic of its own, and an empty
/// topic for the copies.
async fn source_and_copies(name: &str, records: usize) -> (HeraldEnv, String, String) {
    let env = HeraldEnv::new(HERALD, name);
    env.prepare(false);
    let kafka = env.kafka_config();
    let source = format!("{}.source", env.name);
    let into = format!("{}.copies", env.name);
    create_topic(&kafka, &source, TEST_PARTITIONS).await;
    create_topic(&kafka, &into, TEST_PARTITIONS).await;
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..records)
        .map(|i| {
            (
                format!("acme:u{}", i % 97).into_bytes(),
                format!("r{i}").into_bytes(),
            )
        })
        .collect();
    produce_raw_many(&kafka, &source, &records);
    (env, source, into)
}

/// Every one of `records` source records is in `into` exactly once, copied by replay `id`.
fn assert_copied_once(env: &HeraldEnv, into: &str, id: &str, records: usize) {
    let copies = read_raw(&env.kafka_config(), into);
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for copy in &copies {
        *seen.entry(copy.value.clone()).or_default() += 1;
        assert_eq!(copy.header(headers::REPLAY_ID), Some(id));
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "copied more than once: {twice:?}");
    assert_eq!(seen.len(), records, "every record copied");
    assert_eq!(copies.len(), records);
}

/// SIGTERM (what Ctrl-C does too): the open batch is committed, the run stops with exit code
/// 1 and says it was interrupted; resuming finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_says_so_and_resumes() {
    let (env, source, into) = source_and_copies("replay_stop", 6_000).await;
    let kafka = env.kafka_config();
    let id = "stopped";
    let group = kafka.group(&format!("herald-replay-{id}"));
    let mut replay = env.spawn(
        "replay",
        &[
            "replay", "--topic", &source, "--into", &into, "--from", "earliest", "--mode",
            "recover", "--id", id, "--rate", "1000", "--json",
        ],
        &[],
    );
    wait_for("the replay under way", Duration::from_secs(60), || {
        (committed_total(&kafka, &group, &source) >= 500).then_some(())
    });
    assert_eq!(replay.terminate(Duration::from_secs(30)), Some(1));
    let report: serde_json::Value = serde_json::from_str(
        replay
            .log_text()
            .lines()
            .find(|l| l.starts_with('{'))
            .expect("a JSON report"),
    )
    .unwrap();
    assert_eq!(report["interrupted"], true, "{report}");
    let done = committed_total(&kafka, &group, &source);
    assert!(done < 6_000, "stopped before the end ({done})");
    env.run(&["replay", "--resume", id], None).assert_code(0);
    assert_copied_once(&env, &into, id, 6_000);
}
