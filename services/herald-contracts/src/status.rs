//! The status event: what happened to a notification, from every stage.

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Channel;
use crate::avro::{self, FieldError, Fields};
use crate::request::channel_to_avro;

/// `Default` gives an empty `UNKNOWN` status at the epoch: build one with the fields that matter
/// and `..Default::default()`, so fields added later (all optional) need no change at every
/// writer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusEvent {
    pub event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_id: Option<String>,
    pub tenant: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    #[serde(default)]
    pub attempt: i32,
    pub at: DateTime<Utc>,
    /// For `Scheduled`: when the deferred notification is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The request's category, when the writer knew it (delivery metrics are per category).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The request's creation time, when the writer knew it (end-to-end latency starts here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

/// Reasons carried by SUPPRESSED, SCHEDULED and (from provider callbacks) FAILED statuses,
/// declared once.
pub mod reason {
    pub const DUPLICATE: &str = "duplicate";
    pub const EXPIRED: &str = "expired";
    pub const OPTED_OUT: &str = "opted_out";
    pub const UNKNOWN_RECIPIENT: &str = "unknown_recipient";
    pub const NO_ADDRESS: &str = "no_address";
    pub const NO_CHANNEL: &str = "no_channel";
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The request's channel override named a channel the user does not allow for the
    /// category (not among their channels, the category's defaults or its fallbacks).
    pub const NOT_ALLOWED: &str = "not_allowed";
    /// UNKNOWN (terminal): a worker died between calling the provider and recording the
    /// result; the channel's policy is not to send it again (`deliver.ambiguous_send`).
    pub const AMBIGUOUS_SEND: &str = "ambiguous_send";
    /// Deferred (status SCHEDULED) until the recipient's quiet hours end.
    pub const QUIET_HOURS: &str = "quiet_hours";
    /// Deferred (status SCHEDULED) until the request's `send_at`.
    pub const SEND_AT: &str = "send_at";
    /// SUPPRESSED: the email address is on the tenant's suppression list (it hard-bounced or
    /// its owner complained) until it is removed through the API.
    pub const BOUNCED_ADDRESS: &str = "bounced_address";
    /// FAILED, from a provider callback: the address hard-bounced (and is now suppressed).
    pub const BOUNCED: &str = "bounced";
    /// FAILED, from a provider callback: the recipient reported the message as spam (and the
    /// address is now suppressed).
    pub const COMPLAINED: &str = "complained";
}

/// A notification's state (DESIGN.md §2). `Unknown` is what a reader gets for a symbol added by
/// a newer writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Accepted,
    Routed,
    Scheduled,
    Suppressed,
    Sent,
    Delivered,
    Failed,
    DeadLettered,
    Opened,
    Clicked,
    /// In-app: the recipient saw the message listed (the inbox shows it as no longer new).
    Seen,
    Read,
    /// In-app: the recipient archived the message.
    Archived,
    #[default]
    Unknown,
}

impl Status {
    pub(crate) const ALL: [Status; 14] = [
        Status::Accepted,
        Status::Routed,
        Status::Scheduled,
        Status::Suppressed,
        Status::Sent,
        Status::Delivered,
        Status::Failed,
        Status::DeadLettered,
        Status::Opened,
        Status::Clicked,
        Status::Seen,
        Status::Read,
        Status::Archived,
        Status::Unknown,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            Status::Accepted => "ACCEPTED",
            Status::Routed => "ROUTED",
            Status::Scheduled => "SCHEDULED",
            Status::Suppressed => "SUPPRESSED",
            Status::Sent => "SENT",
            Status::Delivered => "DELIVERED",
            Status::Failed => "FAILED",
            Status::DeadLettered => "DEAD_LETTERED",
            Status::Opened => "OPENED",
            Status::Clicked => "CLICKED",
            Status::Seen => "SEEN",
            Status::Read => "READ",
            Status::Archived => "ARCHIVED",
            Status::Unknown => "UNKNOWN",
        }
    }

    pub fn from_symbol(symbol: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|s| s.symbol() == symbol)
    }

    /// The state's name in snake case, as in JSON and as a metric label (`dead_lettered`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Routed => "routed",
            Status::Scheduled => "scheduled",
            Status::Suppressed => "suppressed",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::DeadLettered => "dead_lettered",
            Status::Opened => "opened",
            Status::Clicked => "clicked",
            Status::Seen => "seen",
            Status::Read => "read",
            Status::Archived => "archived",
            Status::Unknown => "unknown",
        }
    }

    /// Whether this state ends a dispatch's life (guarantee 1 counts these).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Suppressed | Status::Sent | Status::Delivered | Status::DeadLettered
        )
    }
}

impl StatusEvent {
    pub fn key(&self) -> String {
        format!("{}:{}", self.tenant, self.user_id)
    }

    pub fn to_avro(&self) -> Value {
        let symbols = Status::ALL.map(Status::symbol);
        avro::record(vec![
            ("event_id", avro::string(&self.event_id)),
            (
                "dispatch_id",
                avro::optional_string(self.dispatch_id.as_deref()),
            ),
            ("tenant", avro::string(&self.tenant)),
            ("user_id", avro::string(&self.user_id)),
            ("channel", avro::optional(self.channel.map(channel_to_avro))),
            ("status", avro::symbol(&symbols, self.status.symbol())),
            ("reason", avro::optional_string(self.reason.as_deref())),
            ("provider", avro::optional_string(self.provider.as_deref())),
            (
                "provider_message_id",
                avro::optional_string(self.provider_message_id.as_deref()),
            ),
            ("attempt", Value::Int(self.attempt)),
            ("at", avro::timestamp(self.at)),
            (
                "scheduled_for",
                avro::optional_timestamp(self.scheduled_for),
            ),
            ("category", avro::optional_string(self.category.as_deref())),
            ("created_at", avro::optional_timestamp(self.created_at)),
        ])
    }

    /// Reads a value already resolved against the compiled-in reader schema.
    pub fn from_avro(value: Value) -> Result<Self, FieldError> {
        let mut f = Fields::of("", value)?;
        Ok(StatusEvent {
            event_id: f.string("event_id")?,
            dispatch_id: f.optional_string("dispatch_id")?,
            tenant: f.string("tenant")?,
            user_id: f.string("user_id")?,
            channel: f.optional_symbol("channel", Channel::from_symbol)?,
            status: f.symbol("status", Status::from_symbol)?,
            reason: f.optional_string("reason")?,
            provider: f.optional_string("provider")?,
            provider_message_id: f.optional_string("provider_message_id")?,
            attempt: f.int("attempt")?,
            at: f.timestamp("at")?,
            scheduled_for: f.optional_timestamp("scheduled_for")?,
            category: f.optional_string("category")?,
            created_at: f.optional_timestamp("created_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemas::SchemaKind;
    use crate::time::now_millis;

    #[test]
    fn round_trips_through_avro() {
        let status = StatusEvent {
            event_id: "e-1".into(),
            dispatch_id: Some("e-1:email".into()),
            tenant: "acme".into(),
            user_id: "u-1".into(),
            channel: Some(Channel::Email),
            status: Status::DeadLettered,
            reason: Some("http 400".into()),
            provider: Some("sendgrid".into()),
            provider_message_id: None,
            attempt: 3,
            at: now_millis(),
            scheduled_for: Some(now_millis()),
            category: Some("billing.invoice_ready".into()),
            created_at: Some(now_millis()),
        };
        let schema = SchemaKind::Status.schema();
        let value = status.to_avro();
        assert!(value.validate(schema));
        let resolved = value.resolve(schema).unwrap();
        assert_eq!(StatusEvent::from_avro(resolved).unwrap(), status);
    }

    #[test]
    fn the_symbol_list_matches_the_schema() {
        let symbols = crate::schemas::enum_symbols(SchemaKind::Status, "status");
        assert_eq!(symbols, Status::ALL.map(Status::symbol));
    }

    #[test]
    fn labels_match_the_json_names() {
        for status in Status::ALL {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
    }

    /// A status written before `category` and `created_at` existed reads with both null
    /// (the schema change is BACKWARD compatible): the codec resolves what an older writer
    /// wrote into the compiled-in schema, as here.
    #[test]
    fn an_older_status_reads_without_category_and_creation_time() {
        let mut json: serde_json::Value =
            serde_json::from_str(SchemaKind::Status.source()).unwrap();
        json["fields"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f["name"] != "category" && f["name"] != "created_at");
        let old_schema = apache_avro::Schema::parse(&json).unwrap();
        let status = StatusEvent {
            event_id: "e-1".into(),
            tenant: "acme".into(),
            user_id: "u-1".into(),
            status: Status::Sent,
            at: now_millis(),
            ..Default::default()
        };
        let Value::Record(mut fields) = status.to_avro() else {
            unreachable!("to_avro builds a record")
        };
        fields.retain(|(name, _)| name != "category" && name != "created_at");
        let written = Value::Record(fields);
        assert!(written.validate(&old_schema));
        let resolved = written.resolve(SchemaKind::Status.schema()).unwrap();
        assert_eq!(StatusEvent::from_avro(resolved).unwrap(), status);
    }
}
