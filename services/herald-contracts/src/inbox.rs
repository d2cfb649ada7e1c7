//! The inbox event (`schemas/inbox_event.avsc`, topic `notifications.inbox`): a change to one
//! user's in-app inbox. The in-app worker emits a `Message` in the transaction that records the
//! dispatch delivered (after the row is stored); `herald api` emits `Seen`, `Read` and
//! `Archived` when a user marks a message. Every `herald api` replica reads the topic to update
//! the live streams connected to it, so the message's content travels here, not through the
//! database.

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Dispatch;
use crate::avro::{self, FieldError, Fields};

/// The key of the rendered json part that becomes the message's action URL.
pub const ACTION_URL_KEY: &str = "action_url";

/// What happened to the inbox. `Unknown` is what a reader gets for a symbol added by a newer
/// writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxChange {
    Message,
    Seen,
    Read,
    Archived,
    #[default]
    Unknown,
}

impl InboxChange {
    pub(crate) const ALL: [InboxChange; 5] = [
        InboxChange::Message,
        InboxChange::Seen,
        InboxChange::Read,
        InboxChange::Archived,
        InboxChange::Unknown,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            InboxChange::Message => "MESSAGE",
            InboxChange::Seen => "SEEN",
            InboxChange::Read => "READ",
            InboxChange::Archived => "ARCHIVED",
            InboxChange::Unknown => "UNKNOWN",
        }
    }

    pub fn from_symbol(symbol: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.symbol() == symbol)
    }

    /// The name in snake case, as in JSON and as a Server-Sent Events event type.
    pub fn as_str(self) -> &'static str {
        match self {
            InboxChange::Message => "message",
            InboxChange::Seen => "seen",
            InboxChange::Read => "read",
            InboxChange::Archived => "archived",
            InboxChange::Unknown => "unknown",
        }
    }
}

/// The rendered content of a new message (all absent for a mark).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxContent {
    pub event_id: Option<String>,
    pub category: Option<String>,
    pub priority: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub data_json: Option<String>,
    pub action_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEvent {
    pub tenant: String,
    pub user_id: String,
    pub change: InboxChange,
    pub dispatch_id: String,
    pub created_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub content: InboxContent,
}

impl InboxEvent {
    /// The new message a delivered in-app dispatch is, as the worker stores it.
    pub fn message(dispatch: &Dispatch, at: DateTime<Utc>) -> Self {
        let c = &dispatch.content;
        Self {
            tenant: dispatch.tenant.clone(),
            user_id: dispatch.user_id.clone(),
            change: InboxChange::Message,
            dispatch_id: dispatch.dispatch_id.clone(),
            created_at: dispatch.created_at,
            at,
            content: InboxContent {
                event_id: Some(dispatch.event_id.clone()),
                category: Some(dispatch.category.clone()),
                priority: Some(dispatch.priority.as_str().to_owned()),
                title: c.subject.clone(),
                body: c.text.clone(),
                data_json: c.json.clone(),
                action_url: action_url(c.json.as_deref()),
            },
        }
    }

    pub fn key(&self) -> String {
        format!("{}:{}", self.tenant, self.user_id)
    }

    pub fn to_avro(&self) -> Value {
        let symbols = InboxChange::ALL.map(InboxChange::symbol);
        let c = &self.content;
        avro::record(vec![
            ("tenant", avro::string(&self.tenant)),
            ("user_id", avro::string(&self.user_id)),
            ("change", avro::symbol(&symbols, self.change.symbol())),
            ("dispatch_id", avro::string(&self.dispatch_id)),
            ("created_at", avro::timestamp(self.created_at)),
            ("at", avro::timestamp(self.at)),
            ("event_id", avro::optional_string(c.event_id.as_deref())),
            ("category", avro::optional_string(c.category.as_deref())),
            ("priority", avro::optional_string(c.priority.as_deref())),
            ("title", avro::optional_string(c.title.as_deref())),
            ("body", avro::optional_string(c.body.as_deref())),
            ("data_json", avro::optional_string(c.data_json.as_deref())),
            ("action_url", avro::optional_string(c.action_url.as_deref())),
        ])
    }

    /// Reads a value already resolved against the compiled-in reader schema.
    pub fn from_avro(value: Value) -> Result<Self, FieldError> {
        let mut f = Fields::of("", value)?;
        Ok(Self {
            tenant: f.string("tenant")?,
            user_id: f.string("user_id")?,
            change: f.symbol("change", InboxChange::from_symbol)?,
            dispatch_id: f.string("dispatch_id")?,
            created_at: f.timestamp("created_at")?,
            at: f.timestamp("at")?,
            content: InboxContent {
                event_id: f.optional_string("event_id")?,
                category: f.optional_string("category")?,
                priority: f.optional_string("priority")?,
                title: f.optional_string("title")?,
                body: f.optional_string("body")?,
                data_json: f.optional_string("data_json")?,
                action_url: f.optional_string("action_url")?,
            },
        })
    }
}

/// The json part's `action_url`, when it is an absolute http(s) URL or a path on the tenant's
/// own site: an inbox page makes it a link, and a `javascript:` URL there would run.
pub fn action_url(json: Option<&str>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json?).ok()?;
    let url = value.get(ACTION_URL_KEY)?.as_str()?;
    let lower = url.to_ascii_lowercase();
    let safe = (lower.starts_with("https://")
        || lower.starts_with("http://")
        || (url.starts_with('/') && !url.starts_with("//")))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    safe.then(|| url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemas::SchemaKind;
    use crate::time::now_millis;

    #[test]
    fn round_trips_through_avro() {
        let event = InboxEvent {
            tenant: "acme".into(),
            user_id: "ada".into(),
            change: InboxChange::Message,
            dispatch_id: "e-1:inapp".into(),
            created_at: now_millis(),
            at: now_millis(),
            content: InboxContent {
                event_id: Some("e-1".into()),
                title: Some("Hi".into()),
                action_url: Some("/x".into()),
                ..InboxContent::default()
            },
        };
        let schema = SchemaKind::Inbox.schema();
        let value = event.to_avro();
        assert!(value.validate(schema));
        let resolved = value.resolve(schema).unwrap();
        assert_eq!(InboxEvent::from_avro(resolved).unwrap(), event);
    }

    #[test]
    fn the_change_symbols_match_the_schema() {
        let symbols = crate::schemas::enum_symbols(SchemaKind::Inbox, "change");
        assert_eq!(symbols, InboxChange::ALL.map(InboxChange::symbol));
    }

    #[test]
    fn only_web_links_and_paths_become_action_urls() {
        let url = |json: &str| action_url(Some(json));
        assert_eq!(
            url(r#"{"action_url": "https://app.example/i/7"}"#).as_deref(),
            Some("https://app.example/i/7")
        );
        assert_eq!(
            url(r#"{"action_url": "/invoices/7"}"#).as_deref(),
            Some("/invoices/7")
        );
        for refused in [
            r#"{"action_url": "javascript:alert(1)"}"#,
            r#"{"action_url": "//evil.example/"}"#,
            r#"{"action_url": "https://a.example/ x"}"#,
            r#"{"action_url": 7}"#,
            r#"{"other": "https://a.example"}"#,
            "not json",
        ] {
            assert_eq!(url(refused), None, "{refused}");
        }
        assert_eq!(action_url(None), None);
    }
}
