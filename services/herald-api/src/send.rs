//! Sending: `POST /v1/notifications` and `POST /v1/notifications/batch`. A request is the JSON
//! `herald produce` accepts, validated by the same code; it is answered 202 only once Kafka has
//! acknowledged its record (idempotent producer, `acks=all`), and 503 with `Retry-After` when
//! the broker does not acknowledge it within `api.produce_timeout`. A 503 may still have
//! reached Kafka; retrying with the same `Idempotency-Key` (or `event_id`) is safe because the
//! router drops an event id it has already routed.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use std::sync::Arc;

use herald_contracts::{Codec, NotificationRequest, RequestError};
use herald_runtime::metric_names::API_PRODUCED;

use crate::AppState;
use crate::acked::AckedProducer;
use crate::apikey::Scope;
use crate::auth::Caller;
use crate::problem::{self, CreateErrors, FieldProblem, Problem};

/// The most requests one batch may carry.
pub const MAX_BATCH: usize = 1000;
/// The header that makes a send idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Produces validated requests to `notifications.requested`.
pub struct Sender {
    producer: AckedProducer,
    codec: Arc<Codec>,
    topic: String,
    max_data_bytes: usize,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(
        producer: AckedProducer,
        codec: Arc<Codec>,
        topic: String,
        max_data_bytes: usize,
    ) -> Self {
        Self {
            producer,
            codec,
            topic,
            max_data_bytes,
        }
    }

    /// Encodes and produces `request`; `Ok` only once Kafka acknowledged the record.
    async fn send(&self, request: &NotificationRequest) -> Result<(), Problem> {
        let payload = self.codec.encode_request(request).await.map_err(|e| {
            if e.is_transient() {
                tracing::warn!(error = %e, "cannot encode a request");
                Problem::unavailable("the schema registry did not answer; nothing was accepted")
            } else {
                tracing::error!(error = %e, event_id = %request.event_id, "cannot encode a valid request");
                Problem::internal()
            }
        })?;
        match self
            .producer
            .produce(&self.topic, &request.key(), &payload, &[])
            .await
        {
            Ok(()) => {
                metrics::counter!(API_PRODUCED, "result" => "acked").increment(1);
                Ok(())
            }
            Err(error) => {
                metrics::counter!(API_PRODUCED, "result" => "unavailable").increment(1);
                tracing::warn!(%error, event_id = %request.event_id, "Kafka did not acknowledge a request");
                Err(Problem::unavailable(
                    "Kafka did not acknowledge the request in time; it may or may not have been \
                     accepted: retry with the same Idempotency-Key or event_id",
                ))
            }
        }
    }
}

/// The body of a 202.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Accepted {
    event_id: String,
}

#[utoipa::path(
    post,
    path = "/v1/notifications",
    tag = "herald",
    params((
        "Idempotency-Key" = Option<String>,
        Header,
        description = "1 to 255 visible ASCII characters: the event id is derived from (tenant, key), so a retry creates one notification"
    )),
    request_body = NotificationRequest,
    responses(
        (status = 202, description = "Kafka acknowledged the request", body = Accepted),
        CreateErrors,
    ),
)]
/// Send one notification: the JSON `herald produce` takes. `tenant` may be left out (the key's
/// tenant is used); naming another tenant is 403. Answered 202 once Kafka acknowledged it.
pub async fn post_notification(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Send)?;
    let idempotency = idempotency_key(&headers)?;
    let value = json_body(body, state.body_limit)?;
    let event_id = idempotency.map(|key| derived_event_id(&caller.tenant, &key));
    let request = parse_request(value, &caller, event_id, state.sender.max_data_bytes)?;
    state.sender.send(&request).await?;
    Ok(problem::json(
        StatusCode::ACCEPTED,
        &Accepted {
            event_id: request.event_id,
        },
    ))
}

/// One request's result in a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ItemResult {
    /// The status the request would have had on its own: 202, 403, 422 or 503.
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<Problem>,
}

impl ItemResult {
    fn failed(problem: Problem) -> Self {
        Self {
            status: problem.status,
            event_id: None,
            problem: Some(problem),
        }
    }
}

/// One result per request, in order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BatchResults {
    results: Vec<ItemResult>,
}

/// The body of `POST /v1/notifications/batch` (parsed item by item, so that each gets its own
/// result; this type only documents it).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct BatchRequest {
    /// 1 to 1,000 notification requests.
    notifications: Vec<herald_contracts::NotificationRequest>,
}

#[utoipa::path(
    post,
    path = "/v1/notifications/batch",
    tag = "herald",
    params((
        "Idempotency-Key" = Option<String>,
        Header,
        description = "Request i's event id is derived from (tenant, key, i)"
    )),
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One result per request; `Retry-After` when some got 503", body = BatchResults),
        CreateErrors,
    ),
)]
/// `POST /v1/notifications/batch`: `{"notifications": [...]}`, at most [`MAX_BATCH`]. Every
/// valid request is produced; the answer is 200 with one result per request, in order, and
/// `Retry-After` when some were not acknowledged. With an `Idempotency-Key`, request `i`'s
/// event id is derived from (tenant, key, i).
pub async fn post_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Send)?;
    let idempotency = idempotency_key(&headers)?;
    let value = json_body(body, state.body_limit)?;
    let items = match value {
        serde_json::Value::Object(mut object) => match object.remove("notifications") {
            Some(serde_json::Value::Array(items)) if object.is_empty() => items,
            Some(serde_json::Value::Array(_)) => {
                let field = object.keys().next().cloned().unwrap_or_default();
                return Err(Problem::invalid_field(
                    problem::pointer([field.as_str()]),
                    format!("unknown field `{field}`; the body is {{\"notifications\": [...]}}"),
                ));
            }
            _ => {
                return Err(Problem::invalid_field(
                    "/notifications",
                    "must be an array of notification requests",
                ));
            }
        },
        _ => {
            return Err(Problem::invalid_field(
                "",
                "the body must be an object: {\"notifications\": [...]}",
            ));
        }
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(Problem::invalid_field(
            "/notifications",
            format!(
                "holds {} requests; a batch holds 1 to {MAX_BATCH}",
                items.len()
            ),
        ));
    }
    let parsed: Vec<Result<NotificationRequest, Problem>> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let event_id = idempotency
                .as_ref()
                .map(|key| derived_event_id(&caller.tenant, &format!("{key}:{i}")));
            parse_request(item, &caller, event_id, state.sender.max_data_bytes)
                .map_err(|p| within(p, &format!("/notifications/{i}")))
        })
        .collect();
    let results: Vec<ItemResult> = futures::future::join_all(parsed.into_iter().map(|item| {
        let sender = &state.sender;
        async move {
            let request = match item {
                Ok(request) => request,
                Err(problem) => return ItemResult::failed(problem),
            };
            match sender.send(&request).await {
                Ok(()) => ItemResult {
                    status: StatusCode::ACCEPTED.as_u16(),
                    event_id: Some(request.event_id),
                    problem: None,
                },
                Err(problem) => ItemResult::failed(problem),
            }
        }
    }))
    .await;
    let unavailable = results
        .iter()
        .any(|r| r.status == StatusCode::SERVICE_UNAVAILABLE.as_u16());
    let mut response = problem::json(StatusCode::OK, &BatchResults { results });
    if unavailable {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(problem::RETRY_AFTER_SECONDS),
        );
    }
    Ok(response)
}

/// A batch item's problem with its pointers made relative to the whole body.
fn within(mut problem: Problem, prefix: &str) -> Problem {
    for error in &mut problem.errors {
        error.pointer = format!("{prefix}{}", error.pointer);
    }
    problem
}

/// The body as JSON: 413 over the limit, 400 when it is not JSON.
pub fn json_body(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<serde_json::Value, Problem> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large(limit)
        } else {
            Problem::bad_request(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("the body is not JSON: {e}")))
}

/// The `Idempotency-Key` header, if given: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&k.len())
                && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

/// The event id of a request sent with idempotency key `key` by `tenant`: a UUID (version 8)
/// from SHA-256 over both, so the same key in two tenants names two events.
pub fn derived_event_id(tenant: &str, key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("herald-idempotency\0{tenant}\0{key}").as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Checks one request body against the caller and the request rules. A body without `tenant`
/// acts in the key's tenant; one naming another tenant is 403.
pub fn parse_request(
    mut value: serde_json::Value,
    caller: &Caller,
    event_id: Option<String>,
    max_data_bytes: usize,
) -> Result<NotificationRequest, Problem> {
    let Some(object) = value.as_object_mut() else {
        return Err(Problem::invalid_field(
            "",
            "a request must be a JSON object",
        ));
    };
    match object.get("tenant") {
        None | Some(serde_json::Value::Null) => {
            object.insert("tenant".into(), caller.tenant.clone().into());
        }
        Some(serde_json::Value::String(tenant)) => caller.same_tenant(tenant)?,
        Some(_) => {}
    }
    if let Some(event_id) = event_id {
        if object.get("event_id").is_some_and(|v| !v.is_null()) {
            return Err(Problem::invalid_field(
                "/event_id",
                "give either `event_id` or an Idempotency-Key header, not both",
            ));
        }
        object.insert("event_id".into(), event_id.into());
    }
    let request: NotificationRequest =
        serde_path_to_error::deserialize(value).map_err(|e| Problem::invalid(vec![shape(&e)]))?;
    let request = request
        .validated()
        .map_err(|e| Problem::invalid(vec![field_problem(&e)]))?;
    request
        .check_data_size(max_data_bytes)
        .map_err(|e| Problem::invalid(vec![field_problem(&e)]))?;
    Ok(request)
}

/// A serde error (missing or unknown field, wrong type or value) with the path it was found at.
pub(crate) fn shape(error: &serde_path_to_error::Error<serde_json::Error>) -> FieldProblem {
    use serde_path_to_error::Segment;
    let mut segments: Vec<String> = error
        .path()
        .iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect();
    let detail = error.inner().to_string();
    // A missing or unknown field is reported at its object; name the field itself.
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|start| detail.strip_prefix(start))
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field.to_owned());
    if let Some(field) = named
        && segments.last() != Some(&field)
    {
        segments.push(field);
    }
    FieldProblem {
        pointer: problem::pointer(segments.iter().map(String::as_str)),
        detail,
    }
}

/// A validation error with the field it names as a JSON Pointer.
fn field_problem(error: &RequestError) -> FieldProblem {
    let pointer = match error {
        RequestError::Invalid { field, .. } => problem::pointer(field.split('.')),
        RequestError::DataTooLarge { .. } => "/data".to_owned(),
        RequestError::Json(_) | RequestError::Field(_) => String::new(),
    };
    FieldProblem {
        pointer,
        detail: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn caller() -> Caller {
        Caller {
            key_id: "0123456789abcdef".into(),
            tenant: "acme".into(),
            scopes: BTreeSet::from([Scope::Send]),
        }
    }

    fn good() -> serde_json::Value {
        serde_json::json!({
            "category": "billing.invoice_ready", "template": {"id": "invoice_ready"},
            "recipient": {"user_id": "ada", "email": "ada@example.com"}, "data": {"n": 1},
        })
    }

    fn pointers(problem: &Problem) -> Vec<&str> {
        problem.errors.iter().map(|e| e.pointer.as_str()).collect()
    }

    #[test]
    fn the_tenant_defaults_to_the_key_s_and_another_is_forbidden() {
        let request = parse_request(good(), &caller(), None, 1024).unwrap();
        assert_eq!(request.tenant, "acme");
        let mut other = good();
        other["tenant"] = "globex".into();
        let problem = parse_request(other, &caller(), None, 1024).unwrap_err();
        assert_eq!(problem.status, 403);
    }

    #[test]
    fn bad_fields_are_named_by_json_pointer() {
        let cases = [
            (
                serde_json::json!({"recipient": {"email": "nope"}}),
                "/recipient/email",
            ),
            (
                serde_json::json!({"channels": ["email", "fax"]}),
                "/channels/1",
            ),
            (serde_json::json!({"priority": "urgent"}), "/priority"),
            (serde_json::json!({"colour": "red"}), "/colour"),
            (serde_json::json!({"template": {"id": 7}}), "/template/id"),
            (serde_json::json!({"locale": "french!"}), "/locale"),
            (
                serde_json::json!({"data": {"blob": "x".repeat(2000)}}),
                "/data",
            ),
        ];
        for (change, expected) in cases {
            let mut body = good();
            merge(&mut body, change);
            let problem = parse_request(body, &caller(), None, 1024).unwrap_err();
            assert_eq!(problem.status, 422, "{problem:?}");
            assert_eq!(pointers(&problem), [expected], "{problem:?}");
        }
        let mut body = good();
        body.as_object_mut().unwrap().remove("category");
        let problem = parse_request(body, &caller(), None, 1024).unwrap_err();
        assert_eq!(pointers(&problem), ["/category"]);
        assert!(problem.errors[0].detail.contains("missing field"));
    }

    fn merge(target: &mut serde_json::Value, change: serde_json::Value) {
        match (target, change) {
            (serde_json::Value::Object(t), serde_json::Value::Object(c)) => {
                for (k, v) in c {
                    merge(t.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (t, c) => *t = c,
        }
    }

    #[test]
    fn an_idempotency_key_names_one_event_per_tenant() {
        let a = derived_event_id("acme", "order-1");
        assert_eq!(a, derived_event_id("acme", "order-1"));
        assert_ne!(a, derived_event_id("globex", "order-1"));
        assert_ne!(a, derived_event_id("acme", "order-2"));
        let request = parse_request(good(), &caller(), Some(a.clone()), 1024).unwrap();
        assert_eq!(request.event_id, a);
        let mut both = good();
        both["event_id"] = "e-1".into();
        let problem = parse_request(both, &caller(), Some(a), 1024).unwrap_err();
        assert_eq!(pointers(&problem), ["/event_id"]);
    }

    #[test]
    fn batch_item_pointers_are_relative_to_the_body() {
        let problem = within(
            Problem::invalid_field("/recipient", "x"),
            "/notifications/3",
        );
        assert_eq!(pointers(&problem), ["/notifications/3/recipient"]);
    }
}
