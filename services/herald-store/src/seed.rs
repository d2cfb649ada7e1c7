//! `herald seed`: loads users, preferences, category defaults and templates from a JSON file so
//! the demo and the tests have data. Every row is an upsert, so seeding twice is harmless.
//! Seeded template versions are published at once (`herald api` creates drafts).

use chrono::{NaiveTime, Timelike, Utc};
use handlebars::Handlebars;
use scylla::client::session::Session;
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

use herald_contracts::Channel;

use crate::{StoreConfig, StoreError};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub categories: Vec<SeedCategory>,
    #[serde(default)]
    pub templates: Vec<SeedTemplate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub tenant: String,
    pub user_id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub push_tokens: Vec<String>,
    #[serde(default)]
    pub webhooks: Vec<SeedWebhook>,
    #[serde(default)]
    pub locale: Option<String>,
    /// IANA time zone, e.g. `Europe/Paris`.
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub global_opt_out: bool,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    #[serde(default)]
    pub preferences: Vec<SeedPreference>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedWebhook {
    pub id: String,
    pub url: String,
    pub secret: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Quiet hours as `HH:MM` in the user's time zone; `end` before `start` crosses midnight.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPreference {
    pub category: String,
    #[serde(default)]
    pub channels: Option<Vec<Channel>>,
    #[serde(default)]
    pub opted_out: bool,
    #[serde(default)]
    pub opted_out_channels: Vec<Channel>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCategory {
    pub tenant: String,
    pub category: String,
    pub channels: Vec<Channel>,
    #[serde(default)]
    pub fallback: Vec<Channel>,
    #[serde(default)]
    pub mandatory: bool,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Open and click tracking for email sent through SMTP (`[tracking]`); off by default.
    #[serde(default)]
    pub track_engagement: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub count: i32,
    /// A duration such as `1h` or `30m`.
    #[serde(with = "humantime_serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTemplate {
    pub tenant: String,
    pub template_id: String,
    pub version: i32,
    pub channel: Channel,
    /// A BCP 47 locale, or `default` for the end of the fallback chain.
    pub locale: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub json: Option<String>,
}

/// How many rows of each kind a seed wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub users: usize,
    pub preferences: usize,
    pub webhooks: usize,
    pub categories: usize,
    pub templates: usize,
}

fn seed_error(what: String) -> StoreError {
    StoreError::Seed(what)
}

fn minute_of_day(field: &str, user: &SeedUser, hhmm: &str) -> Result<i32, StoreError> {
    NaiveTime::parse_from_str(hhmm, "%H:%M")
        .map(|t| (t.hour() * 60 + t.minute()) as i32)
        .map_err(|_| {
            seed_error(format!(
                "user {}/{}: quiet_hours.{field} `{hhmm}` is not HH:MM",
                user.tenant, user.user_id
            ))
        })
}

fn channel_names(channels: &[Channel]) -> Vec<String> {
    channels.iter().map(|c| c.as_str().to_owned()).collect()
}

impl SeedFile {
    pub fn parse(json: &str) -> Result<Self, StoreError> {
        let file: SeedFile =
            serde_json::from_str(json).map_err(|e| seed_error(format!("not a seed file: {e}")))?;
        file.validate()?;
        Ok(file)
    }

    /// Checks what JSON cannot: time zones, quiet hours, template syntax and required parts.
    pub fn validate(&self) -> Result<(), StoreError> {
        for user in &self.users {
            let who = format!("user {}/{}", user.tenant, user.user_id);
            if user.tenant.is_empty() || user.user_id.is_empty() {
                return Err(seed_error(format!(
                    "{who}: tenant and user_id are required"
                )));
            }
            if let Some(tz) = &user.time_zone {
                tz.parse::<chrono_tz::Tz>().map_err(|_| {
                    seed_error(format!("{who}: time_zone `{tz}` is not an IANA time zone"))
                })?;
            }
            if let Some(q) = &user.quiet_hours {
                minute_of_day("start", user, &q.start)?;
                minute_of_day("end", user, &q.end)?;
            }
            let mut seen = HashSet::new();
            for p in &user.preferences {
                if !seen.insert(&p.category) {
                    return Err(seed_error(format!(
                        "{who}: preferences list category `{}` twice",
                        p.category
                    )));
                }
            }
        }
        for c in &self.categories {
            if c.channels.is_empty() {
                return Err(seed_error(format!(
                    "category {}/{}: channels is empty",
                    c.tenant, c.category
                )));
            }
            if c.rate_limit
                .as_ref()
                .is_some_and(|r| r.count < 1 || r.window.as_secs() < 1)
            {
                return Err(seed_error(format!(
                    "category {}/{}: rate_limit needs count >= 1 and a window of a second or more",
                    c.tenant, c.category
                )));
            }
        }
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        for t in &self.templates {
            let which = format!(
                "template {}/{} v{} {} {}",
                t.tenant, t.template_id, t.version, t.channel, t.locale
            );
            if t.version < 1 {
                return Err(seed_error(format!("{which}: version must be 1 or more")));
            }
            let required: &[(&str, &Option<String>)] = match t.channel {
                Channel::Email => &[("subject", &t.subject)],
                Channel::Sms | Channel::Push | Channel::Inapp => &[("text", &t.text)],
                Channel::Webhook => &[("json", &t.json)],
            };
            for (part, value) in required {
                if value.is_none() {
                    return Err(seed_error(format!("{which}: `{part}` is required")));
                }
            }
            if t.channel == Channel::Email && t.text.is_none() && t.html.is_none() {
                return Err(seed_error(format!("{which}: needs `text` or `html`")));
            }
            for (part, value) in [
                ("subject", &t.subject),
                ("text", &t.text),
                ("html", &t.html),
                ("json", &t.json),
            ] {
                if let Some(source) = value {
                    registry
                        .register_template_string("check", source)
                        .map_err(|e| {
                            seed_error(format!("{which}: `{part}` does not compile: {e}"))
                        })?;
                }
            }
        }
        Ok(())
    }
}

/// Writes a validated seed into the session's keyspace.
pub async fn load(
    session: &Session,
    store: &StoreConfig,
    seed: &SeedFile,
) -> Result<SeedReport, StoreError> {
    seed.validate()?;
    let mut report = SeedReport::default();
    let now = Utc::now();

    let user_insert = session
        .prepare(format!(
            "INSERT INTO {} (tenant, user_id, email, phone, push_tokens, locale, time_zone, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            store.table("users")
        ))
        .await?;
    let settings_insert = session
        .prepare(format!(
            "INSERT INTO {} (tenant, user_id, global_opt_out, quiet_start_minute, quiet_end_minute) \
             VALUES (?, ?, ?, ?, ?)",
            store.table("preferences")
        ))
        .await?;
    let preference_insert = session
        .prepare(format!(
            "INSERT INTO {} (tenant, user_id, category, channels, opted_out, opted_out_channels, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            store.table("preferences")
        ))
        .await?;
    let webhook_insert = session
        .prepare(format!(
            "INSERT INTO {} (tenant, user_id, endpoint_id, url, secret, enabled) \
             VALUES (?, ?, ?, ?, ?, ?)",
            store.table("webhook_endpoints")
        ))
        .await?;
    for user in &seed.users {
        let tokens: Vec<&str> = user.push_tokens.iter().map(String::as_str).collect();
        session
            .execute_unpaged(
                &user_insert,
                (
                    &user.tenant,
                    &user.user_id,
                    &user.email,
                    &user.phone,
                    tokens,
                    &user.locale,
                    &user.time_zone,
                    now,
                ),
            )
            .await?;
        let (quiet_start, quiet_end) = match &user.quiet_hours {
            Some(q) => (
                Some(minute_of_day("start", user, &q.start)?),
                Some(minute_of_day("end", user, &q.end)?),
            ),
            None => (None, None),
        };
        session
            .execute_unpaged(
                &settings_insert,
                (
                    &user.tenant,
                    &user.user_id,
                    user.global_opt_out,
                    quiet_start,
                    quiet_end,
                ),
            )
            .await?;
        for p in &user.preferences {
            session
                .execute_unpaged(
                    &preference_insert,
                    (
                        &user.tenant,
                        &user.user_id,
                        &p.category,
                        p.channels.as_deref().map(channel_names),
                        p.opted_out,
                        channel_names(&p.opted_out_channels),
                        now,
                    ),
                )
                .await?;
            report.preferences += 1;
        }
        for w in &user.webhooks {
            session
                .execute_unpaged(
                    &webhook_insert,
                    (
                        &user.tenant,
                        &user.user_id,
                        &w.id,
                        &w.url,
                        &w.secret,
                        w.enabled,
                    ),
                )
                .await?;
            report.webhooks += 1;
        }
        report.users += 1;
    }

    let category_insert = session
        .prepare(format!(
            "INSERT INTO {} (tenant, category, channels, fallback, mandatory, \
             rate_limit_count, rate_limit_window_seconds, track_engagement) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            store.table("category_defaults")
        ))
        .await?;
    for c in &seed.categories {
        let (count, window) = match &c.rate_limit {
            Some(r) => (Some(r.count), Some(r.window.as_secs() as i32)),
            None => (None, None),
        };
        session
            .execute_unpaged(
                &category_insert,
                (
                    &c.tenant,
                    &c.category,
                    channel_names(&c.channels),
                    channel_names(&c.fallback),
                    c.mandatory,
                    count,
                    window,
                    c.track_engagement,
                ),
            )
            .await?;
        report.categories += 1;
    }

    let template_insert = session
        .prepare(format!(
            "INSERT INTO {} (tenant, template_id, version, channel, locale, subject, \
             text_body, html_body, json_body, created_at, draft, published_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false, ?)",
            store.table("templates")
        ))
        .await?;
    for t in &seed.templates {
        session
            .execute_unpaged(
                &template_insert,
                (
                    &t.tenant,
                    &t.template_id,
                    t.version,
                    t.channel.as_str(),
                    &t.locale,
                    &t.subject,
                    &t.text,
                    &t.html,
                    &t.json,
                    now,
                    now,
                ),
            )
            .await?;
        report.templates += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        SeedFile::parse(json).unwrap_err().to_string()
    }

    #[test]
    fn the_demo_seed_is_valid() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../dev/demo/seed.json"
        ))
        .unwrap();
        let seed = SeedFile::parse(&text).unwrap();
        assert!(!seed.users.is_empty() && !seed.templates.is_empty());
    }

    #[test]
    fn a_category_opts_in_to_tracking_explicitly() {
        let seed = SeedFile::parse(
            r#"{"categories":[
                {"tenant":"a","category":"c","channels":["email"],"track_engagement":true},
                {"tenant":"a","category":"d","channels":["email"]}]}"#,
        )
        .unwrap();
        let tracked: Vec<bool> = seed.categories.iter().map(|c| c.track_engagement).collect();
        assert_eq!(tracked, [true, false]);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(
            err(r#"{"users":[{"tenant":"a","user_id":"u","time_zone":"Mars/Olympus"}]}"#)
                .contains("time_zone `Mars/Olympus` is not an IANA time zone")
        );
        assert!(err(r#"{"users":[{"tenant":"a","user_id":"u","quiet_hours":{"start":"25:00","end":"07:00"}}]}"#)
            .contains("quiet_hours.start `25:00` is not HH:MM"));
        assert!(err(r#"{"templates":[{"tenant":"a","template_id":"t","version":1,"channel":"sms","locale":"en","text":"{{#if x}}"}]}"#)
            .contains("`text` does not compile"));
        assert!(err(r#"{"templates":[{"tenant":"a","template_id":"t","version":1,"channel":"email","locale":"en","text":"hi"}]}"#)
            .contains("`subject` is required"));
        assert!(
            err(r#"{"categories":[{"tenant":"a","category":"c","channels":["fax"]}]}"#)
                .contains("unknown variant `fax`")
        );
        assert!(err(r#"{"userz":[]}"#).contains("unknown field `userz`"));
    }
}
