//! Who calls an inbox route: the user a token names. `POST /v1/users/{user_id}/inbox-token`
//! (a tenant key with `manage`) issues the token; the inbox routes take it as
//! `Authorization: Bearer <token>`, or as `?access_token=<token>` where a browser cannot set a
//! header (`EventSource`). The token is never logged: the request span records only the path.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::AppState;
use crate::apikey::Scope;
use crate::auth::Caller;
use crate::inbox::token::{InboxTokens, InboxUser, TokenError};
use crate::manage::{profile, user_id};
use crate::problem::{self, Problem, ReadErrors};

/// The query parameter a token may travel in.
pub const TOKEN_PARAMETER: &str = "access_token";

/// 404 while `api.inbox.token_secret` is unset.
pub(crate) fn enabled(state: &AppState) -> Result<&InboxTokens, Problem> {
    state.inbox.tokens.as_ref().ok_or_else(|| {
        Problem::not_found(
            "the inbox is not enabled on this server: set api.inbox.token_secret \
             (HERALD_API__INBOX__TOKEN_SECRET)",
        )
    })
}

/// The token a request presents, from its `Authorization` header or its query.
pub(crate) fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    bearer.or_else(|| {
        form_urlencoded::parse(query?.as_bytes())
            .find(|(name, _)| name == TOKEN_PARAMETER)
            .map(|(_, token)| token.into_owned())
    })
}

impl FromRequestParts<AppState> for InboxUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let tokens = enabled(state)?;
        let token = presented(&parts.headers, parts.uri.query()).ok_or_else(|| {
            Problem::bad_signature(format!(
                "send the user's inbox token as `Authorization: Bearer <token>` (or \
                 `?{TOKEN_PARAMETER}=`); a tenant API key is not accepted here"
            ))
        })?;
        tokens
            .verify(&token, Utc::now())
            .map_err(|e: TokenError| Problem::bad_signature(e.to_string()))
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct InboxTokenView {
    /// The user token (a JWT, HS256): send it as `Authorization: Bearer <token>` to the
    /// `/v1/inbox` routes.
    token: String,
    expires_at: DateTime<Utc>,
}

#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/inbox-token",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
    ),
    responses(
        (status = 201, description = "A short-lived token that reads and changes only this user's inbox", body = InboxTokenView),
        ReadErrors,
    ),
)]
/// `POST /v1/users/{user_id}/inbox-token`: a user token for the user's front end (scope
/// `manage`); 404 for a user Herald does not know.
pub async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    caller.require(Scope::Manage)?;
    let user_id = user_id(path)?;
    let tokens = enabled(&state)?;
    profile(&state, &caller, &user_id).await?;
    let (token, expires_at) = tokens.issue(&caller.tenant, &user_id, Utc::now());
    Ok(problem::json(
        StatusCode::CREATED,
        &InboxTokenView { token, expires_at },
    ))
}
