//! Configuration mistakes stop the process at start, exit 2, with the key named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_test_support::HeraldEnv;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[test]
fn an_unknown_key_is_named() {
    let env = HeraldEnv::new(HERALD, "config");
    let original = std::fs::read_to_string(&env.config_path).unwrap();
    for (change, key) in [
        (
            original.clone() + "[kafka.tls]\nenabled = true\n",
            "kafka.tls",
        ),
        (
            original.replace("[registry]\n", "[registry]\nurll = \"x\"\n"),
            "registry.urll",
        ),
        (original.clone() + "[routr]\nworkers = 2\n", "routr"),
    ] {
        std::fs::write(&env.config_path, change).unwrap();
        let run = env.run(&["db", "migrate"], None);
        run.assert_code(2);
        assert!(
            run.stderr.contains(&format!("key `{key}`")),
            "{key}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_bad_value_from_the_environment_is_named() {
    let env = HeraldEnv::new(HERALD, "config_env");
    let mut command = env.command(&["db", "migrate"]);
    command.env("HERALD_REGISTRY__TIMEOUT", "whenever");
    let run = herald_test_support::run(command, None);
    run.assert_code(2);
    assert!(run.stderr.contains("registry.timeout"), "{}", run.stderr);
}

#[test]
fn a_missing_config_file_is_an_error_not_defaults() {
    let env = HeraldEnv::new(HERALD, "config_missing");
    let mut command = std::process::Command::new(HERALD);
    command.args([
        "--config",
        env.dir.join("nope.toml").to_str().unwrap(),
        "db",
        "migrate",
    ]);
    let run = herald_test_support::run(command, None);
    run.assert_code(2);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
}
