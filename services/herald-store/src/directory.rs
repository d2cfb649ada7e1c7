//! What the router reads about recipients: a user's profile (addresses, locale, time zone),
//! their preferences and quiet hours, their webhook endpoints, and category defaults. One
//! struct of prepared statements, so each read is a single round trip per table.

use futures::try_join;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::sync::Arc;

use herald_contracts::Channel;

use crate::{StoreConfig, StoreError};

/// A recipient as Herald knows them. `known` is false when the user has no row: only the
/// request's direct addresses can then be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub known: bool,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub push_tokens: Vec<String>,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
    /// Enabled webhook endpoint URLs, by endpoint id.
    pub webhooks: Vec<String>,
    pub global_opt_out: bool,
    /// Quiet hours in the user's time zone, minutes after midnight (start, end).
    pub quiet_hours: Option<(i32, i32)>,
    /// Per-category preferences, by category.
    pub preferences: HashMap<String, CategoryPreference>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryPreference {
    /// The user's channels for the category, in order; `None`: the category defaults.
    pub channels: Option<Vec<Channel>>,
    pub opted_out: bool,
    pub opted_out_channels: Vec<Channel>,
}

/// What a category does when the user has said nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryDefaults {
    pub channels: Vec<Channel>,
    pub fallback: Vec<Channel>,
    pub mandatory: bool,
    /// At most `count` per user per `window_seconds`.
    pub rate_limit: Option<(i32, i32)>,
}

/// One stored template part set: one version, channel and locale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRow {
    pub version: i32,
    pub channel: Option<Channel>,
    pub locale: String,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub json: Option<String>,
}

/// Channel names from CQL; unknown names (written by a newer Herald) are skipped.
fn channels(names: Option<Vec<String>>) -> Vec<Channel> {
    names
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

type UserRow = (
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    Option<String>,
    Option<String>,
);
/// `category` is null on a partition that holds only the static (per-user) columns.
type PreferenceRow = (
    Option<String>,
    Option<Vec<String>>,
    Option<bool>,
    Option<Vec<String>>,
    Option<bool>,
    Option<i32>,
    Option<i32>,
);
type CategoryRow = (
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<bool>,
    Option<i32>,
    Option<i32>,
);
type TemplateRowCql = (
    i32,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[derive(Debug, Clone)]
pub struct Directory {
    session: Arc<Session>,
    user: PreparedStatement,
    preferences: PreparedStatement,
    webhooks: PreparedStatement,
    category: PreparedStatement,
    templates: PreparedStatement,
}

impl Directory {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let user = session
            .prepare(format!(
                "SELECT email, phone, push_tokens, locale, time_zone FROM {} WHERE tenant = ? AND user_id = ?",
                config.table("users")
            ))
            .await?;
        let preferences = session
            .prepare(format!(
                "SELECT category, channels, opted_out, opted_out_channels, global_opt_out, \
                 quiet_start_minute, quiet_end_minute FROM {} WHERE tenant = ? AND user_id = ?",
                config.table("preferences")
            ))
            .await?;
        let webhooks = session
            .prepare(format!(
                "SELECT url, enabled FROM {} WHERE tenant = ? AND user_id = ?",
                config.table("webhook_endpoints")
            ))
            .await?;
        let category = session
            .prepare(format!(
                "SELECT channels, fallback, mandatory, rate_limit_count, rate_limit_window_seconds \
                 FROM {} WHERE tenant = ? AND category = ?",
                config.table("category_defaults")
            ))
            .await?;
        let templates = session
            .prepare(format!(
                "SELECT version, channel, locale, subject, text_body, html_body, json_body \
                 FROM {} WHERE tenant = ? AND template_id = ?",
                config.table("templates")
            ))
            .await?;
        Ok(Self {
            session,
            user,
            preferences,
            webhooks,
            category,
            templates,
        })
    }

    /// The recipient's profile, preferences and webhook endpoints (three reads, concurrently).
    pub async fn profile(&self, tenant: &str, user_id: &str) -> Result<Profile, StoreError> {
        let key = (tenant, user_id);
        let (user, preferences, webhooks) = try_join!(
            self.session.execute_unpaged(&self.user, key),
            self.session.execute_unpaged(&self.preferences, key),
            self.session.execute_unpaged(&self.webhooks, key),
        )?;
        let mut profile = Profile::default();
        if let Some((email, phone, tokens, locale, time_zone)) =
            user.into_rows_result()?.maybe_first_row::<UserRow>()?
        {
            profile = Profile {
                known: true,
                email,
                phone,
                push_tokens: tokens.unwrap_or_default(),
                locale,
                time_zone,
                ..Profile::default()
            };
        }
        for row in preferences.into_rows_result()?.rows::<PreferenceRow>()? {
            let (category, chosen, opted_out, opted_out_channels, global, quiet_start, quiet_end) =
                row?;
            profile.global_opt_out = global.unwrap_or(false);
            profile.quiet_hours = quiet_start.zip(quiet_end);
            let Some(category) = category else {
                continue;
            };
            profile.preferences.insert(
                category,
                CategoryPreference {
                    channels: chosen.map(|c| channels(Some(c))),
                    opted_out: opted_out.unwrap_or(false),
                    opted_out_channels: channels(opted_out_channels),
                },
            );
        }
        for row in webhooks
            .into_rows_result()?
            .rows::<(Option<String>, Option<bool>)>()?
        {
            if let (Some(url), enabled) = row?
                && enabled.unwrap_or(true)
            {
                profile.webhooks.push(url);
            }
        }
        Ok(profile)
    }

    pub async fn category(
        &self,
        tenant: &str,
        category: &str,
    ) -> Result<Option<CategoryDefaults>, StoreError> {
        let row = self
            .session
            .execute_unpaged(&self.category, (tenant, category))
            .await?
            .into_rows_result()?
            .maybe_first_row::<CategoryRow>()?;
        Ok(row.map(
            |(chosen, fallback, mandatory, count, window)| CategoryDefaults {
                channels: channels(chosen),
                fallback: channels(fallback),
                mandatory: mandatory.unwrap_or(false),
                rate_limit: count.zip(window),
            },
        ))
    }

    /// Every version, channel and locale of a template.
    pub async fn templates(
        &self,
        tenant: &str,
        template_id: &str,
    ) -> Result<Vec<TemplateRow>, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.templates, (tenant, template_id))
            .await?
            .into_rows_result()?;
        let mut rows = Vec::new();
        for row in result.rows::<TemplateRowCql>()? {
            let (version, channel, locale, subject, text, html, json) = row?;
            rows.push(TemplateRow {
                version,
                channel: channel.parse().ok(),
                locale,
                subject,
                text,
                html,
                json,
            });
        }
        Ok(rows)
    }
}
