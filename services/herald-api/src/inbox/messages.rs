//! The inbox routes a user token opens: list a user's messages newest first (all, unread or
//! archived), read one, count the unread and unseen ones, and mark messages seen, read or
//! archived.
//!
//! A mark is made once per message ([`herald_store::inbox`]): the request that makes it
//! publishes the matching status (`seen`, `read`, `archived`) on `notifications.status` and the
//! change on `notifications.inbox` (for every replica's streams), and answers success only once
//! Kafka acknowledged both. When the publish fails, the mark is taken
//! back and the request answers 503, so a retry marks and publishes again; only a replica that
//! dies between the mark and the publish loses a status.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use herald_contracts::inbox::InboxContent;
use herald_contracts::{Channel, InboxChange, InboxEvent, Status, StatusEvent};
use herald_store::inbox::{Counts, Filter, InboxMessage, Mark, MessageKey};

use crate::AppState;
use crate::inbox::token::InboxUser;
use crate::manage::typed;
use crate::paging;
use crate::problem::{self, Problem};
use crate::send::json_body;

/// Messages named in one mark request at most.
pub const MAX_MARKED_IDS: usize = 100;

/// Marks made (and statuses published) at once by one request.
const MARKS_IN_FLIGHT: usize = 16;

/// A message's id as the API shows it: its user and its key in the user's partition, as
/// base64url JSON, so that a token of another user is told 403 rather than 404.
pub(crate) fn message_id(user_id: &str, key: &MessageKey) -> String {
    let parts = (user_id, key.created_at.timestamp_millis(), &key.dispatch_id);
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&parts).unwrap_or_default())
}

/// The user and key a message id names.
fn parse_message_id(id: &str) -> Option<(String, MessageKey)> {
    let json = URL_SAFE_NO_PAD.decode(id).ok()?;
    let (user_id, millis, dispatch_id): (String, i64, String) =
        serde_json::from_slice(&json).ok()?;
    Some((
        user_id,
        MessageKey {
            created_at: DateTime::from_timestamp_millis(millis)?,
            dispatch_id,
        },
    ))
}

/// The key of a message id of `user`: 400 for a malformed id, 403 for another user's.
fn own_key(user: &InboxUser, id: &str) -> Result<MessageKey, Problem> {
    let (owner, key) = parse_message_id(id)
        .ok_or_else(|| Problem::bad_request(format!("`{id}` is not a message id this API gave")))?;
    if owner == user.user_id {
        Ok(key)
    } else {
        Err(Problem::forbidden(
            "this token reads and changes only its own user's inbox",
        ))
    }
}

/// One message as the inbox routes show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MessageView {
    id: String,
    event_id: Option<String>,
    category: Option<String>,
    /// critical, high, normal or low.
    priority: Option<String>,
    /// The rendered subject.
    title: Option<String>,
    /// The rendered text.
    body: Option<String>,
    /// The rendered json part of the template, when it has one.
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
    /// The json part's `action_url`: an http(s) URL or a path.
    action_url: Option<String>,
    created_at: DateTime<Utc>,
    seen_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
    archived_at: Option<DateTime<Utc>>,
}

pub(crate) fn view(user_id: &str, message: InboxMessage) -> MessageView {
    MessageView {
        id: message_id(user_id, &message.key),
        data: message
            .data_json
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok()),
        event_id: message.event_id,
        category: message.category,
        priority: message.priority,
        title: message.title,
        body: message.body,
        action_url: message.action_url,
        created_at: message.key.created_at,
        // A read message was seen when it was read, if not before.
        seen_at: message.seen_at.or(message.read_at),
        read_at: message.read_at,
        archived_at: message.archived_at,
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MessageList {
    messages: Vec<MessageView>,
    /// Pass as `cursor` for the next page; absent on the last. A filtered page can be short
    /// (or empty) and still have one: follow it until it is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CountsView {
    /// Messages not archived.
    total: u64,
    unread: u64,
    /// Neither seen nor read: what a bell's badge shows.
    unseen: u64,
}

impl From<Counts> for CountsView {
    fn from(counts: Counts) -> Self {
        Self {
            total: counts.total,
            unread: counts.unread,
            unseen: counts.unseen,
        }
    }
}

/// `filter` of a listing's query: 400 for an unknown one.
fn filter_param(query: &str) -> Result<Filter, Problem> {
    let Some((_, value)) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "filter")
    else {
        return Ok(Filter::Inbox);
    };
    match value.as_ref() {
        "inbox" => Ok(Filter::Inbox),
        "unread" => Ok(Filter::Unread),
        "archived" => Ok(Filter::Archived),
        "all" => Ok(Filter::All),
        other => Err(Problem::bad_request(format!(
            "filter `{other}` is not one of inbox, unread, archived, all"
        ))),
    }
}

fn decode_cursor(parts: Vec<String>) -> Option<MessageKey> {
    let (created_at, dispatch_id) = paging::decode_position(parts)?;
    Some(MessageKey {
        created_at,
        dispatch_id,
    })
}

#[utoipa::path(
    get,
    path = "/v1/inbox/messages",
    tag = "inbox",
    params(
        ("filter" = Option<String>, Query, description = "inbox (default: not archived), unread (not archived, not read), archived, or all"),
        ("limit" = Option<u32>, Query, description = "Messages per page (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The token's user's messages, newest first; pages stay stable while new messages arrive", body = MessageList),
        InboxErrors,
    ),
    security(("inbox_token" = [])),
)]
/// `GET /v1/inbox/messages`.
pub async fn list(
    State(state): State<AppState>,
    user: InboxUser,
    uri: Uri,
) -> Result<Response, Problem> {
    let query = uri.query().unwrap_or("");
    let filter = filter_param(query)?;
    let (limit, cursor) = paging::page_params(query, decode_cursor)?;
    let page = state
        .inbox
        .store
        .list(&user.tenant, &user.user_id, filter, cursor, limit)
        .await?;
    Ok(problem::json(
        StatusCode::OK,
        &MessageList {
            next_cursor: page
                .next
                .map(|key| paging::encode_position(key.created_at, &key.dispatch_id)),
            messages: page
                .messages
                .into_iter()
                .map(|m| view(&user.user_id, m))
                .collect(),
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/inbox/messages/{message_id}",
    tag = "inbox",
    params(("message_id" = String, Path, description = "A message's `id`")),
    responses(
        (status = 200, description = "The message", body = MessageView),
        InboxErrors,
    ),
    security(("inbox_token" = [])),
)]
/// `GET /v1/inbox/messages/{message_id}`.
pub async fn get(
    State(state): State<AppState>,
    user: InboxUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let Path(id) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    let key = own_key(&user, &id)?;
    let message = state
        .inbox
        .store
        .get(&user.tenant, &user.user_id, &key)
        .await?
        .ok_or_else(|| Problem::not_found("no such message (it may have expired)"))?;
    Ok(problem::json(StatusCode::OK, &view(&user.user_id, message)))
}

#[utoipa::path(
    get,
    path = "/v1/inbox/counts",
    tag = "inbox",
    responses(
        (status = 200, description = "The unread and unseen counts of the messages not archived", body = CountsView),
        InboxErrors,
    ),
    security(("inbox_token" = [])),
)]
/// `GET /v1/inbox/counts`.
pub async fn counts(State(state): State<AppState>, user: InboxUser) -> Result<Response, Problem> {
    let counts = state
        .inbox
        .store
        .counts(&user.tenant, &user.user_id)
        .await?;
    Ok(problem::json(StatusCode::OK, &CountsView::from(counts)))
}

/// What a mark request does.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MarkAction {
    Seen,
    Read,
    Archived,
}

impl MarkAction {
    fn mark(self) -> Mark {
        match self {
            MarkAction::Seen => Mark::Seen,
            MarkAction::Read => Mark::Read,
            MarkAction::Archived => Mark::Archived,
        }
    }
}

/// The inbox event a mark is.
fn change_of(mark: Mark) -> InboxChange {
    match mark {
        Mark::Seen => InboxChange::Seen,
        Mark::Read => InboxChange::Read,
        Mark::Archived => InboxChange::Archived,
    }
}

/// The status a mark emits.
pub(crate) fn status_of(mark: Mark) -> Status {
    match mark {
        Mark::Seen => Status::Seen,
        Mark::Read => Status::Read,
        Mark::Archived => Status::Archived,
    }
}

/// `POST /v1/inbox/mark`: `message_ids` or `all`, not both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarkBody {
    action: MarkAction,
    /// Up to 100 message ids.
    #[serde(default)]
    message_ids: Vec<String>,
    /// Every message of the inbox (not archived) that lacks the mark.
    #[serde(default)]
    all: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MarkResult {
    /// The messages this request changed (each emitted its status once); a message already
    /// marked, or read when marking seen, is not among them.
    changed: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/inbox/mark",
    tag = "inbox",
    request_body = MarkBody,
    responses(
        (status = 200, description = "Marked; each change emitted `seen`, `read` or `archived` on notifications.status once", body = MarkResult),
        InboxErrors,
    ),
    security(("inbox_token" = [])),
)]
/// `POST /v1/inbox/mark`.
pub async fn mark(
    State(state): State<AppState>,
    user: InboxUser,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body: MarkBody = typed(json_body(body, state.body_limit)?)?;
    let mark = body.action.mark();
    let store = &state.inbox.store;
    let targets = match (body.all, body.message_ids.len()) {
        (true, 0) => store.unmarked(&user.tenant, &user.user_id, mark).await?,
        (false, 1..=MAX_MARKED_IDS) => {
            let keys = body
                .message_ids
                .iter()
                .map(|id| own_key(&user, id))
                .collect::<Result<Vec<_>, _>>()?;
            // Every message must exist before any is changed (at most MAX_MARKED_IDS reads).
            let found = futures::future::try_join_all(
                keys.iter()
                    .map(|key| store.get(&user.tenant, &user.user_id, key)),
            )
            .await?;
            let mut targets = Vec::with_capacity(found.len());
            for (message, id) in found.into_iter().zip(&body.message_ids) {
                let message = message.ok_or_else(|| {
                    Problem::not_found(format!("no message `{id}` (it may have expired)"))
                })?;
                if !mark.is_on(&message) && !targets.contains(&message) {
                    targets.push(message);
                }
            }
            targets
        }
        _ => {
            return Err(Problem::invalid_field(
                "/message_ids",
                format!("give 1 to {MAX_MARKED_IDS} message ids, or `all: true` without ids"),
            ));
        }
    };
    let outcomes: Vec<Result<Option<MessageKey>, Problem>> = futures::stream::iter(targets)
        .map(|message| mark_one(&state, &user, message, mark))
        .buffer_unordered(MARKS_IN_FLIGHT)
        .collect()
        .await;
    let mut changed = Vec::new();
    let mut failed = None;
    for outcome in outcomes {
        match outcome {
            Ok(Some(key)) => changed.push(key),
            Ok(None) => {}
            Err(problem) => failed = Some(problem),
        }
    }
    // The marks made stay made (their statuses are out); a retry makes the rest.
    if let Some(problem) = failed {
        return Err(problem);
    }
    // In the inbox's order: newest first.
    changed.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.dispatch_id.cmp(&b.dispatch_id))
    });
    Ok(problem::json(
        StatusCode::OK,
        &MarkResult {
            changed: changed
                .iter()
                .map(|key| message_id(&user.user_id, key))
                .collect(),
        },
    ))
}

/// Marks one message and publishes its status: the key when this request changed it.
async fn mark_one(
    state: &AppState,
    user: &InboxUser,
    message: InboxMessage,
    mark: Mark,
) -> Result<Option<MessageKey>, Problem> {
    let store = &state.inbox.store;
    let at = herald_contracts::time::now_millis();
    if !store
        .set(&user.tenant, &user.user_id, &message, mark, at)
        .await?
    {
        return Ok(None);
    }
    let status = StatusEvent {
        event_id: message.event_id.clone().unwrap_or_default(),
        dispatch_id: Some(message.key.dispatch_id.clone()),
        tenant: user.tenant.clone(),
        user_id: user.user_id.clone(),
        channel: Some(Channel::Inapp),
        status: status_of(mark),
        provider: Some(herald_contracts::provider::INBOX.to_owned()),
        at,
        category: message.category.clone(),
        created_at: Some(message.key.created_at),
        ..StatusEvent::default()
    };
    // One timeline row per message and mark, however often a failed publish is retried.
    let status_id = format!(
        "inbox:{}:{}",
        message.key.dispatch_id,
        status.status.as_str()
    );
    let event = InboxEvent {
        tenant: user.tenant.clone(),
        user_id: user.user_id.clone(),
        change: change_of(mark),
        dispatch_id: message.key.dispatch_id.clone(),
        created_at: message.key.created_at,
        at,
        content: InboxContent {
            event_id: message.event_id.clone(),
            category: message.category.clone(),
            ..InboxContent::default()
        },
    };
    let (recorded, streamed) = futures::join!(
        state.statuses.publish_identified(&status, Some(&status_id)),
        state.inbox.events.publish(&event),
    );
    if let Err(problem) = recorded.and(streamed) {
        if let Err(e) = store
            .unset(&user.tenant, &user.user_id, &message.key, mark, at)
            .await
        {
            tracing::warn!(error = %e, dispatch_id = %message.key.dispatch_id,
                "cannot take back an inbox mark whose status was not published");
        }
        return Err(problem);
    }
    Ok(Some(message.key))
}

/// The problems an inbox route can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documents the answers; handlers build `Problem`s
pub(crate) enum InboxErrors {
    /// A malformed query, path, message id or body.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No user token, or a malformed, tampered or expired one.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// A message id of another user.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such message, or the inbox is not enabled (`api.inbox.token_secret`).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user(user_id: &str) -> InboxUser {
        InboxUser {
            tenant: "acme".into(),
            user_id: user_id.into(),
            expires_at: Utc::now(),
        }
    }

    #[test]
    fn a_message_id_names_its_user_and_key() {
        let key = MessageKey {
            created_at: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap_or_default(),
            dispatch_id: "e-1:inapp".into(),
        };
        let id = message_id("ada", &key);
        assert_eq!(own_key(&user("ada"), &id).ok(), Some(key));
        assert_eq!(
            own_key(&user("bob"), &id).map_err(|p| p.status()).err(),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            own_key(&user("ada"), "bm9wZQ")
                .map_err(|p| p.status())
                .err(),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn filters_are_named_and_an_unknown_one_is_refused() {
        assert_eq!(filter_param("").ok(), Some(Filter::Inbox));
        assert_eq!(
            filter_param("limit=5&filter=unread").ok(),
            Some(Filter::Unread)
        );
        assert_eq!(filter_param("filter=archived").ok(), Some(Filter::Archived));
        assert!(filter_param("filter=spam").is_err());
    }
}
