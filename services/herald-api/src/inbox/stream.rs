//! `GET /v1/inbox/stream`: the user's inbox as Server-Sent Events. A `message` event is a new
//! message (the same JSON as a listed one); `seen`, `read` and `archived` are marks made from
//! any tab or device (`{"id", "at"}`); `reset` says that the position the client resumed from
//! is no longer kept, so it should reload the list and the counts. Each event's id is its
//! position in `notifications.inbox`: `EventSource` sends the last one back as
//! `Last-Event-ID` when it reconnects, to this replica or another, and gets exactly what it
//! missed. A comment line every `api.inbox.heartbeat` keeps proxies from closing an idle stream;
//! the stream ends when the token expires.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::convert::Infallible;

use crate::AppState;
use crate::inbox::feed::Position;
use crate::inbox::messages::InboxErrors;
use crate::inbox::token::InboxUser;
use crate::problem::Problem;

/// The header `EventSource` resumes with.
const LAST_EVENT_ID: &str = "last-event-id";

#[utoipa::path(
    get,
    path = "/v1/inbox/stream",
    tag = "inbox",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, to resume after it"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `message`, `seen`, `read`, `archived` and `reset`", content_type = "text/event-stream", body = String),
        InboxErrors,
    ),
    security(("inbox_token" = [])),
)]
/// `GET /v1/inbox/stream`.
pub async fn stream(
    State(state): State<AppState>,
    user: InboxUser,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let last = headers
        .get(LAST_EVENT_ID)
        .and_then(|value| value.to_str().ok())
        .map(|text| Position::parse(text).ok_or(text));
    let last = match last {
        Some(Ok(position)) => Some(position),
        // Not an id this API gave: the client cannot resume, so it reloads.
        Some(Err(_)) => Some(Position {
            partition: -1,
            offset: -1,
        }),
        None => None,
    };
    let subscription = state
        .inbox
        .feed
        .subscribe(&user.tenant, &user.user_id, last);
    let reset = subscription
        .reset
        .then(|| Event::default().event("reset").data("{}"));
    let changes = subscription.into_stream().map(|change| {
        Event::default()
            .id(change.position.to_string())
            .event(change.change.as_str())
            .data(change.data.as_str())
    });
    let expires_in = (user.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let events = futures::stream::iter(reset)
        .chain(changes)
        .map(Ok::<_, Infallible>)
        .take_until(tokio::time::sleep(expires_in))
        .take_until(state.inbox.shutdown.clone().cancelled_owned());
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.inbox.heartbeat))
        .into_response())
}
