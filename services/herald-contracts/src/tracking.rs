//! Open and click tracking links for email Herald sends itself (SMTP), shared by the email
//! worker, which puts an open pixel and redirect links into a message of a category that
//! opted in (`track_engagement`), and `herald api`, which serves them. A token names the
//! tenant, user, event, dispatch, category, when the notification was created and routed
//! and, for a click, the target URL, signed like unsubscribe links ([`crate::signed`]) under `tracking.secret`. The API
//! redirects only to the URL inside a token whose signature holds: never an open redirect.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

use crate::Dispatch;
use crate::secret::Secret;
use crate::signed::{Forged, Signer, require_both, validate_section};

/// The API route of the open pixel, under `tracking.base_url`.
pub const OPEN_PATH: &str = "/v1/t/open";
/// The API route of redirect links, under `tracking.base_url`.
pub const CLICK_PATH: &str = "/v1/t/click";

/// `[tracking]`: read by `herald deliver --channel email` and `herald api`, which must share
/// the secret. Off unless `base_url` and `secret` are set; a category opts in with
/// `track_engagement`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// Where `herald api` is reached from a mail client, e.g. `https://notify.acme.example`;
    /// links are `<base_url>/v1/t/open/<token>` and `<base_url>/v1/t/click/<token>`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The HMAC-SHA256 key links are signed with: at least 32 bytes. Give it through the
    /// environment (`HERALD_TRACKING__SECRET`).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// How long after routing an open or a click is recorded as a status. Later ones still
    /// get the image or the redirect; the API remembers each dispatch's first open and click
    /// this long, which is what makes them once per dispatch.
    #[serde(default = "default_record_for", with = "humantime_serde")]
    pub record_for: Duration,
}

fn default_record_for() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            secret: None,
            record_for: default_record_for(),
        }
    }
}

impl TrackingConfig {
    /// Checks the section; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        validate_section("tracking", self.base_url.as_deref(), self.secret.as_ref())?;
        if self.record_for < Duration::from_secs(3600) {
            return Err("tracking.record_for must be at least 1h".into());
        }
        Ok(())
    }

    /// The signer, when the section is set; an error when only half of it is (for the roles
    /// that sign or verify the links).
    pub fn links(&self) -> Result<Option<TrackingLinks>, String> {
        let pair = require_both("tracking", self.base_url.as_deref(), self.secret.as_ref())?;
        Ok(pair.map(|(base_url, secret)| TrackingLinks {
            base_url: base_url.trim_end_matches('/').to_owned(),
            signer: Signer::new(secret),
            record_for: self.record_for,
        }))
    }
}

/// Whether `url` is an http(s) URL: the only links tracked, and the only redirect targets.
pub fn is_http_url(url: &str) -> bool {
    let starts = |scheme: &str| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    starts("http://") || starts("https://")
}

/// What a person did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngagementKind {
    Open,
    Click,
}

impl EngagementKind {
    /// The tag in a token, and the label in metrics and the API's records.
    pub fn as_str(self) -> &'static str {
        match self {
            EngagementKind::Open => "open",
            EngagementKind::Click => "click",
        }
    }
}

/// What a valid token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engagement {
    pub kind: EngagementKind,
    pub tenant: String,
    pub user_id: String,
    pub event_id: String,
    pub dispatch_id: String,
    /// The notification's category and creation time, for the status (delivery metrics are
    /// per category; end-to-end latency starts at creation).
    pub category: String,
    pub created_at: DateTime<Utc>,
    pub routed_at: DateTime<Utc>,
    /// For a click: where the link went before it was rewritten.
    pub target: Option<String>,
}

/// The signed payload: `[kind, tenant, user_id, event_id, dispatch_id, category, created_at
/// in Unix milliseconds, routed_at in Unix seconds, target]` (the target `null` for an open).
/// The kind is signed so that a pixel's token cannot be used as a link, nor a link's as a
/// pixel.
type Payload = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
);

/// Signs and checks tracking tokens.
#[derive(Clone)]
pub struct TrackingLinks {
    base_url: String,
    signer: Signer,
    record_for: Duration,
}

impl fmt::Debug for TrackingLinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackingLinks")
            .field("base_url", &self.base_url)
            .field("record_for", &self.record_for)
            .finish_non_exhaustive()
    }
}

impl TrackingLinks {
    /// Where links point, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// How long after routing an open or a click is recorded (`tracking.record_for`).
    pub fn record_for(&self) -> Duration {
        self.record_for
    }

    /// The open pixel's URL for `dispatch`.
    pub fn open_url(&self, dispatch: &Dispatch) -> String {
        format!(
            "{}{OPEN_PATH}/{}",
            self.base_url,
            self.token(EngagementKind::Open, dispatch, None)
        )
    }

    /// The redirect link to `target` for `dispatch`.
    pub fn click_url(&self, dispatch: &Dispatch, target: &str) -> String {
        format!(
            "{}{CLICK_PATH}/{}",
            self.base_url,
            self.token(EngagementKind::Click, dispatch, Some(target))
        )
    }

    fn token(&self, kind: EngagementKind, dispatch: &Dispatch, target: Option<&str>) -> String {
        self.signer.token(&(
            kind.as_str(),
            &dispatch.tenant,
            &dispatch.user_id,
            &dispatch.event_id,
            &dispatch.dispatch_id,
            &dispatch.category,
            dispatch.created_at.timestamp_millis(),
            dispatch.routed_at.timestamp(),
            target,
        ))
    }

    /// What a token of `kind` carries, if its signature holds. A click token always has a
    /// target, an open token never.
    pub fn verify(&self, kind: EngagementKind, token: &str) -> Result<Engagement, Forged> {
        let (tag, tenant, user_id, event_id, dispatch_id, category, created_at, routed_at, target): Payload =
            self.signer.verify(token)?;
        if tag != kind.as_str() || target.is_some() != (kind == EngagementKind::Click) {
            return Err(Forged);
        }
        Ok(Engagement {
            kind,
            tenant,
            user_id,
            event_id,
            dispatch_id,
            category,
            created_at: DateTime::from_timestamp_millis(created_at).ok_or(Forged)?,
            routed_at: DateTime::from_timestamp(routed_at, 0).ok_or(Forged)?,
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dispatch::tests::sample;

    fn links(secret: &str) -> TrackingLinks {
        TrackingConfig {
            base_url: Some("https://n.example/".into()),
            secret: Some(Secret::new(secret)),
            ..TrackingConfig::default()
        }
        .links()
        .unwrap()
        .unwrap()
    }

    fn token_of<'a>(url: &'a str, path: &str) -> &'a str {
        url.strip_prefix(&format!("https://n.example{path}/"))
            .unwrap()
    }

    #[test]
    fn open_and_click_tokens_round_trip() {
        let signer = links(&"k".repeat(32));
        let dispatch = sample();
        let open = signer.open_url(&dispatch);
        let seen = signer
            .verify(EngagementKind::Open, token_of(&open, OPEN_PATH))
            .unwrap();
        assert_eq!(
            (
                seen.tenant.as_str(),
                seen.user_id.as_str(),
                seen.event_id.as_str(),
                seen.dispatch_id.as_str(),
                seen.category.as_str(),
                seen.created_at,
                seen.routed_at.timestamp(),
                seen.target
            ),
            (
                "acme",
                "u-1",
                "e-1",
                "e-1:sms",
                "security.login",
                dispatch.created_at,
                dispatch.routed_at.timestamp(),
                None
            )
        );
        let target = "https://shop.example/a?b=1&c=%20d#e";
        let click = signer.click_url(&dispatch, target);
        let seen = signer
            .verify(EngagementKind::Click, token_of(&click, CLICK_PATH))
            .unwrap();
        assert_eq!(seen.target.as_deref(), Some(target));
    }

    #[test]
    fn a_token_of_the_other_kind_a_changed_one_or_another_key_is_refused() {
        let signer = links(&"k".repeat(32));
        let dispatch = sample();
        let open = signer.open_url(&dispatch);
        let open = token_of(&open, OPEN_PATH);
        let click = signer.click_url(&dispatch, "https://shop.example/");
        let click = token_of(&click, CLICK_PATH);
        assert_eq!(signer.verify(EngagementKind::Click, open), Err(Forged));
        assert_eq!(signer.verify(EngagementKind::Open, click), Err(Forged));
        // Another target under the first link's signature.
        let evil = signer.click_url(&dispatch, "https://evil.example/");
        let evil = token_of(&evil, CLICK_PATH);
        let (_, mac) = click.split_once('.').unwrap();
        let forged = format!("{}.{mac}", evil.split_once('.').unwrap().0);
        assert_eq!(signer.verify(EngagementKind::Click, &forged), Err(Forged));
        // One character changed anywhere.
        let mut changed = click.to_owned().into_bytes();
        changed[5] = if changed[5] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        assert_eq!(signer.verify(EngagementKind::Click, &changed), Err(Forged));
        assert_eq!(
            links(&"x".repeat(32)).verify(EngagementKind::Click, click),
            Err(Forged)
        );
        assert_eq!(signer.verify(EngagementKind::Open, ""), Err(Forged));
    }

    #[test]
    fn only_http_urls_are_tracked() {
        assert!(is_http_url("HTTPS://a.example") && is_http_url("http://a"));
        assert!(!is_http_url("mailto:a@b") && !is_http_url("javascript:x") && !is_http_url("http"));
    }

    #[test]
    fn the_section_is_all_or_nothing_where_it_is_used() {
        TrackingConfig::default().validate().unwrap();
        assert!(TrackingConfig::default().links().unwrap().is_none());
        let half = TrackingConfig {
            secret: Some(Secret::new("k".repeat(32))),
            ..TrackingConfig::default()
        };
        // Loading takes half a section (roles without the secret ignore it); signing does not.
        half.validate().unwrap();
        assert!(half.links().err().unwrap().contains("tracking.base_url"));
        let short = TrackingConfig {
            base_url: Some("https://n.example".into()),
            record_for: Duration::from_secs(60),
            ..half
        };
        assert!(
            short
                .validate()
                .unwrap_err()
                .contains("tracking.record_for")
        );
    }
}
