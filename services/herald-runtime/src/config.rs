//! Loading typed configuration: compiled-in defaults, then a TOML file, then `HERALD_`
//! environment variables with `__` between levels (`HERALD_KAFKA__BOOTSTRAP_SERVERS=broker:9092`).
//! Unknown keys and bad values fail at start with the key named. The configuration's types
//! belong to the crates that read them; the file's layout is put together by the `herald`
//! binary.

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::de::DeserializeOwned;
use std::path::Path;

use crate::env_text::EnvText;

/// The environment prefix. Only variables with a `__` after it are configuration, so that
/// `HERALD_CONFIG` (the file path) and the dev scripts' own variables are not mistaken for keys.
pub const ENV_PREFIX: &str = "HERALD_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// A configuration file's type: checks what deserializing cannot (ranges, and settings that
/// only make sense together), naming the key of the first problem found.
pub trait Validate {
    fn validate(&self) -> Result<(), String>;
}

/// Defaults (the `#[serde(default)]`s of `T`), then `file` (if given), then the environment;
/// then [`Validate::validate`].
pub fn load<T: DeserializeOwned + Validate>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_from(file, Env::prefixed(ENV_PREFIX))
}

fn load_from<T: DeserializeOwned + Validate>(
    file: Option<&Path>,
    env: Env,
) -> Result<T, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        // Toml::file ignores a missing file; a typo in the path must not fall back to defaults.
        if !path.is_file() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment.merge(EnvText(
        env.filter(|key| key.as_str().contains("__")).split("__"),
    ));
    let config: T = figment.extract_lossy().map_err(describe)?;
    config.validate().map_err(ConfigError::Invalid)?;
    Ok(config)
}

/// Every problem figment found, each with the key it is about.
fn describe(error: figment::Error) -> ConfigError {
    let messages: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("key `{key}`: {}{source}", e.kind)
            }
        })
        .collect();
    ConfigError::Invalid(messages.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;
    use serde::Deserialize;
    use std::time::Duration;

    /// A configuration shaped like Herald's: sections of typed keys.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        section: Section,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[serde(default)]
        text: String,
        #[serde(default)]
        count: u32,
        #[serde(default)]
        list: Vec<String>,
        #[serde(default)]
        on: bool,
        #[serde(default, with = "humantime_serde")]
        wait: Duration,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), String> {
            if self.section.count > 100 {
                return Err("section.count must be at most 100".into());
            }
            Ok(())
        }
    }

    // figment's Jail fixes the closure's error type to figment::Error.
    #[allow(clippy::result_large_err)]
    fn sample_in_jail(toml: &str, env: &[(&str, &str)]) -> Result<Sample, String> {
        let mut out = Err(String::new());
        Jail::expect_with(|jail| {
            jail.create_file("herald.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            out = load(Some(Path::new("herald.toml"))).map_err(|e: ConfigError| e.to_string());
            Ok(())
        });
        out
    }

    #[test]
    fn the_environment_overrides_the_file_and_its_text_stays_text() {
        let config = sample_in_jail(
            "[section]\ntext = \"file\"\ncount = 1\nwait = \"2s\"\n",
            &[
                ("HERALD_SECTION__TEXT", "0123"),
                ("HERALD_SECTION__COUNT", "7"),
                ("HERALD_SECTION__LIST", "[\"a\", \"b\"]"),
                ("HERALD_SECTION__ON", "true"),
                // Not a key: no `__`.
                ("HERALD_CACHE", "/not/a/key"),
            ],
        )
        .unwrap();
        let section = config.section;
        assert_eq!(section.text, "0123");
        assert_eq!(section.count, 7);
        assert_eq!(section.list, ["a", "b"]);
        assert!(section.on);
        assert_eq!(section.wait, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_bad_values_and_failed_checks_are_named() {
        let err = sample_in_jail("[section]\ntxt = \"x\"\n", &[]).unwrap_err();
        assert!(err.contains("txt"), "{err}");
        let err = sample_in_jail("", &[("HERALD_SECTION__COUNT", "many")]).unwrap_err();
        assert!(err.contains("key `section.count`"), "{err}");
        let err = sample_in_jail("[section]\nwait = \"soon\"\n", &[]).unwrap_err();
        assert!(err.contains("section.wait"), "{err}");
        let err = sample_in_jail("[section]\ncount = 101\n", &[]).unwrap_err();
        assert_eq!(err, "configuration: section.count must be at most 100");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/herald.toml"))).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}
