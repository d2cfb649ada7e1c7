//! The requested event: what upstream services ask Herald to send. [`NotificationRequest`] is
//! both the JSON form (`herald produce`, the HTTP API, `herald tail`) and, once validated, the
//! value written to `notifications.requested`.

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::avro::{self, FieldError, Fields};
use crate::schemas::SchemaKind;
use crate::time::now_millis;
use crate::{Channel, Priority};

/// The default for the largest `data` object accepted, as encoded JSON (`router.max_data_bytes`).
/// Kafka's default message limit is 1 MiB; a notification's variables are far smaller, and an
/// oversized one is almost always a bug.
pub const MAX_DATA_BYTES: usize = 64 * 1024;
const MAX_ID_LEN: usize = 128;
const MAX_ADDRESS_LEN: usize = 2048;

/// A notification request as JSON. Unknown fields are refused, so a typo is an error rather
/// than a silently ignored setting.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationRequest {
    /// Unique id; generated (UUIDv7) when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._:-]{0,128}$"))]
    pub event_id: String,
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub tenant: String,
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[a-z0-9._-]{1,128}$"))]
    pub category: String,
    pub template: TemplateRef,
    pub recipient: Recipient,
    /// Template variables; must be a JSON object.
    #[serde(default = "empty_object")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
    #[serde(default)]
    pub priority: Priority,
    /// The channels to use instead of the user's preferences; each at most once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 5))]
    pub channels: Option<Vec<Channel>>,
    /// A BCP 47 tag such as `fr` or `fr-CA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    )]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Set to now when absent.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// serde's message without its "at line 1" (callers number lines themselves), keeping the column.
fn json_problem(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&position) {
        Some(message) => format!("{message} (column {})", e.column()),
        None => text,
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub id: String,
    /// Pins a version; the newest published one per channel when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: Option<i32>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// Up to 256 bytes, no control characters (the pattern is the safe subset: 64 characters).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,64}$")
    )]
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[^@\s]{1,64}@[^@\s]{1,100}\.[^@\s]{1,60}$")
    )]
    pub email: Option<String>,
    /// E.164, such as `+14155550100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^\+[1-9][0-9]{6,14}$"))]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push_tokens: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^https?://[^\s]{1,2000}$"))]
    pub webhook_url: Option<String>,
}

/// Whom a request is about: enough to record a status for it even when the rest of it is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIdentity {
    pub event_id: String,
    pub tenant: String,
    pub user_id: String,
}

impl RequestIdentity {
    /// The three ids of a request record as its writer wrote it (not resolved or validated),
    /// if it has all three, non-empty.
    pub fn of_record(value: &Value) -> Option<Self> {
        fn field<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
            let Value::Record(fields) = value else {
                return None;
            };
            let found = fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)?;
            Some(match found {
                Value::Union(_, inner) => inner,
                other => other,
            })
        }
        fn text(value: Option<&Value>) -> Option<String> {
            match value? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            }
        }
        Some(Self {
            event_id: text(field(value, "event_id"))?,
            tenant: text(field(value, "tenant"))?,
            user_id: text(field(value, "recipient").and_then(|r| field(r, "user_id")))?,
        })
    }
}

/// Why a request is refused. Each names the field and says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("not a valid request: {0}")]
    Json(String),
    #[error("`{field}` {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("`data` is {size} bytes encoded; the limit is {limit} (router.max_data_bytes)")]
    DataTooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Field(#[from] FieldError),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field,
        problem: problem.into(),
    }
}

impl NotificationRequest {
    /// Parses one JSON document and validates it, filling in `event_id` and `created_at` when
    /// absent.
    pub fn from_json(json: &str) -> Result<Self, RequestError> {
        let request: NotificationRequest =
            serde_json::from_str(json).map_err(|e| RequestError::Json(json_problem(&e)))?;
        request.validated()
    }

    /// Checks every field and fills in the generated ones.
    pub fn validated(mut self) -> Result<Self, RequestError> {
        if self.event_id.is_empty() {
            self.event_id = uuid::Uuid::now_v7().to_string();
        }
        check_token("event_id", &self.event_id, MAX_ID_LEN, |c| {
            c.is_ascii_alphanumeric() || "-_.:".contains(c)
        })?;
        // The key is `tenant:user_id`; a colon in the tenant would make it ambiguous.
        check_token("tenant", &self.tenant, 64, |c| {
            c.is_ascii_alphanumeric() || "-_.".contains(c)
        })?;
        check_token("category", &self.category, MAX_ID_LEN, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
        })?;
        check_token("template.id", &self.template.id, MAX_ID_LEN, |c| {
            c.is_ascii_alphanumeric() || "-_.".contains(c)
        })?;
        if self.template.version.is_some_and(|v| v < 1) {
            return Err(invalid("template.version", "must be 1 or more"));
        }
        self.recipient.validate()?;
        self.validate_data()?;
        if let Some(channels) = &self.channels {
            if channels.is_empty() {
                return Err(invalid(
                    "channels",
                    "is empty; leave it out to let preferences decide",
                ));
            }
            for (i, channel) in channels.iter().enumerate() {
                if channels[..i].contains(channel) {
                    return Err(invalid("channels", format!("lists `{channel}` twice")));
                }
            }
        }
        if let Some(locale) = &self.locale {
            check_locale(locale)?;
        }
        let created_at = *self.created_at.get_or_insert_with(now_millis);
        if let Some(expires_at) = self.expires_at {
            if expires_at < created_at {
                return Err(invalid("expires_at", "is before created_at"));
            }
            if self.send_at.is_some_and(|send_at| send_at >= expires_at) {
                return Err(invalid("send_at", "is not before expires_at"));
            }
        }
        Ok(self)
    }

    fn validate_data(&self) -> Result<(), RequestError> {
        if !self.data.is_object() {
            return Err(invalid("data", "must be a JSON object"));
        }
        Ok(())
    }

    /// Refuses `data` larger than `limit` bytes as encoded JSON. Not part of [`Self::validated`]:
    /// the limit is configuration, and whoever accepts a request (`herald produce`, the router)
    /// checks it against the configured value.
    pub fn check_data_size(&self, limit: usize) -> Result<(), RequestError> {
        let size = self.data.to_string().len();
        if size > limit {
            return Err(RequestError::DataTooLarge { size, limit });
        }
        Ok(())
    }

    /// The event id, tenant and user of this request.
    pub fn identity(&self) -> RequestIdentity {
        RequestIdentity {
            event_id: self.event_id.clone(),
            tenant: self.tenant.clone(),
            user_id: self.recipient.user_id.clone(),
        }
    }

    /// The Kafka record key: `tenant:user_id`, so one recipient's events stay in order.
    pub fn key(&self) -> String {
        format!("{}:{}", self.tenant, self.recipient.user_id)
    }

    /// The creation time; validated requests always have one.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at.unwrap_or_else(now_millis)
    }

    /// The Avro value in the shape of `schemas/notification_requested.avsc`.
    pub fn to_avro(&self) -> Value {
        let r = &self.recipient;
        avro::record(vec![
            ("event_id", avro::string(&self.event_id)),
            ("tenant", avro::string(&self.tenant)),
            ("category", avro::string(&self.category)),
            ("template", template_to_avro(&self.template)),
            (
                "recipient",
                avro::record(vec![
                    ("user_id", avro::string(&r.user_id)),
                    ("email", avro::optional_string(r.email.as_deref())),
                    ("phone", avro::optional_string(r.phone.as_deref())),
                    (
                        "push_tokens",
                        Value::Array(r.push_tokens.iter().map(|t| avro::string(t)).collect()),
                    ),
                    (
                        "webhook_url",
                        avro::optional_string(r.webhook_url.as_deref()),
                    ),
                ]),
            ),
            ("data", Value::String(self.data.to_string())),
            ("priority", priority_to_avro(self.priority)),
            (
                "channels",
                avro::optional(
                    self.channels
                        .as_ref()
                        .map(|cs| Value::Array(cs.iter().map(|c| channel_to_avro(*c)).collect())),
                ),
            ),
            ("locale", avro::optional_string(self.locale.as_deref())),
            ("send_at", avro::optional_timestamp(self.send_at)),
            ("expires_at", avro::optional_timestamp(self.expires_at)),
            ("created_at", avro::timestamp(self.created_at())),
        ])
    }

    /// Reads a value already resolved against the compiled-in reader schema, then validates it:
    /// a record that is well-formed Avro can still carry values Herald refuses.
    pub fn from_avro(value: Value) -> Result<Self, RequestError> {
        let mut f = Fields::of("", value)?;
        let mut recipient = f.record("recipient")?;
        let data = parse_data(&f.string("data")?)?;
        let request = NotificationRequest {
            event_id: f.string("event_id")?,
            tenant: f.string("tenant")?,
            category: f.string("category")?,
            template: template_from_avro(f.record("template")?)?,
            recipient: Recipient {
                user_id: recipient.string("user_id")?,
                email: recipient.optional_string("email")?,
                phone: recipient.optional_string("phone")?,
                push_tokens: recipient.array("push_tokens", avro::string_item)?,
                webhook_url: recipient.optional_string("webhook_url")?,
            },
            data,
            priority: f.symbol("priority", Priority::from_symbol)?,
            channels: f.optional_array("channels", avro::symbol_item(Channel::from_symbol))?,
            locale: f.optional_string("locale")?,
            send_at: f.optional_timestamp("send_at")?,
            expires_at: f.optional_timestamp("expires_at")?,
            created_at: Some(f.timestamp("created_at")?),
        };
        request.validated_record()
    }

    /// Validates a request read from a record. Unlike JSON, a record's empty `event_id` is
    /// refused rather than generated: replaying it would make a new event each time.
    pub(crate) fn validated_record(self) -> Result<Self, RequestError> {
        if self.event_id.is_empty() {
            return Err(invalid("event_id", "is empty"));
        }
        self.validated()
    }
}

/// A record's `data` field: the template variables as JSON text.
pub(crate) fn parse_data(text: &str) -> Result<serde_json::Value, RequestError> {
    serde_json::from_str(text).map_err(|e| invalid("data", format!("is not JSON: {e}")))
}

impl Recipient {
    fn validate(&self) -> Result<(), RequestError> {
        check_token("recipient.user_id", &self.user_id, 256, |c| !c.is_control())?;
        if let Some(email) = &self.email {
            check_email(email)?;
        }
        if let Some(phone) = &self.phone {
            check_phone(phone)?;
        }
        for token in &self.push_tokens {
            if token.is_empty() || token.len() > 4096 || token.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "recipient.push_tokens",
                    "holds an empty, over-long or blank-containing token",
                ));
            }
        }
        if let Some(url) = &self.webhook_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty()) || url.len() > MAX_ADDRESS_LEN {
                return Err(invalid(
                    "recipient.webhook_url",
                    "must be an http(s) URL with a host",
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn template_to_avro(template: &TemplateRef) -> Value {
    avro::record(vec![
        ("id", avro::string(&template.id)),
        ("version", avro::optional(template.version.map(Value::Int))),
    ])
}

pub(crate) fn template_from_avro(mut f: Fields) -> Result<TemplateRef, FieldError> {
    Ok(TemplateRef {
        id: f.string("id")?,
        version: f.optional_int("version")?,
    })
}

pub(crate) fn channel_to_avro(channel: Channel) -> Value {
    let symbols = Channel::ALL.map(Channel::symbol);
    avro::symbol(&symbols, channel.symbol())
}

pub(crate) fn priority_to_avro(priority: Priority) -> Value {
    let symbols = Priority::ALL.map(Priority::symbol);
    avro::symbol(&symbols, priority.symbol())
}

fn check_token(
    field: &'static str,
    value: &str,
    max_len: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), RequestError> {
    if value.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if value.len() > max_len {
        return Err(invalid(field, format!("is longer than {max_len} bytes")));
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return Err(invalid(field, format!("contains the character {bad:?}")));
    }
    Ok(())
}

fn check_email(email: &str) -> Result<(), RequestError> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid("recipient.email", "is not an email address"))
    }
}

fn check_phone(phone: &str) -> Result<(), RequestError> {
    let digits = phone.strip_prefix('+').unwrap_or("");
    let ok = (7..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "recipient.phone",
            "must be an E.164 number such as +14155550100",
        ))
    }
}

fn check_locale(locale: &str) -> Result<(), RequestError> {
    let mut parts = locale.split('-');
    let language_ok = parts
        .next()
        .is_some_and(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()));
    let rest_ok =
        parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if language_ok && rest_ok {
        Ok(())
    } else {
        Err(invalid(
            "locale",
            "must be a BCP 47 tag such as fr or fr-CA",
        ))
    }
}

/// The schema this module reads into and writes with.
pub fn schema() -> &'static apache_avro::Schema {
    SchemaKind::Requested.schema()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"e-1","tenant":"acme","category":"billing.invoice_ready",
        "template":{"id":"invoice_ready"},"recipient":{"user_id":"u-1","email":"a@example.com"},
        "data":{"amount":"12.00"},"priority":"high","channels":["email","sms"],"locale":"fr-CA",
        "created_at":"2026-11-21T10:00:00Z"}"#;

    fn parse(json: &str) -> Result<NotificationRequest, RequestError> {
        NotificationRequest::from_json(json)
    }

    fn with(change: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        change(&mut v);
        v.to_string()
    }

    #[test]
    fn a_good_request_round_trips_through_avro() {
        let request = parse(GOOD).unwrap();
        let value = request.to_avro();
        assert!(value.validate(schema()), "built value matches the schema");
        let resolved = value.resolve(schema()).unwrap();
        assert_eq!(NotificationRequest::from_avro(resolved).unwrap(), request);
    }

    #[test]
    fn generated_fields_are_filled_in() {
        let request = parse(&with(|v| {
            let o = v.as_object_mut().unwrap();
            o.remove("event_id");
            o.remove("created_at");
        }))
        .unwrap();
        assert!(uuid::Uuid::parse_str(&request.event_id).is_ok());
        assert!(request.created_at.is_some());
        assert_eq!(request.key(), "acme:u-1");
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let cases: Vec<(String, &str)> = vec![
            ("{not json".into(), "not a valid request"),
            (
                with(|v| {
                    v.as_object_mut().unwrap().remove("tenant");
                }),
                "missing field `tenant`",
            ),
            (
                with(|v| v["priority"] = "urgent".into()),
                "unknown variant `urgent`",
            ),
            (
                with(|v| v["channels"] = serde_json::json!(["fax"])),
                "unknown variant `fax`",
            ),
            (
                with(|v| v["colour"] = "red".into()),
                "unknown field `colour`",
            ),
            (
                with(|v| v["tenant"] = "ac:me".into()),
                "`tenant` contains the character ':'",
            ),
            (with(|v| v["category"] = "".into()), "`category` is empty"),
            (
                with(|v| v["recipient"]["email"] = "nope".into()),
                "`recipient.email` is not an email",
            ),
            (
                with(|v| v["recipient"]["phone"] = "555-1234".into()),
                "`recipient.phone` must be an E.164",
            ),
            (
                with(|v| v["data"] = serde_json::json!([1])),
                "`data` must be a JSON object",
            ),
            (
                with(|v| v["channels"] = serde_json::json!(["sms", "sms"])),
                "lists `sms` twice",
            ),
            (
                with(|v| v["locale"] = "french!".into()),
                "`locale` must be a BCP 47",
            ),
            (
                with(|v| v["expires_at"] = "2026-11-20T00:00:00Z".into()),
                "`expires_at` is before created_at",
            ),
            (
                with(|v| v["template"]["version"] = 0.into()),
                "`template.version` must be 1 or more",
            ),
        ];
        for (json, expected) in cases {
            let error = parse(&json).expect_err(expected).to_string();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn data_is_limited_by_the_configured_size() {
        let big = serde_json::json!({
            "tenant": "acme", "category": "c", "template": {"id": "t"},
            "recipient": {"user_id": "ada"}, "data": {"blob": "x".repeat(MAX_DATA_BYTES)},
        });
        let request = NotificationRequest::from_json(&big.to_string()).unwrap();
        let error = request
            .check_data_size(MAX_DATA_BYTES)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("the limit is 65536 (router.max_data_bytes)"),
            "{error}"
        );
        request.check_data_size(2 * MAX_DATA_BYTES).unwrap();
    }

    #[test]
    fn the_identity_of_a_raw_record_needs_all_three_ids() {
        let request = NotificationRequest::from_json(
            &serde_json::json!({
                "event_id": "e-1", "tenant": "acme", "category": "c", "template": {"id": "t"},
                "recipient": {"user_id": "ada"}, "data": {},
            })
            .to_string(),
        )
        .unwrap();
        assert_eq!(
            RequestIdentity::of_record(&request.to_avro()),
            Some(request.identity())
        );
        let mut no_user = request.clone();
        no_user.recipient.user_id.clear();
        assert_eq!(RequestIdentity::of_record(&no_user.to_avro()), None);
        assert_eq!(RequestIdentity::of_record(&Value::Null), None);
    }
}
