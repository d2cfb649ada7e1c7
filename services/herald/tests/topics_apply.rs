//! `herald topics apply` against the real broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_contracts::{Channel, Lane};
use herald_kafka::TopicPlan;
use std::time::Duration;

use herald_test_support::kafka::{topic_configs, topic_configs_when, topics_with_prefix};
use herald_test_support::{HeraldEnv, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test]
async fn apply_creates_every_declared_topic_then_changes_nothing() {
    let env = HeraldEnv::new(HERALD, "topics");
    let kafka = env.kafka_config();
    let prefix = format!("{}.", env.name);
    let plan = TopicPlan::declared()
        .unwrap()
        .with_prefix(&prefix)
        .with_replication_factor(1);

    let dry = env.run(
        &["topics", "apply", "--replication-factor", "1", "--dry-run"],
        None,
    );
    dry.assert_code(0);
    assert_eq!(
        dry.stdout.matches("would create ").count(),
        plan.topics.len(),
        "{}",
        dry.stdout
    );
    assert!(
        topics_with_prefix(&kafka, &prefix).is_empty(),
        "--dry-run created topics"
    );

    let first = env.run(&["topics", "apply", "--replication-factor", "1"], None);
    first.assert_code(0);
    assert!(
        first
            .stdout
            .contains(&format!("applied {} changes", plan.topics.len())),
        "{}",
        first.stdout
    );
    let existing = topics_with_prefix(&kafka, &prefix);
    assert_eq!(existing.len(), plan.topics.len());
    for spec in &plan.topics {
        assert_eq!(
            existing[&spec.name], spec.partitions as usize,
            "{}",
            spec.name
        );
        let configs = topic_configs(&kafka, &spec.name).await;
        for (key, value) in &spec.configs {
            assert_eq!(configs.get(key), Some(value), "{} {key}", spec.name);
        }
    }

    let second = env.run(&["topics", "apply", "--replication-factor", "1"], None);
    second.assert_code(0);
    assert!(second.stdout.contains("nothing to do"), "{}", second.stdout);
}

#[tokio::test]
async fn apply_grows_partitions_sets_configs_and_keeps_foreign_configs() {
    let env = HeraldEnv::new(HERALD, "topics_change");
    let kafka = env.kafka_config();
    let topic = format!("{}.t", env.name);
    let declare = |partitions: u32, retention: &str, extra: &str| {
        format!(
            "[defaults]\npartitions = {partitions}\nreplication_factor = 1\n\
             [[topic]]\nname = \"t\"\n[topic.configs]\n\"retention.ms\" = \"{retention}\"\n{extra}"
        )
    };
    let v1 = env.write(
        "v1.toml",
        &declare(2, "1000000", "\"segment.ms\" = \"3600000\"\n"),
    );
    env.run(&["topics", "apply", "--file", v1.to_str().unwrap()], None)
        .assert_code(0);

    // v2 grows the topic, changes retention and no longer lists segment.ms: it must stay.
    let v2 = env.write("v2.toml", &declare(4, "2000000", ""));
    let grown = env.run(&["topics", "apply", "--file", v2.to_str().unwrap()], None);
    grown.assert_code(0);
    assert!(
        grown
            .stdout
            .contains(&format!("grow {topic} from 2 to 4 partitions")),
        "{}",
        grown.stdout
    );
    assert!(
        grown.stdout.contains("retention.ms=2000000 (was 1000000)"),
        "{}",
        grown.stdout
    );
    // Broker metadata catches up with a partition change asynchronously.
    wait_for("4 partitions", Duration::from_secs(30), || {
        (topics_with_prefix(&kafka, &topic)[&topic] == 4).then_some(())
    });
    let configs = topic_configs_when(&kafka, &topic, "retention.ms=2000000", |c| {
        c.get("retention.ms").is_some_and(|v| v == "2000000")
    })
    .await;
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("2000000")
    );
    assert_eq!(
        configs.get("segment.ms").map(String::as_str),
        Some("3600000")
    );

    // Declaring fewer partitions never shrinks; it warns.
    let shrunk = env.run(&["topics", "apply", "--file", v1.to_str().unwrap()], None);
    shrunk.assert_code(0);
    assert!(
        shrunk.stdout.contains("partitions are never shrunk"),
        "{}",
        shrunk.stdout
    );
    assert_eq!(topics_with_prefix(&kafka, &topic)[&topic], 4);
}

#[test]
fn a_broken_topic_file_is_a_configuration_error() {
    let env = HeraldEnv::new(HERALD, "topics_bad");
    let bad = env.write("bad.toml", "[defaults]\npartitions = 1\nreplication_factor = 1\n[[topic]]\nname = \"a\"\npartitons = 3\n");
    let run = env.run(&["topics", "apply", "--file", bad.to_str().unwrap()], None);
    run.assert_code(2);
    assert!(run.stderr.contains("partitons"), "{}", run.stderr);
}

/// Growing `notifications.requested` or a dispatch lane moves keys to other partitions while
/// records are in flight (per-recipient order and dedupe break), so apply refuses it, as a
/// whole and before changing anything, unless `--allow-repartition` is given. Other topics
/// grow as before.
#[test]
fn growing_keyed_topics_is_refused_unless_allowed() {
    let env = HeraldEnv::new(HERALD, "topics_repartition");
    let kafka = env.kafka_config();
    let topics = env.topics();
    let prefix = topics.prefix().to_owned();
    let apply = |extra: &[&str]| {
        let mut args = vec!["topics", "apply", "--replication-factor", "1"];
        args.extend_from_slice(extra);
        env.run(&args, None)
    };
    apply(&["--partitions", "2"]).assert_code(0);
    // The broker's metadata can trail a creation: wait until it lists every topic.
    let declared = topics.all().len();
    let before = wait_for("every topic listed", Duration::from_secs(30), || {
        let listed = topics_with_prefix(&kafka, &prefix);
        (listed.len() == declared).then_some(listed)
    });
    assert!(before.values().all(|&p| p == 2), "{before:?}");

    let says_why = |stderr: &str| {
        for needle in [
            topics.requested(),
            topics.dispatch(Channel::Email, Lane::Bulk),
            topics.dispatch(Channel::Inapp, Lane::Priority),
            "per-recipient order".into(),
            "dedupe".into(),
            "--allow-repartition".into(),
            "nothing was changed".into(),
        ] {
            assert!(stderr.contains(&needle), "should say {needle:?}: {stderr}");
        }
        // Topics without the promise are not named as refused.
        assert!(!stderr.contains(&topics.status()), "{stderr}");
    };
    let dry = apply(&["--partitions", "3", "--dry-run"]);
    dry.assert_code(1);
    says_why(&dry.stderr);
    let refused = apply(&["--partitions", "3"]);
    refused.assert_code(1);
    says_why(&refused.stderr);
    // The refusal came before any change: not even the topics that may grow were grown.
    assert_eq!(topics_with_prefix(&kafka, &prefix), before);

    // Growing statuses, the DLQ and retry tiers stays allowed.
    let others = env.write(
        "others.toml",
        "[defaults]\npartitions = 3\nreplication_factor = 1\n\
         [[topic]]\nname = \"notifications.requested\"\npartitions = 2\n\
         [[topic]]\nname = \"notifications.status\"\n\
         [[topic]]\nname = \"notifications.dlq\"\n\
         [[topic]]\nname = \"notifications.retry.email.1\"\n",
    );
    let grown = apply(&["--file", others.to_str().unwrap()]);
    grown.assert_code(0);
    for topic in [
        topics.status(),
        topics.dlq(),
        topics.retry(Channel::Email, 1),
    ] {
        assert!(
            grown
                .stdout
                .contains(&format!("grow {topic} from 2 to 3 partitions")),
            "{}",
            grown.stdout
        );
    }

    let allowed = apply(&["--partitions", "3", "--allow-repartition"]);
    allowed.assert_code(0);
    assert!(
        allowed.stdout.contains(&format!(
            "grow {} from 2 to 3 partitions",
            topics.requested()
        )),
        "{}",
        allowed.stdout
    );
    wait_for(
        "every topic at 3 partitions",
        Duration::from_secs(30),
        || {
            topics_with_prefix(&kafka, &prefix)
                .values()
                .all(|&p| p == 3)
                .then_some(())
        },
    );
}
