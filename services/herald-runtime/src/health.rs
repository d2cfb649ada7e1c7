//! Readiness from the dependencies a role needs to make progress. Every few seconds each
//! dependency is asked something cheap (Kafka metadata, a CQL read, the registry's config) with
//! a short timeout; `/readyz` is true only while every one answered its last check. Liveness
//! (`/healthz`) is not touched: restarting a pod does not bring a dead broker back.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::admin::Readiness;
use crate::metric_names::DEPENDENCY_UP;

/// How often the dependencies are checked, and how long one check may take. Together they
/// bound how late readiness follows a lost or recovered dependency (well within 10 s).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a consumer may be without partitions and coordinator (joining, rebalancing)
/// before the role is not ready.
pub const GROUP_GRACE: Duration = Duration::from_secs(10);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency and how to ask it whether it answers.
pub struct Dependency {
    pub name: &'static str,
    check: Box<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Dependency {
    /// `check` answers `Ok` while the dependency works; its error says why not.
    pub fn new<F, E>(name: &'static str, check: impl Fn() -> F + Send + Sync + 'static) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self {
            name,
            check: Box::new(move || {
                let future = check();
                Box::pin(async move { future.await.map_err(|e| e.to_string()) })
            }),
        }
    }

    async fn answers(&self) -> Result<(), String> {
        match tokio::time::timeout(CHECK_TIMEOUT, (self.check)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        }
    }
}

/// Kafka: a metadata request for the role's input topic.
pub fn kafka(probe: herald_kafka::MetadataProbe) -> Dependency {
    Dependency::new("kafka", move || {
        let probe = probe.clone();
        async move { probe.check(CHECK_TIMEOUT).await }
    })
}

/// The consumer's group: down while the consumer has had neither partitions nor a group
/// coordinator for longer than `grace` (a join or a rebalance takes a few seconds).
pub fn consumer_group(context: herald_kafka::HeraldContext, grace: Duration) -> Dependency {
    Dependency::new("consumer_group", move || {
        let lost = context.group_lost_for();
        async move {
            match lost {
                Some(lost) if lost > grace => Err(format!(
                    "no partitions and no group coordinator for {}s",
                    lost.as_secs()
                )),
                _ => Ok(()),
            }
        }
    })
}

/// The CQL database: a read of `system.local`.
pub fn database(session: std::sync::Arc<scylla::client::session::Session>) -> Dependency {
    Dependency::new("database", move || {
        let session = session.clone();
        async move { herald_store::ping(&session).await }
    })
}

/// The schema registry: a read of its global configuration.
pub fn registry(admin: herald_contracts::registry::RegistryAdmin) -> Dependency {
    Dependency::new("registry", move || {
        let admin = admin.clone();
        async move { admin.ping().await }
    })
}

/// Checks `dependencies` every [`CHECK_INTERVAL`] until `shutdown`, keeping `readiness` true
/// exactly while all of them answer. Each change is logged once, naming the dependency.
pub async fn watch(
    dependencies: Vec<Dependency>,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let mut down: Vec<bool> = vec![false; dependencies.len()];
    let mut first = true;
    loop {
        let results = futures::future::join_all(dependencies.iter().map(Dependency::answers)).await;
        for ((dependency, result), was_down) in
            dependencies.iter().zip(results.iter()).zip(&mut down)
        {
            let is_down = result.is_err();
            metrics::gauge!(DEPENDENCY_UP, "dependency" => dependency.name).set(if is_down {
                0.0
            } else {
                1.0
            });
            match result {
                Err(error) if first || !*was_down => {
                    tracing::warn!(dependency = dependency.name, %error, "dependency unavailable; not ready");
                }
                Ok(()) if *was_down => {
                    tracing::info!(dependency = dependency.name, "dependency answers again");
                }
                _ => {}
            }
            *was_down = is_down;
        }
        first = false;
        if shutdown.is_cancelled() {
            break;
        }
        readiness.set(down.iter().all(|d| !d));
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
        }
    }
    readiness.set(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test(start_paused = true)]
    async fn ready_only_while_every_dependency_answers() {
        let database_up = Arc::new(AtomicBool::new(true));
        let up = database_up.clone();
        let dependencies = vec![
            Dependency::new("kafka", || async { Ok::<(), String>(()) }),
            Dependency::new("database", move || {
                let up = up.load(Ordering::SeqCst);
                async move { if up { Ok(()) } else { Err("refused") } }
            }),
            Dependency::new("registry", || async { Ok::<(), String>(()) }),
        ];
        let readiness = Readiness::default();
        let shutdown = CancellationToken::new();
        let watcher = tokio::spawn(watch(dependencies, readiness.clone(), shutdown.clone()));

        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(readiness.is_ready());
        database_up.store(false, Ordering::SeqCst);
        tokio::time::sleep(CHECK_INTERVAL + Duration::from_millis(10)).await;
        assert!(!readiness.is_ready());
        database_up.store(true, Ordering::SeqCst);
        tokio::time::sleep(CHECK_INTERVAL + Duration::from_millis(10)).await;
        assert!(readiness.is_ready());

        shutdown.cancel();
        watcher.await.unwrap();
        assert!(!readiness.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_counts_as_down() {
        let dependencies = vec![Dependency::new("frozen", || {
            std::future::pending::<Result<(), String>>()
        })];
        let readiness = Readiness::default();
        readiness.set(true);
        let shutdown = CancellationToken::new();
        let watcher = tokio::spawn(watch(dependencies, readiness.clone(), shutdown.clone()));
        tokio::time::sleep(CHECK_TIMEOUT + Duration::from_millis(10)).await;
        assert!(!readiness.is_ready());
        shutdown.cancel();
        watcher.await.unwrap();
    }
}
