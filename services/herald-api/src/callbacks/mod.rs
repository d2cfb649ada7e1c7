//! Provider delivery callbacks: `POST /v1/callbacks/sendgrid` (the signed Event Webhook) and
//! `POST /v1/callbacks/twilio` (Messaging status callbacks). No tenant key: each request is
//! authenticated the provider's way (an ECDSA signature, an HMAC signature) and refused 401
//! otherwise, with nothing emitted. What a provider reports becomes a status on
//! `notifications.status` (`delivered`, `failed` with the provider's reason, `opened`,
//! `clicked`), matched to the dispatch by the ids Herald sent; a hard bounce or a complaint also
//! puts the address on the tenant's suppression list.
//!
//! A callback is answered 2xx only once every status it produced was acknowledged by Kafka and
//! every suppression written: anything else is a 503, and the provider sends it again (the
//! statuses it then produces are the same ones). Events Herald does not record (SendGrid's
//! `processed`, Twilio's `queued`), events without Herald's ids and event types it does not
//! know are skipped and counted, but still answered 2xx, so the provider does not retry them
//! for ever.
//!
//! Push has no callback: FCM and APNs answer at send time only (the worker removes the tokens
//! they call unregistered).

pub mod sendgrid;
pub mod twilio;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Serialize;

use herald_contracts::StatusEvent;
use herald_runtime::metric_names::{API_CALLBACK_EVENTS, API_CALLBACK_REJECTED};

use crate::AppState;
use crate::config::CallbacksConfig;
use crate::problem::Problem;

/// Statuses of one callback published at once (the producer batches them). They are started
/// in the order of the callback's events, so one dispatch's statuses keep that order on the
/// topic as a rule; their times say it in any case.
const CONCURRENT_PUBLISHES: usize = 64;
/// The longest provider reason kept in a status.
const MAX_REASON_CHARS: usize = 256;

/// How each provider's callbacks are verified; `None` where they are not configured (the
/// route answers 404).
#[derive(Debug, Default)]
pub struct Verifiers {
    pub sendgrid: Option<sendgrid::Verifier>,
    pub twilio: Option<twilio::Verifier>,
}

impl Verifiers {
    /// From `[api.callbacks]`; the error names the bad key.
    pub fn from_config(config: &CallbacksConfig) -> Result<Self, String> {
        Ok(Self {
            sendgrid: config
                .sendgrid
                .verification_key()?
                .map(|key| sendgrid::Verifier::new(key, config.sendgrid.tolerance)),
            twilio: config.twilio.enabled().map(|(token, base)| {
                twilio::Verifier::new(token.expose(), base, config.twilio.match_wait)
            }),
        })
    }
}

/// What one provider event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A status was published.
    Emitted,
    /// An event Herald does not record (`processed`, `deferred`, `queued`, `sent`, ...).
    Ignored,
    /// No Herald ids, or a message id Herald has no record of.
    Unmatched,
    /// An event type Herald does not know, or an event it cannot read.
    Unknown,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Emitted => "emitted",
            Outcome::Ignored => "ignored",
            Outcome::Unmatched => "unmatched",
            Outcome::Unknown => "unknown",
        }
    }
}

/// The answer to a callback that was accepted: how many of its events came to what.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CallbackSummary {
    /// Statuses published to `notifications.status`.
    pub emitted: usize,
    /// Events Herald does not record.
    pub ignored: usize,
    /// Events without Herald's ids, or for a message Herald has no record of.
    pub unmatched: usize,
    /// Events of a type Herald does not know.
    pub unknown: usize,
}

impl CallbackSummary {
    fn add(&mut self, outcome: Outcome) {
        let count = match outcome {
            Outcome::Emitted => &mut self.emitted,
            Outcome::Ignored => &mut self.ignored,
            Outcome::Unmatched => &mut self.unmatched,
            Outcome::Unknown => &mut self.unknown,
        };
        *count += 1;
    }

    /// Counts the summary in the callback metric, once the callback is answered 2xx.
    fn record(&self, provider: &'static str) {
        for (outcome, n) in [
            (Outcome::Emitted, self.emitted),
            (Outcome::Ignored, self.ignored),
            (Outcome::Unmatched, self.unmatched),
            (Outcome::Unknown, self.unknown),
        ] {
            if n > 0 {
                metrics::counter!(API_CALLBACK_EVENTS, "provider" => provider, "outcome" => outcome.label())
                    .increment(n as u64);
            }
        }
    }
}

/// The problems a callback route can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documents the answers; handlers build `Problem`s
pub(crate) enum CallbackErrors {
    /// A signed body that is not what the provider sends.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No, a wrong or a stale signature: nothing was recorded.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The provider's callbacks are not configured (`[api.callbacks]`).
    #[response(status = 404, content_type = "application/problem+json")]
    NotConfigured(Problem),
    /// The body is larger than `api.body_limit`.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// Kafka or the database did not answer: some of it may not be recorded, and the provider
    /// sends it again (which records the same statuses).
    #[response(
        status = 503,
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
    )]
    Unavailable(Problem),
}

/// 401 for a callback that is not the provider's (no or a wrong signature, a replayed
/// timestamp); counted, and nothing is emitted.
fn refused(provider: &'static str, reason: &'static str, detail: String) -> Problem {
    metrics::counter!(API_CALLBACK_REJECTED, "provider" => provider, "reason" => reason)
        .increment(1);
    tracing::warn!(provider, reason, "provider callback refused");
    Problem::bad_signature(detail)
}

/// 404 while the provider's callback settings are not set (nothing could be verified).
fn not_configured(provider: &'static str, keys: &str) -> Problem {
    metrics::counter!(API_CALLBACK_REJECTED, "provider" => provider, "reason" => "not_configured")
        .increment(1);
    Problem::not_found(format!("{provider} callbacks are not configured ({keys})"))
}

/// The raw body, or 413 / 400.
fn raw_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large(limit)
        } else {
            Problem::bad_request(rejection.body_text())
        }
    })
}

/// A provider's reason text as kept in a status: trimmed and at most 256 characters.
fn provider_reason(text: &str) -> String {
    text.trim().chars().take(MAX_REASON_CHARS).collect()
}

/// A status from a callback and, where the provider names its event, the status's identity
/// (`herald-status-id`).
#[derive(Debug)]
pub struct Reported {
    pub status: StatusEvent,
    pub id: Option<String>,
}

/// Publishes `statuses`, each acknowledged by Kafka, or the problem of the first that was not.
async fn publish_all(state: &AppState, statuses: &[Reported]) -> Result<(), Problem> {
    for chunk in statuses.chunks(CONCURRENT_PUBLISHES) {
        futures::future::try_join_all(chunk.iter().map(|reported| {
            state
                .statuses
                .publish_identified(&reported.status, reported.id.as_deref())
        }))
        .await?;
    }
    Ok(())
}

/// The 200 answer of an accepted callback, counted.
fn accepted(provider: &'static str, summary: &CallbackSummary) -> axum::response::Response {
    summary.record(provider);
    crate::problem::json(StatusCode::OK, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_trimmed_and_bounded() {
        assert_eq!(provider_reason("  550 no such user \n"), "550 no such user");
        assert_eq!(provider_reason(&"x".repeat(1000)).len(), MAX_REASON_CHARS);
        let mut summary = CallbackSummary::default();
        for outcome in [Outcome::Emitted, Outcome::Emitted, Outcome::Unknown] {
            summary.add(outcome);
        }
        assert_eq!(
            (summary.emitted, summary.unknown, summary.ignored),
            (2, 1, 0)
        );
    }
}
