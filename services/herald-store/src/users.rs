//! Writing users and their preferences one at a time, for `herald api` (the seed loader writes
//! them in bulk). Reads go through [`crate::directory::Directory`], as the router's do.

use chrono::Utc;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::sync::Arc;

use herald_contracts::Channel;

use crate::{StoreConfig, StoreError};

/// A user's addresses and settings (the `users` row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserProfile {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub push_tokens: Vec<String>,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
}

/// One category's preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preference {
    pub category: String,
    pub channels: Option<Vec<Channel>>,
    pub opted_out: bool,
    pub opted_out_channels: Vec<Channel>,
}

/// Everything a user said about what they receive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    pub global_opt_out: bool,
    /// Minutes after midnight in the user's time zone (start, end).
    pub quiet_hours: Option<(i32, i32)>,
    pub categories: Vec<Preference>,
}

#[derive(Debug, Clone)]
pub struct Users {
    session: Arc<Session>,
    insert_user: PreparedStatement,
    delete_user: PreparedStatement,
    delete_preferences: PreparedStatement,
    delete_webhooks: PreparedStatement,
    insert_settings: PreparedStatement,
    insert_preference: PreparedStatement,
    opt_out: PreparedStatement,
}

fn names(channels: &[Channel]) -> Vec<&'static str> {
    channels.iter().map(|c| c.as_str()).collect()
}

impl Users {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let users = config.table("users");
        let preferences = config.table("preferences");
        let webhooks = config.table("webhook_endpoints");
        let prepare = |cql: String| {
            let session = session.clone();
            async move { session.prepare(cql).await }
        };
        Ok(Self {
            insert_user: prepare(format!(
                "INSERT INTO {users} (tenant, user_id, email, phone, push_tokens, locale, \
                 time_zone, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            delete_user: prepare(format!(
                "DELETE FROM {users} WHERE tenant = ? AND user_id = ?"
            ))
            .await?,
            delete_preferences: prepare(format!(
                "DELETE FROM {preferences} USING TIMESTAMP ? WHERE tenant = ? AND user_id = ?"
            ))
            .await?,
            delete_webhooks: prepare(format!(
                "DELETE FROM {webhooks} WHERE tenant = ? AND user_id = ?"
            ))
            .await?,
            insert_settings: prepare(format!(
                "INSERT INTO {preferences} (tenant, user_id, global_opt_out, quiet_start_minute, \
                 quiet_end_minute) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            insert_preference: prepare(format!(
                "INSERT INTO {preferences} (tenant, user_id, category, channels, opted_out, \
                 opted_out_channels, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            opt_out: prepare(format!(
                "UPDATE {preferences} SET opted_out = true, updated_at = ? \
                 WHERE tenant = ? AND user_id = ? AND category = ?"
            ))
            .await?,
            session,
        })
    }

    /// Creates or replaces the user's profile row (addresses, locale, time zone). Their
    /// preferences and webhook endpoints are left as they are.
    pub async fn put_profile(
        &self,
        tenant: &str,
        user_id: &str,
        profile: &UserProfile,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.insert_user,
                (
                    tenant,
                    user_id,
                    &profile.email,
                    &profile.phone,
                    &profile.push_tokens,
                    &profile.locale,
                    &profile.time_zone,
                    Utc::now(),
                ),
            )
            .await?;
        Ok(())
    }

    /// Deletes the user with their preferences and webhook endpoints.
    pub async fn delete(&self, tenant: &str, user_id: &str) -> Result<(), StoreError> {
        let at = Utc::now().timestamp_micros();
        self.session
            .execute_unpaged(&self.delete_user, (tenant, user_id))
            .await?;
        self.session
            .execute_unpaged(&self.delete_preferences, (at, tenant, user_id))
            .await?;
        self.session
            .execute_unpaged(&self.delete_webhooks, (tenant, user_id))
            .await?;
        Ok(())
    }

    /// Replaces all of the user's preferences: the old rows are deleted one microsecond
    /// before the new ones are written, so categories left out are gone, and a write
    /// interrupted half-way is completed by sending the same replacement again.
    pub async fn replace_preferences(
        &self,
        tenant: &str,
        user_id: &str,
        preferences: &Preferences,
    ) -> Result<(), StoreError> {
        let at = Utc::now().timestamp_micros();
        self.session
            .execute_unpaged(&self.delete_preferences, (at - 1, tenant, user_id))
            .await?;
        let (start, end) = preferences.quiet_hours.unzip();
        self.session
            .execute_unpaged(
                &self.insert_settings,
                (tenant, user_id, preferences.global_opt_out, start, end, at),
            )
            .await?;
        let now = Utc::now();
        for p in &preferences.categories {
            self.session
                .execute_unpaged(
                    &self.insert_preference,
                    (
                        tenant,
                        user_id,
                        &p.category,
                        p.channels.as_deref().map(names),
                        p.opted_out,
                        names(&p.opted_out_channels),
                        now,
                        at,
                    ),
                )
                .await?;
        }
        Ok(())
    }

    /// Opts the user out of one category (an unsubscribe link), keeping the rest of their
    /// preference for it; writing it twice is harmless.
    pub async fn opt_out(
        &self,
        tenant: &str,
        user_id: &str,
        category: &str,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.opt_out, (Utc::now(), tenant, user_id, category))
            .await?;
        Ok(())
    }
}
