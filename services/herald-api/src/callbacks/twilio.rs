//! Twilio Messaging status callbacks (`POST /v1/callbacks/twilio`, form-encoded), signed as
//! Twilio documents: `X-Twilio-Signature` is base64(HMAC-SHA1(auth token, the full URL Twilio
//! called followed by each POST parameter's name and value, sorted by name)). The URL is the
//! public one (`api.callbacks.twilio.public_base_url` and the request's path and query), since
//! behind a proxy this process does not see what Twilio called.
//!
//! The callback names only Twilio's `MessageSid`, which the SMS worker recorded with the
//! dispatch it sent (`provider_messages`). `delivered` becomes `delivered`; `undelivered` and
//! `failed` become `failed` with Twilio's `ErrorCode`; every other status (`queued`, `sent`,
//! ...) is ignored. Twilio can call before the worker's record is written: a callback for a
//! message id not found waits up to `api.callbacks.twilio.match_wait` for it, then is
//! answered 200 and counted unmatched (Twilio does not retry status callbacks by default, so a
//! 503 would not bring it back).

use aws_lc_rs::hmac;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::time::{Duration, Instant};

use herald_contracts::{Channel, Status, StatusEvent};
use herald_store::provider_messages::MessageRef;

use super::{CallbackErrors, Reported, raw_body, refused};
use super::{CallbackSummary, Outcome, accepted, not_configured, provider_reason, publish_all};
use crate::AppState;
use crate::problem::Problem;

/// The provider name the SMS worker records message ids under.
pub const PROVIDER: &str = herald_contracts::provider::TWILIO;
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// How often a callback looks again for a message id not yet recorded.
const MATCH_POLL: Duration = Duration::from_millis(200);

/// Checks Twilio signatures with the account's auth token.
pub struct Verifier {
    key: hmac::Key,
    public_base_url: String,
    match_wait: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is the auth token: never printed.
        f.debug_struct("Verifier")
            .field("public_base_url", &self.public_base_url)
            .field("match_wait", &self.match_wait)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// `public_base_url` without a trailing `/`.
    pub fn new(auth_token: &str, public_base_url: &str, match_wait: Duration) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes()),
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            match_wait,
        }
    }

    /// The URL Twilio called: the public base and the request's path and query.
    pub fn public_url(&self, uri: &Uri) -> String {
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
        format!("{}{path}", self.public_base_url)
    }

    /// Whether `signature` is Twilio's for `url` and `params`, compared in constant time.
    pub fn verify(&self, url: &str, params: &[(String, String)], signature: Option<&str>) -> bool {
        let Some(signature) = signature.and_then(|s| STANDARD.decode(s.trim()).ok()) else {
            return false;
        };
        hmac::verify(&self.key, &signed_text(url, params), &signature).is_ok()
    }
}

/// What Twilio signs: the URL, then each parameter's name and value, sorted by name (and by
/// value for a repeated name).
pub fn signed_text(url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut text = url.as_bytes().to_vec();
    for (name, value) in sorted {
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(value.as_bytes());
    }
    text
}

/// What a Twilio status asks for: a status and its reason, or nothing.
pub fn status_of(
    message_status: &str,
    error_code: Option<&str>,
) -> Option<(Status, Option<String>)> {
    match message_status {
        "delivered" => Some((Status::Delivered, None)),
        "undelivered" | "failed" => {
            let why = match error_code.filter(|c| !c.is_empty()) {
                Some(code) => format!("{message_status}: twilio error {code}"),
                None => message_status.to_owned(),
            };
            Some((Status::Failed, Some(provider_reason(&why))))
        }
        _ => None,
    }
}

/// The status for a message the worker recorded.
pub fn status_event(
    message: &MessageRef,
    message_sid: &str,
    status: Status,
    why: Option<String>,
) -> StatusEvent {
    StatusEvent {
        event_id: message.event_id.clone(),
        dispatch_id: Some(message.dispatch_id.clone()),
        tenant: message.tenant.clone(),
        user_id: message.user_id.clone(),
        channel: Some(message.channel.unwrap_or(Channel::Sms)),
        status,
        reason: why,
        provider: Some(PROVIDER.to_owned()),
        provider_message_id: Some(message_sid.to_owned()),
        attempt: 0,
        // Twilio's callback carries no event time: the time it reached Herald.
        at: herald_contracts::time::now_millis(),
        scheduled_for: None,
        category: message.category.clone(),
        created_at: message.created_at,
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The worker's record of `sid`, waiting up to `wait` for one not written yet.
async fn find_message(
    state: &AppState,
    sid: &str,
    wait: Duration,
) -> Result<Option<MessageRef>, Problem> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(found) = state.provider_messages.find(PROVIDER, sid).await? {
            return Ok(Some(found));
        }
        if Instant::now() + MATCH_POLL > deadline {
            return Ok(None);
        }
        tokio::time::sleep(MATCH_POLL).await;
    }
}

#[utoipa::path(
    post,
    path = "/v1/callbacks/twilio",
    operation_id = "twilio_callback",
    tag = "callbacks",
    security(()),
    params(
        ("X-Twilio-Signature" = String, Header, description = "base64 HMAC-SHA1 under the auth token of the public URL followed by each parameter's name and value, sorted by name"),
    ),
    request_body(content = String, description = "Twilio's status callback parameters (MessageSid, MessageStatus, ErrorCode, ...)", content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Recorded, ignored (a status Herald does not record) or unmatched (counted)", body = CallbackSummary),
        CallbackErrors,
    ),
)]
/// `POST /v1/callbacks/twilio`.
pub async fn receive(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let verifier = state.callbacks.twilio.as_ref().ok_or_else(|| {
        not_configured(
            PROVIDER,
            "api.callbacks.twilio.auth_token and public_base_url",
        )
    })?;
    let body = raw_body(body, state.body_limit)?;
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if !verifier.verify(&verifier.public_url(&uri), &params, signature) {
        return Err(refused(
            PROVIDER,
            "signature",
            format!(
                "no {SIGNATURE_HEADER}, or one that does not verify with \
                 api.callbacks.twilio.auth_token for this URL under \
                 api.callbacks.twilio.public_base_url"
            ),
        ));
    }
    let mut summary = CallbackSummary::default();
    let (Some(sid), Some(message_status)) = (
        param(&params, "MessageSid"),
        param(&params, "MessageStatus"),
    ) else {
        summary.add(Outcome::Unknown);
        return Ok(accepted(PROVIDER, &summary));
    };
    let Some((status, why)) = status_of(message_status, param(&params, "ErrorCode")) else {
        summary.add(Outcome::Ignored);
        return Ok(accepted(PROVIDER, &summary));
    };
    match find_message(&state, sid, verifier.match_wait).await? {
        Some(message) => {
            // No identity: Twilio's callback has no event time, so a repeat is a later status.
            let reported = Reported {
                status: status_event(&message, sid, status, why),
                id: None,
            };
            publish_all(&state, &[reported]).await?;
            summary.add(Outcome::Emitted);
        }
        None => {
            tracing::info!(provider = PROVIDER, message_sid = %sid, "status callback for a message id Herald has no record of");
            summary.add(Outcome::Unmatched);
        }
    }
    Ok(accepted(PROVIDER, &summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Twilio's own documented example (TwilioDevEd/api-snippets, signature_validation): this
    /// URL, these parameters and this auth token sign to this value.
    #[test]
    fn the_documented_example_verifies() {
        let verifier = Verifier::new("12345", "https://mycompany.com", Duration::from_secs(2));
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        let url = verifier.public_url(&"/myapp.php?foo=1&bar=2".parse().unwrap());
        assert_eq!(url, "https://mycompany.com/myapp.php?foo=1&bar=2");
        assert!(verifier.verify(&url, &params, Some("GvWf1cFY/Q7PnoempGyD5oXAezc=")));
        // Any change to the URL, a parameter or the signature fails.
        assert!(!verifier.verify(
            "https://mycompany.com/myapp.php?foo=1",
            &params,
            Some("GvWf1cFY/Q7PnoempGyD5oXAezc=")
        ));
        let mut changed = params.clone();
        changed[2].1 = "1235".into();
        assert!(!verifier.verify(&url, &changed, Some("GvWf1cFY/Q7PnoempGyD5oXAezc=")));
        assert!(!verifier.verify(&url, &params, Some("HvWf1cFY/Q7PnoempGyD5oXAezc=")));
        assert!(!verifier.verify(&url, &params, None));
        assert!(!verifier.verify(&url, &params, Some("not base64!")));
        let other = Verifier::new("54321", "https://mycompany.com", Duration::ZERO);
        assert!(!other.verify(&url, &params, Some("GvWf1cFY/Q7PnoempGyD5oXAezc=")));
    }

    #[test]
    fn parameters_are_signed_sorted_by_name_whatever_their_order() {
        let a = signed_text("u", &pairs(&[("b", "2"), ("a", "1"), ("a", "0")]));
        assert_eq!(a, b"ua0a1b2");
    }

    #[test]
    fn delivered_and_failures_are_recorded_other_statuses_ignored() {
        assert_eq!(
            status_of("delivered", None),
            Some((Status::Delivered, None))
        );
        assert_eq!(
            status_of("undelivered", Some("30003")),
            Some((
                Status::Failed,
                Some("undelivered: twilio error 30003".into())
            ))
        );
        assert_eq!(
            status_of("failed", Some("")),
            Some((Status::Failed, Some("failed".into())))
        );
        for other in ["queued", "sending", "sent", "accepted", "read", "canceled"] {
            assert_eq!(status_of(other, None), None, "{other}");
        }
        let message = MessageRef {
            tenant: "acme".into(),
            user_id: "ana".into(),
            event_id: "e-1".into(),
            dispatch_id: "e-1:sms".into(),
            channel: Some(Channel::Sms),
            sent_at: chrono::Utc::now(),
            category: Some("security.otp".into()),
            created_at: chrono::DateTime::from_timestamp_millis(1_700_000_000_000),
        };
        let status = status_event(&message, "SM1", Status::Delivered, None);
        assert_eq!(status.key(), "acme:ana");
        assert_eq!(status.dispatch_id.as_deref(), Some("e-1:sms"));
        assert_eq!(status.provider_message_id.as_deref(), Some("SM1"));
        // The category and creation time the worker recorded, as every status carries them.
        assert_eq!(status.category.as_deref(), Some("security.otp"));
        assert_eq!(status.created_at, message.created_at);
    }
}
