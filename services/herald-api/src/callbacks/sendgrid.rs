//! The SendGrid Event Webhook (`POST /v1/callbacks/sendgrid`), signed as SendGrid documents:
//! an ECDSA P-256 signature over SHA-256 of the `X-Twilio-Email-Event-Webhook-Timestamp`
//! header's value followed by the raw body, base64 DER in
//! `X-Twilio-Email-Event-Webhook-Signature`, checked with the verification key SendGrid shows
//! (`api.callbacks.sendgrid.public_key`). A timestamp further from now than
//! `api.callbacks.sendgrid.tolerance` is refused too, so a captured request cannot be replayed
//! later.
//!
//! The body is a JSON array of events. Each carries the `custom_args` the worker sent
//! (`tenant`, `user_id`, `event_id`, `dispatch_id`, and `category` and `created_at` for the
//! delivery metrics) as top-level fields; its `timestamp` is
//! the status's time, so an event SendGrid delivers twice becomes the same status twice.

use aws_lc_rs::signature::ParsedPublicKey;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

use herald_contracts::status::reason;
use herald_contracts::{Channel, Status, StatusEvent};
use herald_runtime::metric_names::API_SUPPRESSIONS_ADDED;
use herald_store::suppressions::{Suppression, source};

use super::{CallbackErrors, raw_body, refused};
use super::{CallbackSummary, Outcome, Reported, accepted, not_configured};
use super::{provider_reason, publish_all};
use crate::AppState;
use crate::problem::Problem;

pub const PROVIDER: &str = herald_contracts::provider::SENDGRID;
pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// Why a request is not SendGrid's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")]
    Missing,
    #[error("the signature is not base64, or the timestamp not a number of seconds")]
    Malformed,
    #[error("the signature does not verify with the configured SendGrid verification key")]
    Invalid,
    #[error(
        "the signed timestamp is {0} s away from now, more than api.callbacks.sendgrid.tolerance"
    )]
    Stale(i64),
}

impl SignatureError {
    fn label(&self) -> &'static str {
        match self {
            SignatureError::Stale(_) => "timestamp",
            _ => "signature",
        }
    }
}

/// Checks SendGrid signatures with the configured key.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: ParsedPublicKey,
    tolerance: Duration,
}

impl Verifier {
    pub fn new(key: ParsedPublicKey, tolerance: Duration) -> Self {
        Self { key, tolerance }
    }

    /// Whether `body` with these header values is SendGrid's and recent.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), SignatureError> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(SignatureError::Missing);
        };
        let signature = STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::Malformed)?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        self.key
            .verify_sig(&signed, &signature)
            .map_err(|_| SignatureError::Invalid)?;
        let seconds: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::Malformed)?;
        let skew = now.timestamp().saturating_sub(seconds);
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if skew.saturating_abs() > tolerance {
            return Err(SignatureError::Stale(skew));
        }
        Ok(())
    }
}

/// What one event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Publish `status` (with its identity `id`, from `sg_event_id`, so that a batch SendGrid
    /// sends again gives the same timeline rows); with `suppress`, first put the address on the
    /// tenant's list.
    Status {
        status: Box<StatusEvent>,
        id: Option<String>,
        suppress: Option<Suppression>,
    },
    Skip(Outcome),
}

/// A top-level string field of an event, when present and not empty.
fn text<'a>(event: &'a Value, field: &str) -> Option<&'a str> {
    event[field].as_str().filter(|s| !s.is_empty())
}

/// What Herald records of one SendGrid event.
pub fn map(event: &Value) -> Mapped {
    let Some(kind) = text(event, "event") else {
        return Mapped::Skip(Outcome::Unknown);
    };
    let provider_text = |fallback: &str| {
        text(event, "reason")
            .or_else(|| text(event, "response"))
            .map_or_else(|| fallback.to_owned(), provider_reason)
    };
    // (status, reason, suppression source)
    let (status, why, suppress) = match kind {
        "delivered" => (Status::Delivered, None, None),
        "open" => (Status::Opened, None, None),
        "click" => (Status::Clicked, None, None),
        "spamreport" => (
            Status::Failed,
            Some(reason::COMPLAINED.to_owned()),
            Some(source::COMPLAINT),
        ),
        // A block is the receiving server refusing this message (often for a while), not the
        // address being gone: failed with its reason, not suppressed.
        "bounce" if text(event, "type") == Some("blocked") => {
            (Status::Failed, Some(provider_text("blocked")), None)
        }
        "bounce" => (
            Status::Failed,
            Some(reason::BOUNCED.to_owned()),
            Some(source::BOUNCE),
        ),
        "dropped" => (Status::Failed, Some(provider_text("dropped")), None),
        "processed" | "deferred" | "unsubscribe" | "group_unsubscribe" | "group_resubscribe" => {
            return Mapped::Skip(Outcome::Ignored);
        }
        _ => return Mapped::Skip(Outcome::Unknown),
    };
    let ids = (
        text(event, "tenant"),
        text(event, "user_id"),
        text(event, "event_id"),
        text(event, "dispatch_id"),
    );
    let (Some(tenant), Some(user_id), Some(event_id), Some(dispatch_id)) = ids else {
        return Mapped::Skip(Outcome::Unmatched);
    };
    let Some(at) = event["timestamp"]
        .as_i64()
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
    else {
        return Mapped::Skip(Outcome::Unknown);
    };
    // `sg_message_id` is the `X-Message-Id` the worker recorded, then `.filter...`.
    let message_id = text(event, "sg_message_id")
        .and_then(|id| id.split('.').next())
        .map(str::to_owned);
    let suppress = match (suppress, text(event, "email")) {
        (Some(why), Some(address)) => Some(Suppression {
            address: address.to_owned(),
            reason: why.to_owned(),
            suppressed_at: at,
            provider: Some(PROVIDER.to_owned()),
            source_event_id: Some(event_id.to_owned()),
            source_dispatch_id: Some(dispatch_id.to_owned()),
        }),
        _ => None,
    };
    Mapped::Status {
        id: text(event, "sg_event_id").map(|id| format!("{PROVIDER}:{id}")),
        status: Box::new(StatusEvent {
            event_id: event_id.to_owned(),
            dispatch_id: Some(dispatch_id.to_owned()),
            tenant: tenant.to_owned(),
            user_id: user_id.to_owned(),
            channel: Some(Channel::Email),
            status,
            reason: why,
            provider: Some(PROVIDER.to_owned()),
            provider_message_id: message_id,
            attempt: 0,
            at,
            category: text(event, "category").map(str::to_owned),
            created_at: text(event, "created_at")
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(chrono::DateTime::from_timestamp_millis),
            ..Default::default()
        }),
        suppress,
    }
}

#[utoipa::path(
    post,
    path = "/v1/callbacks/sendgrid",
    operation_id = "sendgrid_callback",
    tag = "callbacks",
    security(()),
    params(
        ("X-Twilio-Email-Event-Webhook-Signature" = String, Header, description = "base64 DER ECDSA P-256 signature of the timestamp header's value followed by the body"),
        ("X-Twilio-Email-Event-Webhook-Timestamp" = String, Header, description = "Unix seconds; refused when further from now than api.callbacks.sendgrid.tolerance"),
    ),
    request_body(content = Vec<Object>, description = "SendGrid Event Webhook events", content_type = "application/json"),
    responses(
        (status = 200, description = "Every event was recorded or skipped (skipped events are counted, not retried)", body = CallbackSummary),
        CallbackErrors,
    ),
)]
/// `POST /v1/callbacks/sendgrid`.
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let verifier = state
        .callbacks
        .sendgrid
        .as_ref()
        .ok_or_else(|| not_configured(PROVIDER, "api.callbacks.sendgrid.public_key"))?;
    let body = raw_body(body, state.body_limit)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verifier
        .verify(
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            &body,
            Utc::now(),
        )
        .map_err(|e| refused(PROVIDER, e.label(), e.to_string()))?;
    let events: Vec<Value> = serde_json::from_slice(&body).map_err(|e| {
        Problem::bad_request(format!("the body is not a JSON array of events: {e}"))
    })?;
    let mut summary = CallbackSummary::default();
    let mut statuses = Vec::new();
    let mut suppressions = Vec::new();
    for event in &events {
        match map(event) {
            Mapped::Status {
                status,
                id,
                suppress,
            } => {
                if let Some(suppression) = suppress {
                    suppressions.push((status.tenant.clone(), suppression));
                }
                statuses.push(Reported {
                    status: *status,
                    id,
                });
                summary.add(Outcome::Emitted);
            }
            Mapped::Skip(outcome) => summary.add(outcome),
        }
    }
    // Suppressions before statuses: a failure is answered 503 and SendGrid sends the batch
    // again, which writes them again (the same rows).
    for (tenant, suppression) in &suppressions {
        state.suppressions.add(tenant, suppression).await?;
        metrics::counter!(API_SUPPRESSIONS_ADDED, "source" => suppression.reason.clone())
            .increment(1);
        tracing::info!(%tenant, reason = %suppression.reason, dispatch_id = ?suppression.source_dispatch_id, "address suppressed");
    }
    publish_all(&state, &statuses).await?;
    Ok(accepted(PROVIDER, &summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    };
    use serde_json::json;

    fn key_pair() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap()
    }

    fn verifier(pair: &EcdsaKeyPair) -> Verifier {
        let der = pair.public_key().as_der().unwrap();
        let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, der.as_ref()).unwrap();
        Verifier::new(key, Duration::from_secs(600))
    }

    /// Signs as SendGrid does: timestamp then body, base64 DER.
    fn sign(pair: &EcdsaKeyPair, timestamp: &str, body: &[u8]) -> String {
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        let signature = pair.sign(&SystemRandom::new(), &signed).unwrap();
        STANDARD.encode(signature.as_ref())
    }

    #[test]
    fn a_signature_verifies_only_over_its_timestamp_and_body_and_with_the_key() {
        let pair = key_pair();
        let check = verifier(&pair);
        let now = Utc::now();
        let ts = now.timestamp().to_string();
        let body = br#"[{"event":"delivered"}]"#;
        let good = sign(&pair, &ts, body);
        assert_eq!(check.verify(Some(&ts), Some(&good), body, now), Ok(()));
        assert_eq!(
            check.verify(Some(&ts), Some(&good), br#"[{"event":"open"}]"#, now),
            Err(SignatureError::Invalid)
        );
        let later = (now.timestamp() + 1).to_string();
        assert_eq!(
            check.verify(Some(&later), Some(&good), body, now),
            Err(SignatureError::Invalid)
        );
        let other = sign(&key_pair(), &ts, body);
        assert_eq!(
            check.verify(Some(&ts), Some(&other), body, now),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            check.verify(Some(&ts), None, body, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check.verify(None, Some(&good), body, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check.verify(Some(&ts), Some("%%%"), body, now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_timestamp_outside_the_tolerance_is_refused_even_when_signed() {
        let pair = key_pair();
        let check = verifier(&pair);
        let now = Utc::now();
        let body = b"[]";
        for (offset, ok) in [(-599, true), (599, true), (-601, false), (601, false)] {
            let ts = (now.timestamp() + offset).to_string();
            let result = check.verify(Some(&ts), Some(&sign(&pair, &ts, body)), body, now);
            assert_eq!(result.is_ok(), ok, "{offset}: {result:?}");
            if !ok {
                assert_eq!(result.unwrap_err().label(), "timestamp");
            }
        }
    }

    fn event(kind: &str) -> Value {
        json!({
            "email": "Ana@Example.com",
            "timestamp": 1_700_000_000,
            "event": kind,
            "sg_event_id": "sg-1",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "tenant": "acme",
            "user_id": "ana",
            "event_id": "e-1",
            "dispatch_id": "e-1:email",
            "category": "billing.invoice_ready",
            "created_at": "1699999999500",
        })
    }

    fn status_of(mapped: Mapped) -> (StatusEvent, Option<Suppression>) {
        match mapped {
            Mapped::Status {
                status, suppress, ..
            } => (*status, suppress),
            Mapped::Skip(outcome) => panic!("skipped: {outcome:?}"),
        }
    }

    #[test]
    fn a_status_is_identified_by_the_providers_event_id() {
        match map(&event("delivered")) {
            Mapped::Status { id, .. } => assert_eq!(id.as_deref(), Some("sendgrid:sg-1")),
            Mapped::Skip(outcome) => panic!("skipped: {outcome:?}"),
        }
    }

    #[test]
    fn events_map_to_statuses_at_the_providers_time() {
        let (delivered, none) = status_of(map(&event("delivered")));
        assert_eq!(delivered.status, Status::Delivered);
        assert_eq!(
            delivered.at,
            DateTime::from_timestamp(1_700_000_000, 0).unwrap()
        );
        assert_eq!(delivered.key(), "acme:ana");
        assert_eq!(delivered.dispatch_id.as_deref(), Some("e-1:email"));
        assert_eq!(delivered.category.as_deref(), Some("billing.invoice_ready"));
        assert_eq!(
            delivered.created_at,
            DateTime::from_timestamp_millis(1_699_999_999_500)
        );
        assert_eq!(delivered.channel, Some(Channel::Email));
        assert_eq!(delivered.provider.as_deref(), Some("sendgrid"));
        assert_eq!(
            delivered.provider_message_id.as_deref(),
            Some("14c5d75ce93")
        );
        assert_eq!(none, None);
        // The same event twice is the same status twice.
        assert_eq!(status_of(map(&event("delivered"))).0, delivered);
        assert_eq!(status_of(map(&event("open"))).0.status, Status::Opened);
        assert_eq!(status_of(map(&event("click"))).0.status, Status::Clicked);
    }

    #[test]
    fn hard_bounces_and_complaints_fail_and_suppress_blocks_and_drops_only_fail() {
        let (bounced, suppress) = status_of(map(&event("bounce")));
        assert_eq!(
            (bounced.status, bounced.reason.as_deref()),
            (Status::Failed, Some(reason::BOUNCED))
        );
        let suppress = suppress.unwrap();
        assert_eq!(suppress.address, "Ana@Example.com");
        assert_eq!(suppress.reason, source::BOUNCE);
        assert_eq!(suppress.source_dispatch_id.as_deref(), Some("e-1:email"));

        let (complained, suppress) = status_of(map(&event("spamreport")));
        assert_eq!(complained.reason.as_deref(), Some(reason::COMPLAINED));
        assert_eq!(suppress.unwrap().reason, source::COMPLAINT);

        let mut blocked = event("bounce");
        blocked["type"] = "blocked".into();
        blocked["reason"] = "550 blocked by policy".into();
        let (failed, suppress) = status_of(map(&blocked));
        assert_eq!(failed.reason.as_deref(), Some("550 blocked by policy"));
        assert_eq!(suppress, None);

        let mut dropped = event("dropped");
        dropped["reason"] = "Bounced Address".into();
        let (failed, suppress) = status_of(map(&dropped));
        assert_eq!(
            (failed.status, failed.reason.as_deref()),
            (Status::Failed, Some("Bounced Address"))
        );
        assert_eq!(suppress, None);
    }

    #[test]
    fn unrecorded_unknown_and_foreign_events_are_skipped() {
        for kind in ["processed", "deferred", "unsubscribe"] {
            assert_eq!(map(&event(kind)), Mapped::Skip(Outcome::Ignored), "{kind}");
        }
        assert_eq!(map(&event("teleported")), Mapped::Skip(Outcome::Unknown));
        assert_eq!(
            map(&json!({"email": "a@b"})),
            Mapped::Skip(Outcome::Unknown)
        );
        // Sent by something else on the account: no Herald ids.
        let mut foreign = event("delivered");
        foreign.as_object_mut().unwrap().remove("dispatch_id");
        assert_eq!(map(&foreign), Mapped::Skip(Outcome::Unmatched));
        let mut no_time = event("delivered");
        no_time["timestamp"] = "soon".into();
        assert_eq!(map(&no_time), Mapped::Skip(Outcome::Unknown));
    }
}
