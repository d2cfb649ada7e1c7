//! The two enums every contract shares: delivery channel and priority.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A delivery channel. The Avro symbol is the upper-case name; JSON and topic names use the
/// lower-case one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Push,
    Webhook,
    Inapp,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Email,
        Channel::Sms,
        Channel::Push,
        Channel::Webhook,
        Channel::Inapp,
    ];

    /// The lower-case name used in JSON, topic names and CQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::Webhook => "webhook",
            Channel::Inapp => "inapp",
        }
    }

    /// The Avro enum symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Channel::Email => "EMAIL",
            Channel::Sms => "SMS",
            Channel::Push => "PUSH",
            Channel::Webhook => "WEBHOOK",
            Channel::Inapp => "INAPP",
        }
    }

    pub fn from_symbol(symbol: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.symbol() == symbol)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a name that is not a channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel `{0}`; expected one of email, sms, push, webhook, inapp")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownChannel(s.to_owned()))
    }
}

/// Delivery priority. Critical bypasses quiet hours and rate limits; critical and high travel on
/// the priority lane.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The Avro enum symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Priority::Critical => "CRITICAL",
            Priority::High => "HIGH",
            Priority::Normal => "NORMAL",
            Priority::Low => "LOW",
        }
    }

    pub fn from_symbol(symbol: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.symbol() == symbol)
    }

    /// The name in lower case, as in JSON and in the database (`critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// Whether dispatches of this priority use the channel's priority lane.
    pub fn uses_priority_lane(self) -> bool {
        matches!(self, Priority::Critical | Priority::High)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        for channel in Channel::ALL {
            assert_eq!(channel.as_str().parse::<Channel>(), Ok(channel));
            assert_eq!(Channel::from_symbol(channel.symbol()), Some(channel));
        }
        assert_eq!(
            "fax".parse::<Channel>(),
            Err(UnknownChannel("fax".to_owned()))
        );
    }

    #[test]
    fn only_critical_and_high_use_the_priority_lane() {
        let lane: Vec<_> = Priority::ALL
            .into_iter()
            .filter(|p| p.uses_priority_lane())
            .collect();
        assert_eq!(lane, vec![Priority::Critical, Priority::High]);
    }
}
