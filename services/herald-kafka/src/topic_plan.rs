//! The declared topics (`topics/herald.toml`): parsed, checked, with defaults applied.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use herald_contracts::TopicNames;

const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// `topics/herald.toml`, compiled in so that the binary alone can apply it.
pub const DECLARED_TOPICS: &str = include_str!("../../../topics/herald.toml");
pub const DECLARED_TOPICS_PATH: &str = "topics/herald.toml";

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: topic `{topic}`: {problem}")]
    Invalid {
        path: String,
        topic: String,
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    defaults: Defaults,
    #[serde(rename = "topic", default)]
    topics: Vec<TopicEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    partitions: i32,
    replication_factor: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicEntry {
    name: String,
    partitions: Option<i32>,
    replication_factor: Option<i32>,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

/// One topic as it should exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub configs: BTreeMap<String, String>,
}

/// Every declared topic, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    pub topics: Vec<TopicSpec>,
    /// Declared topics whose partition count `apply` refuses to grow (see
    /// [`TopicNames::keyed_for_order`]), by their names in `topics`.
    repartition_refused: BTreeSet<String>,
}

impl TopicPlan {
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Self, PlanError> {
        let file: PlanFile = toml::from_str(text).map_err(|e| PlanError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |topic: &str, problem: String| PlanError::Invalid {
            path: path.to_owned(),
            topic: topic.to_owned(),
            problem,
        };
        let mut seen = BTreeSet::new();
        let mut topics = Vec::with_capacity(file.topics.len());
        for entry in file.topics {
            if !seen.insert(entry.name.clone()) {
                return Err(invalid(&entry.name, "is declared twice".into()));
            }
            if entry.name.is_empty()
                || !entry
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(invalid(&entry.name, "is not a legal topic name".into()));
            }
            let mut configs = file.defaults.configs.clone();
            configs.extend(entry.configs);
            let spec = TopicSpec {
                partitions: entry.partitions.unwrap_or(file.defaults.partitions),
                replication_factor: entry
                    .replication_factor
                    .unwrap_or(file.defaults.replication_factor),
                name: entry.name,
                configs,
            };
            if spec.partitions < 1 || spec.replication_factor < 1 {
                return Err(invalid(
                    &spec.name,
                    "partitions and replication_factor must be at least 1".into(),
                ));
            }
            topics.push(spec);
        }
        let keyed = TopicNames::default().keyed_for_order();
        let repartition_refused = topics
            .iter()
            .filter(|t| keyed.contains(&t.name))
            .map(|t| t.name.clone())
            .collect();
        Ok(Self {
            topics,
            repartition_refused,
        })
    }

    /// Prepends `prefix` to every topic name (see `KafkaConfig::topic_prefix`).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        for topic in &mut self.topics {
            topic.name = format!("{prefix}{}", topic.name);
        }
        self.repartition_refused = self
            .repartition_refused
            .iter()
            .map(|name| format!("{prefix}{name}"))
            .collect();
        self
    }

    /// Lets `apply` grow the partitions of every topic, including those whose consumers rely
    /// on one recipient's records sharing a partition.
    pub fn with_repartition_allowed(mut self) -> Self {
        self.repartition_refused.clear();
        self
    }

    /// Whether `apply` refuses to grow the partitions of `topic` (a name in this plan).
    pub fn refuses_repartition(&self, topic: &str) -> bool {
        self.repartition_refused.contains(topic)
    }

    /// Every topic with `partitions` partitions: for development and test clusters, where a
    /// few partitions per topic exercise the same code at a fraction of the broker's cost.
    pub fn with_partitions(mut self, partitions: i32) -> Self {
        for topic in &mut self.topics {
            topic.partitions = partitions;
        }
        self
    }

    /// Overrides every replication factor, and caps `min.insync.replicas` to it so that a
    /// single-broker cluster can still accept writes.
    pub fn with_replication_factor(mut self, replication_factor: i32) -> Self {
        for topic in &mut self.topics {
            topic.replication_factor = replication_factor;
            if let Some(min_isr) = topic.configs.get_mut(MIN_INSYNC_REPLICAS) {
                let capped = min_isr
                    .parse::<i32>()
                    .map_or(replication_factor, |n| n.min(replication_factor));
                *min_isr = capped.to_string();
            }
        }
        self
    }

    /// The compiled-in `topics/herald.toml`.
    pub fn declared() -> Result<Self, PlanError> {
        Self::parse(DECLARED_TOPICS_PATH, DECLARED_TOPICS)
    }

    pub fn names(&self) -> Vec<&str> {
        self.topics.iter().map(|t| t.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_can_be_overridden_for_every_topic() {
        let plan = TopicPlan::declared().unwrap().with_partitions(3);
        assert!(plan.topics.iter().all(|t| t.partitions == 3));
    }

    fn repo_plan() -> TopicPlan {
        TopicPlan::declared().unwrap()
    }

    #[test]
    fn the_repo_plan_declares_exactly_the_topics_the_code_names() {
        let plan = repo_plan();
        let mut declared = plan.names();
        declared.sort_unstable();
        let names = herald_contracts::TopicNames::default().all();
        let mut named: Vec<&str> = names.iter().map(String::as_str).collect();
        named.sort_unstable();
        assert_eq!(declared, named);
        assert!(
            plan.topics
                .iter()
                .all(|t| t.configs.contains_key("retention.ms"))
        );
    }

    #[test]
    fn defaults_apply_and_overrides_win() {
        let plan = TopicPlan::parse(
            "t.toml",
            r#"
            [defaults]
            partitions = 12
            replication_factor = 3
            [defaults.configs]
            "min.insync.replicas" = "2"
            "cleanup.policy" = "delete"
            [[topic]]
            name = "a"
            partitions = 4
            [topic.configs]
            "cleanup.policy" = "compact"
            "#,
        )
        .unwrap()
        .with_prefix("p.")
        .with_replication_factor(1);
        let a = &plan.topics[0];
        assert_eq!(a.name, "p.a");
        assert_eq!((a.partitions, a.replication_factor), (4, 1));
        assert_eq!(a.configs["cleanup.policy"], "compact");
        assert_eq!(a.configs["min.insync.replicas"], "1");
    }

    #[test]
    fn requested_and_dispatch_lanes_are_not_grown_unless_allowed() {
        let plan = repo_plan().with_prefix("p.");
        let mut refused: Vec<&str> = plan
            .names()
            .into_iter()
            .filter(|name| plan.refuses_repartition(name))
            .collect();
        refused.sort_unstable();
        let mut keyed = TopicNames::new("p.").keyed_for_order();
        keyed.sort_unstable();
        assert_eq!(refused, keyed);
        assert!(!plan.refuses_repartition("p.notifications.status"));
        assert!(!plan.refuses_repartition("p.notifications.retry.email.1"));
        let allowed = plan.with_repartition_allowed();
        assert!(!allowed.refuses_repartition("p.notifications.requested"));
    }

    #[test]
    fn mistakes_are_named() {
        let dup = "[defaults]\npartitions=1\nreplication_factor=1\n[[topic]]\nname=\"a\"\n[[topic]]\nname=\"a\"\n";
        let err = TopicPlan::parse("t.toml", dup).unwrap_err().to_string();
        assert!(err.contains("`a`: is declared twice"), "{err}");
        let unknown =
            "[defaults]\npartitions=1\nreplication_factor=1\n[[topic]]\nname=\"a\"\npartitons=3\n";
        let err = TopicPlan::parse("t.toml", unknown).unwrap_err().to_string();
        assert!(err.contains("partitons"), "{err}");
    }
}
