//! `HERALD_*` environment variables with their values kept as text.
//!
//! figment's `Env` parses every value, so `HERALD_STORE__PASSWORD=0123` arrives as the number
//! 123 and a Twilio sender `+15005550006` as 15005550006: refused where text is expected, and
//! wrong even where it were accepted. Here a value stays text unless it is written as a list
//! or table (`["a:9042", "b:9042"]`); numbers, booleans and durations are read from the text
//! when the configuration is extracted (`Figment::extract_lossy`).

use figment::providers::Env;
use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

pub(crate) struct EnvText(pub(crate) Env);

impl Provider for EnvText {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for (key, raw) in self.0.iter() {
            let value = if raw.starts_with('[') || raw.starts_with('{') {
                raw.parse::<Value>().unwrap_or_else(|never| match never {})
            } else {
                Value::from(raw)
            };
            if let Some(nested) = figment::util::nest(key.as_str(), value).into_dict() {
                merge(&mut dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Merges `from` into `into`, tables key by key.
fn merge(into: &mut Dict, from: Dict) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, more)) => merge(existing, more),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}
