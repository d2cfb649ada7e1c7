//! Every error answer is an RFC 9457 problem (`application/problem+json`): a stable `type`
//! naming the kind of problem, a `title`, the `status`, a `detail` for this occurrence and, for
//! validation, `errors` naming each bad field by its JSON Pointer (RFC 6901).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// One bad field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// JSON Pointer into the request body (`/recipient/email`); `""` is the whole body.
    pub pointer: String,
    pub detail: String,
}

/// An RFC 9457 problem (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:herald:problem:<kind>`: validation, unauthorized, forbidden, bad-request,
    /// too-large, unavailable, not-found, internal.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For 422: each bad field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:herald:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: Some(detail.into()),
            errors: Vec::new(),
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 401: no key, a malformed key, an unknown or a revoked one. The detail does not say
    /// which, so that a key's existence is not disclosed.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "send a valid, unrevoked API key as `Authorization: Bearer <key>`",
        )
    }

    /// 401 for a provider callback whose signature is missing, wrong or too old.
    pub fn bad_signature(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// 403: the key lacks a scope, or the request names another tenant.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 400: the body is not JSON, or a header is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    /// 422: the body is JSON but some fields are not acceptable.
    pub fn invalid(errors: Vec<FieldProblem>) -> Self {
        let detail = match errors.as_slice() {
            [one] => one.detail.clone(),
            many => format!("{} fields are not acceptable", many.len()),
        };
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
                detail,
            )
        }
    }

    /// 422 for one field.
    pub fn invalid_field(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::invalid(vec![FieldProblem {
            pointer: pointer.into(),
            detail: detail.into(),
        }])
    }

    /// 413: the body is larger than `api.body_limit`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request body too large",
            format!("the body is larger than {limit} bytes (api.body_limit)"),
        )
    }

    /// 503: Kafka (or the database) did not answer in time; nothing was accepted. Sent with
    /// `Retry-After`.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    /// 404: no such route or resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 500: a fault of this server; the detail is logged, not shown.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "the server failed to answer; it has been logged",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// The problems a route that reads can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documents the answers; handlers build `Problem`s
pub(crate) enum ReadErrors {
    /// A malformed body, header or path.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// A missing, malformed, unknown or revoked API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The key lacks the route's scope, or the body names another tenant.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such resource in the key's tenant.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// Kafka or the database did not answer in time: retry after `Retry-After` seconds.
    #[response(
        status = 503,
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
    )]
    Unavailable(Problem),
}

/// The problems a route that changes an existing resource can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documents the answers; handlers build `Problem`s
pub(crate) enum WriteErrors {
    /// A malformed body, header or path.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// A missing, malformed, unknown or revoked API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The key lacks the route's scope, or the body names another tenant.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such resource in the key's tenant.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The body is larger than `api.body_limit`.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// A field is not acceptable: `errors[]` names each by JSON Pointer.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
    /// Kafka or the database did not answer in time: retry after `Retry-After` seconds.
    #[response(
        status = 503,
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
    )]
    Unavailable(Problem),
}

/// The problems a route that sends or creates can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documents the answers; handlers build `Problem`s
pub(crate) enum CreateErrors {
    /// A malformed body, header or path.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// A missing, malformed, unknown or revoked API key.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The key lacks the route's scope, or the body names another tenant.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// The body is larger than `api.body_limit`.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// A field is not acceptable: `errors[]` names each by JSON Pointer.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
    /// Kafka or the database did not answer in time: retry after `Retry-After` seconds.
    #[response(
        status = 503,
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
    )]
    Unavailable(Problem),
}

/// A JSON answer (`application/json`).
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an answer");
            Problem::internal().into_response()
        }
    }
}

/// A JSON Pointer from path segments, each escaped per RFC 6901.
pub fn pointer<'a>(segments: impl IntoIterator<Item = &'a str>) -> String {
    segments
        .into_iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_problem_json_with_retry_after_on_503() {
        let response = Problem::unavailable("Kafka did not answer").into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let response = Problem::invalid_field("/recipient/email", "bad").into_response();
        assert_eq!(response.status(), 422);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn pointers_escape_slashes_and_tildes() {
        assert_eq!(pointer(["recipient", "email"]), "/recipient/email");
        assert_eq!(pointer(["a/b", "c~d"]), "/a~1b/c~0d");
        assert_eq!(pointer([]), "");
    }
}
