//! Every Herald topic name, declared once. `topics/herald.toml` declares the same topics with
//! their partitions and configs; a test keeps the two in step.

use crate::Channel;

pub const REQUESTED: &str = "notifications.requested";
pub const STATUS: &str = "notifications.status";
pub const DLQ: &str = "notifications.dlq";
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

    /// Every topic Herald uses, without the prefix stripped: what `topics/herald.toml` must
    /// declare.
    pub fn all(&self) -> Vec<String> {
        let mut names = vec![self.requested(), self.status(), self.dlq()];
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
        assert_eq!(names.all().len(), 3 + 5 * (2 + RETRY_TIERS as usize));
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
