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

/// A provider section is checked in full (required keys, secrets) only by the worker that
/// uses it, so that its secret can be given to that worker alone; unknown keys and malformed
/// values in it are still refused by every process.
#[test]
fn a_provider_is_checked_in_full_only_by_the_worker_that_uses_it() {
    let env = HeraldEnv::new(HERALD, "config_providers");
    let original = std::fs::read_to_string(&env.config_path).unwrap();
    let providers = "[deliver.providers.twilio]\naccount_sid = \"AC1\"\nfrom = \"+15005550006\"\n\n\
                     [deliver.providers.sendgrid]\nfrom = \"billing@acme.example\"\n";
    std::fs::write(&env.config_path, format!("{original}{providers}")).unwrap();
    let run = env.run(&["config", "check"], None);
    run.assert_code(0);
    for (channel, key) in [("sms", "twilio.auth_token"), ("email", "sendgrid.api_key")] {
        let run = env.run(&["config", "check", "--channel", channel], None);
        run.assert_code(2);
        let variable = format!(
            "HERALD_DELIVER__PROVIDERS__{}",
            key.to_uppercase().replace('.', "__")
        );
        assert!(
            run.stderr.contains(key) && run.stderr.contains(&variable),
            "{channel}: {}",
            run.stderr
        );
    }
    let mut command = env.command(&["config", "check", "--channel", "sms"]);
    command.env("HERALD_DELIVER__PROVIDERS__TWILIO__AUTH_TOKEN", "token");
    herald_test_support::run(command, None).assert_code(0);

    for (change, key) in [
        (
            providers.replace("from = \"+1", "timeout = \"soon\"\nfrom = \"+1"),
            "deliver.providers.twilio.timeout",
        ),
        (providers.replace("account_sid", "acount_sid"), "acount_sid"),
    ] {
        std::fs::write(&env.config_path, format!("{original}{change}")).unwrap();
        let run = env.run(&["config", "check"], None);
        run.assert_code(2);
        assert!(run.stderr.contains(key), "{key}: {}", run.stderr);
    }
}

/// Provider callback settings are checked at start: a SendGrid verification key that is not a
/// P-256 public key, or a Twilio auth token without the public URL its signatures cover, stops
/// the process with the key named, and the token never shows in the message.
#[test]
fn bad_callback_settings_are_named() {
    let env = HeraldEnv::new(HERALD, "config_callbacks");
    let original = std::fs::read_to_string(&env.config_path).unwrap();
    for (section, key) in [
        (
            "[api.callbacks.sendgrid]\npublic_key = \"bm90IGEga2V5\"\n",
            "api.callbacks.sendgrid.public_key",
        ),
        (
            "[api.callbacks.twilio]\nauth_token = \"tw-secret-token\"\n",
            "api.callbacks.twilio.public_base_url",
        ),
    ] {
        std::fs::write(&env.config_path, format!("{original}{section}")).unwrap();
        let run = env.run(&["config", "check"], None);
        run.assert_code(2);
        assert!(run.stderr.contains(key), "{key}: {}", run.stderr);
        assert!(!run.stderr.contains("tw-secret-token"), "{}", run.stderr);
    }
}

/// The unsubscribe and tracking sections are checked whole (base_url with its secret) only by
/// the roles that sign or verify their links, the email worker and `herald api`, so that the
/// secrets can be given to those two alone; a malformed value is still refused by every process.
#[test]
fn signed_link_sections_are_checked_whole_only_where_they_are_used() {
    let env = HeraldEnv::new(HERALD, "config_links");
    let original = std::fs::read_to_string(&env.config_path).unwrap();
    let sections = "[unsubscribe]\nbase_url = \"https://notify.acme.example\"\n\n\
                    [tracking]\nbase_url = \"https://notify.acme.example\"\n";
    let smtp = "[deliver.providers.smtp]\nhost = \"127.0.0.1\"\nport = 2525\n\
                security = \"none\"\nfrom = \"Acme <no-reply@acme.example>\"\n";
    std::fs::write(&env.config_path, format!("{original}{sections}{smtp}")).unwrap();
    for others in [
        vec!["config", "check"],
        vec!["config", "check", "--channel", "webhook"],
    ] {
        env.run(&others, None).assert_code(0);
    }
    for role in [
        vec!["config", "check", "--api"],
        vec!["config", "check", "--channel", "email"],
    ] {
        let run = env.run(&role, None);
        run.assert_code(2);
        assert!(
            run.stderr.contains("unsubscribe.secret")
                && run.stderr.contains("HERALD_UNSUBSCRIBE__SECRET"),
            "{role:?}: {}",
            run.stderr
        );
        let mut command = env.command(&role);
        command.env("HERALD_UNSUBSCRIBE__SECRET", "u".repeat(32));
        let run = herald_test_support::run(command, None);
        run.assert_code(2);
        assert!(
            run.stderr.contains("tracking.secret"),
            "{role:?}: {}",
            run.stderr
        );
        let mut command = env.command(&role);
        command
            .env("HERALD_UNSUBSCRIBE__SECRET", "u".repeat(32))
            .env("HERALD_TRACKING__SECRET", "t".repeat(32));
        herald_test_support::run(command, None).assert_code(0);
    }
    let malformed = sections.replacen("https://", "ftp://", 1);
    std::fs::write(&env.config_path, format!("{original}{malformed}{smtp}")).unwrap();
    let run = env.run(&["config", "check"], None);
    run.assert_code(2);
    assert!(
        run.stderr.contains("unsubscribe.base_url"),
        "{}",
        run.stderr
    );
}
