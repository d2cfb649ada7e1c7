//! A stand-in OpenTelemetry collector: an HTTP listener on 127.0.0.1 that answers 200 to every
//! OTLP/HTTP export and keeps the request bodies (protobuf) for the test to look into, raw or
//! decoded into spans; and the upstream producer whose trace a request continues.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message as _;

use herald_contracts::{Codec, NotificationRequest, headers};

use crate::HeraldEnv;
use crate::kafka::produce_raw;

/// A trace an upstream producer started, as the `traceparent` it puts on a request.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub trace_id: String,
    /// The producer's span: the parent of the router's.
    pub span_id: String,
}

impl Upstream {
    /// A trace id no other test process uses (it holds the pid); `salt` tells tests apart.
    pub fn new(salt: u16) -> Self {
        Self {
            trace_id: format!(
                "{:032x}",
                u128::from(std::process::id()) << 64 | u128::from(salt)
            ),
            span_id: "00f067aa0ba902b7".into(),
        }
    }

    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }

    /// Produces `request` (the JSON `herald produce` takes) to `notifications.requested`,
    /// keyed `key`, with this trace's `traceparent`.
    pub async fn produce(&self, env: &HeraldEnv, key: &str, request: serde_json::Value) {
        let request = NotificationRequest::from_json(&request.to_string()).unwrap();
        let topics = env.topics();
        let codec = Codec::new(&env.registry_config(), topics.clone()).unwrap();
        let bytes = codec.encode_request(&request).await.unwrap();
        produce_raw(
            &env.kafka_config(),
            &topics.requested(),
            key.as_bytes(),
            &bytes,
            &[(headers::TRACEPARENT, &self.traceparent())],
        );
    }
}

/// (trace id, parent span id) of a W3C `traceparent`.
pub fn traceparent_ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[derive(Debug, Clone)]
pub struct StandInCollector {
    /// The traces endpoint, for `telemetry.otlp_endpoint`.
    pub endpoint: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl StandInCollector {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(body) = read_request(&stream) {
                    kept.lock().unwrap().push(body);
                }
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Self { endpoint, bodies }
    }

    /// Every export body received so far, concatenated.
    pub fn received(&self) -> Vec<u8> {
        self.bodies.lock().unwrap().concat()
    }

    /// Every span received so far, in the order the exports arrived.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        let bodies = self.bodies.lock().unwrap().clone();
        bodies
            .iter()
            .flat_map(|body| {
                let export = ExportTraceServiceRequest::decode(body.as_slice())
                    .unwrap_or_else(|e| panic!("an export that is not OTLP protobuf: {e}"));
                decode(export)
            })
            .collect()
    }
}

/// One exported span: ids as lowercase hex (the parent's empty for a root span), kind as
/// `consumer`/`client`/..., attributes as JSON values (strings, integers, booleans, floats).
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    /// `service.name` of the process that exported it.
    pub service: String,
    pub name: String,
    pub kind: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// The status was set to error.
    pub error: bool,
}

impl ExportedSpan {
    /// An attribute's value (`Null` when the span does not have it).
    pub fn attr(&self, key: &str) -> &serde_json::Value {
        self.attributes.get(key).unwrap_or(&serde_json::Value::Null)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, serde_json::Value> {
    pairs
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => serde_json::json!(s),
                Some(any_value::Value::IntValue(n)) => serde_json::json!(n),
                Some(any_value::Value::BoolValue(b)) => serde_json::json!(b),
                Some(any_value::Value::DoubleValue(d)) => serde_json::json!(d),
                other => serde_json::json!(format!("{other:?}")),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn decode(export: ExportTraceServiceRequest) -> Vec<ExportedSpan> {
    let mut spans = Vec::new();
    for resource_spans in export.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource
            .get("service.name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            let kind = SpanKind::try_from(span.kind)
                .map(|k| k.as_str_name())
                .unwrap_or("SPAN_KIND_UNSPECIFIED");
            spans.push(ExportedSpan {
                service: service.clone(),
                name: span.name,
                kind: kind.trim_start_matches("SPAN_KIND_").to_ascii_lowercase(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: attributes(&span.attributes),
                error: span
                    .status
                    .is_some_and(|s| s.code == StatusCode::Error as i32),
            });
        }
    }
    spans
}

fn read_request(stream: &std::net::TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// Whether `haystack` contains `needle` as a run of bytes.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
