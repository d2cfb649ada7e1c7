//! `/readyz` follows the dependencies a role needs: it turns false within 10 s of losing Kafka,
//! the database or (for the router) the schema registry, and true again within 10 s of their
//! return; `/healthz` stays true throughout. Its own test binary: it freezes the shared servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use herald_test_support::{Frozen, HeraldEnv, RoleProcess, wait_for};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// What the roles promise: readiness follows a dependency within this long.
const WITHIN: Duration = Duration::from_secs(10);

fn wait_ready(roles: &[&RoleProcess], ready: bool, within: Duration, what: &str) -> Duration {
    let started = Instant::now();
    wait_for(what, within, || {
        roles.iter().all(|r| r.ready() == Some(ready)).then_some(())
    });
    started.elapsed()
}

fn alive(roles: &[&RoleProcess]) {
    for role in roles {
        assert_eq!(role.admin_get("/healthz").map(|(code, _)| code), Some(200));
    }
}

#[test]
fn readiness_follows_kafka_the_database_and_the_registry() {
    let env = HeraldEnv::new(HERALD, "ready");
    env.prepare(true);
    let router = env.spawn("router", &["router"], &[]);
    let worker = env.spawn("inapp", &["deliver", "--channel", "inapp"], &[]);
    let both = [&router, &worker];
    wait_ready(
        &both,
        true,
        Duration::from_secs(60),
        "both roles to be ready",
    );

    let outage = |name: &str, freeze: &dyn Fn() -> Frozen, affected: &[&RoleProcess]| {
        let frozen = freeze();
        let lost = wait_ready(affected, false, WITHIN, &format!("unready without {name}"));
        alive(&both);
        drop(frozen);
        let back = wait_ready(affected, true, WITHIN, &format!("ready with {name} back"));
        eprintln!("{name}: unready after {lost:?}, ready again after {back:?}");
    };
    outage("the database", &|| env.stack.freeze_database(), &both);
    {
        // Only the router needs the registry: the worker stays ready meanwhile.
        let frozen = env.stack.freeze_registry();
        wait_ready(
            &[&router],
            false,
            WITHIN,
            "the router unready without the registry",
        );
        assert_eq!(worker.ready(), Some(true));
        alive(&both);
        drop(frozen);
        wait_ready(
            &[&router],
            true,
            WITHIN,
            "the router ready with the registry back",
        );
    }
    outage("Kafka", &|| env.stack.freeze_broker(), &both);
}
