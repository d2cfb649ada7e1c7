//! Where a replay starts and stops: `--from` / `--to` as typed (an RFC 3339 time, a time ago
//! like `2h`, per-partition offsets, or `earliest`), and their resolution into one offset range
//! per partition with the broker's offsets-for-times. The start is included, the end is not.

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::ReplayError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// One end of a replay's range, as the operator typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// The beginning of every partition.
    Earliest,
    /// The first record at or after this time.
    Time(DateTime<Utc>),
    /// These offsets, per partition. As `--from`, only the partitions named are replayed.
    Offsets(BTreeMap<i32, i64>),
}

impl Bound {
    /// Parses `earliest`, an RFC 3339 time, a duration ago (`90m`, `2h`, `1day`) or
    /// `PARTITION:OFFSET[,PARTITION:OFFSET...]`.
    pub fn parse(text: &str, now: DateTime<Utc>) -> Result<Self, ReplayError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("earliest") || text.eq_ignore_ascii_case("beginning") {
            return Ok(Bound::Earliest);
        }
        if let Ok(time) = DateTime::parse_from_rfc3339(text) {
            return Ok(Bound::Time(time.with_timezone(&Utc)));
        }
        if text.contains(':') {
            return parse_offsets(text).map(Bound::Offsets);
        }
        if let Ok(ago) = humantime::parse_duration(text) {
            let ago = chrono::Duration::from_std(ago)
                .map_err(|_| usage(format!("`{text}` is too long ago")))?;
            return Ok(Bound::Time(now - ago));
        }
        Err(usage(format!(
            "`{text}` is not a time or an offset: give an RFC 3339 time \
             (2026-12-01T09:00:00Z), a time ago (2h, 90m), PARTITION:OFFSET[,...] or earliest"
        )))
    }

    fn time(&self) -> Option<DateTime<Utc>> {
        match self {
            Bound::Time(t) => Some(*t),
            _ => None,
        }
    }
}

fn usage(message: String) -> ReplayError {
    ReplayError::Usage(message)
}

fn parse_offsets(text: &str) -> Result<BTreeMap<i32, i64>, ReplayError> {
    let mut offsets = BTreeMap::new();
    for part in text.split(',') {
        let malformed = || {
            usage(format!(
                "malformed offset `{part}`: expected PARTITION:OFFSET with whole numbers \
                 0 or more, e.g. 0:1200,1:980"
            ))
        };
        let (partition, offset) = part.trim().split_once(':').ok_or_else(malformed)?;
        let partition: i32 = partition.trim().parse().map_err(|_| malformed())?;
        let offset: i64 = offset.trim().parse().map_err(|_| malformed())?;
        if partition < 0 || offset < 0 {
            return Err(malformed());
        }
        if offsets.insert(partition, offset).is_some() {
            return Err(usage(format!("partition {partition} is given twice")));
        }
    }
    Ok(offsets)
}

/// Refuses a `--to` before `--from` when both are times, or both offsets of one partition.
/// (Mixed kinds are compared once resolved, by [`resolve`].)
pub fn check_order(from: &Bound, to: Option<&Bound>) -> Result<(), ReplayError> {
    match (from, to) {
        (Bound::Time(from), Some(Bound::Time(to))) if to < from => Err(usage(format!(
            "--to {} is before --from {}",
            to.to_rfc3339(),
            from.to_rfc3339()
        ))),
        (Bound::Offsets(from), Some(Bound::Offsets(to))) => {
            for (partition, end) in to {
                if let Some(start) = from.get(partition).filter(|start| end < *start) {
                    return Err(usage(format!(
                        "--to {partition}:{end} is before --from {partition}:{start}"
                    )));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// One partition's share of a replay: offsets `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// A replay's range resolved against the topic as it is now: offsets per partition, and the
/// time window when a bound was a time (a record's own timestamp must fall inside it too, so
/// the boundaries are exact even where timestamps are out of order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub partitions: Vec<PartitionRange>,
    pub from_millis: Option<i64>,
    pub to_millis: Option<i64>,
}

impl Resolved {
    /// Records in range, control records included: the progress bar's length.
    pub fn len(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| u64::try_from(p.end - p.start).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a record's timestamp is inside the time window.
    pub fn admits(&self, timestamp: Option<i64>) -> bool {
        match timestamp {
            Some(t) => {
                self.from_millis.is_none_or(|from| t >= from)
                    && self.to_millis.is_none_or(|to| t < to)
            }
            None => self.from_millis.is_none() && self.to_millis.is_none(),
        }
    }
}

/// The partitions of `topic`, or a usage error when it does not exist.
pub fn partitions_of<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topic: &str,
) -> Result<Vec<i32>, ReplayError> {
    let partitions = herald_kafka::metadata::partitions_of(consumer, topic, TIMEOUT)?;
    if partitions.is_empty() {
        return Err(usage(format!("topic {topic} does not exist")));
    }
    Ok(partitions)
}

/// Parses `from` and `to` as typed, checks their order and resolves them against `topic`.
pub fn resolve_typed(
    kafka: &herald_kafka::KafkaConfig,
    topic: &str,
    from: &str,
    to: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Resolved, ReplayError> {
    let from = Bound::parse(from, now)?;
    let to = to.map(|t| Bound::parse(t, now)).transpose()?;
    check_order(&from, to.as_ref())?;
    resolve(&committed_reader(kafka)?, topic, &from, to.as_ref())
}

/// A client for metadata and offset lookups that sees what a `read_committed` consumer sees:
/// the end of a partition is then its last stable offset, and reaching it means every
/// committed record below a range's end was read.
pub fn committed_reader(kafka: &herald_kafka::KafkaConfig) -> Result<BaseConsumer, ReplayError> {
    Ok(kafka
        .client_config()
        .set("isolation.level", "read_committed")
        .create()?)
}

/// Resolves `from` and `to` (the end of each partition now when absent) into offsets.
pub fn resolve(
    consumer: &BaseConsumer,
    topic: &str,
    from: &Bound,
    to: Option<&Bound>,
) -> Result<Resolved, ReplayError> {
    let all = partitions_of(consumer, topic)?;
    for bound in [Some(from), to].into_iter().flatten() {
        if let Bound::Offsets(offsets) = bound
            && let Some(missing) = offsets.keys().find(|p| !all.contains(p))
        {
            return Err(usage(format!(
                "{topic} has no partition {missing} (it has {})",
                all.len()
            )));
        }
    }
    let partitions: Vec<i32> = match from {
        Bound::Offsets(offsets) => offsets.keys().copied().collect(),
        _ => all,
    };
    let mut ends = BTreeMap::new();
    for partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *partition, TIMEOUT)
            .map_err(ReplayError::Kafka)?;
        ends.insert(*partition, (low, high));
    }
    let starts = offsets_at(consumer, topic, &partitions, from, &ends, true)?;
    let stops = match to {
        Some(to) => offsets_at(consumer, topic, &partitions, to, &ends, false)?,
        None => ends.iter().map(|(p, (_, high))| (*p, *high)).collect(),
    };
    let mut ranges = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let start = starts[&partition];
        let end = stops[&partition];
        if end < start {
            return Err(usage(format!(
                "--to is before --from on partition {partition} (offsets {end} < {start})"
            )));
        }
        ranges.push(PartitionRange {
            partition,
            start,
            end,
        });
    }
    Ok(Resolved {
        partitions: ranges,
        from_millis: from.time().map(|t| t.timestamp_millis()),
        to_millis: to.and_then(Bound::time).map(|t| t.timestamp_millis()),
    })
}

/// The offset of `bound` in each partition, clamped to what the partition holds. A partition
/// not named by an offsets bound: its beginning as a start, its end as a stop.
fn offsets_at(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    bound: &Bound,
    watermarks: &BTreeMap<i32, (i64, i64)>,
    is_start: bool,
) -> Result<BTreeMap<i32, i64>, ReplayError> {
    let clamp = |p: i32, offset: i64| {
        let (low, high) = watermarks[&p];
        offset.clamp(low, high)
    };
    let unnamed = |p: i32| {
        let (low, high) = watermarks[&p];
        if is_start { low } else { high }
    };
    Ok(match bound {
        Bound::Earliest => partitions.iter().map(|p| (*p, watermarks[p].0)).collect(),
        Bound::Offsets(offsets) => partitions
            .iter()
            .map(|p| (*p, offsets.get(p).map_or(unnamed(*p), |o| clamp(*p, *o))))
            .collect(),
        Bound::Time(time) => {
            let mut query = TopicPartitionList::new();
            for p in partitions {
                query
                    .add_partition_offset(topic, *p, Offset::Offset(time.timestamp_millis()))
                    .map_err(ReplayError::Kafka)?;
            }
            let found = consumer
                .offsets_for_times(query, TIMEOUT)
                .map_err(ReplayError::Kafka)?;
            partitions
                .iter()
                .map(|p| {
                    let offset = match found.find_partition(topic, *p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => clamp(*p, o),
                        // No record at or after the time: the partition's end.
                        _ => watermarks[p].1,
                    };
                    (*p, offset)
                })
                .collect()
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn every_kind_of_bound_parses() {
        assert_eq!(Bound::parse("earliest", now()).unwrap(), Bound::Earliest);
        assert_eq!(
            Bound::parse("2h", now()).unwrap(),
            Bound::Time(now() - chrono::Duration::hours(2))
        );
        assert_eq!(
            Bound::parse("2026-12-01T09:30:00+01:00", now()).unwrap(),
            Bound::Time(
                DateTime::parse_from_rfc3339("2026-12-01T08:30:00Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
        assert_eq!(
            Bound::parse("0:10, 2:7", now()).unwrap(),
            Bound::Offsets([(0, 10), (2, 7)].into())
        );
    }

    #[test]
    fn malformed_bounds_are_named() {
        for bad in ["0:x", "0:-1", "a:1", "1:2,1:3", "yesterday", "12"] {
            let err = Bound::parse(bad, now()).unwrap_err();
            assert!(matches!(err, ReplayError::Usage(_)), "{bad}: {err}");
        }
        assert!(
            Bound::parse("0:x", now())
                .unwrap_err()
                .to_string()
                .contains("malformed offset `0:x`")
        );
    }

    #[test]
    fn to_before_from_is_refused() {
        let from = Bound::parse("1h", now()).unwrap();
        let to = Bound::parse("2h", now()).unwrap();
        assert!(check_order(&from, Some(&to)).is_err());
        assert!(check_order(&to, Some(&from)).is_ok());
        let from = Bound::parse("0:10", now()).unwrap();
        assert!(check_order(&from, Some(&Bound::parse("0:9", now()).unwrap())).is_err());
        assert!(check_order(&from, Some(&Bound::parse("0:10,1:0", now()).unwrap())).is_ok());
    }

    #[test]
    fn the_time_window_includes_from_and_excludes_to() {
        let resolved = Resolved {
            partitions: vec![],
            from_millis: Some(100),
            to_millis: Some(200),
        };
        assert!(resolved.admits(Some(100)));
        assert!(resolved.admits(Some(199)));
        assert!(!resolved.admits(Some(200)));
        assert!(!resolved.admits(Some(99)));
    }
}
