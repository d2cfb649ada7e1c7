//! The in-app inbox, for the people who receive notifications: short-lived user tokens
//! ([`token`], issued through [`user::issue`]), the routes they open ([`messages`]), and
//! browser access per tenant origin ([`cors`]).

pub mod cors;
pub mod messages;
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
}

/// The `/v1/inbox` routes, behind their CORS layer.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/inbox/messages", get(messages::list))
        .route("/v1/inbox/messages/{message_id}", get(messages::get))
        .route("/v1/inbox/counts", get(messages::counts))
        .route("/v1/inbox/mark", post(messages::mark))
        .layer(middleware::from_fn_with_state(state, cors::cors))
}
