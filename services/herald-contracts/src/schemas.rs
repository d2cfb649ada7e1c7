//! The Avro schemas in `schemas/`, compiled into the binary: what Herald writes with and reads
//! into. Each is registered under one subject (see [`SchemaKind::subject`]).

use apache_avro::Schema;
use std::sync::LazyLock;

use crate::TopicNames;

pub const REQUESTED_AVSC: &str = include_str!("../../../schemas/notification_requested.avsc");
pub const DISPATCH_AVSC: &str = include_str!("../../../schemas/dispatch.avsc");
pub const STATUS_AVSC: &str = include_str!("../../../schemas/status.avsc");
pub const INBOX_AVSC: &str = include_str!("../../../schemas/inbox_event.avsc");

/// Registry compatibility levels (the Confluent API's names).
pub const BACKWARD: &str = "BACKWARD";
pub const FULL_TRANSITIVE: &str = "FULL_TRANSITIVE";

pub const REQUESTED_NAME: &str = "dev.herald.v1.NotificationRequested";
pub const DISPATCH_NAME: &str = "dev.herald.v1.Dispatch";
pub const STATUS_NAME: &str = "dev.herald.v1.StatusEvent";
pub const INBOX_NAME: &str = "dev.herald.v1.InboxEvent";

/// The record types Herald owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    Requested,
    Dispatch,
    Status,
    Inbox,
}

impl SchemaKind {
    pub const ALL: [SchemaKind; 4] = [
        SchemaKind::Requested,
        SchemaKind::Dispatch,
        SchemaKind::Status,
        SchemaKind::Inbox,
    ];

    /// The file name under `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::Requested => "notification_requested.avsc",
            SchemaKind::Dispatch => "dispatch.avsc",
            SchemaKind::Status => "status.avsc",
            SchemaKind::Inbox => "inbox_event.avsc",
        }
    }

    pub fn full_name(self) -> &'static str {
        match self {
            SchemaKind::Requested => REQUESTED_NAME,
            SchemaKind::Dispatch => DISPATCH_NAME,
            SchemaKind::Status => STATUS_NAME,
            SchemaKind::Inbox => INBOX_NAME,
        }
    }

    pub fn from_full_name(name: &str) -> Option<SchemaKind> {
        SchemaKind::ALL.into_iter().find(|k| k.full_name() == name)
    }

    /// The compiled-in schema text.
    pub fn source(self) -> &'static str {
        match self {
            SchemaKind::Requested => REQUESTED_AVSC,
            SchemaKind::Dispatch => DISPATCH_AVSC,
            SchemaKind::Status => STATUS_AVSC,
            SchemaKind::Inbox => INBOX_AVSC,
        }
    }

    /// The parsed compiled-in schema.
    pub fn schema(self) -> &'static Schema {
        match self {
            SchemaKind::Requested => &REQUESTED,
            SchemaKind::Dispatch => &DISPATCH,
            SchemaKind::Status => &STATUS,
            SchemaKind::Inbox => &INBOX,
        }
    }

    /// The compatibility level `herald schemas register` sets on the subject.
    ///
    /// Requests are FULL_TRANSITIVE: upstream producers write them with any version and the
    /// router reads every version with its compiled-in schema, while replays read records of
    /// any age with the newest Herald. Each version must therefore read, and be readable by,
    /// every other one. BACKWARD alone would let a producer register a version without
    /// `tenant` or `created_at` (a reader may drop a field), and every record it wrote would
    /// then be dead-lettered. Dispatches, statuses and inbox events are written and read by Herald alone,
    /// which upgrades readers before writers: BACKWARD.
    pub fn compatibility(self) -> &'static str {
        match self {
            SchemaKind::Requested => FULL_TRANSITIVE,
            SchemaKind::Dispatch | SchemaKind::Status | SchemaKind::Inbox => BACKWARD,
        }
    }

    /// The registry subject. Requests use the topic-name strategy (`<topic>-value`), the
    /// default of every Confluent serializer, so upstream producers need no configuration.
    /// Herald's internal records use the record-name strategy because one record type travels
    /// on many topics (every channel, lane and retry tier); their subjects carry no topic prefix.
    pub fn subject(self, topics: &TopicNames) -> String {
        match self {
            SchemaKind::Requested => format!("{}-value", topics.requested()),
            SchemaKind::Dispatch | SchemaKind::Status | SchemaKind::Inbox => {
                self.full_name().to_owned()
            }
        }
    }
}

// The schema texts are compiled in and parsed by the `compiled_in_schemas_parse` test, so
// parsing cannot fail at run time.
#[allow(clippy::expect_used)]
fn parse(source: &str) -> Schema {
    Schema::parse_str(source).expect("compiled-in schema parses (checked by a unit test)")
}

static REQUESTED: LazyLock<Schema> = LazyLock::new(|| parse(REQUESTED_AVSC));
static DISPATCH: LazyLock<Schema> = LazyLock::new(|| parse(DISPATCH_AVSC));
static STATUS: LazyLock<Schema> = LazyLock::new(|| parse(STATUS_AVSC));
static INBOX: LazyLock<Schema> = LazyLock::new(|| parse(INBOX_AVSC));

/// The symbols of the enum field `field` of `kind`'s schema, in order (for tests that keep a
/// Rust enum in step with its schema).
#[cfg(test)]
pub(crate) fn enum_symbols(kind: SchemaKind, field: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(kind.source()).unwrap_or_default();
    let fields = json["fields"].as_array().cloned().unwrap_or_default();
    let found = fields.iter().find(|f| f["name"] == field);
    found
        .and_then(|f| f["type"]["symbols"].as_array())
        .map(|symbols| {
            symbols
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_schemas_parse_and_are_named() {
        for kind in SchemaKind::ALL {
            let schema =
                Schema::parse_str(kind.source()).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            let Schema::Record(record) = schema else {
                panic!("{kind:?} is not a record");
            };
            assert_eq!(record.name.fullname(None), kind.full_name());
        }
    }

    #[test]
    fn every_field_is_documented_and_optional_fields_have_defaults() {
        for kind in SchemaKind::ALL {
            let json: serde_json::Value =
                serde_json::from_str(kind.source()).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            check_fields(kind, &json);
        }
    }

    fn check_fields(kind: SchemaKind, record: &serde_json::Value) {
        let Some(fields) = record.get("fields").and_then(|f| f.as_array()) else {
            return;
        };
        for field in fields {
            let name = field["name"].as_str().unwrap_or("?");
            assert!(field.get("doc").is_some(), "{kind:?}.{name} has no doc");
            let nullable = field["type"]
                .as_array()
                .is_some_and(|u| u.first() == Some(&serde_json::json!("null")));
            if nullable {
                assert_eq!(
                    field.get("default"),
                    Some(&serde_json::Value::Null),
                    "{kind:?}.{name} is optional but has no null default"
                );
            }
            check_fields(kind, &field["type"]);
        }
    }

    #[test]
    fn only_the_request_subject_is_full_transitive() {
        assert_eq!(SchemaKind::Requested.compatibility(), "FULL_TRANSITIVE");
        assert_eq!(SchemaKind::Dispatch.compatibility(), "BACKWARD");
        assert_eq!(SchemaKind::Status.compatibility(), "BACKWARD");
    }

    #[test]
    fn subjects() {
        let topics = TopicNames::new("x.");
        assert_eq!(
            SchemaKind::Requested.subject(&topics),
            "x.notifications.requested-value"
        );
        assert_eq!(
            SchemaKind::Status.subject(&topics),
            "dev.herald.v1.StatusEvent"
        );
    }
}
