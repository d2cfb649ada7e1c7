//! A user's webhook endpoints (scope `manage`; listing also with `read`): create, list,
//! disable and enable, delete, rotate the signing secret. A secret is shown once, in the
//! answer that made it, and never logged. The router caches endpoints for `router.cache_ttl`;
//! workers cache secrets for `deliver.providers.webhook.secret_cache_ttl`.

use aws_lc_rs::rand;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use herald_store::webhooks::Endpoint;

use crate::AppState;
use crate::apikey::Scope;
use crate::auth::Caller;
use crate::manage::{check_user_id, profile, read_scope, typed, user_id};
use crate::problem::{self, Problem, ReadErrors, WriteErrors};
use crate::send::json_body;

const MAX_URL_LEN: usize = 2048;

/// `POST /v1/users/{user_id}/webhooks`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointBody {
    /// 1 to 64 letters, digits, `-`, `_` or `.`; generated when absent.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    id: Option<String>,
    /// Where deliveries are POSTed: `https://...` (or `http://`).
    #[schema(pattern = r"^https?://[^\s/]{1,200}(/[^\s]{0,1000})?$")]
    url: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EndpointView {
    id: String,
    url: String,
    enabled: bool,
    /// The Standard Webhooks signing secret: only in the answer that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EndpointList {
    endpoints: Vec<EndpointView>,
}

fn view(endpoint: Endpoint, secret: Option<String>) -> EndpointView {
    EndpointView {
        id: endpoint.id,
        url: endpoint.url,
        enabled: endpoint.enabled,
        secret,
    }
}

/// A new `whsec_` secret: 32 random bytes.
fn new_secret() -> Result<String, Problem> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).map_err(|_| Problem::internal())?;
    Ok(format!("whsec_{}", STANDARD.encode(bytes)))
}

fn check_endpoint_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The user and endpoint ids from the path, and the endpoint, which must exist.
async fn endpoint(
    state: &AppState,
    caller: &Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, Endpoint), Problem> {
    let Path((user_id, id)) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    let user_id = check_user_id(user_id)?;
    profile(state, caller, &user_id).await?;
    let found = state
        .webhooks
        .list(&caller.tenant, &user_id)
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| Problem::not_found(format!("no webhook endpoint `{id}` for this user")))?;
    Ok((user_id, found))
}

#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/webhooks",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
    ),
    request_body = EndpointBody,
    responses(
        (status = 201, description = "Created; the secret is shown only here", body = EndpointView),
        WriteErrors,
    ),
)]
/// `POST /v1/users/{user_id}/webhooks`: 201 with the endpoint and its secret (shown once).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let user_id = user_id(path)?;
    let body: EndpointBody = typed(json_body(body, state.body_limit)?)?;
    let id = match body.id {
        Some(id) if check_endpoint_id(&id) => id,
        Some(_) => {
            return Err(Problem::invalid_field(
                "/id",
                "must be 1 to 64 letters, digits, `-`, `_` or `.`",
            ));
        }
        None => uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
    };
    let rest = body
        .url
        .strip_prefix("https://")
        .or_else(|| body.url.strip_prefix("http://"));
    if rest.is_none_or(str::is_empty) || body.url.len() > MAX_URL_LEN {
        return Err(Problem::invalid_field(
            "/url",
            "must be an http(s) URL with a host",
        ));
    }
    profile(&state, &caller, &user_id).await?;
    let endpoint = Endpoint {
        id,
        url: body.url,
        enabled: true,
    };
    let secret = new_secret()?;
    state
        .webhooks
        .create(&caller.tenant, &user_id, &endpoint, &secret)
        .await?;
    Ok(problem::json(
        StatusCode::CREATED,
        &view(endpoint, Some(secret)),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/webhooks",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
    ),
    responses(
        (status = 200, description = "The user's endpoints, without secrets", body = EndpointList),
        ReadErrors,
    ),
)]
/// `GET /v1/users/{user_id}/webhooks`: every endpoint, without secrets.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let user_id = user_id(path)?;
    profile(&state, &caller, &user_id).await?;
    let endpoints = state.webhooks.list(&caller.tenant, &user_id).await?;
    Ok(problem::json(
        StatusCode::OK,
        &EndpointList {
            endpoints: endpoints.into_iter().map(|e| view(e, None)).collect(),
        },
    ))
}

async fn set_enabled(
    state: AppState,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    enabled: bool,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let (user_id, mut endpoint) = endpoint(&state, &caller, path).await?;
    state
        .webhooks
        .set_enabled(&caller.tenant, &user_id, &endpoint.id, enabled)
        .await?;
    endpoint.enabled = enabled;
    Ok(problem::json(StatusCode::OK, &view(endpoint, None)))
}

#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/webhooks/{id}/disable",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
        ("id" = String, Path, description = "The endpoint's id"),
    ),
    responses(
        (status = 200, description = "Disabled", body = EndpointView),
        ReadErrors,
    ),
)]
/// `POST /v1/users/{user_id}/webhooks/{id}/disable`: no more deliveries to it.
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    set_enabled(state, caller, path, false).await
}

#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/webhooks/{id}/enable",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
        ("id" = String, Path, description = "The endpoint's id"),
    ),
    responses(
        (status = 200, description = "Enabled", body = EndpointView),
        ReadErrors,
    ),
)]
/// `POST /v1/users/{user_id}/webhooks/{id}/enable`.
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    set_enabled(state, caller, path, true).await
}

#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/webhooks/{id}/rotate",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
        ("id" = String, Path, description = "The endpoint's id"),
    ),
    responses(
        (status = 200, description = "A new secret, shown only here", body = EndpointView),
        ReadErrors,
    ),
)]
/// `POST /v1/users/{user_id}/webhooks/{id}/rotate`: a new secret, shown once; the old one
/// stops signing once workers' secret caches expire.
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let (user_id, endpoint) = endpoint(&state, &caller, path).await?;
    let secret = new_secret()?;
    state
        .webhooks
        .set_secret(&caller.tenant, &user_id, &endpoint.id, &secret)
        .await?;
    Ok(problem::json(StatusCode::OK, &view(endpoint, Some(secret))))
}

#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/webhooks/{id}",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
        ("id" = String, Path, description = "The endpoint's id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        ReadErrors,
    ),
)]
/// `DELETE /v1/users/{user_id}/webhooks/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let (user_id, endpoint) = endpoint(&state, &caller, path).await?;
    state
        .webhooks
        .delete(&caller.tenant, &user_id, &endpoint.id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
