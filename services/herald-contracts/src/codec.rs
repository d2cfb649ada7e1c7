//! Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body) through the
//! schema registry. Herald writes with its compiled-in schemas and reads any registered writer
//! version into them, so a compatible change upstream needs no Herald release (the request
//! subject is FULL_TRANSITIVE: see [`SchemaKind::compatibility`]).

use apache_avro::types::Value;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use std::collections::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};

use crate::avro::FieldError;
use crate::direct_codec::{self, ReadError};
use crate::registry::{RegistryConfig, RegistryError};
use crate::schemas::SchemaKind;
use crate::time::from_millis;
use crate::{Dispatch, InboxEvent, NotificationRequest, RequestError, StatusEvent, TopicNames};

/// Why a record could not be encoded or decoded. [`CodecError::is_transient`] tells a message
/// loop whether to retry (the registry is down) or dead-letter (the record is bad).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not Confluent-framed Avro ({len} bytes, first byte {first:?})")]
    Framing { len: usize, first: Option<u8> },
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    #[error("cannot decode with writer schema {schema_id}: {message}")]
    Undecodable { schema_id: u32, message: String },
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("record {name} cannot be read as Herald's schema: {message}")]
    Incompatible { name: String, message: String },
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] RequestError),
    #[error("invalid record: {0}")]
    InvalidField(#[from] FieldError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl CodecError {
    /// True when retrying later can succeed without changing the record.
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::RegistryUnavailable(_))
    }

    /// A short stable name for DLQ headers and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            CodecError::Framing { .. } => "framing",
            CodecError::RegistryUnavailable(_) => "registry_unavailable",
            CodecError::Undecodable { .. } => "undecodable",
            CodecError::Encode(_) => "encode",
            CodecError::Incompatible { .. } => "incompatible_schema",
            CodecError::InvalidRequest(_) | CodecError::InvalidField(_) => "invalid_field",
            CodecError::Registry(_) => "registry",
        }
    }
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Request(NotificationRequest),
    Dispatch(Dispatch),
    Status(StatusEvent),
    Inbox(InboxEvent),
    /// A record of a schema Herald does not own (e.g. in the DLQ), as JSON.
    Other {
        name: Option<String>,
        json: serde_json::Value,
    },
}

impl Decoded {
    /// The record as JSON: Herald's records in the same shape `herald produce` reads.
    pub fn to_json(&self) -> serde_json::Value {
        let json = match self {
            Decoded::Request(r) => serde_json::to_value(r),
            Decoded::Dispatch(d) => serde_json::to_value(d),
            Decoded::Status(s) => serde_json::to_value(s),
            Decoded::Inbox(i) => serde_json::to_value(i),
            Decoded::Other { json, .. } => return json.clone(),
        };
        json.unwrap_or(serde_json::Value::Null)
    }

    pub fn schema_name(&self) -> Option<&str> {
        match self {
            Decoded::Request(_) => Some(SchemaKind::Requested.full_name()),
            Decoded::Dispatch(_) => Some(SchemaKind::Dispatch.full_name()),
            Decoded::Status(_) => Some(SchemaKind::Status.full_name()),
            Decoded::Inbox(_) => Some(SchemaKind::Inbox.full_name()),
            Decoded::Other { name, .. } => name.as_deref(),
        }
    }
}

/// Encodes Herald's records and decodes any Confluent-framed Avro record. Schema lookups are
/// cached for the life of the codec.
#[derive(Debug)]
pub struct Codec {
    topics: TopicNames,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    /// Each own record type's schema id, once the registry has given it.
    own_ids: [OnceLock<u32>; 4],
    /// Which writer schema ids are exactly one of Herald's compiled-in schemas (`None`: some
    /// other schema), so their records are read directly.
    writer_kinds: RwLock<HashMap<u32, Option<SchemaKind>>>,
}

fn kind_index(kind: SchemaKind) -> usize {
    match kind {
        SchemaKind::Requested => 0,
        SchemaKind::Dispatch => 1,
        SchemaKind::Status => 2,
        SchemaKind::Inbox => 3,
    }
}

/// A record framed with its schema id: magic byte, id, body.
fn framed(schema_id: u32, write_body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut framed = Vec::with_capacity(512);
    framed.push(0);
    framed.extend_from_slice(&schema_id.to_be_bytes());
    write_body(&mut framed);
    framed
}

fn direct_error(schema_id: u32, error: ReadError) -> CodecError {
    match error {
        ReadError::Binary(e) => CodecError::Undecodable {
            schema_id,
            message: e.to_string(),
        },
        ReadError::Field(e) => CodecError::InvalidField(e),
        ReadError::Request(e) => CodecError::InvalidRequest(e),
    }
}

fn supplied(kind: SchemaKind) -> SuppliedSchema {
    SuppliedSchema::new(
        Some(kind.full_name().to_owned()),
        SchemaType::Avro,
        kind.source().to_owned(),
    )
}

/// Which of Herald's compiled-in schemas `writer` is, if any, so that its records can be read
/// directly. Compared structurally (names, fields, types and logical types; not docs):
/// the Parsing Canonical Form would not do, as it drops logical types, and a writer's
/// `timestamp-micros` read as Herald's `timestamp-millis` would be a thousand times off.
fn own_kind(writer: &apache_avro::Schema) -> Option<SchemaKind> {
    SchemaKind::ALL
        .into_iter()
        .find(|kind| kind.schema() == writer)
}

/// A decoding failure: transient when the registry could not be asked.
fn undecodable(schema_id: u32, e: SRCError) -> CodecError {
    if e.retriable {
        CodecError::RegistryUnavailable(e.to_string())
    } else {
        CodecError::Undecodable {
            schema_id,
            message: e.to_string(),
        }
    }
}

fn registry_error(e: SRCError) -> CodecError {
    if e.retriable {
        CodecError::RegistryUnavailable(e.to_string())
    } else {
        CodecError::Encode(e.to_string())
    }
}

/// The schema id of a Confluent-framed record, or a framing error.
pub fn schema_id(bytes: &[u8]) -> Result<u32, CodecError> {
    match bytes {
        [0, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(CodecError::Framing {
            len: bytes.len(),
            first: bytes.first().copied(),
        }),
    }
}

impl Codec {
    pub fn new(registry: &RegistryConfig, topics: TopicNames) -> Result<Self, CodecError> {
        let settings = registry.sr_settings()?;
        Ok(Self {
            topics,
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings),
            own_ids: Default::default(),
            writer_kinds: RwLock::new(HashMap::new()),
        })
    }

    /// Encodes through the registry client the first time (registering the schema under the
    /// strategy's subject); once the schema id is known, writes the record directly. The
    /// registry client rebuilds and hashes its cache key (the whole schema text) on every
    /// encode, and the generic writer builds a `Value` tree; the bytes are the same (the
    /// direct codec's tests check it).
    async fn encode_framed(
        &self,
        kind: SchemaKind,
        value: impl FnOnce() -> Value,
        write_body: impl FnOnce(&mut Vec<u8>),
        strategy: impl FnOnce() -> SubjectNameStrategy,
    ) -> Result<Vec<u8>, CodecError> {
        let own_id = &self.own_ids[kind_index(kind)];
        if let Some(schema_id) = own_id.get() {
            return Ok(framed(*schema_id, write_body));
        }
        let framed = self
            .encoder
            .encode_value(value(), &strategy())
            .await
            .map_err(registry_error)?;
        let _ = own_id.set(schema_id(&framed)?);
        Ok(framed)
    }

    pub fn topics(&self) -> &TopicNames {
        &self.topics
    }

    /// Writes a request with the compiled-in schema under `<requested topic>-value`.
    pub async fn encode_request(
        &self,
        request: &NotificationRequest,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode_framed(
            SchemaKind::Requested,
            || request.to_avro(),
            |out| direct_codec::write_request(request, out),
            || {
                SubjectNameStrategy::TopicNameStrategyWithSchema(
                    self.topics.requested(),
                    false,
                    supplied(SchemaKind::Requested),
                )
            },
        )
        .await
    }

    pub async fn encode_dispatch(&self, dispatch: &Dispatch) -> Result<Vec<u8>, CodecError> {
        self.encode_record(
            SchemaKind::Dispatch,
            || dispatch.to_avro(),
            |out| direct_codec::write_dispatch(dispatch, out),
        )
        .await
    }

    pub async fn encode_status(&self, status: &StatusEvent) -> Result<Vec<u8>, CodecError> {
        self.encode_record(
            SchemaKind::Status,
            || status.to_avro(),
            |out| direct_codec::write_status(status, out),
        )
        .await
    }

    pub async fn encode_inbox(&self, event: &InboxEvent) -> Result<Vec<u8>, CodecError> {
        self.encode_record(
            SchemaKind::Inbox,
            || event.to_avro(),
            |out| direct_codec::write_inbox(event, out),
        )
        .await
    }

    async fn encode_record(
        &self,
        kind: SchemaKind,
        value: impl FnOnce() -> Value,
        write_body: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Vec<u8>, CodecError> {
        self.encode_framed(kind, value, write_body, || {
            SubjectNameStrategy::RecordNameStrategyWithSchema(supplied(kind))
        })
        .await
    }

    /// Which of Herald's schemas the writer schema `schema_id` is exactly, if any: looked up
    /// in the registry (through the decoder's cache) once per id.
    async fn exact_kind(&self, schema_id: u32) -> Result<Option<SchemaKind>, CodecError> {
        let known = self
            .writer_kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&schema_id)
            .copied();
        if let Some(kind) = known {
            return Ok(kind);
        }
        let schema = self
            .decoder
            .get_schema(schema_id)
            .await
            .map_err(|e| undecodable(schema_id, e))?;
        let kind = own_kind(&schema.parsed);
        self.writer_kinds
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(schema_id, kind);
        Ok(kind)
    }

    /// Decodes any Confluent-framed record; Herald's own records are resolved into the
    /// compiled-in reader schema and validated.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Decoded, CodecError> {
        let schema_id = schema_id(bytes)?;
        if let Some(kind) = self.exact_kind(schema_id).await? {
            let body = &bytes[5..];
            let direct = match kind {
                SchemaKind::Requested => direct_codec::read_request(body).map(Decoded::Request),
                SchemaKind::Dispatch => direct_codec::read_dispatch(body).map(Decoded::Dispatch),
                SchemaKind::Status => direct_codec::read_status(body).map(Decoded::Status),
                SchemaKind::Inbox => direct_codec::read_inbox(body).map(Decoded::Inbox),
            };
            return direct.map_err(|e| direct_error(schema_id, e));
        }
        let decoded = self
            .decoder
            .decode(Some(bytes))
            .await
            .map_err(|e| undecodable(schema_id, e))?;
        let name = decoded.name.map(|n| n.fullname(None));
        let kind = name.as_deref().and_then(SchemaKind::from_full_name);
        let Some(kind) = kind else {
            return Ok(Decoded::Other {
                name,
                json: value_to_json(decoded.value),
            });
        };
        let resolved =
            decoded
                .value
                .resolve(kind.schema())
                .map_err(|e| CodecError::Incompatible {
                    name: kind.full_name().to_owned(),
                    message: e.to_string(),
                })?;
        Ok(match kind {
            SchemaKind::Requested => Decoded::Request(NotificationRequest::from_avro(resolved)?),
            SchemaKind::Dispatch => Decoded::Dispatch(Dispatch::from_avro(resolved)?),
            SchemaKind::Status => Decoded::Status(StatusEvent::from_avro(resolved)?),
            SchemaKind::Inbox => Decoded::Inbox(InboxEvent::from_avro(resolved)?),
        })
    }

    /// Whom a request record is about, read from the record as its writer wrote it: for the
    /// dead-letter status of a request that decoded but was refused (an invalid field, a
    /// schema Herald cannot read). `None` for bytes that are not a request record or lack an id.
    pub async fn request_identity(
        &self,
        bytes: &[u8],
    ) -> Result<Option<crate::RequestIdentity>, CodecError> {
        let decoded = match self.decoder.decode(Some(bytes)).await {
            Ok(decoded) => decoded,
            Err(e) if e.retriable => return Err(CodecError::RegistryUnavailable(e.to_string())),
            Err(_) => return Ok(None),
        };
        let name = decoded.name.map(|n| n.fullname(None));
        if name.as_deref() != Some(SchemaKind::Requested.full_name()) {
            return Ok(None);
        }
        Ok(crate::RequestIdentity::of_record(&decoded.value))
    }

    /// Decodes a record that must be a request.
    pub async fn decode_request(&self, bytes: &[u8]) -> Result<NotificationRequest, CodecError> {
        match self.decode(bytes).await? {
            Decoded::Request(request) => Ok(request),
            other => Err(CodecError::Incompatible {
                name: other
                    .schema_name()
                    .unwrap_or("an unnamed schema")
                    .to_owned(),
                message: format!("expected {}", SchemaKind::Requested.full_name()),
            }),
        }
    }
}

/// A generic Avro value as JSON: enums as their symbol, unions unwrapped, timestamps as RFC 3339,
/// bytes as lower-case hex.
pub fn value_to_json(value: Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => J::from(i),
        Value::Long(l) | Value::TimeMicros(l) | Value::LocalTimestampMillis(l) => J::from(l),
        Value::TimestampMillis(ms) => from_millis(ms)
            .map(|t| J::String(t.to_rfc3339()))
            .unwrap_or(J::from(ms)),
        Value::TimestampMicros(us) => from_millis(us / 1000)
            .map(|t| J::String(t.to_rfc3339()))
            .unwrap_or(J::from(us)),
        Value::Float(f) => J::from(f),
        Value::Double(d) => J::from(d),
        Value::Bytes(b) | Value::Fixed(_, b) => J::String(hex(&b)),
        Value::String(s) | Value::Enum(_, s) => J::String(s),
        Value::Uuid(u) => J::String(u.to_string()),
        Value::Union(_, inner) => value_to_json(*inner),
        Value::Array(items) => J::Array(items.into_iter().map(value_to_json).collect()),
        Value::Map(map) => J::Object(
            map.into_iter()
                .map(|(k, v)| (k, value_to_json(v)))
                .collect(),
        ),
        Value::Record(fields) => J::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, value_to_json(v)))
                .collect(),
        ),
        other => J::String(format!("{other:?}")),
    }
}

/// Lower-case hex, for bytes that are not text.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_checked_before_any_lookup() {
        assert!(matches!(
            schema_id(b""),
            Err(CodecError::Framing {
                len: 0,
                first: None
            })
        ));
        assert!(matches!(
            schema_id(b"{\"json\":1}"),
            Err(CodecError::Framing {
                first: Some(b'{'),
                ..
            })
        ));
        assert_eq!(schema_id(&[0, 0, 0, 1, 7, 2]).unwrap(), 263);
    }

    #[test]
    fn only_herald_s_exact_schemas_are_read_directly() {
        for kind in SchemaKind::ALL {
            assert_eq!(own_kind(kind.schema()), Some(kind));
            // Docs are not part of the encoding.
            fn strip_docs(json: &mut serde_json::Value) {
                match json {
                    serde_json::Value::Object(map) => {
                        map.remove("doc");
                        map.values_mut().for_each(strip_docs);
                    }
                    serde_json::Value::Array(items) => items.iter_mut().for_each(strip_docs),
                    _ => {}
                }
            }
            let mut json: serde_json::Value = serde_json::from_str(kind.source()).unwrap();
            strip_docs(&mut json);
            assert!(!json.to_string().contains("\"doc\""));
            let parsed = apache_avro::Schema::parse(&json).unwrap();
            assert_eq!(own_kind(&parsed), Some(kind), "{kind:?}");
        }
        // The same fields with another logical type: resolved, not read directly.
        let micros = SchemaKind::Status
            .source()
            .replace("timestamp-millis", "timestamp-micros");
        let parsed = apache_avro::Schema::parse_str(&micros).unwrap();
        assert_eq!(own_kind(&parsed), None);
        // A field fewer (an older writer).
        let mut json: serde_json::Value =
            serde_json::from_str(SchemaKind::Status.source()).unwrap();
        json["fields"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f["name"] != "created_at");
        assert_eq!(own_kind(&apache_avro::Schema::parse(&json).unwrap()), None);
    }

    #[test]
    fn generic_json_unwraps_unions_and_names_symbols() {
        let value = Value::Record(vec![
            (
                "a".into(),
                Value::Union(1, Box::new(Value::String("x".into()))),
            ),
            ("b".into(), Value::Enum(2, "HIGH".into())),
            ("c".into(), Value::Bytes(vec![0xde, 0xad])),
            ("d".into(), Value::TimestampMillis(0)),
        ]);
        assert_eq!(
            value_to_json(value),
            serde_json::json!({"a":"x","b":"HIGH","c":"dead","d":"1970-01-01T00:00:00+00:00"})
        );
    }
}
