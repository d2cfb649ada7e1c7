//! The admin HTTP server every role runs: `/healthz` (the process is alive), `/readyz` (it has
//! what it needs to do its work: a role flips this once its clients are connected and back off
//! when they are lost), and Prometheus `/metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metric_names;

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}

/// Whether the role is ready to take work. Starts not ready.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Bucket bounds (seconds) of the end-to-end delivery latency: from tens of milliseconds (a
/// notification routed and sent at once) to a day (one deferred by quiet hours or `send_at`).
const END_TO_END_BUCKETS: [f64; 16] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0,
    86400.0,
];

/// The Prometheus recorder's settings. Histograms are rendered as summaries (per-process
/// quantiles), except those given buckets here: a latency that dashboards aggregate across
/// replicas needs buckets, since quantiles of several processes cannot be combined.
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full(metric_names::TRACK_END_TO_END_SECONDS.to_owned()),
        &END_TO_END_BUCKETS,
    )
}

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn metrics_handle(role: &str) -> Result<PrometheusHandle, String> {
    let handle = RECORDER
        .get_or_init(|| {
            prometheus_builder()
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))
        })
        .clone()?;
    metrics::gauge!(
        metric_names::BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "role" => role.to_owned()
    )
    .set(1.0);
    Ok(handle)
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

/// Serves the admin endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { readiness, metrics });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// A role's running admin server: its readiness flag and the task serving it.
#[derive(Debug)]
pub struct AdminServer {
    pub readiness: Readiness,
    pub addr: std::net::SocketAddr,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Once the role's work has ended and its shutdown token is cancelled: waits for the
    /// readiness checks to stop, reports not ready and waits for the admin server to close.
    pub async fn stop(self, checks: tokio::task::JoinHandle<()>) {
        if let Err(e) = checks.await {
            tracing::warn!(error = %e, "readiness checks failed");
        }
        self.readiness.set(false);
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!(error = %e, "admin server stopped with an error");
        }
    }
}

/// The admin server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminStartError {
    #[error("admin server on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Metrics(String),
}

/// Installs the metrics recorder for `role`, binds `listen` and serves the admin endpoints
/// until `shutdown` is cancelled; the role starts not ready.
pub async fn start(
    role: &str,
    listen: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> Result<AdminServer, AdminStartError> {
    let metrics = metrics_handle(role).map_err(AdminStartError::Metrics)?;
    let listen_error = |source| AdminStartError::Listen {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    let readiness = Readiness::default();
    let task = tokio::spawn(serve(listener, readiness.clone(), metrics, shutdown));
    Ok(AdminServer {
        readiness,
        addr,
        task,
    })
}

async fn ready(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn render_metrics(State(state): State<AdminState>) -> String {
    // Counted outside the recorder (one atomic add per call would cost more through it).
    metrics::counter!(metric_names::PROCESS_ALLOCATIONS)
        .absolute(crate::allocations::allocations());
    metrics::gauge!(metric_names::PROCESS_HEAP_BYTES).set(crate::allocations::heap_bytes() as f64);
    metrics::counter!(metric_names::STORE_STATEMENTS).absolute(herald_store::statements_sent());
    state.metrics.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let readiness = Readiness::default();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            readiness.clone(),
            metrics_handle("test").unwrap(),
            shutdown.clone(),
        ));
        let client = reqwest::Client::new();
        let get = |path: &str| client.get(format!("{base}{path}")).send();

        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        readiness.set(true);
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        let metrics = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(metrics.contains("herald_build_info{"), "{metrics}");

        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
