//! Managing users and their preferences (scope `manage` to write; `manage` or `read` to read),
//! always inside the key's tenant, checked with the same rules `herald seed` applies. Changes
//! reach the router within its cache TTL (`router.cache_ttl`, 30 s by default).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveTime, Timelike};
use serde::{Deserialize, Serialize};

use herald_contracts::Channel;
use herald_store::StoreError;
use herald_store::directory::Profile;
use herald_store::seed::{QuietHours, SeedFile, SeedPreference, SeedUser};
use herald_store::users::{Preference, Preferences, UserProfile};

use crate::AppState;
use crate::apikey::Scope;
use crate::auth::Caller;
use crate::problem::{self, CreateErrors, Problem, ReadErrors, WriteErrors};
use crate::send::{json_body, shape};

/// `PUT /v1/users/{user_id}`: the user's addresses, locale and time zone.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserBody {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    push_tokens: Vec<String>,
    #[serde(default)]
    locale: Option<String>,
    /// IANA, e.g. `Europe/Paris`.
    #[serde(default)]
    time_zone: Option<String>,
}

/// A user as `GET /v1/users/{user_id}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UserView {
    user_id: String,
    email: Option<String>,
    phone: Option<String>,
    push_tokens: Vec<String>,
    locale: Option<String>,
    time_zone: Option<String>,
}

/// `PUT /v1/users/{user_id}/preferences`: replaces every preference of the user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreferencesBody {
    #[serde(default)]
    global_opt_out: bool,
    /// `{"start": "22:00", "end": "07:00"}` in the user's time zone.
    #[serde(default)]
    quiet_hours: Option<QuietHours>,
    #[serde(default)]
    categories: Vec<SeedPreference>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QuietHoursView {
    start: String,
    end: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PreferenceView {
    category: String,
    channels: Option<Vec<Channel>>,
    opted_out: bool,
    opted_out_channels: Vec<Channel>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PreferencesView {
    global_opt_out: bool,
    quiet_hours: Option<QuietHoursView>,
    categories: Vec<PreferenceView>,
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        store_problem(&error)
    }
}

pub(crate) fn store_problem(error: &StoreError) -> Problem {
    if error.is_transient() {
        tracing::warn!(%error, "database request failed");
        Problem::unavailable("the database did not answer; try again")
    } else {
        tracing::error!(%error, "database answer not understood");
        Problem::internal()
    }
}

/// The user id from the path: what a request's `recipient.user_id` may be.
pub(crate) fn user_id(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let Path(user_id) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    check_user_id(user_id)
}

pub(crate) fn check_user_id(user_id: String) -> Result<String, Problem> {
    if user_id.is_empty() || user_id.len() > 256 || user_id.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "the user id must be 1 to 256 bytes without control characters",
        ));
    }
    Ok(user_id)
}

/// The body as `T`, with a bad field named by its JSON Pointer.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| Problem::invalid(vec![shape(&e)]))
}

/// A seed user of the caller's tenant with nothing set.
fn empty_user(caller: &Caller, user_id: &str) -> SeedUser {
    SeedUser {
        tenant: caller.tenant.clone(),
        user_id: user_id.to_owned(),
        email: None,
        phone: None,
        push_tokens: Vec::new(),
        webhooks: Vec::new(),
        locale: None,
        time_zone: None,
        global_opt_out: false,
        quiet_hours: None,
        preferences: Vec::new(),
    }
}

/// Runs `herald seed`'s checks on one user.
fn check_as_seed(user: SeedUser) -> Result<SeedUser, Problem> {
    let file = SeedFile {
        users: vec![user],
        ..SeedFile::default()
    };
    file.validate().map_err(|e| match e {
        StoreError::Seed(message) => Problem::invalid_field("", message),
        other => store_problem(&other),
    })?;
    file.users.into_iter().next().ok_or_else(Problem::internal)
}

pub(crate) fn read_scope(caller: &Caller) -> Result<(), Problem> {
    caller
        .require(Scope::Read)
        .or_else(|_| caller.require(Scope::Manage))
}

#[utoipa::path(
    put,
    path = "/v1/users/{user_id}",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
    ),
    request_body = UserBody,
    responses(
        (status = 200, description = "Stored", body = UserView),
        CreateErrors,
    ),
)]
/// `PUT /v1/users/{user_id}`: creates or replaces the user's profile.
pub async fn put_user(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let user_id = user_id(path)?;
    let body: UserBody = typed(json_body(body, state.body_limit)?)?;
    let user = check_as_seed(SeedUser {
        email: body.email,
        phone: body.phone,
        push_tokens: body.push_tokens,
        locale: body.locale,
        time_zone: body.time_zone,
        ..empty_user(&caller, &user_id)
    })?;
    let profile = UserProfile {
        email: user.email,
        phone: user.phone,
        push_tokens: user.push_tokens,
        locale: user.locale,
        time_zone: user.time_zone,
    };
    state
        .users
        .put_profile(&caller.tenant, &user_id, &profile)
        .await?;
    Ok(problem::json(
        StatusCode::OK,
        &UserView {
            user_id,
            email: profile.email,
            phone: profile.phone,
            push_tokens: profile.push_tokens,
            locale: profile.locale,
            time_zone: profile.time_zone,
        },
    ))
}

pub(crate) async fn profile(
    state: &AppState,
    caller: &Caller,
    user_id: &str,
) -> Result<Profile, Problem> {
    let profile = state.directory.profile(&caller.tenant, user_id).await?;
    if profile.known {
        Ok(profile)
    } else {
        Err(Problem::not_found(format!(
            "no user `{user_id}` in this tenant"
        )))
    }
}

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
    ),
    responses(
        (status = 200, description = "The user", body = UserView),
        ReadErrors,
    ),
)]
/// `GET /v1/users/{user_id}`.
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let user_id = user_id(path)?;
    let profile = profile(&state, &caller, &user_id).await?;
    Ok(problem::json(
        StatusCode::OK,
        &UserView {
            user_id,
            email: profile.email,
            phone: profile.phone,
            push_tokens: profile.push_tokens,
            locale: profile.locale,
            time_zone: profile.time_zone,
        },
    ))
}

#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
    ),
    responses(
        (status = 204, description = "Deleted with the user's preferences and webhook endpoints"),
        ReadErrors,
    ),
)]
/// `DELETE /v1/users/{user_id}`: the user, their preferences and webhook endpoints.
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let user_id = user_id(path)?;
    profile(&state, &caller, &user_id).await?;
    state.users.delete(&caller.tenant, &user_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn hhmm(minute: i32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn minute(hhmm: &str) -> Option<i32> {
    let time = NaiveTime::parse_from_str(hhmm, "%H:%M").ok()?;
    i32::try_from(time.hour() * 60 + time.minute()).ok()
}

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/preferences",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
    ),
    responses(
        (status = 200, description = "The user's preferences", body = PreferencesView),
        ReadErrors,
    ),
)]
/// `GET /v1/users/{user_id}/preferences`.
pub async fn get_preferences(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let user_id = user_id(path)?;
    let profile = profile(&state, &caller, &user_id).await?;
    let mut categories: Vec<PreferenceView> = profile
        .preferences
        .into_iter()
        .map(|(category, p)| PreferenceView {
            category,
            channels: p.channels,
            opted_out: p.opted_out,
            opted_out_channels: p.opted_out_channels,
        })
        .collect();
    categories.sort_by(|a, b| a.category.cmp(&b.category));
    Ok(problem::json(
        StatusCode::OK,
        &PreferencesView {
            global_opt_out: profile.global_opt_out,
            quiet_hours: profile.quiet_hours.map(|(start, end)| QuietHoursView {
                start: hhmm(start),
                end: hhmm(end),
            }),
            categories,
        },
    ))
}

#[utoipa::path(
    put,
    path = "/v1/users/{user_id}/preferences",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
    ),
    request_body = PreferencesBody,
    responses(
        (status = 200, description = "Replaced", body = PreferencesView),
        WriteErrors,
    ),
)]
/// `PUT /v1/users/{user_id}/preferences`: replaces every preference (categories left out are
/// removed). The user must exist.
pub async fn put_preferences(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let user_id = user_id(path)?;
    let body: PreferencesBody = typed(json_body(body, state.body_limit)?)?;
    let user = check_as_seed(SeedUser {
        global_opt_out: body.global_opt_out,
        quiet_hours: body.quiet_hours,
        preferences: body.categories,
        ..empty_user(&caller, &user_id)
    })?;
    profile(&state, &caller, &user_id).await?;
    let quiet_hours = match &user.quiet_hours {
        Some(q) => Some(
            minute(&q.start)
                .zip(minute(&q.end))
                .ok_or_else(Problem::internal)?,
        ),
        None => None,
    };
    let preferences = Preferences {
        global_opt_out: user.global_opt_out,
        quiet_hours,
        categories: user
            .preferences
            .into_iter()
            .map(|p| Preference {
                category: p.category,
                channels: p.channels,
                opted_out: p.opted_out,
                opted_out_channels: p.opted_out_channels,
            })
            .collect(),
    };
    state
        .users
        .replace_preferences(&caller.tenant, &user_id, &preferences)
        .await?;
    get_preferences(State(state), caller, Ok(Path(user_id))).await
}

/// `POST /v1/users/{user_id}/push_tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushTokenBody {
    /// 1 to 4096 bytes without blanks.
    #[schema(pattern = r"^\S{1,1000}$")]
    token: String,
}

/// A push token as requests carry them: 1 to 4096 bytes without blanks.
fn check_token(token: &str) -> Result<(), Problem> {
    if token.is_empty() || token.len() > 4096 || token.chars().any(char::is_whitespace) {
        return Err(Problem::invalid_field(
            "/token",
            "a push token is 1 to 4096 bytes without blanks",
        ));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/push_tokens",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
    ),
    request_body = PushTokenBody,
    responses(
        (status = 204, description = "Added"),
        WriteErrors,
    ),
)]
/// `POST /v1/users/{user_id}/push_tokens`: adds a token (adding it again changes nothing).
pub async fn add_push_token(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let user_id = user_id(path)?;
    let body: PushTokenBody = typed(json_body(body, state.body_limit)?)?;
    check_token(&body.token)?;
    profile(&state, &caller, &user_id).await?;
    state
        .push_tokens
        .add(&caller.tenant, &user_id, &body.token)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/push_tokens/{token}",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
        ("token" = String, Path, description = "The push token"),
    ),
    responses(
        (status = 204, description = "Removed (or was not there)"),
        ReadErrors,
    ),
)]
/// `DELETE /v1/users/{user_id}/push_tokens/{token}`.
pub async fn remove_push_token(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let Path((user_id, token)) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    let user_id = check_user_id(user_id)?;
    profile(&state, &caller, &user_id).await?;
    state
        .push_tokens
        .remove(&caller.tenant, &user_id, &[token])
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_and_clock_times() {
        assert_eq!(minute("22:30"), Some(1350));
        assert_eq!(hhmm(1350), "22:30");
        assert_eq!(hhmm(7 * 60), "07:00");
        assert_eq!(minute("25:00"), None);
    }

    #[test]
    fn seed_rules_apply() {
        let caller = Caller {
            key_id: "0123456789abcdef".into(),
            tenant: "acme".into(),
            scopes: Default::default(),
        };
        let user = |tz: &str| SeedUser {
            time_zone: Some(tz.into()),
            ..empty_user(&caller, "ada")
        };
        check_as_seed(user("Europe/Paris")).unwrap();
        let problem = check_as_seed(user("Mars/Olympus")).unwrap_err();
        assert_eq!(problem.status, 422);
        assert!(problem.errors[0].detail.contains("Mars/Olympus"));
    }
}
