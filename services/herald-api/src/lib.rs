//! `herald api`: the HTTP API. Stateless, scaled like the other roles, with the same config,
//! admin port (`/healthz`, `/readyz` = Kafka and the database answer, `/metrics`) and shutdown
//! (SIGTERM stops accepting, finishes the requests in flight within `api.shutdown_grace`).
//!
//! Every `/v1` route but `/v1/unsubscribe/{token}` and `/v1/t/open|click/{token}` (signed
//! links from an email) and `/v1/callbacks/*` (signed by the provider, see [`callbacks`]) takes
//! a tenant API key (`Authorization: Bearer`); every error is an RFC 9457 problem
//! (`application/problem+json`).

pub mod acked;
pub mod apikey;
pub mod auth;
pub mod callbacks;
pub mod categories;
pub mod config;
pub mod inbox;
pub mod manage;
pub mod openapi;
mod paging;
pub mod preview;
pub mod problem;
pub mod send;
pub mod status_out;
pub mod suppressions;
pub mod templates;
pub mod timeline;
pub mod tracking;
pub mod unsubscribe;
pub mod webhooks;

pub use config::ApiConfig;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use herald_contracts::Codec;
use herald_contracts::tracking::TrackingConfig;
use herald_contracts::unsubscribe::UnsubscribeConfig;
use herald_kafka::{MetadataProbe, RenewingProducer};
use herald_router::RouterConfig;
use herald_runtime::CommonConfig;
use herald_runtime::admin::{self, Readiness};
use herald_runtime::health;
use herald_runtime::metric_names::{API_REQUEST_SECONDS, API_REQUESTS};
use herald_store::api_keys::ApiKeys;
use herald_store::categories::Categories;
use herald_store::directory::Directory;
use herald_store::provider_messages::ProviderMessages;
use herald_store::push_tokens::PushTokens;
use herald_store::suppressions::Suppressions;
use herald_store::templates::Templates;
use herald_store::users::Users;
use herald_store::webhooks::Webhooks;

use crate::acked::AckedProducer;
use crate::auth::KeyStore;
use crate::problem::Problem;
use crate::send::Sender;
use crate::status_out::StatusPublisher;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("database: {0}")]
    Store(#[from] herald_store::StoreError),
    #[error("codec: {0}")]
    Codec(#[from] herald_contracts::CodecError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Metrics(String),
    #[error("{0}")]
    Config(String),
    #[error("shutdown took longer than api.shutdown_grace ({0:?})")]
    GraceExceeded(Duration),
}

/// What every handler shares, behind one `Arc`: axum clones the state for every request and
/// every extractor that takes it, and a deep clone (each store's prepared statements) cost ~5%
/// of the API's CPU per request.
pub type AppState = Arc<ApiState>;

/// The shared state itself: the stores, the producer and the settings.
#[derive(Debug)]
pub struct ApiState {
    pub keys: KeyStore,
    pub sender: Arc<Sender>,
    /// Statuses the API observes itself (callbacks, opens, clicks).
    pub statuses: StatusPublisher,
    pub users: Users,
    pub directory: Directory,
    pub categories: Categories,
    pub push_tokens: PushTokens,
    pub webhooks: Webhooks,
    pub templates: Templates,
    /// The tenants' suppressed email addresses.
    pub suppressions: Suppressions,
    /// Which dispatch a provider message id belongs to (Twilio status callbacks).
    pub provider_messages: ProviderMessages,
    /// How provider callbacks are verified (`[api.callbacks]`).
    pub callbacks: Arc<callbacks::Verifiers>,
    /// What `herald track` wrote: timelines and the per-user index.
    pub timeline: herald_store::timeline_read::TimelineReader,
    /// Signs and checks unsubscribe links, when `[unsubscribe]` is set.
    pub unsubscribe: Option<herald_contracts::unsubscribe::UnsubscribeLinks>,
    /// Serves open pixels and redirect links, when `[tracking]` is set.
    pub tracking: Option<tracking::Tracking>,
    pub preview: preview::PreviewConfig,
    pub body_limit: usize,
    /// The in-app inbox: user tokens, the user's messages, browser origins.
    pub inbox: inbox::InboxApi,
}

/// The API's routes and layers.
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .merge(inbox::routes(state.clone()))
        .route("/v1/users/{user_id}/inbox-token", post(inbox::user::issue))
        .route("/v1/notifications", post(send::post_notification))
        .route("/v1/notifications/batch", post(send::post_batch))
        .route(
            "/v1/notifications/{event_id}",
            get(timeline::get_notification),
        )
        .route(
            "/v1/users/{user_id}/notifications",
            get(timeline::list_user_notifications),
        )
        .route(
            "/v1/users/{user_id}",
            get(manage::get_user)
                .put(manage::put_user)
                .delete(manage::delete_user),
        )
        .route(
            "/v1/users/{user_id}/preferences",
            get(manage::get_preferences).put(manage::put_preferences),
        )
        .route(
            "/v1/users/{user_id}/push_tokens",
            post(manage::add_push_token),
        )
        .route(
            "/v1/users/{user_id}/push_tokens/{token}",
            axum::routing::delete(manage::remove_push_token),
        )
        .route(
            "/v1/users/{user_id}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/v1/users/{user_id}/webhooks/{id}",
            axum::routing::delete(webhooks::delete),
        )
        .route(
            "/v1/users/{user_id}/webhooks/{id}/disable",
            post(webhooks::disable),
        )
        .route(
            "/v1/users/{user_id}/webhooks/{id}/enable",
            post(webhooks::enable),
        )
        .route(
            "/v1/users/{user_id}/webhooks/{id}/rotate",
            post(webhooks::rotate),
        )
        .route(
            "/v1/templates/{template_id}/preview",
            post(preview::preview),
        )
        .route("/v1/templates/{template_id}", get(templates::get_template))
        .route(
            "/v1/templates/{template_id}/versions",
            post(templates::create_version),
        )
        .route(
            "/v1/templates/{template_id}/versions/{version}",
            get(templates::get_version),
        )
        .route(
            "/v1/templates/{template_id}/versions/{version}/publish",
            post(templates::publish_version),
        )
        .route(
            "/v1/unsubscribe/{token}",
            get(unsubscribe::confirm).post(unsubscribe::unsubscribe),
        )
        .route("/v1/t/open/{token}", get(tracking::open))
        .route("/v1/t/click/{token}", get(tracking::click))
        .route(
            "/v1/categories/{category}",
            get(categories::get_category)
                .put(categories::put_category)
                .delete(categories::delete_category),
        )
        .route("/v1/callbacks/sendgrid", post(callbacks::sendgrid::receive))
        .route("/v1/callbacks/twilio", post(callbacks::twilio::receive))
        .route(
            "/v1/suppressions",
            get(suppressions::list).post(suppressions::add),
        )
        .route(
            "/v1/suppressions/{address}",
            get(suppressions::get).delete(suppressions::delete),
        )
        .route("/openapi.json", get(serve_openapi))
        .fallback(|| async { Problem::not_found("no such route") })
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(request_timeout, observe))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                // The path only: no query string, and never a header (the key is one).
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %logged_path(request.uri().path()),
                    key_id = tracing::field::Empty,
                )
            }),
        )
}

/// The path as logged: a signed link's token is left out (an unsubscribe token opts a user
/// out; a tracking token names the user and the link's target), and so is a suppression's
/// path, an email address.
fn logged_path(path: &str) -> &str {
    const HIDDEN: [(&str, &str); 4] = [
        ("/v1/unsubscribe/", "/v1/unsubscribe/{token}"),
        ("/v1/t/open/", "/v1/t/open/{token}"),
        ("/v1/t/click/", "/v1/t/click/{token}"),
        ("/v1/suppressions/", "/v1/suppressions/{address}"),
    ];
    HIDDEN
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or(path, |(_, logged)| logged)
}

/// `GET /openapi.json`: the OpenAPI 3.1 description of `/v1` (no key needed).
async fn serve_openapi() -> Response {
    let mut response = openapi::json().into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Bounds every request by `api.request_timeout` (503 with `Retry-After` past it) and counts
/// it by route and status. A 413 says `Connection: close`: the rest of its body was not read,
/// so the server closes the connection, and a client that reused it would have its next
/// request cut off.
async fn observe(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let started = Instant::now();
    let mut response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::unavailable(format!(
            "the request took longer than {timeout:?} (api.request_timeout)"
        ))
        .into_response(),
    };
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    let status = response.status().as_u16().to_string();
    metrics::counter!(API_REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(API_REQUEST_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Runs the API until `shutdown` is cancelled, then finishes the requests in flight within
/// `api.shutdown_grace`.
pub async fn run(
    common: CommonConfig,
    api: ApiConfig,
    router: RouterConfig,
    unsubscribe: UnsubscribeConfig,
    tracking: TrackingConfig,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let metrics = admin::metrics_handle("api").map_err(ApiError::Metrics)?;
    let readiness = Readiness::default();
    let admin_listener = bind(common.admin.listen).await?;
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        readiness.clone(),
        metrics,
        shutdown.clone(),
    ));

    let topics = common.kafka.topics();
    let session = Arc::new(herald_store::connect_keyspace(&common.store).await?);
    let keys = KeyStore::new(
        ApiKeys::prepare(session.clone(), &common.store).await?,
        api.key_cache_ttl,
    );
    let mut producer_config = common.kafka.producer_config();
    producer_config.set(
        "message.timeout.ms",
        api.produce_timeout.as_millis().to_string(),
    );
    // One producer and one codec (its schema cache) for requests and statuses alike.
    let producer = AckedProducer::new(RenewingProducer::new(producer_config)?, api.produce_timeout);
    let codec = Arc::new(Codec::new(&common.registry, topics.clone())?);
    let sender = Sender::new(
        producer.clone(),
        codec.clone(),
        topics.requested(),
        router.max_data_bytes,
    );
    let inbox_events =
        inbox::publish::InboxPublisher::new(producer.clone(), codec.clone(), topics.inbox());
    let statuses = StatusPublisher::new(producer, codec.clone(), topics.status());
    let users = Users::prepare(session.clone(), &common.store).await?;
    let directory = Directory::prepare(session.clone(), &common.store).await?;
    let categories = Categories::prepare(session.clone(), &common.store).await?;
    let push_tokens = PushTokens::prepare(session.clone(), &common.store).await?;
    let webhooks = Webhooks::prepare(session.clone(), &common.store).await?;
    let templates = Templates::prepare(session.clone(), &common.store).await?;
    let suppressions = Suppressions::prepare(session.clone(), &common.store).await?;
    let provider_messages = ProviderMessages::prepare(session.clone(), &common.store).await?;
    let verifiers = callbacks::Verifiers::from_config(&api.callbacks).map_err(ApiError::Config)?;
    let timeline =
        herald_store::timeline_read::TimelineReader::prepare(session.clone(), &common.store)
            .await?;
    let tracking = match tracking.links().map_err(ApiError::Config)? {
        Some(links) => Some(tracking::Tracking {
            links,
            marks: herald_store::engagement::EngagementMarks::prepare(
                session.clone(),
                &common.store,
            )
            .await?,
            stale_after: api.request_timeout + api.produce_timeout,
        }),
        None => None,
    };
    let inbox_store = herald_store::inbox::Inbox::prepare(session.clone(), &common.store).await?;
    // The live streams' feed reads from a window back, so that this replica resumes clients
    // as soon as it serves.
    let inbox_config = &api.inbox;
    let feed = inbox::feed::Feed::new(inbox::feed::Retention {
        window: inbox_config.resume_window,
        max_bytes: inbox_config.resume_buffer_bytes,
    });
    let feed_task = if inbox_config.token_secret.is_some() {
        Some(inbox::feed::start(feed.clone(), &common.kafka, codec, shutdown.clone()).await?)
    } else {
        None
    };
    let dependencies = vec![
        health::kafka(MetadataProbe::new(&common.kafka, topics.requested())?),
        health::database(session),
    ];
    let health_task = tokio::spawn(health::watch(
        dependencies,
        readiness.clone(),
        shutdown.clone(),
    ));

    let state = Arc::new(ApiState {
        keys,
        sender: Arc::new(sender),
        statuses,
        users,
        directory,
        categories,
        push_tokens,
        webhooks,
        templates,
        suppressions,
        provider_messages,
        callbacks: Arc::new(verifiers),
        timeline,
        unsubscribe: unsubscribe.links().map_err(ApiError::Config)?,
        tracking,
        preview: preview::PreviewConfig {
            default_locale: router.default_locale.clone(),
        },
        body_limit: api.body_limit,
        inbox: inbox::InboxApi {
            tokens: inbox::token::InboxTokens::from_config(&api.inbox),
            store: inbox_store,
            origins: inbox::cors::AllowedOrigins::new(&inbox_config.allowed_origins),
            events: inbox_events,
            feed,
            heartbeat: inbox_config.heartbeat,
            shutdown: shutdown.clone(),
        },
    });
    let listener = bind(api.listen).await?;
    let grace = api.shutdown_grace;
    // `into_make_service`: each connection shares the router. Served as a bare `Router`,
    // axum rebuilds its route table for every connection (about 30 KiB each, measured with
    // 10,000 inbox streams).
    let serving = axum::serve(
        listener,
        app(state, api.request_timeout).into_make_service(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        result = serving => result.map_err(|source| ApiError::Listen { addr: api.listen, source }),
        () = deadline => Err(ApiError::GraceExceeded(grace)),
    };
    shutdown.cancel();
    if let Some(task) = feed_task
        && let Err(e) = task.await
    {
        tracing::warn!(error = %e, "the inbox feed failed");
    }
    if let Err(e) = health_task.await {
        tracing::warn!(error = %e, "readiness checks failed");
    }
    readiness.set(false);
    if let Ok(Err(e)) = admin_task.await {
        tracing::warn!(error = %e, "admin server stopped with an error");
    }
    result
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, ApiError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ApiError::Listen { addr, source })?;
    tracing::info!(%bound, "listening");
    Ok(listener)
}

#[cfg(test)]
mod tests {
    #[test]
    fn signed_link_tokens_are_not_logged() {
        for (path, logged) in [
            ("/v1/t/click/abc.def", "/v1/t/click/{token}"),
            ("/v1/t/open/abc.def", "/v1/t/open/{token}"),
            ("/v1/unsubscribe/abc.def", "/v1/unsubscribe/{token}"),
            ("/v1/suppressions/a@b.example", "/v1/suppressions/{address}"),
            ("/v1/users/ada", "/v1/users/ada"),
        ] {
            assert_eq!(super::logged_path(path), logged);
        }
    }
}
