//! `herald schemas register` against the real registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_contracts::registry::{RegistryAdmin, RegistryError};
use herald_contracts::schemas::SchemaKind;
use herald_test_support::HeraldEnv;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[test]
fn register_is_idempotent_and_refuses_an_incompatible_change() {
    let env = HeraldEnv::new(HERALD, "schemas");
    let subject = SchemaKind::Requested.subject(&env.topics());

    let first = env.run(&["schemas", "register"], None);
    first.assert_code(0);
    assert!(
        first.stdout.contains(&format!("{subject}: registered")),
        "{}",
        first.stdout
    );
    let second = env.run(&["schemas", "register"], None);
    second.assert_code(0);
    assert!(
        second
            .stdout
            .contains(&format!("{subject}: unchanged (version 1")),
        "{}",
        second.stdout
    );

    // A compatible change (a new field with a default) is accepted as version 2.
    let dir = env.dir.join("schemas");
    std::fs::create_dir_all(&dir).unwrap();
    let mut requested: serde_json::Value =
        serde_json::from_str(SchemaKind::Requested.source()).unwrap();
    for kind in SchemaKind::ALL
        .into_iter()
        .filter(|k| *k != SchemaKind::Requested)
    {
        std::fs::write(dir.join(kind.file_name()), kind.source()).unwrap();
    }
    requested["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "campaign", "type": ["null", "string"], "default": null, "doc": "added"}
        ));
    std::fs::write(
        dir.join(SchemaKind::Requested.file_name()),
        requested.to_string(),
    )
    .unwrap();
    let compatible = env.run(
        &["schemas", "register", "--dir", dir.to_str().unwrap()],
        None,
    );
    compatible.assert_code(0);
    assert!(
        compatible
            .stdout
            .contains(&format!("{subject}: registered")),
        "{}",
        compatible.stdout
    );

    // An incompatible one (a new required field: old records cannot be read) is refused.
    requested["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "region", "type": "string", "doc": "required, no default"}
        ));
    std::fs::write(
        dir.join(SchemaKind::Requested.file_name()),
        requested.to_string(),
    )
    .unwrap();
    let refused = refused_registration(&env, &dir, &subject);
    assert!(
        refused.stderr.to_lowercase().contains("incompatible"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_file_that_is_not_avro_is_refused_before_the_registry_sees_it() {
    let env = HeraldEnv::new(HERALD, "schemas_bad");
    let dir = env.dir.join("schemas");
    std::fs::create_dir_all(&dir).unwrap();
    for kind in SchemaKind::ALL {
        std::fs::write(dir.join(kind.file_name()), "{\"type\": \"record\"}").unwrap();
    }
    let run = env.run(
        &["schemas", "register", "--dir", dir.to_str().unwrap()],
        None,
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("not a valid Avro schema"),
        "{}",
        run.stderr
    );
}

/// The registry's compatibility level of `subject`, read as any client would.
async fn compatibility_of(env: &HeraldEnv, subject: &str) -> String {
    let url = format!("{}/config/{subject}", env.stack.registry);
    let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    body["compatibilityLevel"]
        .as_str()
        .unwrap_or_else(|| panic!("{url}: {body}"))
        .to_owned()
}

/// The requested schema with `edit` applied to its field list.
fn requested_with(edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> String {
    let mut schema: serde_json::Value =
        serde_json::from_str(SchemaKind::Requested.source()).unwrap();
    edit(schema["fields"].as_array_mut().unwrap());
    schema.to_string()
}

fn without_field(name: &str) -> String {
    requested_with(|fields| fields.retain(|f| f["name"] != name))
}

/// BACKWARD would let a producer register a request schema without `created_at` or `tenant`
/// (a reader may drop a field), after which the router dead-letters every record it writes.
/// The request subject is FULL_TRANSITIVE: every version must read, and be read by, every
/// other, in both directions.
#[tokio::test]
async fn producers_cannot_register_a_request_schema_the_router_cannot_read() {
    let env = HeraldEnv::new(HERALD, "schemas_full");
    let subject = SchemaKind::Requested.subject(&env.topics());
    let registered = env.run(&["schemas", "register"], None);
    registered.assert_code(0);
    assert!(
        registered
            .stdout
            .contains(&format!("{subject}: registered")),
        "{}",
        registered.stdout
    );
    assert_eq!(compatibility_of(&env, &subject).await, "FULL_TRANSITIVE");
    // Herald's own records keep BACKWARD.
    for kind in SchemaKind::ALL
        .into_iter()
        .filter(|k| *k != SchemaKind::Requested)
    {
        assert_eq!(
            compatibility_of(&env, &kind.subject(&env.topics())).await,
            "BACKWARD",
            "{kind:?}"
        );
    }

    // A producer registering its schema (what a Confluent serializer with auto-registration
    // does) is refused, with the reason.
    let producer = RegistryAdmin::new(env.registry_config()).unwrap();
    let added_required = requested_with(|fields| {
        fields.push(serde_json::json!({"name": "region", "type": "string", "doc": "no default"}));
    });
    for (schema, field) in [
        (without_field("created_at"), "created_at"),
        (without_field("tenant"), "tenant"),
        (added_required, "region"),
    ] {
        match producer.register(&subject, &schema).await {
            Err(RegistryError::Refused { status, reason, .. }) => {
                assert_eq!(status, 409, "{reason}");
                assert!(reason.contains(field), "{field}: {reason}");
            }
            other => panic!("a schema changing {field} was not refused: {other:?}"),
        }
    }

    // `herald schemas register` with such a schema fails and names the reason.
    let dir = env.dir.join("schemas");
    std::fs::create_dir_all(&dir).unwrap();
    for kind in SchemaKind::ALL
        .into_iter()
        .filter(|k| *k != SchemaKind::Requested)
    {
        std::fs::write(dir.join(kind.file_name()), kind.source()).unwrap();
    }
    std::fs::write(
        dir.join(SchemaKind::Requested.file_name()),
        without_field("created_at"),
    )
    .unwrap();
    let refused = refused_registration(&env, &dir, &subject);
    assert!(refused.stderr.contains("created_at"), "{}", refused.stderr);
    assert_eq!(compatibility_of(&env, &subject).await, "FULL_TRANSITIVE");
}

/// `herald schemas register --dir <dir>`, which the registry must refuse for `subject`.
fn refused_registration(
    env: &HeraldEnv,
    dir: &std::path::Path,
    subject: &str,
) -> herald_test_support::Run {
    let refused = env.run(
        &["schemas", "register", "--dir", dir.to_str().unwrap()],
        None,
    );
    refused.assert_code(1);
    assert!(
        refused
            .stderr
            .contains(&format!("{subject}: refused by the registry (HTTP 409)")),
        "{}",
        refused.stderr
    );
    refused
}
