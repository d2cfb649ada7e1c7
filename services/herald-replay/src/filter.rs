//! Which records of the range a replay copies. Every filter given must match (they combine
//! with AND); the values given to one filter are alternatives (OR). Tenant and user come from
//! the record key (`tenant:user_id`), stage and class from a DLQ record's error headers, and
//! category, channel and event id from the decoded value.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use herald_contracts::{Channel, Decoded};

/// The filters of one replay, as stored in its plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    pub tenants: BTreeSet<String>,
    pub users: BTreeSet<String>,
    pub categories: BTreeSet<String>,
    pub channels: BTreeSet<Channel>,
    pub event_ids: BTreeSet<String>,
    /// DLQ records: the stage that dead-lettered them (`herald-error-stage`).
    pub stages: BTreeSet<String>,
    /// DLQ records: the error class (`herald-error-class`).
    pub classes: BTreeSet<String>,
}

/// What a filter looks at in one record.
#[derive(Debug, Default)]
pub struct Facts<'a> {
    pub tenant: Option<&'a str>,
    pub user: Option<&'a str>,
    pub stage: Option<&'a str>,
    pub class: Option<&'a str>,
    pub body: Option<&'a Decoded>,
}

/// The fields of a decoded record the filters and the report use.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BodyFacts {
    pub event_id: Option<String>,
    pub category: Option<String>,
    /// A request: its channel override (empty when preferences decide); a dispatch: its channel.
    pub channels: Vec<Channel>,
}

impl BodyFacts {
    pub fn of(decoded: &Decoded) -> Self {
        match decoded {
            Decoded::Request(r) => Self {
                event_id: Some(r.event_id.clone()),
                category: Some(r.category.clone()),
                channels: r.channels.clone().unwrap_or_default(),
            },
            Decoded::Dispatch(d) => Self {
                event_id: Some(d.event_id.clone()),
                category: Some(d.category.clone()),
                channels: vec![d.channel],
            },
            Decoded::Status(s) => Self {
                event_id: Some(s.event_id.clone()),
                category: None,
                channels: s.channel.into_iter().collect(),
            },
            Decoded::Inbox(i) => Self {
                event_id: i.content.event_id.clone(),
                category: i.content.category.clone(),
                channels: vec![Channel::Inapp],
            },
            Decoded::Other { .. } => Self::default(),
        }
    }
}

/// `tenant:user_id`, split at the first colon (a tenant has none).
pub fn split_key(key: Option<&[u8]>) -> (Option<&str>, Option<&str>) {
    let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
        return (None, None);
    };
    match key.split_once(':') {
        Some((tenant, user)) => (Some(tenant), Some(user)),
        None => (Some(key), None),
    }
}

fn admits(allowed: &BTreeSet<String>, value: Option<&str>) -> bool {
    allowed.is_empty() || value.is_some_and(|v| allowed.contains(v))
}

impl Filter {
    /// Whether matching needs the record's value decoded.
    pub fn needs_body(&self) -> bool {
        !(self.categories.is_empty() && self.channels.is_empty() && self.event_ids.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether the record passes every filter. A filter on the value does not match a record
    /// that could not be decoded.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        if !(admits(&self.tenants, facts.tenant)
            && admits(&self.users, facts.user)
            && admits(&self.stages, facts.stage)
            && admits(&self.classes, facts.class))
        {
            return false;
        }
        if !self.needs_body() {
            return true;
        }
        let Some(body) = facts.body.map(BodyFacts::of) else {
            return false;
        };
        admits(&self.event_ids, body.event_id.as_deref())
            && admits(&self.categories, body.category.as_deref())
            && (self.channels.is_empty() || body.channels.iter().any(|c| self.channels.contains(c)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use herald_contracts::NotificationRequest;

    fn request(id: &str, category: &str, channels: Option<&[&str]>) -> Decoded {
        let mut json = serde_json::json!({
            "event_id": id, "tenant": "acme", "category": category,
            "template": {"id": "t"}, "recipient": {"user_id": "ada"},
        });
        if let Some(channels) = channels {
            json["channels"] = serde_json::json!(channels);
        }
        Decoded::Request(NotificationRequest::from_json(&json.to_string()).unwrap())
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn filters_combine_with_and_and_values_with_or() {
        let filter = Filter {
            tenants: set(&["acme", "globex"]),
            categories: set(&["billing.invoice_ready"]),
            ..Filter::default()
        };
        let body = request("e1", "billing.invoice_ready", None);
        let facts = |tenant, body| Facts {
            tenant: Some(tenant),
            body,
            ..Facts::default()
        };
        assert!(filter.matches(&facts("globex", Some(&body))));
        assert!(!filter.matches(&facts("initech", Some(&body))));
        let other = request("e2", "social.mention", None);
        assert!(!filter.matches(&facts("acme", Some(&other))));
        // A value filter never matches what could not be decoded.
        assert!(!filter.matches(&facts("acme", None)));
    }

    #[test]
    fn channels_match_a_requests_override_and_stage_class_come_from_headers() {
        let filter = Filter {
            channels: [Channel::Sms].into(),
            ..Filter::default()
        };
        let with_sms = request("e1", "c", Some(&["email", "sms"]));
        let without = request("e2", "c", None);
        let facts = |body| Facts {
            body: Some(body),
            ..Facts::default()
        };
        assert!(filter.matches(&facts(&with_sms)));
        assert!(!filter.matches(&facts(&without)));

        let dlq = Filter {
            stages: set(&["route"]),
            classes: set(&["template_not_found"]),
            ..Filter::default()
        };
        assert!(!dlq.needs_body());
        assert!(dlq.matches(&Facts {
            stage: Some("route"),
            class: Some("template_not_found"),
            ..Facts::default()
        }));
        assert!(!dlq.matches(&Facts {
            stage: Some("deliver"),
            class: Some("template_not_found"),
            ..Facts::default()
        }));
    }

    #[test]
    fn keys_split_at_the_first_colon() {
        assert_eq!(
            split_key(Some(b"acme:user:1")),
            (Some("acme"), Some("user:1"))
        );
        assert_eq!(split_key(None), (None, None));
    }
}
