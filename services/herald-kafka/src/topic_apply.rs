//! Making a cluster match a [`TopicPlan`]: create missing topics, grow partition counts, set
//! declared configs. It never deletes a topic, shrinks one, or drops a config someone else set.

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use crate::topic_plan::{TopicPlan, TopicSpec};

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("kafka refused to {action} `{topic}`: {code}")]
    Refused {
        action: &'static str,
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("metadata request failed: {0}")]
    Metadata(String),
    /// Growing these topics would move keys while records are in flight; nothing was changed.
    /// `report` holds the other changes, which were not made either.
    #[error(
        "refused to {}: {REPARTITION_RISK}; nothing was changed",
        names(refused)
    )]
    RepartitionRefused {
        refused: Vec<TopicAction>,
        report: ApplyReport,
    },
}

/// Why growing `notifications.requested` or a dispatch lane is refused.
pub const REPARTITION_RISK: &str = "a record's partition is the hash of its key (tenant:user) \
modulo the partition count, so growing moves recipients to other partitions while their \
earlier records are still in flight there: per-recipient order no longer holds for them, and a \
duplicate can be processed beside its original, racing the dedupe ledger";

fn names(actions: &[TopicAction]) -> String {
    actions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", and to ")
}

/// One config value that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub key: String,
    pub from: Option<String>,
    pub to: String,
}

/// A change `apply` makes (or, with `--dry-run`, would make).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicAction {
    Create(TopicSpec),
    GrowPartitions {
        topic: String,
        from: i32,
        to: i32,
    },
    SetConfigs {
        topic: String,
        changes: Vec<ConfigChange>,
    },
}

impl fmt::Display for TopicAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicAction::Create(spec) => write!(
                f,
                "create {} (partitions {}, replication factor {}, {} configs)",
                spec.name,
                spec.partitions,
                spec.replication_factor,
                spec.configs.len()
            ),
            TopicAction::GrowPartitions { topic, from, to } => {
                write!(f, "grow {topic} from {from} to {to} partitions")
            }
            TopicAction::SetConfigs { topic, changes } => {
                write!(f, "set configs on {topic}:")?;
                for c in changes {
                    write!(
                        f,
                        " {}={} (was {})",
                        c.key,
                        c.to,
                        c.from.as_deref().unwrap_or("unset")
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// What `apply` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub actions: Vec<TopicAction>,
    /// Differences `apply` will not fix (shrinking, changing the replication factor).
    pub warnings: Vec<String>,
    pub dry_run: bool,
}

impl ApplyReport {
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Existing topics and their partition and replica counts.
async fn existing_topics(config: &ClientConfig) -> Result<HashMap<String, (i32, i32)>, ApplyError> {
    let config = config.clone();
    // Metadata requests are blocking in rdkafka; keep them off the async workers.
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create()?;
        let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .map(|t| {
                let replicas = t
                    .partitions()
                    .first()
                    .map_or(0, |p| p.replicas().len() as i32);
                (t.name().to_owned(), (t.partitions().len() as i32, replicas))
            })
            .collect())
    })
    .await
    .map_err(|e| ApplyError::Metadata(e.to_string()))?
}

/// Makes the cluster match `plan`. With `dry_run`, only reports. When a topic the plan
/// [refuses to grow](TopicPlan::refuses_repartition) has fewer partitions than declared, nothing
/// at all is changed and the answer is [`ApplyError::RepartitionRefused`]: half an apply would
/// leave the cluster matching neither the old declaration nor the new one.
pub async fn apply_plan(
    client: &ClientConfig,
    plan: &TopicPlan,
    dry_run: bool,
) -> Result<ApplyReport, ApplyError> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let existing = existing_topics(client).await?;
    let mut report = ApplyReport {
        dry_run,
        ..ApplyReport::default()
    };

    let present: Vec<&TopicSpec> = plan
        .topics
        .iter()
        .filter(|t| existing.contains_key(&t.name))
        .collect();
    let current_configs = describe(&admin, &options, &present).await?;

    let mut refused = Vec::new();
    for spec in &plan.topics {
        let Some(&(partitions, replicas)) = existing.get(&spec.name) else {
            report.actions.push(TopicAction::Create(spec.clone()));
            continue;
        };
        if partitions < spec.partitions {
            let grow = TopicAction::GrowPartitions {
                topic: spec.name.clone(),
                from: partitions,
                to: spec.partitions,
            };
            if plan.refuses_repartition(&spec.name) {
                refused.push(grow);
            } else {
                report.actions.push(grow);
            }
        } else if partitions > spec.partitions {
            report.warnings.push(format!(
                "{} has {partitions} partitions, {} declared: partitions are never shrunk",
                spec.name, spec.partitions
            ));
        }
        if replicas != spec.replication_factor {
            report.warnings.push(format!(
                "{} has replication factor {replicas}, {} declared: apply does not reassign replicas",
                spec.name, spec.replication_factor
            ));
        }
        let current = current_configs.get(&spec.name);
        let changes: Vec<ConfigChange> = spec
            .configs
            .iter()
            .filter_map(|(key, want)| {
                let have = current.and_then(|c| c.values.get(key)).cloned().flatten();
                (have.as_deref() != Some(want.as_str())).then(|| ConfigChange {
                    key: key.clone(),
                    from: have,
                    to: want.clone(),
                })
            })
            .collect();
        if !changes.is_empty() {
            report.actions.push(TopicAction::SetConfigs {
                topic: spec.name.clone(),
                changes,
            });
        }
    }

    if !refused.is_empty() {
        return Err(ApplyError::RepartitionRefused { refused, report });
    }
    if !dry_run {
        execute(&admin, &options, &report.actions, &current_configs).await?;
    }
    Ok(report)
}

/// A topic's current configs: every value, and which ones were set on the topic itself.
#[derive(Debug, Default)]
struct CurrentConfigs {
    values: BTreeMap<String, Option<String>>,
    dynamic: BTreeMap<String, String>,
}

async fn describe(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    topics: &[&TopicSpec],
) -> Result<HashMap<String, CurrentConfigs>, ApplyError> {
    if topics.is_empty() {
        return Ok(HashMap::new());
    }
    let specifiers: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|t| ResourceSpecifier::Topic(&t.name))
        .collect();
    let results = admin.describe_configs(specifiers.iter(), options).await?;
    let mut out = HashMap::new();
    for (spec, result) in topics.iter().zip(results) {
        let resource = result.map_err(|code| ApplyError::Refused {
            action: "describe configs of",
            topic: spec.name.clone(),
            code,
        })?;
        let mut current = CurrentConfigs::default();
        for entry in resource.entries {
            if entry.source == ConfigSource::DynamicTopic
                && let Some(value) = &entry.value
            {
                current.dynamic.insert(entry.name.clone(), value.clone());
            }
            current.values.insert(entry.name, entry.value);
        }
        out.insert(spec.name.clone(), current);
    }
    Ok(out)
}

async fn execute(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    actions: &[TopicAction],
    current: &HashMap<String, CurrentConfigs>,
) -> Result<(), ApplyError> {
    let creates: Vec<NewTopic<'_>> = actions
        .iter()
        .filter_map(|a| match a {
            TopicAction::Create(spec) => Some(spec.configs.iter().fold(
                NewTopic::new(
                    &spec.name,
                    spec.partitions,
                    TopicReplication::Fixed(spec.replication_factor),
                ),
                |topic, (k, v)| topic.set(k, v),
            )),
            _ => None,
        })
        .collect();
    if !creates.is_empty() {
        for result in admin.create_topics(creates.iter(), options).await? {
            match result {
                Ok(_) => {}
                // Another apply created it between our metadata read and now.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(ApplyError::Refused {
                        action: "create",
                        topic,
                        code,
                    });
                }
            }
        }
    }

    let grows: Vec<NewPartitions<'_>> = actions
        .iter()
        .filter_map(|a| match a {
            TopicAction::GrowPartitions { topic, to, .. } => {
                Some(NewPartitions::new(topic, *to as usize))
            }
            _ => None,
        })
        .collect();
    if !grows.is_empty() {
        for result in admin.create_partitions(grows.iter(), options).await? {
            if let Err((topic, code)) = result {
                return Err(ApplyError::Refused {
                    action: "grow partitions of",
                    topic,
                    code,
                });
            }
        }
    }

    // AlterConfigs replaces a topic's whole dynamic config, so send what is set now plus the
    // declared values: nothing someone else set is dropped.
    let merged: Vec<(&str, BTreeMap<String, String>)> = actions
        .iter()
        .filter_map(|a| match a {
            TopicAction::SetConfigs { topic, changes } => {
                let mut values = current
                    .get(topic)
                    .map(|c| c.dynamic.clone())
                    .unwrap_or_default();
                for change in changes {
                    values.insert(change.key.clone(), change.to.clone());
                }
                Some((topic.as_str(), values))
            }
            _ => None,
        })
        .collect();
    let alters: Vec<AlterConfig<'_>> = merged
        .iter()
        .map(|(topic, values)| {
            values.iter().fold(
                AlterConfig::new(ResourceSpecifier::Topic(topic)),
                |alter, (k, v)| alter.set(k, v),
            )
        })
        .collect();
    if !alters.is_empty() {
        for result in admin.alter_configs(alters.iter(), options).await? {
            if let Err((specifier, code)) = result {
                return Err(ApplyError::Refused {
                    action: "set configs of",
                    topic: format!("{specifier:?}"),
                    code,
                });
            }
        }
    }
    Ok(())
}
