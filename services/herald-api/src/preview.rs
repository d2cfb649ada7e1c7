//! `POST /v1/templates/{template_id}/preview` (scope `manage` or `read`): renders a template for
//! given data, channels and locale exactly as the router would (the router's renderer, version
//! choice, locale fallback, strict mode, SMS encoding and segment count) and returns each
//! channel's content or render error. Nothing is sent. A draft version renders when asked for
//! by number.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use herald_contracts::{Channel, RenderedContent};
use herald_router::render::{Renderer, TemplateKey, TemplateSource, locale_chain, template_for};

use crate::AppState;
use crate::auth::Caller;
use crate::manage::{read_scope, typed};
use crate::problem::{self, Problem, WriteErrors};
use crate::send::json_body;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewBody {
    /// The template variables, as a request's `data`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// The channels to render; every channel the template has by default.
    #[serde(default)]
    channels: Option<Vec<Channel>>,
    /// The locale asked for (falls back as the router's does); `router.default_locale` by
    /// default.
    #[serde(default)]
    locale: Option<String>,
    /// A version, also a draft not yet published; by default the newest published version
    /// with a part for each channel, as the router picks.
    #[serde(default)]
    version: Option<i32>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChannelPreview {
    channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i32>,
    /// The template locale used after fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<RenderedContent>,
    /// Why it does not render (the router would dead-letter the event with this).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PreviewResult {
    template_id: String,
    results: Vec<ChannelPreview>,
}

#[utoipa::path(
    post,
    path = "/v1/templates/{template_id}/preview",
    tag = "herald",
    params(
        ("template_id" = String, Path, description = "The template's id"),
    ),
    request_body = PreviewBody,
    responses(
        (status = 200, description = "Each channel's content or render error; nothing is sent", body = PreviewResult),
        WriteErrors,
    ),
)]
pub async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let Path(template_id) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    let body: PreviewBody = typed(json_body(body, state.body_limit)?)?;
    if !body.data.is_object() {
        return Err(Problem::invalid_field("/data", "must be a JSON object"));
    }
    if body.version.is_some_and(|v| v < 1) {
        return Err(Problem::invalid_field("/version", "must be 1 or more"));
    }
    let mut rows = state
        .directory
        .templates(&caller.tenant, &template_id)
        .await?;
    // Without a version, what the router would send: published versions only. With one, that
    // version even as a draft, so a new version can be checked before it is published.
    if body.version.is_none() {
        rows.retain(|row| row.published);
    }
    if rows.is_empty() {
        return Err(Problem::not_found(format!(
            "no template `{template_id}` in this tenant"
        )));
    }
    let channels = body.channels.unwrap_or_else(|| {
        Channel::ALL
            .into_iter()
            .filter(|c| rows.iter().any(|r| r.channel == Some(*c)))
            .collect()
    });
    let locale = body
        .locale
        .unwrap_or_else(|| state.preview.default_locale.clone());
    let chain = locale_chain(&locale);
    // Nothing cached between previews: a draft edited a moment ago renders as it is now.
    let mut renderer = Renderer::new(0);
    let results = channels
        .into_iter()
        .map(|channel| {
            let Some(row) = template_for(&rows, body.version, channel, &chain) else {
                return ChannelPreview {
                    channel,
                    version: body.version,
                    locale: None,
                    content: None,
                    error: Some(format!(
                        "no {channel} part for locale {locale} or its fallbacks"
                    )),
                };
            };
            let key = TemplateKey {
                tenant: caller.tenant.clone(),
                template_id: template_id.clone(),
                version: row.version,
                channel,
                locale: row.locale.clone(),
            };
            let source = TemplateSource::from(row);
            let (content, error) = match renderer.render(&key, &source, &body.data) {
                Ok(content) => (Some(content), None),
                Err(e) => (None, Some(e.to_string())),
            };
            ChannelPreview {
                channel,
                version: Some(row.version),
                locale: Some(row.locale.clone()),
                content,
                error,
            }
        })
        .collect();
    Ok(problem::json(
        StatusCode::OK,
        &PreviewResult {
            template_id,
            results,
        },
    ))
}

/// What a preview needs from the router's configuration.
#[derive(Debug, Clone)]
pub struct PreviewConfig {
    pub default_locale: String,
}
