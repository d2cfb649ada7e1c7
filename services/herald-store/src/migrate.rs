//! Versioned CQL migrations, applied once each and recorded in `schema_migrations`. Every
//! statement in a migration is idempotent, so a run interrupted half-way is finished by the next.

use chrono::Utc;
use scylla::client::session::Session;
use scylla::statement::unprepared::Statement;
use std::time::Duration;

use crate::{StoreConfig, StoreError};

/// One migration file from `services/herald-store/migrations/`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub cql: &'static str,
}

/// Every migration, in order. Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        cql: include_str!("../migrations/0001_core.cql"),
    },
    Migration {
        version: 2,
        name: "rate_limits",
        cql: include_str!("../migrations/0002_rate_limits.cql"),
    },
    Migration {
        version: 3,
        name: "schedule_cursor",
        cql: include_str!("../migrations/0003_schedule_cursor.cql"),
    },
    Migration {
        version: 4,
        name: "send_claims",
        cql: include_str!("../migrations/0004_send_claims.cql"),
    },
    Migration {
        version: 5,
        name: "schedule_sweep",
        cql: include_str!("../migrations/0005_schedule_sweep.cql"),
    },
    Migration {
        version: 6,
        name: "api_keys",
        cql: include_str!("../migrations/0006_api_keys.cql"),
    },
    Migration {
        version: 7,
        name: "template_versions",
        cql: include_str!("../migrations/0007_template_versions.cql"),
    },
    Migration {
        version: 8,
        name: "timeline_state",
        cql: include_str!("../migrations/0008_timeline_state.cql"),
    },
    Migration {
        version: 9,
        name: "callbacks",
        cql: include_str!("../migrations/0009_callbacks.cql"),
    },
    Migration {
        version: 10,
        name: "engagement",
        cql: include_str!("../migrations/0010_engagement.cql"),
    },
    Migration {
        version: 11,
        name: "user_index",
        cql: include_str!("../migrations/0011_user_index.cql"),
    },
    Migration {
        version: 12,
        name: "inbox_state",
        cql: include_str!("../migrations/0012_inbox_state.cql"),
    },
];

const MIGRATIONS_TABLE: &str = "schema_migrations";

/// What a run of `migrate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub keyspace: String,
    pub applied: Vec<(i32, &'static str)>,
    pub already_applied: Vec<(i32, &'static str)>,
}

/// FNV-1a, 64 bits: enough to notice an edited migration, with no dependency.
pub fn checksum(text: &str) -> String {
    format!("{:016x}", fnv1a(text.as_bytes()))
}

/// FNV-1a over `bytes`: a hash that never changes between versions or platforms, for what is
/// stored (checksums, partition buckets).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The statements of a migration: split at `;` ending a line, `--` comments removed.
pub fn statements(cql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in cql.lines() {
        let code = line.split("--").next().unwrap_or("").trim_end();
        if code.trim().is_empty() {
            continue;
        }
        current.push_str(code);
        current.push('\n');
        if code.ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// The table and column of an `ALTER TABLE <table> ADD <column> <type>` statement.
///
/// Neither ScyllaDB nor Cassandra accept the same `ADD IF NOT EXISTS`, so such a statement is
/// made idempotent by the runner instead: it is skipped when the column already exists.
pub fn added_column(statement: &str) -> Option<(&str, &str)> {
    let mut words = statement.split_whitespace();
    let starts =
        words.next()?.eq_ignore_ascii_case("ALTER") && words.next()?.eq_ignore_ascii_case("TABLE");
    let table = words.next()?;
    let add = words.next()?.eq_ignore_ascii_case("ADD");
    let column = words.next()?;
    (starts && add && words.next().is_some()).then_some((table, column))
}

/// Whether `table` of the keyspace already has `column`.
async fn has_column(
    session: &Session,
    keyspace: &str,
    table: &str,
    column: &str,
) -> Result<bool, StoreError> {
    let rows = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
            (keyspace, table, column),
        )
        .await?
        .into_rows_result()?;
    Ok(rows.rows_num() > 0)
}

/// How long one schema change may take. A server applies DDL, flushes and agrees on the schema
/// much more slowly than it answers a query, above all while it is busy: the session's
/// `store.request_timeout` (5 s by default) is too short for it.
const SCHEMA_CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one schema change with `SCHEMA_CHANGE_TIMEOUT`.
async fn schema_change(session: &Session, cql: impl Into<String>) -> Result<(), StoreError> {
    let mut statement = Statement::new(cql.into());
    statement.set_request_timeout(Some(SCHEMA_CHANGE_TIMEOUT));
    session.query_unpaged(statement, &[]).await?;
    Ok(())
}

/// Creates the keyspace if needed and applies every migration not yet recorded.
pub async fn migrate(
    session: &Session,
    config: &StoreConfig,
) -> Result<MigrationReport, StoreError> {
    config.validate().map_err(StoreError::Config)?;
    let ks = &config.keyspace;
    schema_change(
        session,
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}",
            config.replication_cql()
        ),
    )
    .await?;
    schema_change(
        session,
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.{MIGRATIONS_TABLE} (version int PRIMARY KEY, \
             name text, checksum text, applied_at timestamp)"
        ),
    )
    .await?;
    session
        .use_keyspace(ks, true)
        .await
        .map_err(|e| StoreError::Request(e.to_string()))?;

    let applied: Vec<(i32, String, String)> = session
        .query_unpaged(
            format!("SELECT version, name, checksum FROM {MIGRATIONS_TABLE}"),
            &[],
        )
        .await?
        .into_rows_result()?
        .rows::<(i32, String, String)>()?
        .collect::<Result<_, _>>()?;

    let mut report = MigrationReport {
        keyspace: ks.clone(),
        ..MigrationReport::default()
    };
    for migration in MIGRATIONS {
        let now = checksum(migration.cql);
        if let Some((_, _, recorded)) = applied.iter().find(|(v, _, _)| *v == migration.version) {
            if *recorded != now {
                return Err(StoreError::MigrationChanged {
                    version: migration.version,
                    name: migration.name.to_owned(),
                    applied: recorded.clone(),
                    now,
                });
            }
            report
                .already_applied
                .push((migration.version, migration.name));
            continue;
        }
        for statement in statements(migration.cql) {
            if let Some((table, column)) = added_column(&statement)
                && has_column(session, ks, table, column).await?
            {
                continue;
            }
            schema_change(session, statement).await?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(|e| StoreError::Request(e.to_string()))?;
        // Unprepared on purpose: prepared statements after `USE` draw a warning from the
        // server, and these values are ours (an int, a fixed name, a hex checksum).
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum, applied_at) \
                     VALUES ({}, '{}', '{now}', {})",
                    migration.version,
                    migration.name,
                    Utc::now().timestamp_millis()
                ),
                &[],
            )
            .await?;
        report.applied.push((migration.version, migration.name));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_and_drop_comments() {
        let cql = "-- header\nCREATE TABLE a (\n  x int, -- the x\n  PRIMARY KEY (x)\n);\n\nCREATE TABLE b (y int PRIMARY KEY);\n";
        assert_eq!(
            statements(cql),
            vec![
                "CREATE TABLE a (\n  x int,\n  PRIMARY KEY (x)\n)".to_owned(),
                "CREATE TABLE b (y int PRIMARY KEY)".to_owned()
            ]
        );
    }

    #[test]
    fn migrations_are_numbered_in_order_and_every_statement_is_idempotent() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i as i32 + 1);
            for statement in statements(migration.cql) {
                assert!(
                    statement.contains("IF NOT EXISTS")
                        || statement.starts_with("DROP TABLE IF EXISTS")
                        || added_column(&statement).is_some(),
                    "not idempotent: {statement}"
                );
                // Cassandra-only features that ScyllaDB does not accept.
                for forbidden in ["StorageAttachedIndex", "SAI", "vector<"] {
                    assert!(!statement.contains(forbidden), "{forbidden} in {statement}");
                }
            }
        }
    }

    #[test]
    fn added_columns_are_recognised() {
        assert_eq!(
            added_column("ALTER TABLE templates ADD draft boolean"),
            Some(("templates", "draft"))
        );
        assert_eq!(added_column("ALTER TABLE templates DROP draft"), None);
        assert_eq!(added_column("CREATE TABLE IF NOT EXISTS a (x int)"), None);
    }

    #[test]
    fn checksum_is_stable() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_ne!(checksum("a"), checksum("b"));
    }
}
