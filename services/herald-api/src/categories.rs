//! Category defaults (scope `manage` to write; `manage` or `read` to read): default channels,
//! fallback chain, mandatory flag, frequency cap and open and click tracking, checked with `herald seed`'s rules. The
//! router caches them for `router.cache_ttl`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use herald_contracts::Channel;
use herald_store::StoreError;
use herald_store::directory::CategoryDefaults;
use herald_store::seed::{RateLimit, SeedCategory, SeedFile};

use crate::AppState;
use crate::apikey::Scope;
use crate::auth::Caller;
use crate::manage::{read_scope, store_problem, typed};
use crate::problem::{self, CreateErrors, Problem, ReadErrors};
use crate::send::json_body;

/// `PUT /v1/categories/{category}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CategoryBody {
    /// Default channels, in order.
    channels: Vec<Channel>,
    /// Channels to fall back to, in order, when one is dead-lettered.
    #[serde(default)]
    fallback: Vec<Channel>,
    /// Cannot be opted out of.
    #[serde(default)]
    mandatory: bool,
    /// At most `count` per user per `window` (`"1h"`).
    #[serde(default)]
    rate_limit: Option<RateLimit>,
    /// Email sent through SMTP gets an open pixel and signed redirect links, and reports
    /// `opened` and `clicked` (needs `[tracking]`); off by default.
    #[serde(default)]
    track_engagement: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RateLimitView {
    count: i32,
    window: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CategoryView {
    category: String,
    channels: Vec<Channel>,
    fallback: Vec<Channel>,
    mandatory: bool,
    rate_limit: Option<RateLimitView>,
    track_engagement: bool,
}

fn view(category: String, defaults: CategoryDefaults) -> CategoryView {
    CategoryView {
        category,
        channels: defaults.channels,
        fallback: defaults.fallback,
        mandatory: defaults.mandatory,
        rate_limit: defaults.rate_limit.map(|(count, seconds)| RateLimitView {
            count,
            window: format!("{seconds}s"),
        }),
        track_engagement: defaults.track_engagement,
    }
}

/// The category from the path, by the rule requests follow.
fn category(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let Path(category) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    let ok = (1..=128).contains(&category.len())
        && category
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(category)
    } else {
        Err(Problem::bad_request(
            "a category is 1 to 128 lower-case letters, digits, `-`, `_` or `.`",
        ))
    }
}

async fn read(
    state: &AppState,
    caller: &Caller,
    category: &str,
) -> Result<CategoryDefaults, Problem> {
    state
        .directory
        .category(&caller.tenant, category)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no category `{category}` in this tenant")))
}

#[utoipa::path(
    get,
    path = "/v1/categories/{category}",
    tag = "herald",
    params(
        ("category" = String, Path, description = "The category, e.g. billing.invoice_ready"),
    ),
    responses(
        (status = 200, description = "The category's defaults", body = CategoryView),
        ReadErrors,
    ),
)]
/// `GET /v1/categories/{category}`.
pub async fn get_category(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let category = category(path)?;
    let defaults = read(&state, &caller, &category).await?;
    Ok(problem::json(StatusCode::OK, &view(category, defaults)))
}

#[utoipa::path(
    put,
    path = "/v1/categories/{category}",
    tag = "herald",
    params(
        ("category" = String, Path, description = "The category, e.g. billing.invoice_ready"),
    ),
    request_body = CategoryBody,
    responses(
        (status = 200, description = "Stored", body = CategoryView),
        CreateErrors,
    ),
)]
/// `PUT /v1/categories/{category}`: creates or replaces the category's defaults.
pub async fn put_category(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let category = category(path)?;
    let body: CategoryBody = typed(json_body(body, state.body_limit)?)?;
    let seed = SeedFile {
        categories: vec![SeedCategory {
            tenant: caller.tenant.clone(),
            category: category.clone(),
            channels: body.channels,
            fallback: body.fallback,
            mandatory: body.mandatory,
            rate_limit: body.rate_limit,
            track_engagement: body.track_engagement,
        }],
        ..SeedFile::default()
    };
    seed.validate().map_err(|e| match e {
        StoreError::Seed(message) => Problem::invalid_field("", message),
        other => store_problem(&other),
    })?;
    let Some(c) = seed.categories.into_iter().next() else {
        return Err(Problem::internal());
    };
    let rate_limit = match c.rate_limit {
        Some(r) => Some((
            r.count,
            i32::try_from(r.window.as_secs()).map_err(|_| {
                Problem::invalid_field("/rate_limit/window", "is longer than i32 seconds")
            })?,
        )),
        None => None,
    };
    let defaults = CategoryDefaults {
        channels: c.channels,
        fallback: c.fallback,
        mandatory: c.mandatory,
        rate_limit,
        track_engagement: c.track_engagement,
    };
    state
        .categories
        .put(&caller.tenant, &category, &defaults)
        .await?;
    Ok(problem::json(StatusCode::OK, &view(category, defaults)))
}

#[utoipa::path(
    delete,
    path = "/v1/categories/{category}",
    tag = "herald",
    params(
        ("category" = String, Path, description = "The category, e.g. billing.invoice_ready"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        ReadErrors,
    ),
)]
/// `DELETE /v1/categories/{category}`.
pub async fn delete_category(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let category = category(path)?;
    read(&state, &caller, &category).await?;
    state.categories.delete(&caller.tenant, &category).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
