//! Template versions (scope `manage` to write; `manage` or `read` to read), inside the key's
//! tenant. A version is immutable once created: `POST .../versions` stores the next number as a
//! draft after compiling every part in every locale as the router does (strict Handlebars, no
//! partials) and checking `herald seed`'s rules; `POST .../versions/{n}/publish` makes it live.
//! The router renders published versions only, and sees a publication within its cache TTL
//! (`router.cache_ttl`); a preview renders a draft when asked for its version.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use herald_contracts::Channel;
use herald_router::render::{SourceError, compile_part};
use herald_store::StoreError;
use herald_store::seed::{SeedFile, SeedTemplate};
use herald_store::templates::{CreateError, NewPart, StoredPart};

use crate::AppState;
use crate::apikey::Scope;
use crate::auth::Caller;
use crate::manage::{read_scope, store_problem, typed};
use crate::problem::{self, CreateErrors, FieldProblem, Problem, ReadErrors, WriteErrors};
use crate::send::json_body;

/// The longest template id, as in a request's `template.id`.
const MAX_TEMPLATE_ID_LEN: usize = 128;

/// One channel and locale of a version: the parts `herald seed` takes.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartsBody {
    /// Email subject (required for email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    /// Plain text (required for sms, push and inapp; text or html for email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    html: Option<String>,
    /// A JSON document once rendered (required for webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    json: Option<String>,
}

/// `POST /v1/templates/{template_id}/versions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionBody {
    /// Parts by channel, then by locale (`default` ends every fallback chain), e.g.
    /// `{"email": {"default": {"subject": "Hi {{name}}", "text": "..."}}}`.
    parts: BTreeMap<String, BTreeMap<String, PartsBody>>,
}

/// One version with its parts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VersionView {
    template_id: String,
    version: i32,
    /// RFC 3339.
    created_at: Option<String>,
    /// Whether the router renders it.
    published: bool,
    /// RFC 3339.
    published_at: Option<String>,
    /// By channel, then by locale.
    parts: BTreeMap<String, BTreeMap<String, PartsBody>>,
}

/// One version in a template's list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VersionSummary {
    version: i32,
    channels: Vec<String>,
    locales: Vec<String>,
    /// RFC 3339.
    created_at: Option<String>,
    published: bool,
    /// RFC 3339.
    published_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TemplateView {
    template_id: String,
    /// Newest first.
    versions: Vec<VersionSummary>,
}

fn rfc3339(at: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// When a version's rows were created and published: (created, published, published at).
fn lifecycle<'r>(
    rows: impl Iterator<Item = &'r StoredPart> + Clone,
) -> (Option<String>, bool, Option<String>) {
    (
        rfc3339(rows.clone().filter_map(|r| r.created_at).min()),
        rows.clone().all(|r| r.published),
        rfc3339(rows.filter_map(|r| r.published_at).max()),
    )
}

/// The rows of one version as a view; `None` when there are none.
fn version_view(template_id: String, rows: &[StoredPart]) -> Option<VersionView> {
    let first = rows.first()?;
    let mut parts: BTreeMap<String, BTreeMap<String, PartsBody>> = BTreeMap::new();
    for row in rows {
        parts.entry(row.channel.clone()).or_default().insert(
            row.locale.clone(),
            PartsBody {
                subject: row.subject.clone(),
                text: row.text.clone(),
                html: row.html.clone(),
                json: row.json.clone(),
            },
        );
    }
    let (created_at, published, published_at) = lifecycle(rows.iter());
    Some(VersionView {
        template_id,
        version: first.version,
        created_at,
        published,
        published_at,
        parts,
    })
}

/// Every version's summary, newest first.
fn summaries(rows: &[StoredPart]) -> Vec<VersionSummary> {
    let mut versions: BTreeMap<i32, Vec<&StoredPart>> = BTreeMap::new();
    for row in rows {
        versions.entry(row.version).or_default().push(row);
    }
    versions
        .into_iter()
        .rev()
        .map(|(version, rows)| {
            let mut channels: Vec<String> = rows.iter().map(|r| r.channel.clone()).collect();
            channels.sort();
            channels.dedup();
            let mut locales: Vec<String> = rows.iter().map(|r| r.locale.clone()).collect();
            locales.sort();
            locales.dedup();
            let (created_at, published, published_at) = lifecycle(rows.iter().copied());
            VersionSummary {
                version,
                channels,
                locales,
                created_at,
                published,
                published_at,
            }
        })
        .collect()
}

/// The template id from the path, by the rule requests follow.
fn check_template_id(template_id: String) -> Result<String, Problem> {
    let ok = (1..=MAX_TEMPLATE_ID_LEN).contains(&template_id.len())
        && template_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(template_id)
    } else {
        Err(Problem::bad_request(format!(
            "a template id is 1 to {MAX_TEMPLATE_ID_LEN} letters, digits, `-`, `_` or `.`"
        )))
    }
}

fn template_id(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let Path(template_id) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    check_template_id(template_id)
}

fn template_version(
    path: Result<Path<(String, i32)>, PathRejection>,
) -> Result<(String, i32), Problem> {
    let Path((template_id, version)) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    if version < 1 {
        return Err(Problem::bad_request("a version is 1 or more"));
    }
    Ok((check_template_id(template_id)?, version))
}

fn check_locale(locale: &str) -> bool {
    (1..=35).contains(&locale.len())
        && locale
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The body's parts, every part compiled as the router compiles it and every channel and
/// locale checked by `herald seed`'s rules; each problem named by its JSON Pointer.
fn checked_parts(body: VersionBody) -> Result<Vec<NewPart>, Problem> {
    if body.parts.is_empty() {
        return Err(Problem::invalid_field("/parts", "names no channel"));
    }
    let mut errors = Vec::new();
    let mut parts = Vec::new();
    for (channel_name, locales) in body.parts {
        let Ok(channel) = channel_name.parse::<Channel>() else {
            errors.push(FieldProblem {
                pointer: problem::pointer(["parts", &channel_name]),
                detail: format!(
                    "`{channel_name}` is not a channel (email, sms, push, webhook, inapp)"
                ),
            });
            continue;
        };
        if locales.is_empty() {
            errors.push(FieldProblem {
                pointer: problem::pointer(["parts", &channel_name]),
                detail: "names no locale; `default` ends every fallback chain".to_owned(),
            });
        }
        for (locale, body) in locales {
            let at = |part: &str| problem::pointer(["parts", &channel_name, &locale, part]);
            if !check_locale(&locale) {
                errors.push(FieldProblem {
                    pointer: at(""),
                    detail: "a locale is `default` or a BCP 47 tag such as fr or fr-CA".to_owned(),
                });
                continue;
            }
            let mut compiles = true;
            for (name, source) in [
                ("subject", &body.subject),
                ("text", &body.text),
                ("html", &body.html),
                ("json", &body.json),
            ] {
                let Some(source) = source else { continue };
                if let Err(e) = compile_part(source, name.to_owned()) {
                    compiles = false;
                    let detail = match e {
                        SourceError::Compile { .. } => format!("does not compile: {e}"),
                        SourceError::Partial => e.to_string(),
                    };
                    errors.push(FieldProblem {
                        pointer: at(name),
                        detail,
                    });
                }
            }
            let part = NewPart {
                channel,
                locale: locale.clone(),
                subject: body.subject,
                text: body.text,
                html: body.html,
                json: body.json,
            };
            if compiles && let Err(detail) = seed_rules(&part) {
                errors.push(FieldProblem {
                    pointer: problem::pointer(["parts", &channel_name, &locale]),
                    detail,
                });
            }
            parts.push(part);
        }
    }
    if errors.is_empty() {
        Ok(parts)
    } else {
        Err(Problem::invalid(errors))
    }
}

/// `herald seed`'s checks on one channel and locale (the parts its channel needs).
fn seed_rules(part: &NewPart) -> Result<(), String> {
    let file = SeedFile {
        templates: vec![SeedTemplate {
            tenant: String::new(),
            template_id: String::new(),
            version: 1,
            channel: part.channel,
            locale: part.locale.clone(),
            subject: part.subject.clone(),
            text: part.text.clone(),
            html: part.html.clone(),
            json: part.json.clone(),
        }],
        ..SeedFile::default()
    };
    match file.validate() {
        Ok(()) => Ok(()),
        // "template <which>: <what>": the pointer says which.
        Err(StoreError::Seed(message)) => Err(message
            .split_once(": ")
            .map_or(message.clone(), |(_, what)| what.to_owned())),
        Err(other) => Err(other.to_string()),
    }
}

#[utoipa::path(
    post,
    path = "/v1/templates/{template_id}/versions",
    tag = "herald",
    params(
        ("template_id" = String, Path, description = "The template's id"),
    ),
    request_body = VersionBody,
    responses(
        (status = 201, description = "The new draft version (not rendered by the router until published)", body = VersionView),
        CreateErrors,
    ),
)]
/// `POST /v1/templates/{template_id}/versions`: creates the next version, as a draft.
pub async fn create_version(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let template_id = template_id(path)?;
    let body: VersionBody = typed(json_body(body, state.body_limit)?)?;
    let parts = checked_parts(body)?;
    let version = state
        .templates
        .create(&caller.tenant, &template_id, &parts)
        .await
        .map_err(|e| match e {
            CreateError::Store(e) => store_problem(&e),
            CreateError::Contended => Problem::unavailable(e.to_string()),
        })?;
    let rows = state
        .templates
        .version(&caller.tenant, &template_id, version)
        .await?;
    let view = version_view(template_id, &rows).ok_or_else(Problem::internal)?;
    Ok(problem::json(StatusCode::CREATED, &view))
}

#[utoipa::path(
    post,
    path = "/v1/templates/{template_id}/versions/{version}/publish",
    tag = "herald",
    params(
        ("template_id" = String, Path, description = "The template's id"),
        ("version" = i32, Path, description = "The version to publish"),
    ),
    responses(
        (status = 200, description = "Published (publishing again changes nothing); the router renders it within router.cache_ttl", body = VersionView),
        WriteErrors,
    ),
)]
/// `POST /v1/templates/{template_id}/versions/{version}/publish`: makes a version live.
pub async fn publish_version(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, i32)>, PathRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let (template_id, version) = template_version(path)?;
    let rows = state
        .templates
        .publish(&caller.tenant, &template_id, version)
        .await?;
    version_answer(template_id, version, &rows)
}

/// 200 with the version's rows, or 404 when it has none.
fn version_answer(
    template_id: String,
    version: i32,
    rows: &[StoredPart],
) -> Result<Response, Problem> {
    let missing = || {
        Problem::not_found(format!(
            "template `{template_id}` has no version {version} in this tenant"
        ))
    };
    let view = version_view(template_id.clone(), rows).ok_or_else(missing)?;
    Ok(problem::json(StatusCode::OK, &view))
}

#[utoipa::path(
    get,
    path = "/v1/templates/{template_id}",
    tag = "herald",
    params(
        ("template_id" = String, Path, description = "The template's id"),
    ),
    responses(
        (status = 200, description = "Every version, newest first", body = TemplateView),
        ReadErrors,
    ),
)]
/// `GET /v1/templates/{template_id}`: the template's versions.
pub async fn get_template(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let template_id = template_id(path)?;
    let rows = state.templates.all(&caller.tenant, &template_id).await?;
    if rows.is_empty() {
        return Err(Problem::not_found(format!(
            "no template `{template_id}` in this tenant"
        )));
    }
    let view = TemplateView {
        versions: summaries(&rows),
        template_id,
    };
    Ok(problem::json(StatusCode::OK, &view))
}

#[utoipa::path(
    get,
    path = "/v1/templates/{template_id}/versions/{version}",
    tag = "herald",
    params(
        ("template_id" = String, Path, description = "The template's id"),
        ("version" = i32, Path, description = "The version"),
    ),
    responses(
        (status = 200, description = "The version with its parts", body = VersionView),
        ReadErrors,
    ),
)]
/// `GET /v1/templates/{template_id}/versions/{version}`.
pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, i32)>, PathRejection>,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let (template_id, version) = template_version(path)?;
    let rows = state
        .templates
        .version(&caller.tenant, &template_id, version)
        .await?;
    version_answer(template_id, version, &rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn body(json: serde_json::Value) -> VersionBody {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_bad_part_is_named_with_its_position() {
        let problem = checked_parts(body(serde_json::json!({"parts": {
            "email": {"default": {"subject": "Hi {{name}", "text": "ok"},
                      "fr": {"subject": "Salut", "html": "{{#if x}}"}},
            "sms": {"en": {"text": "{{> other}}"}},
            "fax": {"default": {"text": "x"}},
        }})))
        .unwrap_err();
        let pointers: Vec<&str> = problem.errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/parts/email/default/subject",
                "/parts/email/fr/html",
                "/parts/fax",
                "/parts/sms/en/text"
            ]
        );
        assert!(
            problem.errors[0].detail.contains("line 1, column"),
            "{problem:?}"
        );
        assert!(problem.errors[3].detail.contains("partial"), "{problem:?}");
    }

    #[test]
    fn seed_rules_apply() {
        let problem = checked_parts(body(
            serde_json::json!({"parts": {"email": {"default": {"text": "no subject"}}}}),
        ))
        .unwrap_err();
        assert_eq!(problem.errors[0].pointer, "/parts/email/default");
        assert_eq!(problem.errors[0].detail, "`subject` is required");
        let parts = checked_parts(body(serde_json::json!({"parts": {
            "email": {"default": {"subject": "Hi {{name}}", "text": "Hello {{name}}"}},
            "webhook": {"default": {"json": "{\"name\": \"{{name}}\"}"}},
        }})))
        .unwrap();
        assert_eq!(parts.len(), 2);
    }
}
