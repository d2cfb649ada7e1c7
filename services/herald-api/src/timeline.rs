//! The notification timeline (what `herald track` wrote): `GET /v1/notifications/{event_id}`
//! and `GET /v1/users/{user_id}/notifications`, scope `read` (or `manage`), inside the key's
//! tenant.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use herald_contracts::Channel;
use herald_contracts::headers::{REPLAY_ID, SCHEDULED_FOR};
use herald_store::timeline::state_rank;
use herald_store::timeline_read::{TimelineRow, UserCursor};

use crate::AppState;
use crate::auth::Caller;
use crate::manage::{read_scope, user_id};
use crate::paging;
use crate::problem::{self, Problem, ReadErrors};

/// How a derived event's id names its origin (`<origin><mark><rest>`), declared by the router
/// and `herald replay`.
const FALLBACK_MARK: &str = ":fallback:";
const REPLAY_MARK: &str = ":replay:";

/// One status of a notification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StatusView {
    /// `accepted`, `routed`, `scheduled`, `suppressed`, `sent`, `delivered`, `failed`,
    /// `dead_lettered`, `opened`, `clicked`, `read` or `unknown`.
    status: String,
    at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatch_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_message_id: Option<String>,
    attempt: i32,
    /// The status record's link headers (`herald-replay-id`, `herald-fallback-chain`,
    /// `herald-scheduled-for`, ...).
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    links: HashMap<String, String>,
}

/// One dispatch (one channel of the notification) with its statuses in time order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DispatchView {
    dispatch_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    /// The state of highest rank (of two of one rank, the later): a late status never moves it
    /// backwards, and a bounce or an undelivered SMS the provider reports after the send is
    /// the latest state.
    latest: String,
    #[serde(skip)]
    latest_rank: i32,
    statuses: Vec<StatusView>,
}

/// What the statuses tell of the request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RequestView {
    /// The first status's time.
    first_seen: DateTime<Utc>,
    /// The channels the router routed it to.
    routed_channels: Vec<String>,
    /// When a deferred notification was (or is) due, from its `scheduled` status.
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_for: Option<String>,
}

/// Events this one derives from or led to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LinksView {
    /// The event this one derives from (a fallback's or a resend replay's origin).
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    /// Fallback requests made after one of this event's dispatches was dead-lettered.
    fallbacks: Vec<String>,
    /// Replays that carried this event again (`herald replay` ids).
    replays: Vec<String>,
}

/// `GET /v1/notifications/{event_id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NotificationView {
    event_id: String,
    request: RequestView,
    dispatches: Vec<DispatchView>,
    /// Every status, in time order.
    statuses: Vec<StatusView>,
    links: LinksView,
}

/// One of a user's notifications.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UserNotificationView {
    event_id: String,
    /// The request's creation time: the list's order.
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    /// Its newest status and when it happened (absent for a moment after it is listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<DateTime<Utc>>,
}

/// `GET /v1/users/{user_id}/notifications`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UserNotificationsView {
    notifications: Vec<UserNotificationView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/notifications/{event_id}",
    tag = "herald",
    params(
        ("event_id" = String, Path, description = "The notification's event id in the key's tenant"),
    ),
    responses(
        (status = 200, description = "The request, every dispatch and every status in order, and linked events", body = NotificationView),
        ReadErrors,
    ),
)]
/// `GET /v1/notifications/{event_id}`.
pub async fn get_notification(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let Path(event_id) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    let rows = state.timeline.timeline(&caller.tenant, &event_id).await?;
    if rows.is_empty() {
        return Err(Problem::not_found(format!("no notification {event_id}")));
    }
    // A fallback request's id is `<event>:fallback:<channel>`, one per channel tried.
    let mut fallbacks = Vec::new();
    for channel in Channel::ALL {
        let id = format!("{event_id}{FALLBACK_MARK}{}", channel.as_str());
        if !state
            .timeline
            .timeline(&caller.tenant, &id)
            .await?
            .is_empty()
        {
            fallbacks.push(id);
        }
    }
    Ok(problem::json(
        StatusCode::OK,
        &view(event_id, rows, fallbacks),
    ))
}

fn view(event_id: String, mut rows: Vec<TimelineRow>, fallbacks: Vec<String>) -> NotificationView {
    rows.sort_by(|a, b| (a.at, &a.source).cmp(&(b.at, &b.source)));
    let origin = [FALLBACK_MARK, REPLAY_MARK]
        .iter()
        .filter_map(|mark| event_id.rfind(mark).map(|at| event_id[..at].to_owned()))
        .max_by_key(String::len);
    let mut replays: Vec<String> = rows
        .iter()
        .filter_map(|r| r.links.get(REPLAY_ID).cloned())
        .collect();
    replays.sort();
    replays.dedup();
    let mut routed_channels: Vec<String> = rows
        .iter()
        .filter(|r| r.status == "ROUTED")
        .filter_map(|r| r.channel.clone())
        .collect();
    routed_channels.sort();
    routed_channels.dedup();
    let request = RequestView {
        first_seen: rows.first().map_or_else(Utc::now, |r| r.at),
        routed_channels,
        scheduled_for: rows
            .iter()
            .find_map(|r| r.links.get(SCHEDULED_FOR).cloned()),
    };
    let mut dispatches: BTreeMap<String, DispatchView> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.dispatch_id.is_some()) {
        let id = row.dispatch_id.clone().unwrap_or_default();
        let dispatch = dispatches
            .entry(id.clone())
            .or_insert_with(|| DispatchView {
                dispatch_id: id,
                channel: row.channel.clone(),
                latest: row.status.clone(),
                latest_rank: rank(row),
                statuses: Vec::new(),
            });
        // Rows are in time order: of two states of one rank, the later one stays.
        if rank(row) >= dispatch.latest_rank {
            dispatch.latest = row.status.clone();
            dispatch.latest_rank = rank(row);
        }
        dispatch.statuses.push(status_view(row));
    }
    let mut dispatches: Vec<DispatchView> = dispatches.into_values().collect();
    for d in &mut dispatches {
        d.latest = d.latest.to_ascii_lowercase();
    }
    NotificationView {
        event_id,
        request,
        dispatches,
        statuses: rows.iter().map(status_view).collect(),
        links: LinksView {
            origin,
            fallbacks,
            replays,
        },
    }
}

fn rank(row: &TimelineRow) -> i32 {
    herald_contracts::Status::from_symbol(&row.status).map_or(-1, |status| {
        state_rank(status, row.provider_message_id.as_deref())
    })
}

fn status_view(row: &TimelineRow) -> StatusView {
    StatusView {
        status: row.status.to_ascii_lowercase(),
        at: row.at,
        dispatch_id: row.dispatch_id.clone(),
        channel: row.channel.clone(),
        reason: row.reason.clone(),
        provider: row.provider.clone(),
        provider_message_id: row.provider_message_id.clone(),
        attempt: row.attempt,
        links: row.links.clone(),
    }
}

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/notifications",
    tag = "herald",
    params(
        ("user_id" = String, Path, description = "The user's id in the key's tenant"),
        ("limit" = Option<u32>, Query, description = "Notifications per page (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The user's notifications, newest first by creation time (a fallback or replay before its origin), each with its newest status; the order does not change as statuses arrive", body = UserNotificationsView),
        ReadErrors,
    ),
)]
/// `GET /v1/users/{user_id}/notifications`.
pub async fn list_user_notifications(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    read_scope(&caller)?;
    let user_id = user_id(path)?;
    let (limit, cursor) = page_params(uri.query().unwrap_or(""))?;
    let (page, next) = state
        .timeline
        .user_notifications(&caller.tenant, &user_id, cursor, limit)
        .await?;
    Ok(problem::json(
        StatusCode::OK,
        &UserNotificationsView {
            notifications: page
                .into_iter()
                .map(|n| UserNotificationView {
                    event_id: n.event_id,
                    created_at: n.created_at,
                    category: n.category,
                    status: n.status.map(|s| s.to_ascii_lowercase()),
                    at: n.at,
                })
                .collect(),
            next_cursor: next.as_ref().map(encode_cursor),
        },
    ))
}

fn page_params(query: &str) -> Result<(usize, Option<UserCursor>), Problem> {
    paging::page_params(query, decode_cursor)
}

fn encode_cursor(cursor: &UserCursor) -> String {
    paging::encode_position(cursor.created_at, &cursor.event_id)
}

/// A cursor: the request's creation time and its event id.
fn decode_cursor(parts: Vec<String>) -> Option<UserCursor> {
    let (created_at, event_id) = paging::decode_position(parts)?;
    Some(UserCursor {
        created_at,
        event_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::DEFAULT_LIMIT;

    #[test]
    fn a_cursor_round_trips_and_a_bad_one_is_refused() {
        let cursor = UserCursor {
            created_at: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            event_id: "e:fallback:inapp".into(),
        };
        let text = encode_cursor(&cursor);
        assert_eq!(
            page_params(&format!("cursor={text}&limit=5")).unwrap(),
            (5, Some(cursor))
        );
        assert!(page_params("cursor=%%%").is_err());
        assert!(page_params("cursor=bm9wZQ").is_err());
        assert!(page_params("limit=0").is_err());
        assert!(page_params("limit=101").is_err());
        assert_eq!(page_params("").unwrap(), (DEFAULT_LIMIT, None));
    }
}
