//! The in-app inbox, for the people who receive notifications: short-lived user tokens
//! ([`token`], issued through [`user::issue`]), the routes they open ([`messages`]), the live
//! streams ([`stream`], fed by [`feed`] from `notifications.inbox`), and browser access per
//! tenant origin ([`cors`]).

pub mod cors;
pub mod feed;
pub mod messages;
pub mod page;
pub mod publish;
pub mod stream;
pub mod token;
pub mod user;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use herald_store::inbox::Inbox;

use crate::AppState;

/// What the inbox routes share.
#[derive(Debug)]
pub struct InboxApi {
    /// `None` while `api.inbox.token_secret` is unset: the routes answer 404.
    pub tokens: Option<token::InboxTokens>,
    pub store: Inbox,
    pub origins: cors::AllowedOrigins,
    /// Marks, for the other replicas' streams.
    pub events: publish::InboxPublisher,
    /// The changes this replica reads, and its streams.
    pub feed: std::sync::Arc<feed::Feed>,
    /// `api.inbox.heartbeat`.
    pub heartbeat: std::time::Duration,
    /// Ends the streams at shutdown: a graceful shutdown waits for open connections.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The `/v1/inbox` routes, behind their CORS layer.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/inbox/messages", get(messages::list))
        .route("/v1/inbox/messages/{message_id}", get(messages::get))
        .route("/v1/inbox/counts", get(messages::counts))
        .route("/v1/inbox/mark", post(messages::mark))
        .route("/v1/inbox/stream", get(stream::stream))
        .route(page::PATH, get(page::page))
        .route(page::SCRIPT_PATH, get(page::script))
        .layer(middleware::from_fn_with_state(state, cors::cors))
}
