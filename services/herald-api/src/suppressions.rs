//! A tenant's suppressed email addresses (hard bounces and complaints the providers reported,
//! and addresses added by hand): `GET /v1/suppressions` (a page at a time), `POST` to add one,
//! `GET` and `DELETE /v1/suppressions/{address}`. Reads take scope `read` or `manage`, changes
//! `manage`. The router stops emailing an address, and starts again after a delete, within
//! its cache TTL (`router.cache_ttl`).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use herald_runtime::metric_names::API_SUPPRESSIONS_ADDED;
use herald_store::suppressions::{BUCKETS, Suppression, SuppressionCursor, normalize, source};

use crate::AppState;
use crate::apikey::Scope;
use crate::auth::Caller;
use crate::manage::{read_scope, typed};
use crate::paging;
use crate::problem::{self, CreateErrors, Problem, ReadErrors, WriteErrors};
use crate::send::json_body;

/// The longest address accepted (RFC 5321's path limit).
const MAX_ADDRESS_LEN: usize = 254;

/// One suppressed address.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SuppressionView {
    /// Lowercased.
    address: String,
    /// `bounce`, `complaint` or `manual`.
    reason: String,
    suppressed_at: DateTime<Utc>,
    /// The provider that reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    /// The notification whose message bounced or was complained about.
    #[serde(skip_serializing_if = "Option::is_none")]
    source_event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_dispatch_id: Option<String>,
}

impl From<Suppression> for SuppressionView {
    fn from(s: Suppression) -> Self {
        Self {
            address: s.address,
            reason: s.reason,
            suppressed_at: s.suppressed_at,
            provider: s.provider,
            source_event_id: s.source_event_id,
            source_dispatch_id: s.source_dispatch_id,
        }
    }
}

/// `GET /v1/suppressions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SuppressionList {
    suppressions: Vec<SuppressionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// `POST /v1/suppressions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuppressionBody {
    /// The email address not to send to (stored lowercased).
    address: String,
}

/// An email address as the API takes it: something `@` something, without spaces or control
/// characters; lowercased.
fn checked_address(address: &str) -> Option<String> {
    let address = normalize(address);
    let (local, domain) = address.rsplit_once('@')?;
    let plain = !address.chars().any(|c| c.is_whitespace() || c.is_control());
    (plain && !local.is_empty() && !domain.is_empty() && address.len() <= MAX_ADDRESS_LEN)
        .then_some(address)
}

fn address_path(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let Path(address) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    checked_address(&address)
        .ok_or_else(|| Problem::bad_request("the path does not hold an email address"))
}

fn encode_cursor(cursor: &SuppressionCursor) -> String {
    paging::encode_cursor(&[&cursor.bucket.to_string(), &cursor.address])
}

fn decode_cursor(parts: Vec<String>) -> Option<SuppressionCursor> {
    let [bucket, address]: [String; 2] = parts.try_into().ok()?;
    let bucket = bucket
        .parse::<i32>()
        .ok()
        .filter(|b| (0..BUCKETS).contains(b))?;
    Some(SuppressionCursor { bucket, address })
}

#[utoipa::path(
    get,
    path = "/v1/suppressions",
    operation_id = "list_suppressions",
    tag = "herald",
    params(
        ("limit" = Option<u32>, Query, description = "Suppressions per page (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The tenant's suppressed addresses, a page at a time", body = SuppressionList),
        ReadErrors,
    ),
)]
/// `GET /v1/suppressions`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let (limit, cursor) = paging::page_params(uri.query().unwrap_or(""), decode_cursor)?;
    let (page, next) = state
        .suppressions
        .list(&caller.tenant, cursor, limit)
        .await?;
    Ok(problem::json(
        StatusCode::OK,
        &SuppressionList {
            suppressions: page.into_iter().map(SuppressionView::from).collect(),
            next_cursor: next.as_ref().map(encode_cursor),
        },
    ))
}

#[utoipa::path(
    post,
    path = "/v1/suppressions",
    operation_id = "add_suppression",
    tag = "herald",
    request_body = SuppressionBody,
    responses(
        (status = 201, description = "Suppressed (again, if it was; reason `manual`)", body = SuppressionView),
        CreateErrors,
    ),
)]
/// `POST /v1/suppressions`: suppresses an address by hand.
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let body: SuppressionBody = typed(json_body(body, state.body_limit)?)?;
    let address = checked_address(&body.address)
        .ok_or_else(|| Problem::invalid_field("/address", "must be an email address"))?;
    let suppression = Suppression {
        address,
        reason: source::MANUAL.to_owned(),
        suppressed_at: herald_contracts::time::now_millis(),
        provider: None,
        source_event_id: None,
        source_dispatch_id: None,
    };
    state.suppressions.add(&caller.tenant, &suppression).await?;
    metrics::counter!(API_SUPPRESSIONS_ADDED, "source" => source::MANUAL).increment(1);
    Ok(problem::json(
        StatusCode::CREATED,
        &SuppressionView::from(suppression),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/suppressions/{address}",
    operation_id = "get_suppression",
    tag = "herald",
    params(
        ("address" = String, Path, description = "The email address (any case)"),
    ),
    responses(
        (status = 200, description = "The address is suppressed", body = SuppressionView),
        ReadErrors,
    ),
)]
/// `GET /v1/suppressions/{address}`: 404 when the address is not suppressed.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let address = address_path(path)?;
    let found = state
        .suppressions
        .get(&caller.tenant, &address)
        .await?
        .ok_or_else(|| Problem::not_found("the address is not suppressed"))?;
    Ok(problem::json(StatusCode::OK, &SuppressionView::from(found)))
}

#[utoipa::path(
    delete,
    path = "/v1/suppressions/{address}",
    operation_id = "delete_suppression",
    tag = "herald",
    params(
        ("address" = String, Path, description = "The email address (any case)"),
    ),
    responses(
        (status = 204, description = "No longer suppressed; the router emails it again within router.cache_ttl"),
        WriteErrors,
    ),
)]
/// `DELETE /v1/suppressions/{address}`: 404 when the address is not suppressed.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let address = address_path(path)?;
    if state
        .suppressions
        .get(&caller.tenant, &address)
        .await?
        .is_none()
    {
        return Err(Problem::not_found("the address is not suppressed"));
    }
    state.suppressions.delete(&caller.tenant, &address).await?;
    tracing::info!(tenant = %caller.tenant, "suppression removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_lowercased() {
        assert_eq!(
            checked_address(" Ana@Example.COM").as_deref(),
            Some("ana@example.com")
        );
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@",
            "a na@example.com",
            "a\u{7}@x.y",
        ] {
            assert_eq!(checked_address(bad), None, "{bad:?}");
        }
        assert_eq!(checked_address(&format!("{}@x.y", "a".repeat(300))), None);
    }

    #[test]
    fn a_cursor_round_trips_and_a_bad_one_is_refused() {
        let cursor = SuppressionCursor {
            bucket: 7,
            address: "ana@example.com".into(),
        };
        let text = encode_cursor(&cursor);
        assert_eq!(
            paging::page_params(&format!("cursor={text}"), decode_cursor).unwrap(),
            (paging::DEFAULT_LIMIT, Some(cursor))
        );
        let out_of_range = paging::encode_cursor(&["16", "a@b"]);
        assert!(paging::page_params(&format!("cursor={out_of_range}"), decode_cursor).is_err());
        let short = paging::encode_cursor(&["3"]);
        assert!(paging::page_params(&format!("cursor={short}"), decode_cursor).is_err());
    }
}
