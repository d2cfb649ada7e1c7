//! `herald replay` against the real stack: exact range boundaries (times and offsets),
//! filters, a dry run that writes nothing and counts what the real run then copies, and bad
//! arguments refused with exit code 2 before anything is written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use herald_contracts::headers;
use herald_test_support::kafka::{TimedRecord, create_topic, end_offsets, produce_timed, read_raw};
use herald_test_support::{HeraldEnv, TEST_PARTITIONS, invoice_requests};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// 2026-11-30T00:00:00Z.
const BASE_MILLIS: i64 = 1_795_996_800_000;

fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap()
        .to_rfc3339()
}

/// The end offsets of each topic, to see that nothing was written.
fn ends_of(kafka: &herald_kafka::KafkaConfig, topics: &[String]) -> Vec<BTreeMap<i32, i64>> {
    topics.iter().map(|t| end_offsets(kafka, t)).collect()
}

fn values(records: &[herald_test_support::kafka::RawRecord]) -> Vec<String> {
    let mut values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    values.sort();
    values
}

/// Record `i` (0..30) sits in partition `i % 3` at offset `i / 3`, stamped `BASE + i s`.
async fn timed_source(env: &HeraldEnv) -> String {
    let kafka = env.kafka_config();
    let source = format!("{}.source", env.name);
    create_topic(&kafka, &source, TEST_PARTITIONS).await;
    let records: Vec<TimedRecord> = (0..30)
        .map(|i| TimedRecord {
            partition: (i % 3) as i32,
            key: format!("acme:u{i}").into_bytes(),
            value: format!("v{i:02}").into_bytes(),
            timestamp: BASE_MILLIS + i * 1000,
        })
        .collect();
    produce_timed(&kafka, &source, &records);
    source
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_and_offset_boundaries_are_exact() {
    let env = HeraldEnv::new(HERALD, "replay_bounds");
    env.prepare(false);
    let kafka = env.kafka_config();
    let source = timed_source(&env).await;

    // A record stamped --from is copied, one stamped --to is not.
    let by_time = format!("{}.by_time", env.name);
    create_topic(&kafka, &by_time, TEST_PARTITIONS).await;
    let run = env.run(
        &[
            "replay",
            "--topic",
            &source,
            "--into",
            &by_time,
            "--mode",
            "recover",
            "--id",
            "t1",
            "--json",
            "--from",
            &rfc3339(BASE_MILLIS + 10_000),
            "--to",
            &rfc3339(BASE_MILLIS + 20_000),
        ],
        None,
    );
    let summary = run.json();
    assert_eq!(summary["matched"], 10, "{summary}");
    assert_eq!(summary["written"], 10);
    let copied = read_raw(&kafka, &by_time);
    let expected: Vec<String> = (10..20).map(|i| format!("v{i:02}")).collect();
    assert_eq!(values(&copied), expected);
    // Each copy names the replay and where it came from, keeps its key and partition.
    for record in &copied {
        let i: i64 = String::from_utf8_lossy(&record.value)[1..].parse().unwrap();
        assert_eq!(record.header(headers::REPLAY_ID), Some("t1"));
        assert_eq!(record.header(headers::REPLAY_MODE), Some("recover"));
        assert_eq!(
            record.header(headers::REPLAY_SOURCE_TOPIC),
            Some(source.as_str())
        );
        assert_eq!(
            record.header(headers::REPLAY_SOURCE_PARTITION),
            Some((i % 3).to_string().as_str())
        );
        assert_eq!(
            record.header(headers::REPLAY_SOURCE_OFFSET),
            Some((i / 3).to_string().as_str())
        );
        assert_eq!(record.key.as_deref(), Some(format!("acme:u{i}").as_bytes()));
    }

    // Offsets: partition 0 from offset 2 up to (not including) 5: records 6, 9 and 12.
    let by_offset = format!("{}.by_offset", env.name);
    create_topic(&kafka, &by_offset, TEST_PARTITIONS).await;
    let summary = env
        .run(
            &[
                "replay", "--topic", &source, "--into", &by_offset, "--mode", "recover", "--from",
                "0:2", "--to", "0:5", "--json",
            ],
            None,
        )
        .json();
    assert_eq!(summary["by_partition"], serde_json::json!({"0": 3}));
    assert_eq!(values(&read_raw(&kafka, &by_offset)), ["v06", "v09", "v12"]);

    // A relative --from with the default --to: everything stamped in the last hour, which
    // none of these records is; the replay ends at once.
    let summary = env
        .run(
            &[
                "replay", "--topic", &source, "--into", &by_offset, "--mode", "recover", "--from",
                "1h", "--json",
            ],
            None,
        )
        .json();
    assert_eq!(summary["matched"], 0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_exactly_and_a_dry_run_counts_what_the_run_copies() {
    let env = HeraldEnv::new(HERALD, "replay_filter");
    env.prepare(false);
    let kafka = env.kafka_config();
    let topics = env.topics();
    // 30 invoices for acme (ids inv-0..29, users u0..u9, email), 10 for globex.
    env.run(&["produce"], Some(&invoice_requests("inv", 0..30, 10)))
        .assert_code(0);
    let globex = invoice_requests("gx", 0..10, 5).replace("\"acme\"", "\"globex\"");
    env.run(&["produce"], Some(&globex)).assert_code(0);
    let requested = topics.requested();

    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec!["--tenant".into(), "globex".into()],
            (0..10).map(|i| format!("gx-{i}")).collect(),
        ),
        (
            vec![
                "--tenant".into(),
                "acme".into(),
                "--user".into(),
                "u3".into(),
            ],
            vec!["inv-13".into(), "inv-23".into(), "inv-3".into()],
        ),
        (
            vec![
                "--event-ids-file".into(),
                env.write("ids.txt", "inv-1\ngx-2\n\nnope\n")
                    .to_str()
                    .unwrap()
                    .into(),
                "--channel".into(),
                "email".into(),
                "--category".into(),
                "billing.invoice_ready".into(),
            ],
            vec!["gx-2".into(), "inv-1".into()],
        ),
    ];
    for (n, (filters, expected)) in cases.into_iter().enumerate() {
        let into = format!("{}.filtered{n}", env.name);
        create_topic(&kafka, &into, TEST_PARTITIONS).await;
        let mut args: Vec<String> = [
            "replay",
            "--topic",
            "notifications.requested",
            "--from",
            "earliest",
            "--mode",
            "recover",
            "--into",
            &into,
            "--json",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(filters);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();

        let watched = [requested.clone(), into.clone(), topics.replays()];
        let before = ends_of(&kafka, &watched);
        let dry = env
            .run(&[args.as_slice(), &["--dry-run"]].concat(), None)
            .json();
        let after = ends_of(&kafka, &watched);
        assert_eq!(before, after, "a dry run writes nothing");
        assert_eq!(dry["dry_run"], true);
        assert_eq!(dry["matched"], expected.len(), "{dry}");
        assert!(dry["examples"].as_array().unwrap().len() <= 5);
        assert_eq!(dry["by_category"]["billing.invoice_ready"], expected.len());

        let real = env.run(&args, None).json();
        for count in ["matched", "written", "by_partition", "by_tenant"] {
            assert_eq!(dry[count], real[count], "{count}: {dry} vs {real}");
        }
        let mut copied: Vec<String> = env
            .read_all(&into)
            .iter()
            .map(|r| r["value"]["event_id"].as_str().unwrap().to_owned())
            .collect();
        copied.sort();
        assert_eq!(copied, expected, "case {n}");
    }
}

#[test]
fn bad_arguments_exit_2_and_write_nothing() {
    let env = HeraldEnv::new(HERALD, "replay_args");
    env.prepare(false);
    let kafka = env.kafka_config();
    let topics = env.topics();
    let watched = [topics.requested(), topics.replays(), topics.dlq()];
    let before = ends_of(&kafka, &watched);
    let base = [
        "replay",
        "--topic",
        "notifications.requested",
        "--mode",
        "recover",
    ];
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "--from",
                "2026-12-01T10:00:00Z",
                "--to",
                "2026-12-01T09:00:00Z",
            ],
            "is before --from",
        ),
        (&["--from", "1h", "--to", "2h"], "is before --from"),
        (&["--from", "0:abc"], "malformed offset `0:abc`"),
        (&["--from", "0:5", "--to", "0:4"], "is before --from"),
        (&["--from", "0:1,7:1"], "has no partition 7"),
        (&["--from", "earliest", "--class", "x"], "not the DLQ"),
    ];
    for (extra, message) in cases {
        let run = env.run(&[base.as_slice(), extra].concat(), None);
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{extra:?}: {}", run.stderr);
    }
    let unknown = env.run(
        &[
            "replay",
            "--topic",
            "no.such.topic",
            "--from",
            "earliest",
            "--mode",
            "recover",
        ],
        None,
    );
    unknown.assert_code(2);
    assert!(
        unknown
            .stderr
            .contains("topic no.such.topic does not exist"),
        "{}",
        unknown.stderr
    );
    let resume = env.run(&["replay", "--resume", "never-ran"], None);
    resume.assert_code(2);
    assert!(
        resume.stderr.contains("no replay never-ran"),
        "{}",
        resume.stderr
    );
    // A resend needs confirmation; without a terminal, --yes.
    let resend = env.run(
        &[
            "replay",
            "--topic",
            "notifications.requested",
            "--from",
            "earliest",
            "--mode",
            "resend",
        ],
        None,
    );
    resend.assert_code(2);
    assert!(resend.stderr.contains("--yes"), "{}", resend.stderr);
    let missing_mode = env.run(
        &[
            "replay",
            "--topic",
            "notifications.requested",
            "--from",
            "earliest",
        ],
        None,
    );
    missing_mode.assert_code(2);

    let after = ends_of(&kafka, &watched);
    assert_eq!(before, after, "nothing was written");
}
