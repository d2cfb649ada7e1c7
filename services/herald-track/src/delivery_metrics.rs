//! Delivery metrics from the status stream: a counter per (tenant, category, channel, status)
//! and the end-to-end latency (request `created_at` to `sent` / `delivered`) per channel, which
//! the chart's delivery dashboard and success-rate alert read.
//!
//! Counted once per status record this process writes. Like every Prometheus counter they
//! live in the process: a tracker that crashes after writing a batch and before committing
//! its offsets reads that batch again (in this or another replica) and counts it again. That
//! over-counts by at most one batch per partition per crash, which rates and ratios absorb;
//! exact counts are the timeline's job, not the metrics'.
//!
//! Label values are bounded: channels and statuses are enums, and distinct (tenant, category)
//! pairs are capped at [`MAX_TENANT_CATEGORIES`] per process, past which new pairs are counted
//! as `other`. Never user, event or dispatch ids.

use metrics::{Counter, Histogram};
use std::collections::HashMap;

use herald_contracts::metric_names::{
    TRACK_END_TO_END_SECONDS, TRACK_LABEL_OVERFLOW, TRACK_STATUSES,
};
use herald_contracts::{Channel, Status, StatusEvent};

/// Distinct (tenant, category) pairs one tracker labels its counters with; each costs one
/// series per (channel, status) seen, in every Prometheus that scrapes it.
pub(crate) const MAX_TENANT_CATEGORIES: usize = 2_000;
/// Tenant and category of the pairs past the bound.
const OTHER: &str = "other";
/// The channel label of statuses about the event as a whole (accepted, scheduled, ...).
const NO_CHANNEL: &str = "none";
/// The category label of statuses whose writer did not know it (older writers, records
/// dead-lettered before they could be read).
const UNKNOWN_CATEGORY: &str = "unknown";

/// The tracker's delivery metrics, with the handles of the series seen so far (looking a
/// series up by its labels on every status would cost more than the count).
#[derive(Debug)]
pub(crate) struct DeliveryMetrics {
    by_tenant: HashMap<String, HashMap<String, Series>>,
    pairs: usize,
    limit: usize,
    other: Series,
    latency: HashMap<(Channel, Status), Histogram>,
}

/// The counters of one (tenant, category) pair.
#[derive(Debug)]
struct Series {
    tenant: String,
    category: String,
    counters: HashMap<(Option<Channel>, Status), Counter>,
}

impl Series {
    fn new(tenant: &str, category: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            category: category.to_owned(),
            counters: HashMap::new(),
        }
    }

    fn count(&mut self, channel: Option<Channel>, status: Status) {
        self.counters
            .entry((channel, status))
            .or_insert_with(|| {
                metrics::counter!(
                    TRACK_STATUSES,
                    "tenant" => self.tenant.clone(),
                    "category" => self.category.clone(),
                    "channel" => channel.map_or(NO_CHANNEL, Channel::as_str),
                    "status" => status.as_str()
                )
            })
            .increment(1);
    }
}

impl DeliveryMetrics {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            by_tenant: HashMap::new(),
            pairs: 0,
            limit,
            other: Series::new(OTHER, OTHER),
            latency: HashMap::new(),
        }
    }

    /// Counts one status (and its latency, for a dispatch's `sent` or `delivered`).
    pub(crate) fn record(&mut self, status: &StatusEvent) {
        let category = status.category.as_deref().unwrap_or(UNKNOWN_CATEGORY);
        self.series(&status.tenant, category)
            .count(status.channel, status.status);
        if let Some((channel, seconds)) = end_to_end_seconds(status) {
            self.latency
                .entry((channel, status.status))
                .or_insert_with(|| {
                    metrics::histogram!(
                        TRACK_END_TO_END_SECONDS,
                        "channel" => channel.as_str(),
                        "status" => status.status.as_str()
                    )
                })
                .record(seconds);
        }
    }

    fn series(&mut self, tenant: &str, category: &str) -> &mut Series {
        let known = self
            .by_tenant
            .get(tenant)
            .is_some_and(|categories| categories.contains_key(category));
        if !known {
            if self.pairs >= self.limit {
                metrics::counter!(TRACK_LABEL_OVERFLOW).increment(1);
                return &mut self.other;
            }
            self.pairs += 1;
            self.by_tenant
                .entry(tenant.to_owned())
                .or_default()
                .insert(category.to_owned(), Series::new(tenant, category));
        }
        match self
            .by_tenant
            .get_mut(tenant)
            .and_then(|categories| categories.get_mut(category))
        {
            Some(series) => series,
            // Inserted just above when it was not there.
            None => &mut self.other,
        }
    }
}

/// Seconds from the request's creation to a dispatch's `sent` or `delivered`; `None` for other
/// statuses and when the writer did not say when the request was made.
fn end_to_end_seconds(status: &StatusEvent) -> Option<(Channel, f64)> {
    if !matches!(status.status, Status::Sent | Status::Delivered) {
        return None;
    }
    let channel = status.channel?;
    let created_at = status.created_at?;
    // Clocks of the producer and the worker can disagree by a little: never negative.
    let millis = (status.at - created_at).num_milliseconds().max(0);
    Some((channel, millis as f64 / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn status(tenant: &str, category: Option<&str>, status: Status) -> StatusEvent {
        let created_at = Utc.timestamp_millis_opt(1_800_000_000_000).unwrap();
        StatusEvent {
            event_id: "e-1".into(),
            dispatch_id: Some("e-1:email".into()),
            tenant: tenant.into(),
            user_id: "u-1".into(),
            channel: Some(Channel::Email),
            status,
            at: created_at + chrono::Duration::milliseconds(1_500),
            category: category.map(str::to_owned),
            created_at: Some(created_at),
            ..Default::default()
        }
    }

    /// The `/metrics` text after `record`ing `statuses` with a fresh recorder.
    fn rendered(limit: usize, statuses: &[StatusEvent]) -> String {
        let recorder = herald_runtime::admin::prometheus_builder()
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let mut delivery = DeliveryMetrics::new(limit);
            for s in statuses {
                delivery.record(s);
            }
        });
        handle.render()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counts_each_status_by_tenant_category_channel_and_status() {
        let mut no_channel = status("acme", Some("billing"), Status::Scheduled);
        no_channel.channel = None;
        let text = rendered(
            10,
            &[
                status("acme", Some("billing"), Status::Sent),
                status("acme", Some("billing"), Status::Sent),
                status("acme", Some("billing"), Status::Opened),
                status("acme", None, Status::DeadLettered),
                no_channel,
            ],
        );
        for (labels, expected) in [
            (
                r#"tenant="acme",category="billing",channel="email",status="sent""#,
                2.0,
            ),
            (
                r#"tenant="acme",category="billing",channel="email",status="opened""#,
                1.0,
            ),
            (
                r#"tenant="acme",category="unknown",channel="email",status="dead_lettered""#,
                1.0,
            ),
            (
                r#"tenant="acme",category="billing",channel="none",status="scheduled""#,
                1.0,
            ),
        ] {
            let series = format!("{TRACK_STATUSES}{{{labels}}}");
            assert_eq!(value(&text, &series), Some(expected), "{series} in\n{text}");
        }
    }

    #[test]
    fn measures_sent_and_delivered_from_the_requests_creation_in_buckets() {
        let mut unknown_start = status("acme", Some("billing"), Status::Delivered);
        unknown_start.created_at = None;
        let text = rendered(
            10,
            &[
                status("acme", Some("billing"), Status::Sent),
                status("acme", Some("billing"), Status::Delivered),
                status("acme", Some("billing"), Status::Opened),
                unknown_start,
            ],
        );
        let name = TRACK_END_TO_END_SECONDS;
        for state in ["sent", "delivered"] {
            let labels = format!(r#"channel="email",status="{state}""#);
            assert_eq!(
                value(&text, &format!("{name}_count{{{labels}}}")),
                Some(1.0),
                "{text}"
            );
            assert_eq!(
                value(&text, &format!("{name}_sum{{{labels}}}")),
                Some(1.5),
                "{text}"
            );
            // 1.5 s: above the 1 s bucket, inside the 2.5 s one.
            assert_eq!(
                value(&text, &format!(r#"{name}_bucket{{{labels},le="1"}}"#)),
                Some(0.0)
            );
            assert_eq!(
                value(&text, &format!(r#"{name}_bucket{{{labels},le="2.5"}}"#)),
                Some(1.0)
            );
        }
        assert!(!text.contains(r#"status="opened",le="#), "{text}");
    }

    #[test]
    fn pairs_past_the_bound_are_counted_as_other() {
        let text = rendered(
            2,
            &[
                status("acme", Some("a"), Status::Sent),
                status("acme", Some("b"), Status::Sent),
                status("acme", Some("c"), Status::Sent),
                status("beta", Some("a"), Status::Sent),
                // Known pairs keep their own series after the bound is reached.
                status("acme", Some("a"), Status::Sent),
            ],
        );
        let series = |tenant: &str, category: &str| {
            format!(
                r#"{TRACK_STATUSES}{{tenant="{tenant}",category="{category}",channel="email",status="sent"}}"#
            )
        };
        assert_eq!(value(&text, &series("acme", "a")), Some(2.0), "{text}");
        assert_eq!(value(&text, &series("acme", "b")), Some(1.0), "{text}");
        assert_eq!(value(&text, &series("other", "other")), Some(2.0), "{text}");
        assert_eq!(value(&text, &series("acme", "c")), None, "{text}");
        assert_eq!(value(&text, TRACK_LABEL_OVERFLOW), Some(2.0), "{text}");
    }
}
