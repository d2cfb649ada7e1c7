//! `herald schemas register` against the real registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    for kind in [SchemaKind::Dispatch, SchemaKind::Status] {
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
