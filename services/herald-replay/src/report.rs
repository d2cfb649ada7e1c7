//! What a replay found and did: counts of the matching records by partition, tenant, category
//! and channel, the first few of them, and what was copied or left. A dry run and the real run
//! of the same plan produce the same counts.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How many matching records a report shows.
pub const EXAMPLES: usize = 5;

/// Why a matching record was not copied.
pub mod left {
    /// `resend`: the value is not a request or dispatch Herald can read, so no id to derive.
    pub const NO_ID: &str = "no_id";
    /// From the DLQ without `--into`: the record does not say which topic it came from.
    pub const NO_ORIGINAL_TOPIC: &str = "no_original_topic";
    /// `herald dlq redrive`: already redriven `--max-redrives` times.
    pub const MAX_REDRIVES: &str = "max_redrives";
    /// `herald dlq redrive`: redriven before, and back in the DLQ as a newer record (which
    /// is the one redriven, with its count).
    pub const REDRIVEN_BEFORE: &str = "redriven_before";
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub replay_id: String,
    pub dry_run: bool,
    pub source: String,
    pub mode: String,
    /// Records read in the range (this run).
    pub scanned: u64,
    /// Records that passed the time window and the filters.
    pub matched: u64,
    /// Records copied (or, in a dry run, that would be).
    pub written: u64,
    /// Matching records not copied, by reason (see [`left`]).
    pub left: BTreeMap<String, u64>,
    pub by_partition: BTreeMap<i32, u64>,
    pub by_tenant: BTreeMap<String, u64>,
    /// Only records whose value was decoded (always in a dry run; in a real run when a filter or
    /// `resend` needed it).
    pub by_category: BTreeMap<String, u64>,
    pub by_channel: BTreeMap<String, u64>,
    /// Copies by destination topic.
    pub by_destination: BTreeMap<String, u64>,
    pub examples: Vec<serde_json::Value>,
    /// Stopped by a signal before the end: `--resume` continues.
    pub interrupted: bool,
    pub seconds: f64,
}

impl Report {
    /// Adds a batch's tally (kept apart until its transaction commits).
    pub fn absorb(&mut self, tally: Report) {
        self.scanned += tally.scanned;
        self.matched += tally.matched;
        self.written += tally.written;
        merge(&mut self.left, tally.left);
        merge(&mut self.by_partition, tally.by_partition);
        merge(&mut self.by_tenant, tally.by_tenant);
        merge(&mut self.by_category, tally.by_category);
        merge(&mut self.by_channel, tally.by_channel);
        merge(&mut self.by_destination, tally.by_destination);
        for example in tally.examples {
            if self.examples.len() < EXAMPLES {
                self.examples.push(example);
            }
        }
    }

    /// The report for a person.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let verb = if self.dry_run { "would copy" } else { "copied" };
        let _ = writeln!(
            out,
            "replay {} ({}{}) of {}: scanned {}, matched {}, {verb} {} in {:.1}s{}",
            self.replay_id,
            self.mode,
            if self.dry_run { ", dry run" } else { "" },
            self.source,
            self.scanned,
            self.matched,
            self.written,
            self.seconds,
            if self.interrupted {
                format!(
                    " — interrupted: continue with `herald replay --resume {}`",
                    self.replay_id
                )
            } else {
                String::new()
            }
        );
        section(&mut out, "not copied", &self.left);
        section(&mut out, "by partition", &self.by_partition);
        section(&mut out, "by tenant", &self.by_tenant);
        section(&mut out, "by category", &self.by_category);
        section(&mut out, "by channel", &self.by_channel);
        section(&mut out, "into", &self.by_destination);
        if !self.examples.is_empty() {
            let _ = writeln!(out, "first matching records:");
            for example in &self.examples {
                let _ = writeln!(out, "  {example}");
            }
        }
        out
    }
}

fn merge<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

fn section<K: std::fmt::Display>(out: &mut String, title: &str, counts: &BTreeMap<K, u64>) {
    if counts.is_empty() {
        return;
    }
    let items: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "{title}: {}", items.join(" "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_add_up_and_examples_stay_few() {
        let mut report = Report::default();
        for partition in [0, 1, 0] {
            let mut tally = Report {
                scanned: 2,
                matched: 1,
                written: 1,
                ..Report::default()
            };
            tally.by_partition.insert(partition, 1);
            tally.examples = vec![serde_json::json!({"p": partition}); 3];
            report.absorb(tally);
        }
        assert_eq!((report.scanned, report.matched, report.written), (6, 3, 3));
        assert_eq!(report.by_partition, [(0, 2), (1, 1)].into());
        assert_eq!(report.examples.len(), EXAMPLES);
        assert!(report.render().contains("by partition: 0=2 1=1"));
    }
}
