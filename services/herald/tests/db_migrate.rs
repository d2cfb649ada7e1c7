//! `herald db migrate` and `herald seed` against the real CQL database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_store::migrate::MIGRATIONS;
use herald_test_support::{HeraldEnv, repo_root};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

async fn tables(env: &HeraldEnv) -> Vec<(String, String)> {
    let session = herald_store::connect(&env.store_config()).await.unwrap();
    let mut rows: Vec<(String, String)> = session
        .query_unpaged(
            "SELECT table_name, column_name FROM system_schema.columns WHERE keyspace_name = ?",
            (&env.name,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(String, String)>()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.sort();
    rows
}

async fn migration_records(env: &HeraldEnv) -> Vec<(i32, String)> {
    let session = herald_store::connect(&env.store_config()).await.unwrap();
    let mut rows: Vec<(i32, String)> = session
        .query_unpaged(
            format!("SELECT version, name FROM {}.schema_migrations", env.name),
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(i32, String)>()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.sort();
    rows
}

#[tokio::test]
async fn migrate_twice_leaves_one_record_per_migration_and_the_same_schema() {
    let env = HeraldEnv::new(HERALD, "db");
    let first = env.run(&["db", "migrate"], None);
    first.assert_code(0);
    assert!(
        first.stdout.contains("applied migration 1 (core)"),
        "{}",
        first.stdout
    );
    let schema_after_first = tables(&env).await;
    let table_names: std::collections::BTreeSet<&str> =
        schema_after_first.iter().map(|(t, _)| t.as_str()).collect();
    for table in [
        "users",
        "webhook_endpoints",
        "preferences",
        "category_defaults",
        "templates",
        "schedule",
        "send_ledger",
        "send_claims",
        "dedupe",
        "timeline",
        "notifications_by_user",
        "provider_messages",
        "suppressions",
        "inbox",
        "schema_migrations",
    ] {
        assert!(
            table_names.contains(table),
            "missing table {table}: {table_names:?}"
        );
    }

    let second = env.run(&["db", "migrate"], None);
    second.assert_code(0);
    assert!(second.stdout.contains("up to date"), "{}", second.stdout);
    assert_eq!(tables(&env).await, schema_after_first);
    let expected: Vec<(i32, String)> = MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_owned()))
        .collect();
    assert_eq!(migration_records(&env).await, expected);
}

#[tokio::test]
async fn seed_loads_the_demo_data_and_refuses_a_bad_file() {
    let env = HeraldEnv::new(HERALD, "seed");
    env.run(&["db", "migrate"], None).assert_code(0);
    let demo = repo_root().join("dev/demo/seed.json");
    let run = env.run(&["seed", demo.to_str().unwrap()], None);
    run.assert_code(0);
    assert!(run.stdout.contains("seeded 3 users"), "{}", run.stdout);

    let session = herald_store::connect(&env.store_config()).await.unwrap();
    let (email, tz): (Option<String>, Option<String>) = session
        .query_unpaged(
            format!(
                "SELECT email, time_zone FROM {}.users WHERE tenant = 'acme' AND user_id = 'ada'",
                env.name
            ),
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(Option<String>, Option<String>)>()
        .unwrap();
    assert_eq!(email.as_deref(), Some("ada@example.com"));
    assert_eq!(tz.as_deref(), Some("America/Montreal"));
    let (quiet_start,): (Option<i32>,) = session
        .query_unpaged(
            format!("SELECT quiet_start_minute FROM {}.preferences WHERE tenant = 'acme' AND user_id = 'ada' LIMIT 1", env.name),
            &[],
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(Option<i32>,)>()
        .unwrap();
    assert_eq!(quiet_start, Some(22 * 60));

    let bad = env.write(
        "bad.json",
        r#"{"users":[{"tenant":"acme","user_id":"x","time_zone":"Nowhere/Land"}]}"#,
    );
    let run = env.run(&["seed", bad.to_str().unwrap()], None);
    run.assert_code(3);
    assert!(
        run.stderr.contains("time_zone `Nowhere/Land`"),
        "{}",
        run.stderr
    );
}
