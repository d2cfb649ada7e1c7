//! What the router reads about recipients: a user's profile (addresses, locale, time zone),
//! their preferences and quiet hours, their webhook endpoints, and category defaults. One
//! struct of prepared statements; profiles asked for at the same time are read together,
//! one `IN` read per table.

use futures::try_join;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::sync::Arc;

use herald_contracts::Channel;

use crate::batcher::Batcher;
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
    /// Enabled webhook endpoints, by endpoint id.
    pub webhooks: Vec<WebhookEndpoint>,
    pub global_opt_out: bool,
    /// Quiet hours in the user's time zone, minutes after midnight (start, end).
    pub quiet_hours: Option<(i32, i32)>,
    /// Per-category preferences, by category.
    pub preferences: HashMap<String, CategoryPreference>,
}

/// One of a user's webhook endpoints (its secret stays with the delivery worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
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
    /// Email sent through SMTP gets an open pixel and redirect links (`[tracking]`).
    pub track_engagement: bool,
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
    /// False for a version created through `herald api` and not yet published: the router
    /// never renders it; a preview does when asked for its version.
    pub published: bool,
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
    String,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    Option<String>,
    Option<String>,
);
/// `category` is null on a partition that holds only the static (per-user) columns.
type PreferenceRow = (
    String,
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
    Option<bool>,
);
type TemplateRowCql = (
    i32,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
);

#[derive(Debug, Clone)]
pub struct Directory {
    session: Arc<Session>,
    profiles: Batcher<(String, String), Profile>,
    category: PreparedStatement,
    templates: PreparedStatement,
}

/// Profiles loaded by one group of reads (one `IN` read per table and tenant).
const MAX_PROFILES: usize = 64;
/// Groups of profile reads in flight at once.
const CONCURRENT_PROFILE_LOADS: usize = 4;

/// The three per-user reads, each for many users at once.
#[derive(Debug)]
struct ProfileStatements {
    session: Arc<Session>,
    user: PreparedStatement,
    preferences: PreparedStatement,
    webhooks: PreparedStatement,
}

impl Directory {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let user = session
            .prepare(format!(
                "SELECT user_id, email, phone, push_tokens, locale, time_zone FROM {} \
                 WHERE tenant = ? AND user_id IN ?",
                config.table("users")
            ))
            .await?;
        let preferences = session
            .prepare(format!(
                "SELECT user_id, category, channels, opted_out, opted_out_channels, \
                 global_opt_out, quiet_start_minute, quiet_end_minute FROM {} \
                 WHERE tenant = ? AND user_id IN ?",
                config.table("preferences")
            ))
            .await?;
        let webhooks = session
            .prepare(format!(
                "SELECT user_id, endpoint_id, url, enabled FROM {} \
                 WHERE tenant = ? AND user_id IN ?",
                config.table("webhook_endpoints")
            ))
            .await?;
        let category = session
            .prepare(format!(
                "SELECT channels, fallback, mandatory, rate_limit_count, rate_limit_window_seconds, \
                 track_engagement FROM {} WHERE tenant = ? AND category = ?",
                config.table("category_defaults")
            ))
            .await?;
        let templates = session
            .prepare(format!(
                "SELECT version, channel, locale, subject, text_body, html_body, json_body, draft \
                 FROM {} WHERE tenant = ? AND template_id = ?",
                config.table("templates")
            ))
            .await?;
        let statements = Arc::new(ProfileStatements {
            session: session.clone(),
            user,
            preferences,
            webhooks,
        });
        let profiles = Batcher::spawn(MAX_PROFILES, CONCURRENT_PROFILE_LOADS, move |keys| {
            let statements = statements.clone();
            async move { statements.load(keys).await }
        });
        Ok(Self {
            session,
            profiles,
            category,
            templates,
        })
    }

    /// The recipient's profile, preferences and webhook endpoints; an unknown user has an
    /// empty profile (`known: false`).
    pub async fn profile(&self, tenant: &str, user_id: &str) -> Result<Profile, StoreError> {
        self.profiles
            .get((tenant.to_owned(), user_id.to_owned()))
            .await
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
            |(chosen, fallback, mandatory, count, window, track)| CategoryDefaults {
                channels: channels(chosen),
                fallback: channels(fallback),
                mandatory: mandatory.unwrap_or(false),
                rate_limit: count.zip(window),
                track_engagement: track.unwrap_or(false),
            },
        ))
    }

    /// Every version, channel and locale of a template, drafts included (marked unpublished).
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
            let (version, channel, locale, subject, text, html, json, draft) = row?;
            rows.push(TemplateRow {
                version,
                channel: channel.parse().ok(),
                locale,
                subject,
                text,
                html,
                json,
                published: draft != Some(true),
            });
        }
        Ok(rows)
    }
}

impl ProfileStatements {
    /// The profiles of `keys`, in order: three reads per tenant, concurrently.
    async fn load(&self, keys: Vec<(String, String)>) -> Result<Vec<Profile>, StoreError> {
        let mut users_by_tenant: HashMap<&str, Vec<&str>> = HashMap::new();
        for (tenant, user_id) in &keys {
            let users = users_by_tenant.entry(tenant).or_default();
            if !users.contains(&user_id.as_str()) {
                users.push(user_id);
            }
        }
        let mut profiles: HashMap<(String, String), Profile> = HashMap::new();
        for (tenant, users) in users_by_tenant {
            let key = (tenant, &users);
            let (user_rows, preference_rows, webhook_rows) = try_join!(
                self.session.execute_unpaged(&self.user, key),
                self.session.execute_unpaged(&self.preferences, key),
                self.session.execute_unpaged(&self.webhooks, key),
            )?;
            for row in user_rows.into_rows_result()?.rows::<UserRow>()? {
                let (user_id, email, phone, tokens, locale, time_zone) = row?;
                let profile = profiles.entry((tenant.to_owned(), user_id)).or_default();
                profile.known = true;
                profile.email = email;
                profile.phone = phone;
                profile.push_tokens = tokens.unwrap_or_default();
                profile.locale = locale;
                profile.time_zone = time_zone;
            }
            for row in preference_rows
                .into_rows_result()?
                .rows::<PreferenceRow>()?
            {
                let (
                    user_id,
                    category,
                    chosen,
                    opted_out,
                    opted_out_channels,
                    global,
                    quiet_start,
                    quiet_end,
                ) = row?;
                let profile = profiles.entry((tenant.to_owned(), user_id)).or_default();
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
            for row in
                webhook_rows
                    .into_rows_result()?
                    .rows::<(String, String, Option<String>, Option<bool>)>()?
            {
                if let (user_id, id, Some(url), enabled) = row?
                    && enabled.unwrap_or(true)
                {
                    profiles
                        .entry((tenant.to_owned(), user_id))
                        .or_default()
                        .webhooks
                        .push(WebhookEndpoint { id, url });
                }
            }
        }
        Ok(keys
            .into_iter()
            .map(|key| profiles.get(&key).cloned().unwrap_or_default())
            .collect())
    }
}
