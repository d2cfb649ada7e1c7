//! The dispatch message: one rendered notification for one channel, router → delivery worker.

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::avro::{self, FieldError, Fields};
use crate::request::{channel_to_avro, priority_to_avro, template_from_avro, template_to_avro};
use crate::{Channel, Priority, TemplateRef};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    pub dispatch_id: String,
    pub event_id: String,
    pub tenant: String,
    pub user_id: String,
    pub category: String,
    pub channel: Channel,
    pub priority: Priority,
    pub address: String,
    pub content: RenderedContent,
    pub template: TemplateRef,
    pub locale: String,
    pub attempt: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    #[serde(default)]
    pub fallback: Vec<Channel>,
    /// The requested event (Confluent-framed) for the first fallback channel; see the schema.
    /// Hex in JSON.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_bytes")]
    pub fallback_request: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub routed_at: DateTime<Utc>,
    /// The category opted in to open and click tracking (`track_engagement`); the SMTP
    /// worker then adds an open pixel and redirect links when `[tracking]` is set.
    #[serde(default)]
    pub track_engagement: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderedContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_encoding: Option<SmsEncoding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_segments: Option<i32>,
}

/// The character encoding an SMS body needs, which decides its segment size.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsEncoding {
    Gsm7,
    Ucs2,
}

impl SmsEncoding {
    /// In the schema's symbol order.
    pub(crate) const ALL: [SmsEncoding; 2] = [SmsEncoding::Gsm7, SmsEncoding::Ucs2];

    pub fn symbol(self) -> &'static str {
        match self {
            SmsEncoding::Gsm7 => "GSM7",
            SmsEncoding::Ucs2 => "UCS2",
        }
    }

    pub fn from_symbol(symbol: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.symbol() == symbol)
    }
}

/// Optional bytes as a hex string in JSON.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => serializer.serialize_str(&crate::codec::hex(b)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        if text.len() % 2 != 0 || !text.is_ascii() {
            return Err(D::Error::custom("expected an even number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map(Some)
            .map_err(D::Error::custom)
    }
}

impl Dispatch {
    /// The Kafka record key: `tenant:user_id`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.tenant, self.user_id)
    }

    /// Whether the deadline has passed by `at` (a dispatch without one never expires).
    pub fn expires_by(&self, at: DateTime<Utc>) -> bool {
        self.deadline.is_some_and(|deadline| deadline <= at)
    }

    pub fn to_avro(&self) -> Value {
        let c = &self.content;
        avro::record(vec![
            ("dispatch_id", avro::string(&self.dispatch_id)),
            ("event_id", avro::string(&self.event_id)),
            ("tenant", avro::string(&self.tenant)),
            ("user_id", avro::string(&self.user_id)),
            ("category", avro::string(&self.category)),
            ("channel", channel_to_avro(self.channel)),
            ("priority", priority_to_avro(self.priority)),
            ("address", avro::string(&self.address)),
            (
                "content",
                avro::record(vec![
                    ("subject", avro::optional_string(c.subject.as_deref())),
                    ("text", avro::optional_string(c.text.as_deref())),
                    ("html", avro::optional_string(c.html.as_deref())),
                    ("json", avro::optional_string(c.json.as_deref())),
                    (
                        "sms_encoding",
                        avro::optional(
                            c.sms_encoding
                                .map(|e| avro::symbol(&["GSM7", "UCS2"], e.symbol())),
                        ),
                    ),
                    (
                        "sms_segments",
                        avro::optional(c.sms_segments.map(Value::Int)),
                    ),
                ]),
            ),
            ("template", template_to_avro(&self.template)),
            ("locale", avro::string(&self.locale)),
            ("attempt", Value::Int(self.attempt)),
            ("deadline", avro::optional_timestamp(self.deadline)),
            (
                "fallback",
                Value::Array(self.fallback.iter().map(|c| channel_to_avro(*c)).collect()),
            ),
            (
                "fallback_request",
                avro::optional_bytes(self.fallback_request.as_deref()),
            ),
            ("created_at", avro::timestamp(self.created_at)),
            ("routed_at", avro::timestamp(self.routed_at)),
            ("track_engagement", Value::Boolean(self.track_engagement)),
        ])
    }

    /// Reads a value already resolved against the compiled-in reader schema.
    pub fn from_avro(value: Value) -> Result<Self, FieldError> {
        let mut f = Fields::of("", value)?;
        let mut c = f.record("content")?;
        Ok(Dispatch {
            dispatch_id: f.string("dispatch_id")?,
            event_id: f.string("event_id")?,
            tenant: f.string("tenant")?,
            user_id: f.string("user_id")?,
            category: f.string("category")?,
            channel: f.symbol("channel", Channel::from_symbol)?,
            priority: f.symbol("priority", Priority::from_symbol)?,
            address: f.string("address")?,
            content: RenderedContent {
                subject: c.optional_string("subject")?,
                text: c.optional_string("text")?,
                html: c.optional_string("html")?,
                json: c.optional_string("json")?,
                sms_encoding: c.optional_symbol("sms_encoding", SmsEncoding::from_symbol)?,
                sms_segments: c.optional_int("sms_segments")?,
            },
            template: template_from_avro(f.record("template")?)?,
            locale: f.string("locale")?,
            attempt: f.int("attempt")?,
            deadline: f.optional_timestamp("deadline")?,
            fallback: f.array("fallback", avro::symbol_item(Channel::from_symbol))?,
            fallback_request: f.optional_bytes("fallback_request")?,
            created_at: f.timestamp("created_at")?,
            routed_at: f.timestamp("routed_at")?,
            track_engagement: f.boolean("track_engagement")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schemas::SchemaKind;
    use crate::time::now_millis;

    pub(crate) fn sample() -> Dispatch {
        Dispatch {
            dispatch_id: "e-1:sms".into(),
            event_id: "e-1".into(),
            tenant: "acme".into(),
            user_id: "u-1".into(),
            category: "security.login".into(),
            channel: Channel::Sms,
            priority: Priority::Critical,
            address: "+14155550100".into(),
            content: RenderedContent {
                text: Some("Your code is 123456".into()),
                sms_encoding: Some(SmsEncoding::Gsm7),
                sms_segments: Some(1),
                ..RenderedContent::default()
            },
            template: TemplateRef {
                id: "login_code".into(),
                version: Some(3),
            },
            locale: "en".into(),
            attempt: 0,
            deadline: None,
            fallback: vec![Channel::Email],
            fallback_request: Some(vec![0, 0, 0, 0, 1, 2]),
            created_at: now_millis(),
            routed_at: now_millis(),
            track_engagement: true,
        }
    }

    #[test]
    fn fallback_request_is_hex_in_json() {
        let dispatch = sample();
        let json = serde_json::to_value(&dispatch).unwrap();
        assert_eq!(json["fallback_request"], "000000000102");
        let back: Dispatch = serde_json::from_value(json).unwrap();
        assert_eq!(back, dispatch);
    }

    #[test]
    fn round_trips_through_avro() {
        let dispatch = sample();
        let schema = SchemaKind::Dispatch.schema();
        let value = dispatch.to_avro();
        assert!(value.validate(schema));
        let resolved = value.resolve(schema).unwrap();
        assert_eq!(Dispatch::from_avro(resolved).unwrap(), dispatch);
    }
}
