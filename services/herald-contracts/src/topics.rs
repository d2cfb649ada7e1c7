//! Every Herald topic name, declared once. `topics/herald.toml` declares the same topics with
//! their partitions and configs; a test keeps the two in step.

use crate::Channel;

pub const REQUESTED: &str = "notifications.requested";
pub const STATUS: &str = "notifications.status";
pub const DLQ: &str = "notifications.dlq";
/// The plan of every `herald replay` (range, filters, mode), keyed by replay id, compacted:
/// what `herald replay --resume <id>` reads back.
pub const REPLAYS: &str = "notifications.replays";
/// Changes to users' in-app inboxes (new messages, marks), keyed tenant:user_id: what every
/// `herald api` replica reads to update its live streams.
pub const INBOX: &str = "notifications.inbox";
const DISPATCH_PREFIX: &str = "notifications.dispatch";
const RETRY_PREFIX: &str = "notifications.retry";
const PRIORITY_SUFFIX: &str = "priority";

/// How many retry tiers each channel has (`notifications.retry.<channel>.1` ..).
pub const RETRY_TIERS: u8 = 3;

/// Which of a channel's two dispatch topics a dispatch travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Normal and low priority.
    Bulk,
    /// Critical and high priority, drained first by the workers.
    Priority,
}

/// Topic names with an optional prefix, so several environments (or parallel tests) can share
/// one cluster. The prefix is prepended verbatim: `staging.` gives `staging.notifications.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn named(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn requested(&self) -> String {
        self.named(REQUESTED)
    }

    pub fn status(&self) -> String {
        self.named(STATUS)
    }

    pub fn dlq(&self) -> String {
        self.named(DLQ)
    }

    pub fn replays(&self) -> String {
        self.named(REPLAYS)
    }

    pub fn inbox(&self) -> String {
        self.named(INBOX)
    }

    pub fn dispatch(&self, channel: Channel, lane: Lane) -> String {
        match lane {
            Lane::Bulk => self.named(&format!("{DISPATCH_PREFIX}.{channel}")),
            Lane::Priority => self.named(&format!("{DISPATCH_PREFIX}.{channel}.{PRIORITY_SUFFIX}")),
        }
    }

    /// The retry topic of a tier, counted from 1.
    pub fn retry(&self, channel: Channel, tier: u8) -> String {
        self.named(&format!("{RETRY_PREFIX}.{channel}.{tier}"))
    }

    /// The topics whose consumers rely on one recipient's records sharing a partition: the
    /// requested events (the router dedupes and decides them in order) and every dispatch lane
    /// (the workers send one recipient's dispatches in order). Growing one moves keys to other
    /// partitions while records are in flight, which breaks per-recipient order (guarantee 4)
    /// and lets a duplicate race its original past the dedupe ledger, so `herald topics apply`
    /// grows them only when asked to explicitly. Retry tiers, statuses and the DLQ carry no
    /// such promise.
    pub fn keyed_for_order(&self) -> Vec<String> {
        let mut names = vec![self.requested()];
        for channel in Channel::ALL {
            names.push(self.dispatch(channel, Lane::Bulk));
            names.push(self.dispatch(channel, Lane::Priority));
        }
        names
    }

    /// The topic a name typed by a person means: the logical name of a Herald topic
    /// (`notifications.dlq`) gets the prefix; any other name (one that already carries the
    /// prefix, or a topic Herald does not declare) is taken as written.
    pub fn resolve(&self, name: &str) -> String {
        if TopicNames::default()
            .all()
            .iter()
            .any(|logical| logical == name)
        {
            self.named(name)
        } else {
            name.to_owned()
        }
    }

    /// Every topic Herald uses, without the prefix stripped: what `topics/herald.toml` must
    /// declare.
    pub fn all(&self) -> Vec<String> {
        let mut names = vec![
            self.requested(),
            self.status(),
            self.dlq(),
            self.replays(),
            self.inbox(),
        ];
        for channel in Channel::ALL {
            names.push(self.dispatch(channel, Lane::Bulk));
            names.push(self.dispatch(channel, Lane::Priority));
            for tier in 1..=RETRY_TIERS {
                names.push(self.retry(channel, tier));
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let names = TopicNames::default();
        assert_eq!(names.requested(), "notifications.requested");
        assert_eq!(
            names.dispatch(Channel::Sms, Lane::Priority),
            "notifications.dispatch.sms.priority"
        );
        assert_eq!(
            names.retry(Channel::Webhook, 2),
            "notifications.retry.webhook.2"
        );
        assert_eq!(names.all().len(), 5 + 5 * (2 + RETRY_TIERS as usize));
    }

    #[test]
    fn typed_names_resolve_through_the_prefix() {
        let names = TopicNames::new("staging.");
        assert_eq!(
            names.resolve("notifications.dlq"),
            "staging.notifications.dlq"
        );
        assert_eq!(
            names.resolve("notifications.retry.email.2"),
            "staging.notifications.retry.email.2"
        );
        // Already prefixed, or not a Herald topic: as written.
        assert_eq!(
            names.resolve("staging.notifications.dlq"),
            "staging.notifications.dlq"
        );
        assert_eq!(names.resolve("audit.events"), "audit.events");
        assert_eq!(
            TopicNames::default().resolve("notifications.dlq"),
            "notifications.dlq"
        );
    }

    #[test]
    fn only_requested_and_dispatch_lanes_are_keyed_for_order() {
        let names = TopicNames::new("p.");
        let keyed = names.keyed_for_order();
        assert_eq!(keyed.len(), 1 + 2 * Channel::ALL.len());
        assert!(keyed.contains(&names.requested()));
        assert!(keyed.contains(&names.dispatch(Channel::Inapp, Lane::Priority)));
        assert!(!keyed.contains(&names.status()));
        assert!(!keyed.contains(&names.dlq()));
        assert!(!keyed.contains(&names.replays()));
        assert!(!keyed.contains(&names.retry(Channel::Email, 1)));
    }

    #[test]
    fn prefix_applies_to_every_topic() {
        let names = TopicNames::new("t1.");
        assert!(
            names
                .all()
                .iter()
                .all(|n| n.starts_with("t1.notifications."))
        );
    }
}
